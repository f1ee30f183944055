"""A read-only view of a .tflite's main subgraph, and cutting a few ops out into a model of their own.

Analysis runs one op at a time in LiteRT: to measure the error an op adds on
its own (feed it float reference inputs, quantized as the model would), and to
time it in isolation (LiteRT's Python API exposes no per-op profiler). Running
the real kernel on a one-op model is the only way to get LiteRT's own numbers
for an op without reimplementing its arithmetic.

A submodel keeps only the tensors and buffers its ops touch, so cutting a
100-op model costs 100 small models, not 100 copies of every weight.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgequant.errors import UnsupportedError
from edgequant.graph.flatbuffer import builtin_name, enum_names, load_object_model, stored_bytes

__all__ = ["SubModel", "GraphModel", "CONTROL_FLOW_OPS"]


@functools.lru_cache(maxsize=1)
def _DTYPES() -> dict[int, str]:  # noqa: N802 - a constant, built on first use (LiteRT imports lazily)
    return {v: k.lower() for v, k in enum_names("TensorType").items()}


# Ops that call other subgraphs: a cut-out copy would need those subgraphs too.
CONTROL_FLOW_OPS = frozenset({"WHILE", "IF", "CALL_ONCE", "CALL", "STABLEHLO_COMPOSITE", "STABLEHLO_WHILE",
                              "STABLEHLO_CASE", "STABLEHLO_REDUCE", "STABLEHLO_SCATTER", "STABLEHLO_SORT",
                              "STABLEHLO_REDUCE_WINDOW"})


@dataclasses.dataclass(frozen=True)
class SubModel:
    """A cut-out model; ``inputs``/``outputs`` are the original tensor indices, in the new model's order."""

    tflite: bytes = dataclasses.field(repr=False)
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


class GraphModel:
    """The parsed main subgraph of one model, from which submodels are cut."""

    def __init__(self, tflite: bytes, what: str = "model") -> None:
        self.tflite = bytes(tflite)
        self.model = load_object_model(self.tflite, what)
        self.what = what
        self.sg = self.model.subgraphs[0]
        names = enum_names("BuiltinOperator")
        self.op_names = [builtin_name(self.model, op, names) for op in self.sg.operators or []]
        self._producers: dict[int, int] | None = None

    def constant_bytes(self, tensor: int) -> bytes | None:
        """The stored bytes of a constant tensor (inline or offset-addressed), or None for an activation."""
        return stored_bytes(self.model, self.tflite, self.sg.tensors[tensor].buffer)

    def _has_data(self, tensor: int) -> bool:
        # The same test as constant_bytes, without copying the data (called for every tensor, often).
        return stored_bytes(self.model, self.tflite, self.sg.tensors[tensor].buffer, copy=False) is not None

    # ------------------------------------------------------------------ read-only view
    @property
    def num_ops(self) -> int:
        return len(self.op_names)

    def op_inputs(self, op: int) -> tuple[int, ...]:
        ins = self.sg.operators[op].inputs
        return tuple(int(t) for t in (ins if ins is not None else []) if t >= 0)

    def op_outputs(self, op: int) -> tuple[int, ...]:
        outs = self.sg.operators[op].outputs
        return tuple(int(t) for t in (outs if outs is not None else []) if t >= 0)

    def is_constant(self, tensor: int) -> bool:
        return self._has_data(tensor)

    def tensor_name(self, tensor: int) -> str:
        name = self.sg.tensors[tensor].name
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")

    def tensor_shape(self, tensor: int) -> tuple[int, ...]:
        t = self.sg.tensors[tensor]
        shape = t.shapeSignature if t.shapeSignature is not None and len(t.shapeSignature) else t.shape
        return tuple(int(d) for d in (shape if shape is not None else []))

    def tensor_dtype(self, tensor: int) -> str:
        return _DTYPES().get(self.sg.tensors[tensor].type, "?")

    def quantization(self, tensor: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(scales, zero points, quantized axis) of a quantized tensor, or None."""
        q = self.sg.tensors[tensor].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * len(q.scale), np.int64)
        return np.asarray(q.scale, np.float64), zp, int(q.quantizedDimension or 0)

    @property
    def graph_inputs(self) -> tuple[int, ...]:
        return tuple(int(t) for t in (self.sg.inputs if self.sg.inputs is not None else []))

    @property
    def graph_outputs(self) -> tuple[int, ...]:
        return tuple(int(t) for t in (self.sg.outputs if self.sg.outputs is not None else []))

    def producers(self) -> dict[int, int]:
        """Tensor index -> the op that writes it (built once: the view is read-only)."""
        if self._producers is None:
            self._producers = {t: i for i in range(self.num_ops) for t in self.op_outputs(i)}
        return dict(self._producers)

    def consumers(self) -> dict[int, list[int]]:
        """Tensor index -> the ops that read it, in execution order."""
        out: dict[int, list[int]] = {}
        for i in range(self.num_ops):
            for t in self.op_inputs(i):
                out.setdefault(t, []).append(i)
        return out

    def submodel(self, ops: Sequence[int], outputs: Sequence[int] | None = None) -> SubModel:
        """The listed ops (in execution order) as a model.

        Its inputs are the non-constant tensors the ops read but do not
        produce; its outputs are ``outputs`` (default: every output of the last op).
        """
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils

        ops = sorted(ops)
        for i in ops:
            if self.op_names[i] in CONTROL_FLOW_OPS:
                raise UnsupportedError(f"{self.what}: op {self.op_names[i]}#{i} calls other subgraphs and cannot "
                                       "be cut out on its own")
        operators = [self.sg.operators[i] for i in ops]
        produced = {int(t) for op in operators for t in (op.outputs if op.outputs is not None else []) if t >= 0}
        read: list[int] = []
        for op in operators:
            for t in list(op.inputs if op.inputs is not None else []) + list(
                    op.intermediates if op.intermediates is not None else []):
                if t >= 0 and int(t) not in read:
                    read.append(int(t))
        outs = [int(t) for t in (outputs if outputs is not None else
                                 (operators[-1].outputs if operators[-1].outputs is not None else [])) if t >= 0]
        inputs = [t for t in read if t not in produced and not self._has_data(t)
                  and not self.sg.tensors[t].isVariable]

        new = schema.ModelT()
        new.version = self.model.version
        new.operatorCodes = self.model.operatorCodes
        new.buffers = [schema.BufferT()]  # buffer 0 is the empty sentinel every model has
        remap: dict[int, int] = {}
        tensors: list[Any] = []
        for t in read + [t for t in produced if t not in read]:
            tensor = copy.copy(self.sg.tensors[t])
            data = self.constant_bytes(t)
            buf = schema.BufferT()
            if data is not None:
                # Always inline: offset-addressed data lives in the original file's tail.
                buf.data = np.frombuffer(data, dtype=np.uint8)
            new.buffers.append(buf)
            tensor.buffer = len(new.buffers) - 1
            remap[t] = len(tensors)
            tensors.append(tensor)

        def mapped(indices: Any) -> list[int]:
            return [remap[int(t)] if t >= 0 else -1 for t in (indices if indices is not None else [])]

        sg = schema.SubGraphT()
        sg.tensors = tensors
        sg.inputs = [remap[t] for t in inputs]
        sg.outputs = [remap[t] for t in outs]
        sg.operators = []
        for op in operators:
            clone = copy.copy(op)
            clone.inputs = mapped(op.inputs)
            clone.outputs = mapped(op.outputs)
            if op.intermediates is not None:
                clone.intermediates = mapped(op.intermediates)
            sg.operators.append(clone)
        sg.name = b"edgequant_submodel"
        new.subgraphs = [sg]
        return SubModel(bytes(flatbuffer_utils.convert_object_to_bytearray(new)), tuple(inputs), tuple(outs))
