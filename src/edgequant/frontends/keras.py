"""Keras 3 (.keras), legacy .h5 and SavedModel loaders. TensorFlow is imported here.

Keras models load with ``safe_mode=True``: a .keras file can carry pickled
Python (Lambda layers), which runs arbitrary code on load. The user has to opt
in with ``unsafe=True`` (the CLI's ``--unsafe``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgequant._util import last_error_line, quiet, quiet_tensorflow
from edgequant.errors import EngineError, InputError, UnsafeModelError
from edgequant.frontends.tflite import inspect_float_tflite
from edgequant.types import FloatModel, SourceKind

__all__ = ["load_keras", "load_keras_as_tflite", "load_saved_model_as_tflite", "run_converter", "convert_keras_model"]

# Called with a configured-from-source tf.lite.TFLiteConverter to set options.
ConverterSetup = Callable[[Any], None]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def load_keras(path: Path, unsafe: bool = False) -> Any:
    """Load a .keras or .h5 file as a Keras model, refusing unsafe ones unless asked."""
    quiet_tensorflow()
    with quiet():
        import keras
    try:
        with quiet():
            return keras.models.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:
        msg = str(exc)
        if not unsafe and ("safe_mode" in msg or "unsafe" in msg.lower() or "lambda" in msg.lower()):
            raise UnsafeModelError(
                f"{path.name} needs unsafe deserialization (it holds Python code, e.g. a Lambda layer): "
                "expected a model loadable with safe_mode on; pass --unsafe (unsafe=True) if you trust it") from None
        expected = "a Keras 3 .keras zip archive" if path.suffix == ".keras" else "a Keras HDF5 model file"
        raise InputError(f"cannot load {path.name}: expected {expected}, found: {_first_line(exc)}") from None


def run_converter(source: Path, kind: SourceKind, unsafe: bool, setup: ConverterSetup | None = None) -> bytes:
    """Build a tf.lite.TFLiteConverter for the source model, let ``setup`` configure it, convert.

    Both the float frontend and the tflite-converter engine go through here, so
    that they convert exactly the same graph.
    """
    quiet_tensorflow()
    with quiet():
        import tensorflow as tf
    if kind is SourceKind.SAVED_MODEL:
        make = lambda: tf.lite.TFLiteConverter.from_saved_model(str(source))  # noqa: E731
    elif kind in (SourceKind.KERAS, SourceKind.H5):
        model = load_keras(source, unsafe)
        make = lambda: tf.lite.TFLiteConverter.from_keras_model(model)  # noqa: E731
    else:
        raise InputError(f"TensorFlow's converter needs a Keras or SavedModel source, found {kind.value}")
    try:
        with quiet() as captured:
            converter = make()
            if setup is not None:
                setup(converter)
            return bytes(converter.convert())
    except InputError:
        raise
    except Exception as exc:
        raise EngineError(
            f"TensorFlow's converter failed on {source.name}: "
            f"{last_error_line(captured, _first_line(exc))}") from None


def convert_keras_model(model: Any, what: str) -> bytes:
    """A Keras model built in memory (qat's folded graph, a pruned model) to a float .tflite.

    The same converter and defaults as :func:`run_converter`, so the float graph of an
    in-memory model is the one its saved .keras file would give.
    """
    quiet_tensorflow()
    with quiet():
        import tensorflow as tf
    try:
        with quiet() as captured:
            return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    except Exception as exc:
        raise EngineError(f"TensorFlow's converter failed on {what}: "
                          f"{last_error_line(captured, _first_line(exc))}") from None


def load_keras_as_tflite(path: Path, unsafe: bool = False, signature: str | None = None) -> FloatModel:
    kind = SourceKind.H5 if path.suffix.lower() in (".h5", ".hdf5") else SourceKind.KERAS
    return inspect_float_tflite(run_converter(path, kind, unsafe), path, kind, unsafe, signature)


def load_saved_model_as_tflite(path: Path, signature: str | None = None) -> FloatModel:
    return inspect_float_tflite(run_converter(path, SourceKind.SAVED_MODEL, False), path,
                                SourceKind.SAVED_MODEL, signature=signature)
