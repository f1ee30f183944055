"""Parsing a .tflite flatbuffer: the one place that does it, for the reader and the editor.

Both graph/__init__.py (read-only summaries) and graph/edit.py (transforms)
start from the same object model, the same dtype and op names, and the same
one-line errors for a file that is not a LiteRT model.
"""

from __future__ import annotations

from typing import Any

from edgequant.errors import InputError

__all__ = ["TFLITE_MAGIC", "load_object_model", "enum_names", "builtin_name", "stored_bytes"]

# Bytes 4..8 of every LiteRT flatbuffer hold this file identifier.
TFLITE_MAGIC = b"TFL3"


def load_object_model(tflite: bytes, what: str = "model") -> Any:
    """The flatbuffer as LiteRT's mutable object model (ModelT), or an InputError."""
    from ai_edge_litert.tools import flatbuffer_utils

    if len(tflite) < 8 or bytes(tflite[4:8]) != TFLITE_MAGIC:
        raise InputError(f"{what} is not a .tflite model: expected identifier 'TFL3' at byte 4, "
                         f"found {bytes(tflite[4:8])!r}")
    try:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite))
    except Exception as exc:  # the flatbuffer library raises bare struct/index errors
        # Truncated files fail deep inside the reader with offsets that mean
        # nothing to a user; say what the file is and what it lacks.
        raise InputError(f"{what} is not a loadable .tflite model: the flatbuffer is corrupt or truncated "
                         f"({len(tflite):,} bytes; {type(exc).__name__})") from None
    if not model.subgraphs:
        raise InputError(f"{what} is not a loadable .tflite model: it has no subgraph")
    _check_indices(model, what)
    return model


def _check_indices(model: Any, what: str) -> None:
    """Every index the graph holds points inside its table, so no reader of the object model meets an
    IndexError (a corrupt file says here which index is out of range)."""
    n_codes, n_buffers = len(model.operatorCodes or []), len(model.buffers or [])
    for s, sg in enumerate(model.subgraphs):
        n = len(sg.tensors or [])
        lists = [("subgraph inputs", sg.inputs), ("subgraph outputs", sg.outputs)]
        for k, op in enumerate(sg.operators or []):
            if not 0 <= int(op.opcodeIndex) < n_codes:
                raise InputError(f"{what} is not a loadable .tflite model: op {k} of subgraph {s} has operator code "
                                 f"{op.opcodeIndex}, expected 0 to {n_codes - 1}")
            lists += [(f"op {k} inputs", op.inputs), (f"op {k} outputs", op.outputs)]
        for where, indices in lists:
            for i in indices if indices is not None else []:
                if not -1 <= int(i) < n:
                    raise InputError(f"{what} is not a loadable .tflite model: {where} of subgraph {s} name tensor "
                                     f"{int(i)}, expected -1 to {n - 1}")
        for t, tensor in enumerate(sg.tensors or []):
            if not 0 <= int(tensor.buffer) < max(1, n_buffers):
                raise InputError(f"{what} is not a loadable .tflite model: tensor {t} of subgraph {s} uses buffer "
                                 f"{tensor.buffer}, expected 0 to {n_buffers - 1}")


def enum_names(enum_name: str) -> dict[int, str]:
    """Value -> name of one of the schema's enums (TensorType, BuiltinOperator, ...)."""
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(getattr(schema, enum_name)).items() if not k.startswith("_")}


def builtin_name(model: Any, op: Any, names: dict[int, str]) -> str:
    """An operator's builtin type name, e.g. CONV_2D."""
    code = model.operatorCodes[op.opcodeIndex]
    # Old files keep the code in deprecatedBuiltinCode (< 127); newer ones in builtinCode.
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    return names.get(builtin, f"OP_{builtin}")


def stored_bytes(model: Any, tflite: bytes, buffer_index: int, copy: bool = True) -> bytes | None:
    """A buffer's data, inline or addressed by offset and size; None when it holds none (an activation).

    litert-quantizer writes large buffers (the seed CNN's int4 dense kernel,
    346 KB) after the flatbuffer and points at them by offset. With
    ``copy=False`` a non-empty result is only a marker (b"\\x01"): callers
    that only ask "is this a constant?" do so for every tensor.
    """
    buffers = model.buffers or []
    if not 0 < buffer_index < len(buffers):
        return None
    buf = buffers[buffer_index]
    if buf.data is not None and len(buf.data) > 0:
        return bytes(bytearray(buf.data)) if copy else b"\x01"
    offset, size = int(getattr(buf, "offset", 0) or 0), int(getattr(buf, "size", 0) or 0)
    if offset > 1 and size > 0 and offset + size <= len(tflite):
        return tflite[offset:offset + size] if copy else b"\x01"
    return None
