"""Float .tflite pass-through: check that the file is a loadable float LiteRT model and read its signature.

Published models come in shapes the other stages should not have to know
about, so they are normalised here, each with a note: float16 weights behind
DEQUANTIZE ops become the float32 weights they stand for, operator codes written
before the 32-bit opcode field get it filled, a model without a
signature gets a default one, and of several signatures the chosen one is kept.
"""

from __future__ import annotations

from pathlib import Path


from edgequant.errors import InputError, UnsupportedError
from edgequant.graph import read_graph
from edgequant.graph.signature import (choose_key, fuse_activations, normalize_opcodes, select_signature,
                                       signature_keys, widen_fp16_weights, with_default_signature)
from edgequant.runtime import Runner
from edgequant.types import FloatModel, SourceKind

__all__ = ["load_tflite", "inspect_float_tflite"]


def inspect_float_tflite(tflite: bytes, source: Path, kind: SourceKind, unsafe: bool = False,
                         signature: str | None = None) -> FloatModel:
    """Check ``tflite`` is a float model, normalise it (see the module doc) and wrap it as a FloatModel."""
    what = source.name
    graph = read_graph(tflite, str(source))
    if graph.quantized_tensors:
        raise InputError(
            f"expected a float model, found a quantized one in {what} "
            f"({graph.quantized_tensors} quantized tensors); quantize from the float model instead")
    notes = []
    tflite, renamed = normalize_opcodes(tflite, what)
    if renamed:
        notes.append(f"{renamed} operator codes set only the old 8-bit opcode field: copied to the 32-bit field "
                     "LiteRT Quantizer reads")
    tflite, widened = widen_fp16_weights(tflite, what)
    if widened:
        notes.append(f"{widened} weight tensors stored as float16 (behind DEQUANTIZE) read as float32: the float "
                     "model they stand for")
    tflite, fused = fuse_activations(tflite, what)
    if fused:
        notes.append(f"{fused} standalone ReLU op(s) folded into the op before them as its fused activation "
                     "(the same function; quantized, a standalone ReLU rescales and runs outside XNNPACK)")
    tflite, added = with_default_signature(tflite, what)
    # Chosen from the flatbuffer, so the model is opened in LiteRT once, after the choice.
    key = choose_key(signature_keys(tflite, what), signature, what)
    chosen = select_signature(tflite, key, what)
    if chosen != tflite:
        notes.append(f"signature {key!r} kept of several; the others are left out of the float model")
    runner = Runner(chosen, what=what)
    sig = runner.signature
    if added:
        notes.append(f"the model had no signature: gave it {sig.key!r}, naming its inputs and outputs by tensor name")
    for spec in sig.inputs:
        if not (spec.dtype == "float32" or spec.is_integer):
            raise UnsupportedError(f"input '{spec.name}' of {what} is {spec.dtype}: expected float32 or integer "
                                   "inputs")
    if not sig.outputs:
        raise UnsupportedError(f"{what} has no outputs: expected at least one")
    return FloatModel(source=source, kind=kind, tflite=chosen, signature=sig, unsafe=unsafe, notes=tuple(notes))


def load_tflite(path: Path, signature: str | None = None) -> FloatModel:
    """Read a float .tflite from disk and check it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if not data:
        raise InputError(f"expected a .tflite flatbuffer in {path}, found an empty file")
    return inspect_float_tflite(data, Path(path), SourceKind.TFLITE, signature=signature)
