"""A thin reader over the LiteRT flatbuffer: ops, tensor dtypes and constant bytes.

Everything that explains a model's size or speed without running it comes from
here: how many bytes the weights take per dtype, which ops compute in which
dtype, and which QUANTIZE/DEQUANTIZE ops an engine inserted.
"""

from __future__ import annotations

import collections
import dataclasses

from edgequant.graph.flatbuffer import TFLITE_MAGIC, builtin_name, enum_names, load_object_model
from edgequant.types import Record

__all__ = ["OpInfo", "GraphSummary", "read_graph", "TFLITE_MAGIC", "index_limits", "signature_input_indices",
           "output_tensor_names"]


# Ops whose weights dominate compute; used to tell hybrid (dynamic-range) and
# weight-only graphs apart from full-integer ones.
WEIGHTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV",
                          "BATCH_MATMUL", "CONV_3D", "UNIDIRECTIONAL_SEQUENCE_LSTM"})


@dataclasses.dataclass(frozen=True)
class OpInfo(Record):
    """One operator: its type, the dtype of its first input and output, its weight dtype."""

    index: int
    op: str
    input_dtype: str
    output_dtype: str
    weight_dtype: str | None
    output_name: str


@dataclasses.dataclass(frozen=True)
class GraphSummary(Record):
    """What the flatbuffer says, before any interpreter runs it."""

    ops: tuple[OpInfo, ...]
    weight_bytes: int
    weight_bytes_by_dtype: dict[str, int]
    quantized_tensors: int
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]

    def count(self, op: str) -> int:
        return sum(1 for o in self.ops if o.op == op)

    def op_histogram(self) -> dict[str, int]:
        return dict(collections.Counter(o.op for o in self.ops))

    def hybrid_ops(self) -> tuple[OpInfo, ...]:
        """Weighted ops that take float activations but int weights (dynamic range)."""
        return tuple(o for o in self.ops if o.op in WEIGHTED_OPS and o.input_dtype == "float32"
                     and o.weight_dtype in ("int8", "int4"))

    def integer_compute_ops(self) -> tuple[OpInfo, ...]:
        return tuple(o for o in self.ops if o.op in WEIGHTED_OPS and o.input_dtype in ("int8", "int16", "uint8"))


def read_graph(tflite: bytes, what: str = "model") -> GraphSummary:
    """Parse a .tflite flatbuffer into a :class:`GraphSummary` (main subgraph first)."""
    model = load_object_model(tflite, what)
    dtypes = {v: k.lower() for v, k in enum_names("TensorType").items()}
    opnames = enum_names("BuiltinOperator")
    buffers = model.buffers or []

    def buffer_len(index: int) -> int:
        if index <= 0 or index >= len(buffers):
            return 0
        buf = buffers[index]
        if buf.data is not None:
            return len(buf.data)
        # Models over 2 GB keep buffers outside the flatbuffer, addressed by size.
        return int(getattr(buf, "size", 0) or 0)

    by_dtype: collections.Counter[str] = collections.Counter()
    ops: list[OpInfo] = []
    quantized = 0
    seen_buffers: set[int] = set()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    for sg_index, sg in enumerate(model.subgraphs or []):
        tensors = sg.tensors or []
        for t in tensors:
            q = t.quantization
            if q is not None and q.scale is not None and len(q.scale) > 0:
                quantized += 1
            if t.buffer not in seen_buffers:
                n = buffer_len(t.buffer)
                if n:
                    seen_buffers.add(t.buffer)
                    by_dtype[dtypes.get(t.type, str(t.type))] += n
        if sg_index == 0:
            inputs = tuple(dtypes.get(tensors[i].type, "?") for i in (sg.inputs if sg.inputs is not None else []))
            outputs = tuple(dtypes.get(tensors[i].type, "?") for i in (sg.outputs if sg.outputs is not None else []))

            def dtype_of(i: int) -> str:
                return dtypes.get(tensors[i].type, "?") if 0 <= i < len(tensors) else "none"

            for idx, op in enumerate(sg.operators or []):
                name = builtin_name(model, op, opnames)
                ins = [i for i in (op.inputs if op.inputs is not None else []) if i >= 0]
                outs = [i for i in (op.outputs if op.outputs is not None else []) if i >= 0]
                weight = next((dtype_of(i) for i in ins[1:2] if buffer_len(tensors[i].buffer)), None)
                out_name = tensors[outs[0]].name.decode("utf-8", "replace") if outs and tensors[outs[0]].name else ""
                ops.append(OpInfo(idx, name, dtype_of(ins[0]) if ins else "none",
                                  dtype_of(outs[0]) if outs else "none", weight, out_name))
    return GraphSummary(tuple(ops), sum(by_dtype.values()), dict(by_dtype), quantized, inputs, outputs)


# Ops that move, retype or wrap integer indices on their way to a lookup (Keras wraps negative ids with
# SELECT_V2(LESS(ids, 0), ADD(ids, rows), ids)).
_INDEX_PASSTHROUGH = frozenset({"CAST", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "IDENTITY", "SELECT", "SELECT_V2",
                                "ADD", "LESS"})


def output_tensor_names(tflite: bytes) -> list[str]:
    """Names of the main subgraph's output tensors, read from the flatbuffer."""
    sg = load_object_model(tflite).subgraphs[0]
    return [(sg.tensors[i].name.decode("utf-8", "replace") if isinstance(sg.tensors[i].name, bytes)
             else str(sg.tensors[i].name)) for i in (sg.outputs if sg.outputs is not None else [])]


def signature_input_indices(tflite: bytes, key: str) -> dict[str, int]:
    """Input name -> tensor index of signature ``key`` on subgraph 0, read from the flatbuffer; a model without
    signatures names its inputs by tensor name, as LiteRT does."""
    model = load_object_model(tflite)
    for sig in model.signatureDefs or []:
        name = sig.signatureKey.decode() if isinstance(sig.signatureKey, bytes) else str(sig.signatureKey)
        if name == key and int(sig.subgraphIndex or 0) == 0:
            return {(m.name.decode() if isinstance(m.name, bytes) else str(m.name)): int(m.tensorIndex)
                    for m in sig.inputs or []}
    if model.signatureDefs:
        return {}
    sg = model.subgraphs[0]
    return {(sg.tensors[i].name.decode("utf-8", "replace") if isinstance(sg.tensors[i].name, bytes)
             else str(sg.tensors[i].name)): int(i) for i in (sg.inputs if sg.inputs is not None else [])}


def index_limits(tflite: bytes) -> dict[int, int]:
    """Rows of the table each model input indexes: {input tensor index: rows}, for token-id checks.

    An input that reaches a GATHER (on a constant table, along its axis) or an
    EMBEDDING_LOOKUP through casts and reshapes only is an index into that
    table; an id at or above its row count reads outside it. Several tables
    behind one input give the smallest.
    """
    from edgequant.graph.submodel import GraphModel

    g = GraphModel(tflite)
    inputs = set(g.graph_inputs)
    producers = g.producers()

    def source(tensor: int) -> int | None:
        """The one model input the indices come from through pass-through ops only, else None."""
        found: set[int] = set()
        frontier, steps = [tensor], 0
        while frontier and steps < 32:
            t = frontier.pop()
            steps += 1
            if t in inputs:
                found.add(t)
                continue
            op = producers.get(t)
            if op is None:
                if not g.is_constant(t):
                    return None
                continue
            if g.op_names[op] not in _INDEX_PASSTHROUGH:
                return None
            frontier += [i for i in g.op_inputs(op) if not g.is_constant(i)]
        return next(iter(found)) if len(found) == 1 and not frontier else None

    def constant(tensor: int) -> bool:
        # A table stored as fp16 or int8 reaches the lookup through a DEQUANTIZE of the constant.
        op = producers.get(tensor)
        return g.is_constant(tensor) or (op is not None and g.op_names[op] == "DEQUANTIZE"
                                         and g.is_constant(g.op_inputs(op)[0]))

    limits: dict[int, int] = {}
    for op, name in enumerate(g.op_names):
        ins = g.op_inputs(op)
        if name in ("GATHER", "GATHER_ND") and len(ins) >= 2 and constant(ins[0]):
            table, ids = ins[0], ins[1]
            opts = g.sg.operators[op].builtinOptions
            axis = int(getattr(opts, "axis", 0) or 0)
        elif name == "EMBEDDING_LOOKUP" and len(ins) >= 2 and constant(ins[1]):
            table, ids, axis = ins[1], ins[0], 0
        else:
            continue
        shape = g.tensor_shape(table)
        origin = source(ids)
        if origin is None or not shape:
            continue
        rows = int(shape[axis if axis >= 0 else len(shape) + axis])
        limits[origin] = min(rows, limits.get(origin, rows))
    return limits
