"""Edits that make a published .tflite a float model every stage can take, by name.

- A model without a signature (many older published models) gets a default
  one, ``serving_default``, naming its inputs and outputs by their tensor
  names (without TensorFlow's "serving_default_" prefix and ":0" suffix): LiteRT Quantizer calibrates and quantizes by signature, and edgequant
  addresses every tensor by signature name.
- A model with several signatures keeps the one the user chose; when that
  signature runs another subgraph than the first, the two swap places, so every
  graph reader (which works on subgraph 0) sees it.
- Weights stored as float16 and widened by DEQUANTIZE ops at load (how many
  published models ship) become float32 constants: the float model they mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgequant.errors import UnsupportedError
from edgequant.graph.edit import GraphEditor
from edgequant.graph.flatbuffer import load_object_model
from edgequant.graph.submodel import CONTROL_FLOW_OPS

__all__ = ["with_default_signature", "select_signature", "signature_keys", "choose_key", "widen_fp16_weights",
           "fuse_activations", "split_consumed_outputs", "narrow_tables_fp16", "narrow_tables_int8",
           "stray_signature_outputs", "restore_signature_outputs", "DEFAULT_KEY"]

DEFAULT_KEY = "serving_default"


def _clean(name: str) -> str:
    """A tensor name as a signature name: TensorFlow's "serving_default_" prefix and ":0" suffix dropped."""
    import re

    return re.sub(r":\d+$", "", name.removeprefix("serving_default_"))


def _unique(names: list[str], prefix: str) -> list[str]:
    cleaned = [_clean(n) for n in names]
    if len(set(cleaned)) == len(cleaned) and all(cleaned):
        names = cleaned
    out: list[str] = []
    for k, name in enumerate(names):
        name = name or f"{prefix}_{k}"
        out.append(name if name not in out else f"{name}_{k}")
    return out


def with_default_signature(tflite: bytes, what: str = "model") -> tuple[bytes, bool]:
    """The model with a ``serving_default`` signature over subgraph 0 if it had none; (bytes, added)."""
    from ai_edge_litert import schema_py_generated as schema

    ed = GraphEditor(tflite, what)
    if ed.model.signatureDefs:
        return bytes(tflite), False
    sg = ed.model.subgraphs[0]

    def maps(indices: list[int], prefix: str) -> list:
        names = _unique([ed.tensor_name(int(i)) for i in indices], prefix)
        out = []
        for name, index in zip(names, indices):
            m = schema.TensorMapT()
            m.name, m.tensorIndex = name, int(index)
            out.append(m)
        return out

    sig = schema.SignatureDefT()
    sig.signatureKey = DEFAULT_KEY
    sig.subgraphIndex = 0
    sig.inputs = maps(list(sg.inputs if sg.inputs is not None else []), "input")
    sig.outputs = maps(list(sg.outputs if sg.outputs is not None else []), "output")
    ed.model.signatureDefs = [sig]
    return ed.to_bytes(), True


def signature_keys(tflite: bytes, what: str = "model") -> list[str]:
    """The signature keys a .tflite declares, read from the flatbuffer (no interpreter)."""
    ed = GraphEditor(tflite, what)
    return [s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else str(s.signatureKey)
            for s in (ed.model.signatureDefs or [])]


def choose_key(keys: list[str], key: str | None, what: str = "model") -> str:
    """The signature to use: ``key`` (which must exist), else the only one, else serving_default."""
    if key is not None:
        if key not in keys:
            raise UnsupportedError(f"unknown --signature {key!r}: expected one of {', '.join(sorted(keys)) or 'none'}")
        return key
    if len(keys) == 1:
        return keys[0]
    if DEFAULT_KEY in keys:
        return DEFAULT_KEY
    raise UnsupportedError(f"{what} has {len(keys)} signatures: expected --signature KEY, one of "
                           f"{', '.join(sorted(keys))}")


def select_signature(tflite: bytes, key: str, what: str = "model") -> bytes:
    """Keep only signature ``key``, with its subgraph moved to index 0 when it was elsewhere."""
    ed = GraphEditor(tflite, what)
    sigs = list(ed.model.signatureDefs or [])
    keys = [s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else str(s.signatureKey) for s in sigs]
    if key not in keys:
        raise UnsupportedError(f"unknown --signature {key!r}: expected one of {', '.join(keys) or 'none'}")
    if len(sigs) == 1:
        return bytes(tflite)
    chosen = sigs[keys.index(key)]
    index = int(chosen.subgraphIndex or 0)
    if index != 0:
        ops = enumerate_ops(ed)
        if any(name in CONTROL_FLOW_OPS for name in ops):
            raise UnsupportedError(f"--signature {key!r} runs subgraph {index} of a model with control flow "
                                   f"({', '.join(sorted(set(ops) & CONTROL_FLOW_OPS))}): expected a signature on "
                                   "subgraph 0 for such models")
        subgraphs = ed.model.subgraphs
        subgraphs[0], subgraphs[index] = subgraphs[index], subgraphs[0]
        chosen.subgraphIndex = 0
    ed.model.signatureDefs = [chosen]
    return ed.to_bytes()


def enumerate_ops(ed: GraphEditor) -> list[str]:
    """Op names over every subgraph (control flow can live in any of them)."""
    from edgequant.graph.flatbuffer import builtin_name, enum_names

    names = enum_names("BuiltinOperator")
    return [builtin_name(ed.model, op, names) for sg in ed.model.subgraphs for op in (sg.operators or [])]


def normalize_opcodes(tflite: bytes, what: str = "model") -> tuple[bytes, int]:
    """Fill the 32-bit ``builtin_code`` of operator codes that set only the old 8-bit ``deprecated_builtin_code``
    (models written before schema 3a); (bytes, count). LiteRT reads the larger of the two, but LiteRT
    Quantizer reads ``builtin_code`` alone and takes every such op for ADD (0)."""
    ed = GraphEditor(tflite, what)
    fixed = 0
    for code in ed.model.operatorCodes or []:
        old = int(code.deprecatedBuiltinCode or 0)
        if old > int(code.builtinCode or 0):
            code.builtinCode = old
            fixed += 1
    return (ed.to_bytes(), fixed) if fixed else (bytes(tflite), 0)


def widen_fp16_weights(tflite: bytes, what: str = "model") -> tuple[bytes, int]:
    """Replace every DEQUANTIZE of a constant float16 tensor with the float32 constant; (bytes, count)."""
    ed = GraphEditor(tflite, what)
    sg = ed.model.subgraphs[0]
    keep, widened, dropped = [], 0, set()
    for ref, op in zip(ed.ops, list(sg.operators or [])):
        if (ref.op == "DEQUANTIZE" and len(ref.inputs) == 1 and ed.is_constant(ref.inputs[0])
                and ed.tensor_dtype(ref.inputs[0]) == "float16" and not ed.is_graph_output(ref.outputs[0])):
            values = ed.read_constant(ref.inputs[0]).astype(np.float32)
            out = ref.outputs[0]
            ed.write_constant_new(out, values)
            ed.drop_constant(ref.inputs[0])
            dropped.add(int(ref.inputs[0]))
            widened += 1
            continue
        keep.append(op)
    if not widened:
        return bytes(tflite), 0
    sg.operators = keep
    _drop_unused_tensors(ed.model, dropped)
    return ed.to_bytes(), widened


# Ops whose options carry a fused activation LiteRT and XNNPACK apply to the output, and the standalone
# activations that can move into that field.
FUSES_ACTIVATION = frozenset({"ADD", "SUB", "MUL", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
FUSABLE_ACTIVATIONS = {"RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}  # ActivationFunctionType codes


def fuse_activations(tflite: bytes, what: str = "model") -> tuple[bytes, int]:
    """Fold every standalone RELU, RELU6 or RELU_N1_TO_1 into the op that feeds it, when that op can carry a
    fused activation, has none yet, and nothing else reads its output; (bytes, count).

    The function is unchanged. Quantized, a standalone activation gets ranges of its own, so its input and
    output scales differ; XNNPACK takes no int8 activation that rescales, and LiteRT's own kernel runs it
    outside the delegate (BlazeFace's 17 ReLUs after its residual ADDs). Fused, the ADD clamps on its own
    output scale, in XNNPACK.
    """
    ed = GraphEditor(tflite, what)
    sg = ed.model.subgraphs[0]
    drop: set[int] = set()
    orphaned: set[int] = set()
    for act in ed.ops:
        if act.op not in FUSABLE_ACTIVATIONS or len(act.inputs) != 1:
            continue
        src = act.inputs[0]
        producer = ed.producer(src)
        if (producer is None or producer.op not in FUSES_ACTIVATION or ed.fused_activation(producer) != "NONE"
                or len(producer.outputs) != 1 or ed.is_graph_output(src) or len(ed.consumers(src)) != 1
                or ed.tensor_dtype(src) != "float32"):
            continue
        ed.set_option(producer, "fusedActivationFunction", FUSABLE_ACTIVATIONS[act.op])
        sg.operators[producer.index].outputs = [act.outputs[0]]
        drop.add(act.index)
        orphaned.add(src)
    if not drop:
        return bytes(tflite), 0
    sg.operators = [op for i, op in enumerate(sg.operators) if i not in drop]
    _drop_unused_tensors(ed.model, orphaned)
    return ed.to_bytes(), len(drop)


def _drop_unused_tensors(model: Any, candidates: set[int]) -> None:
    """Remove subgraph 0's ``candidates`` that nothing references any more, renumbering the rest. An
    emptied float16 tensor left in the graph has no data, and LiteRT Quantizer's calibration reads every
    tensor ("Tensor data is null")."""
    sg = model.subgraphs[0]
    used = {int(i) for i in list(sg.inputs if sg.inputs is not None else []) +
            list(sg.outputs if sg.outputs is not None else [])}
    for op in sg.operators or []:
        for field in (op.inputs, op.outputs, getattr(op, "intermediates", None)):
            used |= {int(i) for i in (field if field is not None else [])}
    drop = {t for t in candidates if t not in used}
    if not drop:
        return
    keep = [i for i in range(len(sg.tensors)) if i not in drop]
    new = {old: k for k, old in enumerate(keep)}

    def renumber(field: Any) -> Any:
        return None if field is None else [new[int(i)] if int(i) >= 0 else int(i) for i in field]

    sg.tensors = [sg.tensors[i] for i in keep]
    for op in sg.operators or []:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        if getattr(op, "intermediates", None) is not None:
            op.intermediates = renumber(op.intermediates)
    sg.inputs, sg.outputs = renumber(sg.inputs), renumber(sg.outputs)
    for sig in model.signatureDefs or []:
        if int(sig.subgraphIndex or 0) == 0:
            for tm in list(sig.inputs or []) + list(sig.outputs or []):
                tm.tensorIndex = new[int(tm.tensorIndex)]


def split_consumed_outputs(tflite: bytes, what: str = "model") -> tuple[bytes, dict[str, str]]:
    """Give every graph output that other ops also read a copy for those ops; (bytes, {copy: output name}).

    LiteRT Quantizer keeps a float model output float by a rule on the graph
    boundary, and that rule also makes the op reading the same tensor inside
    the graph take float in and give int8 out, which LiteRT cannot run (a pooled
    embedding that is both an output and the input of a classifier head). With
    a copy (a RESHAPE to the same shape) the inside reads the copy, which is
    quantized as usual; the copy's range is the output's.
    """
    from ai_edge_litert import schema_py_generated as schema

    ed = GraphEditor(tflite, what)
    sg = ed.model.subgraphs[0]
    outputs = [int(t) for t in (sg.outputs if sg.outputs is not None else [])]
    consumed = [t for t in outputs if ed.consumers(t)]
    if not consumed:
        return bytes(tflite), {}
    codes = ed.model.operatorCodes

    def opcode(op: str) -> int:
        code = int(getattr(schema.BuiltinOperator, op))
        for i, c in enumerate(codes):
            if max(c.builtinCode, c.deprecatedBuiltinCode) == code:
                return i
        new = schema.OperatorCodeT()
        new.builtinCode, new.deprecatedBuiltinCode, new.version = code, min(code, 127), 1
        codes.append(new)
        return len(codes) - 1

    def tensor(like: Any, name: str, dtype: int | None = None, shape: list[int] | None = None) -> int:
        t = schema.TensorT()
        t.name = name
        t.type = like.type if dtype is None else dtype
        t.shape = np.asarray(like.shape if shape is None else shape, np.int32)
        t.shapeSignature = None if shape is not None or like.shapeSignature is None else \
            np.asarray(like.shapeSignature, np.int32)
        t.buffer = 0
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    copies: dict[str, str] = {}
    producers = {t: i for i, op in enumerate(sg.operators) for t in (op.outputs if op.outputs is not None else [])}
    inserts: list[tuple[int, list[Any]]] = []
    int32 = int(schema.TensorType.INT32)
    for t in consumed:
        original = sg.tensors[t]
        name = ed.tensor_name(t)
        copy_name = f"{name}/edgequant_copy"
        new = tensor(original, copy_name)
        signature = [int(d) for d in (original.shapeSignature if original.shapeSignature is not None
                                      else original.shape)]
        ops = []
        if sum(1 for d in signature if d < 0) <= 1:
            shape_t = tensor(original, f"{name}/edgequant_copy_shape", int32, [len(signature)])
            buf = schema.BufferT()
            buf.data = np.frombuffer(np.asarray(signature, "<i4").tobytes(), np.uint8).copy()
            ed.model.buffers.append(buf)
            sg.tensors[shape_t].buffer = len(ed.model.buffers) - 1
        else:
            # Several unknown dimensions: the copy takes its shape from the tensor at run time.
            shape_t = tensor(original, f"{name}/edgequant_copy_shape", int32, [len(signature)])
            shape_op = schema.OperatorT()
            shape_op.opcodeIndex, shape_op.inputs, shape_op.outputs = opcode("SHAPE"), [t], [shape_t]
            shape_op.builtinOptionsType = schema.BuiltinOptions.ShapeOptions
            shape_op.builtinOptions = schema.ShapeOptionsT()
            shape_op.builtinOptions.outType = int32
            ops.append(shape_op)
        reshape = schema.OperatorT()
        reshape.opcodeIndex, reshape.inputs, reshape.outputs = opcode("RESHAPE"), [t, shape_t], [new]
        ops.append(reshape)
        for op in sg.operators:
            if op.inputs is not None and t in list(op.inputs):
                op.inputs = [new if i == t else i for i in op.inputs]
        inserts.append((producers.get(t, -1) + 1, ops))
        copies[copy_name] = name
    for at, ops in sorted(inserts, key=lambda item: item[0], reverse=True):
        sg.operators[at:at] = ops
    return ed.to_bytes(), copies


def _lookup_tables(ed: GraphEditor) -> list[int]:
    """Float32 constant tables read by GATHER or GATHER_ND (embeddings), by tensor index."""
    return sorted({op.inputs[0] for op in ed.find_ops("GATHER", "GATHER_ND")
                   if ed.is_constant(op.inputs[0]) and ed.tensor_dtype(op.inputs[0]) == "float32"})


def _behind_dequantize(ed: GraphEditor, tables: list[int], stored: Any) -> None:
    """Replace each float table by a narrower constant and a DEQUANTIZE that writes the table at load.

    ``stored(values)`` returns (name suffix, TensorType, raw bytes, quantization parameters or None). The
    DEQUANTIZEs go first in the graph: their inputs are constants, so LiteRT computes them once.
    """
    from ai_edge_litert import schema_py_generated as schema

    sg = ed.model.subgraphs[0]
    codes = ed.model.operatorCodes
    code = int(schema.BuiltinOperator.DEQUANTIZE)
    index = next((i for i, c in enumerate(codes) if max(c.builtinCode, c.deprecatedBuiltinCode) == code), None)
    if index is None:
        new = schema.OperatorCodeT()
        new.builtinCode, new.deprecatedBuiltinCode, new.version = code, code, 1
        codes.append(new)
        index = len(codes) - 1
    ops = []
    for t in tables:
        values = ed.read_constant(t)
        suffix, dtype, raw, quantization = stored(values)
        narrow = schema.TensorT()
        narrow.name = f"{ed.tensor_name(t)}/{suffix}"
        narrow.type = int(dtype)
        narrow.shape = np.asarray(values.shape, np.int32)
        narrow.quantization = quantization
        buf = schema.BufferT()
        buf.data = np.frombuffer(raw, np.uint8).copy()
        ed.model.buffers.append(buf)
        narrow.buffer = len(ed.model.buffers) - 1
        sg.tensors.append(narrow)
        ed.drop_constant(t)
        sg.tensors[t].buffer = 0  # now an activation: the DEQUANTIZE writes it at load
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, [len(sg.tensors) - 1], [t]
        ops.append(op)
    sg.operators[0:0] = ops


def narrow_tables_fp16(tflite: bytes, what: str = "model") -> tuple[bytes, int]:
    """Store every float32 constant table a GATHER reads as float16 behind a DEQUANTIZE; (bytes, count).

    LiteRT Quantizer's float casting covers the weighted ops but not GATHER, so an
    encoder's embedding table (most of its bytes) would stay float32 in fp16.
    """
    from ai_edge_litert import schema_py_generated as schema

    ed = GraphEditor(tflite, what)
    tables = _lookup_tables(ed)
    if not tables:
        return bytes(tflite), 0
    _behind_dequantize(ed, tables, lambda v: ("fp16", schema.TensorType.FLOAT16, v.astype("<f2").tobytes(), None))
    return ed.to_bytes(), len(tables)


def table_int8(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """A table as symmetric int8 with one scale per row (axis 0) or per column (last axis), whichever leaves
    less squared error on the table itself: (integers, scales, axis)."""
    best: tuple[float, np.ndarray, np.ndarray, int] | None = None
    for axis in sorted({0, values.ndim - 1}):
        others = tuple(a for a in range(values.ndim) if a != axis)
        peak = np.abs(values).max(axis=others, keepdims=True) if others else np.abs(values)
        scale = (np.maximum(peak, np.finfo(np.float32).tiny) / 127).astype(np.float32)
        q = np.clip(np.rint(values / scale), -127, 127)
        error = float(np.sum((q * scale - values).astype(np.float64) ** 2))
        if best is None or error < best[0]:
            best = (error, q.astype(np.int8), scale.reshape(-1), axis)
    assert best is not None
    return best[1], best[2], best[3]


def narrow_tables_int8(tflite: bytes, what: str = "model") -> tuple[bytes, int]:
    """Store every float32 constant table a GATHER reads as int8 with a scale per row or per column
    (:func:`table_int8`) behind a DEQUANTIZE; (bytes, count).

    One scale for the whole table (what a quantized GATHER takes) is set by its largest value: MiniLM's
    position table peaks 22x above its median row, which left that table at 20 dB; a scale per row gives 39 dB.
    Its token-type table is the other way round: two rows, each dominated by a few columns, 29 dB per row and
    52 dB per column. The cost is 12 bytes of scale and zero point per row or column, and the float table in
    memory at run time.
    """
    from ai_edge_litert import schema_py_generated as schema

    def stored(values: np.ndarray) -> tuple[str, int, bytes, Any]:
        q, scale, axis = table_int8(values)
        params = schema.QuantizationParametersT()
        params.scale, params.zeroPoint, params.quantizedDimension = scale, np.zeros(len(scale), np.int64), axis
        return "int8", schema.TensorType.INT8, q.tobytes(), params

    ed = GraphEditor(tflite, what)
    tables = [t for t in _lookup_tables(ed) if len(ed.tensor_shape(t)) >= 1 and ed.tensor_shape(t)[0] > 0]
    if not tables:
        return bytes(tflite), 0
    _behind_dequantize(ed, tables, stored)
    return ed.to_bytes(), len(tables)


def stray_signature_outputs(tflite: bytes, what: str = "model") -> list[str]:
    """Signature outputs that name a tensor which is not an output of their subgraph, as "name (tensor)".

    LiteRT reads a signature's outputs by tensor index, and an internal tensor's memory is reused by later
    ops, so such an output returns whatever was written there last. litert-quantizer left one after keeping
    a float op whose output was both a model output and another op's input (int16x8, a learned-query block).
    """
    model = load_object_model(tflite, what)  # only the tables: no editor, no op list
    stray = []
    for sd in model.signatureDefs or []:
        sg = model.subgraphs[int(sd.subgraphIndex or 0)]
        outputs = {int(t) for t in (sg.outputs if sg.outputs is not None else [])}
        for out in sd.outputs or []:
            if int(out.tensorIndex) not in outputs:
                name = out.name.decode() if isinstance(out.name, bytes) else str(out.name)
                tensor = sg.tensors[int(out.tensorIndex)].name
                stray.append(f"{name} ({tensor.decode() if isinstance(tensor, bytes) else tensor})")
    return stray


def restore_signature_outputs(tflite: bytes, what: str = "model") -> tuple[bytes, int]:
    """The model with each stray signature output made a graph output again where a QUANTIZE took its place.

    When an op kept float writes a model output that integer ops also read, litert-quantizer adds a QUANTIZE
    for those readers and puts the QUANTIZE's output in the subgraph's output list, while the signature still
    names the float tensor (int16x8, a learned query kept float). The float tensor is the output the user asked
    for, so it goes back in the QUANTIZE's place; the readers keep the quantized copy. Returns the count.
    """
    if not stray_signature_outputs(tflite, what):
        return tflite, 0
    ed = GraphEditor(tflite, what)
    sg = ed.model.subgraphs[0]
    outputs = [int(t) for t in (sg.outputs if sg.outputs is not None else [])]
    named = {int(o.tensorIndex) for sd in ed.model.signatureDefs or [] if int(sd.subgraphIndex or 0) == 0
             for o in sd.outputs or []}
    count = 0
    for tensor in sorted(named - set(outputs)):
        swap = [op.outputs[0] for op in ed.consumers(tensor) if op.op == "QUANTIZE" and op.outputs
                and op.outputs[0] in outputs and op.outputs[0] not in named]
        if len(swap) == 1:
            outputs[outputs.index(swap[0])] = tensor
            count += 1
    if not count:
        return tflite, 0
    sg.outputs = np.asarray(outputs, np.int32)
    return ed.to_bytes(), count
