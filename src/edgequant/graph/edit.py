"""A small editor over the LiteRT flatbuffer: read and replace constant tensors, walk ops.

Float-graph transforms (cross-layer equalization, bias correction) change
weights and biases in place and leave the graph's structure alone, so this
editor offers exactly that: constants as numpy arrays with their real shape and
dtype, ops with their input/output tensor indices, who consumes a tensor, and
serialization back to bytes. It works on the main subgraph (index 0), the one
the interpreter runs.

LiteRT weight layouts, which every caller relies on:
CONV_2D [out, kh, kw, in]; DEPTHWISE_CONV_2D [1, kh, kw, in * multiplier];
FULLY_CONNECTED [out, in]; bias [out].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgequant.errors import InputError, UnsupportedError
from edgequant.graph.flatbuffer import builtin_name, enum_names, load_object_model, stored_bytes

__all__ = ["OpRef", "GraphEditor", "SHAPE_ONLY_OPS"]

# Ops that read only a tensor's shape, never its values: a transform that
# rescales a tensor's channels can ignore them as consumers.
SHAPE_ONLY_OPS = frozenset({"SHAPE", "RANK"})

_NUMPY_DTYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64, "INT8": np.int8,
                 "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}


@dataclasses.dataclass(frozen=True)
class OpRef:
    """One operator of the main subgraph: its position, type and tensor indices (-1 = absent)."""

    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def label(self) -> str:
        """A short, unambiguous name for messages, e.g. ``conv_2d#3``."""
        return f"{self.op.lower()}#{self.index}"


class GraphEditor:
    """Mutable view of one .tflite model; call :meth:`to_bytes` to get the edited flatbuffer."""

    def __init__(self, tflite: bytes, what: str = "model") -> None:
        self.model = load_object_model(tflite, what)
        self.what = what
        self._raw = bytes(tflite)
        self._sg = self.model.subgraphs[0]
        self._dtypes = enum_names("TensorType")
        self._activations = enum_names("ActivationFunctionType")
        opnames = enum_names("BuiltinOperator")
        self._ops: list[OpRef] = []
        for i, op in enumerate(self._sg.operators or []):
            ins = tuple(int(t) for t in (op.inputs if op.inputs is not None else []))
            outs = tuple(int(t) for t in (op.outputs if op.outputs is not None else []))
            self._ops.append(OpRef(i, builtin_name(self.model, op, opnames), ins, outs))

    # ------------------------------------------------------------------ ops
    @property
    def ops(self) -> tuple[OpRef, ...]:
        """Every op of the main subgraph, in execution order."""
        return tuple(self._ops)

    def find_ops(self, *types: str) -> list[OpRef]:
        """Ops whose type is one of ``types`` (e.g. "CONV_2D"), in execution order."""
        return [o for o in self._ops if o.op in types]

    def consumers(self, tensor: int) -> list[OpRef]:
        """Ops that take ``tensor`` as an input, in execution order."""
        return [o for o in self._ops if tensor in o.inputs]

    def producer(self, tensor: int) -> OpRef | None:
        return next((o for o in self._ops if tensor in o.outputs), None)

    def is_graph_output(self, tensor: int) -> bool:
        outs = self._sg.outputs if self._sg.outputs is not None else []
        return tensor in {int(t) for t in outs}

    def options(self, op: OpRef) -> Any:
        """The op's builtin options object (strides, padding, ...), or None."""
        return self._sg.operators[op.index].builtinOptions

    def set_option(self, op: OpRef, field: str, value: Any) -> None:
        """Set one field of the op's builtin options, creating them (at the schema's defaults) if it has none."""
        raw = self._sg.operators[op.index]
        if raw.builtinOptions is None:
            from ai_edge_litert import schema_py_generated as schema

            kind = "".join(w.capitalize() for w in op.op.split("_")) + "Options"  # ADD -> AddOptions
            raw.builtinOptions = getattr(schema, kind + "T")()
            raw.builtinOptionsType = getattr(schema.BuiltinOptions, kind)
        setattr(raw.builtinOptions, field, value)

    def fused_activation(self, op: OpRef) -> str:
        """"NONE", "RELU", "RELU6", ... for ops with a fused activation; "NONE" for ops without one."""
        opts = self.options(op)
        code = getattr(opts, "fusedActivationFunction", 0) if opts is not None else 0
        return self._activations.get(int(code), f"ACT_{code}")

    # ------------------------------------------------------------------ tensors
    def tensor_name(self, tensor: int) -> str:
        name = self._sg.tensors[tensor].name
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")

    def tensor_shape(self, tensor: int) -> tuple[int, ...]:
        shape = self._sg.tensors[tensor].shape
        return tuple(int(d) for d in (shape if shape is not None else []))

    def tensor_dtype(self, tensor: int) -> str:
        return self._dtypes.get(self._sg.tensors[tensor].type, "?").lower()

    def _buffer(self, tensor: int) -> Any:
        index = self._sg.tensors[tensor].buffer
        buffers = self.model.buffers or []
        return buffers[index] if 0 < index < len(buffers) else None

    def _stored(self, tensor: int) -> bytes | None:
        """A constant's bytes: inline in its buffer, or addressed by offset and size."""
        return stored_bytes(self.model, self._raw, self._sg.tensors[tensor].buffer)

    def is_constant(self, tensor: int) -> bool:
        """True for a tensor whose values are stored in the file (weights, biases)."""
        return tensor >= 0 and self._stored(tensor) is not None

    def read_constant(self, tensor: int) -> np.ndarray:
        """A copy of a constant tensor's values, with its shape and dtype."""
        if not self.is_constant(tensor):
            raise UnsupportedError(f"{self.what}: tensor {self.tensor_name(tensor)!r} is not a constant stored in the file")
        dtype = _NUMPY_DTYPES.get(self._dtypes.get(self._sg.tensors[tensor].type, ""))
        if dtype is None:
            raise UnsupportedError(f"{self.what}: tensor {self.tensor_name(tensor)!r} has dtype "
                                   f"{self.tensor_dtype(tensor)}, which the editor cannot read")
        raw = self._stored(tensor) or b""
        # Flatbuffer data is little-endian whatever the host is.
        values = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        return values.reshape(self.tensor_shape(tensor)).astype(dtype, copy=True)

    def read_integers(self, tensor: int) -> np.ndarray:
        """A quantized constant's stored integers (int8, or int4 unpacked), with its shape.

        LiteRT packs int4 two to a byte, low nibble first; each nibble is
        two's-complement, so 0x8..0xF are -8..-1.
        """
        if self.tensor_dtype(tensor) != "int4":
            return self.read_constant(tensor)
        shape = self.tensor_shape(tensor)
        raw = np.frombuffer(self._stored(tensor) or b"", dtype=np.uint8)
        nibbles = np.stack([raw & 0x0F, raw >> 4], axis=-1).reshape(-1)[: int(np.prod(shape))].astype(np.int8)
        return np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8).reshape(shape)

    def write_constant(self, tensor: int, values: np.ndarray) -> None:
        """Replace a float32 constant's values; the shape must stay the same."""
        current = self.tensor_shape(tensor)
        if not self.is_constant(tensor) or self.tensor_dtype(tensor) != "float32":
            raise UnsupportedError(f"{self.what}: only float32 constants can be replaced, "
                                   f"not {self.tensor_name(tensor)!r} ({self.tensor_dtype(tensor)})")
        values = np.asarray(values)
        if tuple(values.shape) != current:
            raise InputError(f"{self.what}: new values for {self.tensor_name(tensor)!r} have shape "
                             f"{tuple(values.shape)}, expected {current}")
        data = np.frombuffer(values.astype("<f4").tobytes(), dtype=np.uint8).copy()
        t = self._sg.tensors[tensor]
        shared = [o for sg in self.model.subgraphs for o in (sg.tensors or []) if o.buffer == t.buffer and o is not t]
        if shared:
            # The converter deduplicates identical constants into one buffer;
            # editing it would silently change the other tensors too.
            from ai_edge_litert import schema_py_generated as schema

            buf = schema.BufferT()
            buf.data = data
            self.model.buffers.append(buf)
            t.buffer = len(self.model.buffers) - 1
        else:
            buf = self._buffer(tensor)
            buf.data = data
            if getattr(buf, "offset", 0):
                # Now inline: the offset pointed into the original file's tail.
                buf.offset, buf.size = 0, 0

    def write_constant_new(self, tensor: int, values: np.ndarray) -> None:
        """Make ``tensor`` (an activation until now, e.g. a DEQUANTIZE output) a float32 constant of ``values``."""
        from ai_edge_litert import schema_py_generated as schema

        values = np.asarray(values, np.float32)
        buf = schema.BufferT()
        buf.data = np.frombuffer(values.astype("<f4").tobytes(), dtype=np.uint8).copy()
        self.model.buffers.append(buf)
        t = self._sg.tensors[tensor]
        t.buffer = len(self.model.buffers) - 1
        t.type = next(k for k, v in self._dtypes.items() if v == "FLOAT32")
        t.shape = np.asarray(values.shape, np.int32)
        t.quantization = None

    def drop_constant(self, tensor: int) -> None:
        """Empty a constant's buffer (a tensor no op reads any more), unless another tensor shares it."""
        t = self._sg.tensors[tensor]
        shared = [o for sg in self.model.subgraphs for o in (sg.tensors or []) if o.buffer == t.buffer and o is not t]
        buf = self._buffer(tensor)
        if buf is not None and not shared:
            buf.data, buf.offset, buf.size = None, 0, 0

    def to_bytes(self) -> bytes:
        """The edited model as a .tflite flatbuffer."""
        from ai_edge_litert.tools import flatbuffer_utils

        for buf in self.model.buffers or []:
            offset, size = int(getattr(buf, "offset", 0) or 0), int(getattr(buf, "size", 0) or 0)
            if offset > 1 and size > 0 and (buf.data is None or len(buf.data) == 0):
                # Serializing drops the original file's tail, so offset-addressed data goes inline.
                buf.data = np.frombuffer(self._raw[offset:offset + size], dtype=np.uint8).copy()
                buf.offset, buf.size = 0, 0
        return bytes(flatbuffer_utils.convert_object_to_bytearray(self.model))
