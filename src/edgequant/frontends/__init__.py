"""Stage 1, load: turn whatever model the user has into a float .tflite.

Each source kind has one loader, registered in ``LOADERS``. The kind is decided
from the path alone, before anything heavy is imported, so a wrong path fails
in milliseconds. PyTorch (``net.py:build``, ``.pt2``) and ONNX sources need the
``edgequant[torch]`` extra; their loaders import it lazily.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.errors import InputError, UnsupportedError
from edgequant.frontends.tflite import inspect_float_tflite, load_tflite
from edgequant.types import UNNAMED, FloatModel, Layout, SourceKind, SourceOptions, parse_enum

__all__ = ["detect_kind", "load_model", "LOADERS", "inspect_float_tflite", "source_options"]

Loader = Callable[[Path, bool, SourceOptions], FloatModel]


def _load_keras_kind(path: Path, unsafe: bool, options: SourceOptions) -> FloatModel:
    # Imported lazily: TensorFlow takes seconds to import, and a .tflite-only
    # workflow never needs it.
    from edgequant.frontends.keras import load_keras_as_tflite

    return load_keras_as_tflite(path, unsafe, options.signature)


def _load_saved_model(path: Path, unsafe: bool, options: SourceOptions) -> FloatModel:
    from edgequant.frontends.keras import load_saved_model_as_tflite

    return load_saved_model_as_tflite(path, options.signature)


def _load_pytorch(path: Path, unsafe: bool, options: SourceOptions) -> FloatModel:
    from edgequant.frontends.pytorch import load_pytorch, split_builder

    builder = split_builder(str(path))
    return load_pytorch(builder[0], options, builder[1]) if builder else load_pytorch(path, options)


def _load_onnx(path: Path, unsafe: bool, options: SourceOptions) -> FloatModel:
    from edgequant.frontends.onnxmodel import load_onnx

    return load_onnx(path, options)


LOADERS: dict[SourceKind, Loader] = {
    SourceKind.KERAS: _load_keras_kind,
    SourceKind.H5: _load_keras_kind,
    SourceKind.SAVED_MODEL: _load_saved_model,
    SourceKind.TFLITE: lambda path, unsafe, options: load_tflite(path, options.signature),
    SourceKind.PYTORCH: _load_pytorch,
    SourceKind.ONNX: _load_onnx,
}

_SUFFIXES = {".keras": SourceKind.KERAS, ".h5": SourceKind.H5, ".hdf5": SourceKind.H5,
             ".tflite": SourceKind.TFLITE, ".pt2": SourceKind.PYTORCH, ".onnx": SourceKind.ONNX}
_FORMS = ".keras, .h5, .tflite, .pt2, .onnx, net.py:build or a SavedModel folder"


def detect_kind(path: Path | str) -> SourceKind:
    """The source kind of ``path``, or an InputError saying what was expected."""
    from edgequant.frontends.pytorch import STATE_DICT_SUFFIXES, refuse_state_dict, split_builder

    builder = split_builder(str(path))
    if builder is not None:
        if not builder[0].is_file():
            raise InputError(f"model not found: {builder[0]} (expected a Python file defining {builder[1]}())")
        return SourceKind.PYTORCH
    path = Path(path)
    if path.suffix.lower() == ".py":
        raise InputError(f"{path.name}: expected {path.name}:FUNCTION, naming the function that returns "
                         "(module, example_inputs)")
    if not path.exists():
        raise InputError(f"model not found: {path} (expected {_FORMS})")
    if path.suffix.lower() in STATE_DICT_SUFFIXES:
        refuse_state_dict(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return SourceKind.SAVED_MODEL
        raise InputError(f"folder {path} is not a SavedModel: expected saved_model.pb inside, found none")
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        supported = ", ".join(sorted(_SUFFIXES))
        raise UnsupportedError(
            f"unsupported model format {path.suffix or '(no extension)'!r} for {path.name}: "
            f"expected one of {supported}, net.py:build or a SavedModel folder")
    return kind


def load_model(path: Path | str, unsafe: bool = False, options: SourceOptions | None = None, *,
               signature: str | None = None) -> FloatModel:
    """Load any supported model and return it as a checked float .tflite with its signature.

    ``options`` (input shapes, layout, inputs for the conversion check) apply to
    PyTorch and ONNX sources; ``signature`` picks one of a .tflite's signatures.
    """
    kind = detect_kind(path)
    options = options or SourceOptions()
    if signature is not None:
        options = dataclasses.replace(options, signature=signature)
    return LOADERS[kind](Path(path), unsafe, options)


def source_options(input_shapes: Mapping[str, Sequence[int]] | Sequence[str] | None = None,
                   layout: Layout | str | None = None, data: Any = None, samples: int = 8) -> SourceOptions:
    """SourceOptions from what a user types: shapes as {name: dims} or ["NAME=1,3,48,320", ...], a layout
    name, and data for the conversion check ({name: array}, batch first; an array feeds a one-input model)."""
    from edgequant.frontends.onnxmodel import parse_input_shape

    if input_shapes is None:
        shapes: list[tuple[str, tuple[int, ...]]] = []
    elif isinstance(input_shapes, Mapping):
        shapes = [(str(k), tuple(int(d) for d in v)) for k, v in input_shapes.items()]
    else:
        shapes = [parse_input_shape(text) for text in input_shapes]
    names = [n for n, _ in shapes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"--input-shape: expected each input once, found {', '.join(repeated)} more than once")
    sets: tuple[dict[str, np.ndarray], ...] = ()
    if data is not None:
        arrays = {UNNAMED: np.asarray(data)} if isinstance(data, np.ndarray) else {
            str(k): np.asarray(v) for k, v in dict(data).items()}
        count = min(len(v) for v in arrays.values()) if arrays else 0
        sets = tuple({k: v[i:i + 1] for k, v in arrays.items()} for i in range(min(count, samples)))
    return SourceOptions(tuple(shapes), parse_enum(Layout, layout or Layout.NCHW, "layout"), sets)
