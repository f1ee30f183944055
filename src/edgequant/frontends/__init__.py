"""Stage 1, load: turn whatever model the user has into a float .tflite.

Each source kind has one loader, registered in ``LOADERS``. The kind is decided
from the path alone, before anything heavy is imported, so a wrong path fails
in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgequant.errors import InputError, UnsupportedError
from edgequant.frontends.tflite import inspect_float_tflite, load_tflite
from edgequant.types import FloatModel, ModelOptions, SourceKind

__all__ = ["detect_kind", "load_model", "LOADERS", "inspect_float_tflite"]


def _load_keras_kind(path: Path, options: ModelOptions) -> FloatModel:
    # Imported lazily: TensorFlow takes seconds to import, and a .tflite-only
    # workflow never needs it.
    from edgequant.frontends.keras import load_keras_as_tflite

    return load_keras_as_tflite(path, options.unsafe, options.signature)


def _load_saved_model(path: Path, options: ModelOptions) -> FloatModel:
    from edgequant.frontends.keras import load_saved_model_as_tflite

    return load_saved_model_as_tflite(path, options.signature)


LOADERS: dict[SourceKind, Callable[[Path, ModelOptions], FloatModel]] = {
    SourceKind.KERAS: _load_keras_kind,
    SourceKind.H5: _load_keras_kind,
    SourceKind.SAVED_MODEL: _load_saved_model,
    SourceKind.TFLITE: lambda path, options: load_tflite(path, options.signature),
}

_SUFFIXES = {".keras": SourceKind.KERAS, ".h5": SourceKind.H5, ".hdf5": SourceKind.H5,
             ".tflite": SourceKind.TFLITE}


def detect_kind(path: Path) -> SourceKind:
    """The source kind of ``path``, or an InputError saying what was expected."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model not found: {path} (expected a .keras, .h5, .tflite file or a SavedModel folder)")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return SourceKind.SAVED_MODEL
        raise InputError(f"folder {path} is not a SavedModel: expected saved_model.pb inside, found none")
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        supported = ", ".join(sorted(_SUFFIXES))
        raise UnsupportedError(
            f"unsupported model format {path.suffix or '(no extension)'!r} for {path.name}: "
            f"expected one of {supported} or a SavedModel folder")
    return kind


def load_model(path: Path | str, unsafe: bool = False, *, signature: str | None = None,
               options: ModelOptions | None = None) -> FloatModel:
    """Load any supported model and return it as a checked float .tflite with its signature."""
    path = Path(path)
    options = options or ModelOptions(unsafe=unsafe, signature=signature)
    kind = detect_kind(path)
    return LOADERS[kind](path, options)
