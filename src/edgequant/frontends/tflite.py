"""Float .tflite pass-through: check that the file is a loadable float LiteRT model."""

from __future__ import annotations

from pathlib import Path

from edgequant.errors import InputError, UnsupportedError
from edgequant.graph import read_graph
from edgequant.runtime import open_interpreter
from edgequant.types import FloatModel, SourceKind

__all__ = ["load_tflite", "inspect_float_tflite"]


def inspect_float_tflite(tflite: bytes, source: Path, kind: SourceKind, unsafe: bool = False) -> FloatModel:
    """Check ``tflite`` is a float model with one input and wrap it as a FloatModel."""
    graph = read_graph(tflite, str(source))
    if graph.quantized_tensors:
        raise InputError(
            f"expected a float model, found a quantized one in {source.name} "
            f"({graph.quantized_tensors} quantized tensors); quantize from the float model instead")
    interp = open_interpreter(tflite, what=str(source))
    ins, outs = interp.get_input_details(), interp.get_output_details()
    if len(ins) != 1:
        raise UnsupportedError(f"expected a model with one input, found {len(ins)} in {source.name}")
    if ins[0]["dtype"].__name__ != "float32":
        raise InputError(f"expected a float32 model input, found {ins[0]['dtype'].__name__} in {source.name}")
    sig = tuple(int(d) for d in ins[0].get("shape_signature", ins[0]["shape"]))
    out_sig = tuple(int(d) for d in outs[0].get("shape_signature", outs[0]["shape"]))
    return FloatModel(source=source, kind=kind, tflite=bytes(tflite), input_shape=sig,
                      input_dtype="float32", output_shape=out_sig, unsafe=unsafe)


def load_tflite(path: Path) -> FloatModel:
    """Read a float .tflite from disk and check it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if not data:
        raise InputError(f"expected a .tflite flatbuffer in {path}, found an empty file")
    return inspect_float_tflite(data, Path(path), SourceKind.TFLITE)
