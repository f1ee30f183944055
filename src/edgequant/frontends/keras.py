"""Keras 3 (.keras), legacy .h5 and SavedModel loaders. TensorFlow is imported here.

Keras models load with ``safe_mode=True``: a .keras file can carry pickled
Python (Lambda layers), which runs arbitrary code on load. The user has to opt
in with ``unsafe=True`` (the CLI's ``--unsafe``).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgequant._util import last_error_line, quiet, quiet_tensorflow
from edgequant.errors import EngineError, InputError, UnsafeModelError, UnsupportedError
from edgequant.frontends.tflite import inspect_float_tflite
from edgequant.types import FloatModel, SourceKind

__all__ = ["load_keras", "load_keras_as_tflite", "load_saved_model_as_tflite", "run_converter", "convert_keras_model"]

# Called with a configured-from-source tf.lite.TFLiteConverter to set options.
ConverterSetup = Callable[[Any], None]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# The first bytes of an HDF5 file (legacy .h5 models); HDF5 also allows them at 512, 1024, 2048 ...
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def check_keras_file(path: Path) -> None:
    """A .keras file must be a zip archive holding config.json, a .h5 an HDF5 file: checked before Keras
    reads it, since Keras answers a garbage, empty or truncated file with "File not found"."""
    size = path.stat().st_size
    if path.suffix.lower() == ".keras":
        expected = f"cannot load {path.name}: it is not a valid Keras archive: expected a Keras 3 .keras zip archive"
        if size == 0:
            raise InputError(f"{expected}, found an empty file")
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise InputError(f"{expected}, found {size:,} bytes that are not a complete zip archive "
                             f"(truncated or another format: {_first_line(exc)})") from None
        if bad is not None:
            raise InputError(f"{expected}, found a corrupt member {bad} (CRC mismatch)")
        if "config.json" not in names:
            raise InputError(f"{expected} holding config.json, found a zip archive of {len(names)} other files")
        return
    with open(path, "rb") as fh:
        head = fh.read(8)
    if size == 0:
        raise InputError(f"cannot load {path.name}: expected a Keras HDF5 model file, found an empty file")
    if head != HDF5_MAGIC:
        raise InputError(f"cannot load {path.name}: expected a Keras HDF5 model file (signature \\x89HDF at byte "
                         f"0), found {head[:4]!r}")


def load_keras(path: Path, unsafe: bool = False) -> Any:
    """Load a .keras or .h5 file as a Keras model, refusing unsafe ones unless asked."""
    check_keras_file(path)
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
        check_saved_model(source)
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
        unsupported = _unsupported_ops(captured, str(exc))
        if unsupported is not None:
            raise UnsupportedError(f"{source.name} uses {unsupported}") from None
        raise EngineError(
            f"TensorFlow's converter failed on {source.name}: "
            f"{last_error_line(captured, _first_line(exc))}") from None


def check_saved_model(path: Path) -> None:
    """saved_model.pb must parse and name a graph, and the variables it restores must be there;
    TensorFlow's converter reports either as its own failure, which is the user's file."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    pb = path / "saved_model.pb"
    data = pb.read_bytes()
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InputError(f"SavedModel {path.name}: expected saved_model.pb to be a SavedModel protocol buffer, "
                         f"found {len(data):,} bytes that do not parse ({_first_line(exc)})") from None
    if not proto.meta_graphs:
        raise InputError(f"SavedModel {path.name}: expected saved_model.pb to hold a graph, found "
                         f"{'an empty file' if not data else 'no meta graph'}")
    graph = proto.meta_graphs[0]
    has_variables = any(n.WhichOneof("kind") == "variable" for n in graph.object_graph_def.nodes)
    if has_variables and not (path / "variables" / "variables.index").is_file():
        holds = "no variables folder" if not (path / "variables").is_dir() else "no variables/variables.index"
        raise InputError(f"SavedModel {path.name}: expected its weights in variables/variables.index and "
                         f"variables.data-*, found {holds}")


def _unsupported_ops(captured: list[str], message: str) -> str | None:
    """What the converter could not express in LiteRT's builtin ops (string ops, other TensorFlow ops),
    in words; None when the failure was something else."""
    text = "\n".join(captured) + "\n" + message
    ops = []
    for line in text.splitlines():
        if line.strip().startswith("TF Select ops:"):
            ops += [o.strip() for o in line.split(":", 1)[1].split(",") if o.strip()]
    if not ops and "ERROR_NEEDS_FLEX_OPS" not in text:
        return None
    ops = sorted(set(ops))
    strings = "string" in text.lower() and ("tf_type.string" in text or "String" in "".join(ops))
    listed = ", ".join(ops[:6]) + (f" (+{len(ops) - 6} more)" if len(ops) > 6 else "") if ops else "some"
    what = "string ops" if strings else "TensorFlow ops"
    return (f"{what} that LiteRT's builtin op set does not have ({listed}): expected a model of numeric "
            "LiteRT builtin ops, found ops that need TensorFlow (Select TF ops), which edgequant does not support")


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
