"""Float .tflite pass-through: check that the file is a loadable float LiteRT model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgequant.errors import InputError, UnsupportedError
from edgequant.graph import read_graph
from edgequant.runtime import open_interpreter
from edgequant.types import FloatModel, Signature, SourceKind, TensorSpec

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
    def spec(d: dict) -> TensorSpec:
        return TensorSpec(d["name"], tuple(int(v) for v in d.get("shape_signature", d["shape"])),
                          np.dtype(d["dtype"]).name)

    signature = Signature("serving_default", tuple(spec(d) for d in ins), tuple(spec(d) for d in outs))
    return FloatModel(source=source, kind=kind, tflite=bytes(tflite), signature=signature, unsafe=unsafe)


def load_tflite(path: Path) -> FloatModel:
    """Read a float .tflite from disk and check it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if not data:
        raise InputError(f"expected a .tflite flatbuffer in {path}, found an empty file")
    return inspect_float_tflite(data, Path(path), SourceKind.TFLITE)
