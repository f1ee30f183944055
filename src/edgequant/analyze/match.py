"""Pair the quantized model's tensors with the float reference's.

A "layer" is an op of the quantized model that computes an activation: every
op except QUANTIZE/DEQUANTIZE (they convert, they do not compute) and except
ops whose output is plain integer data (shape arithmetic). Each layer's output
is paired with a float tensor:

1. By name. Both engines keep the float model's tensor names for the tensors
   they quantize (litert-quantizer always; TensorFlow's converter for
   everything but the graph boundary). The shapes must agree, batch aside.
2. By position, when the name is gone (the converter renames the int8 output
   of the last op, e.g. ``...:0`` becomes ``...:01``): the k-th op of a given
   type in execution order, among ops not yet paired, is paired with the k-th
   float op of that type, if their output shapes agree. Ops an engine removed
   or fused could shift this pairing; every layer records which rule paired it.

Other tensors (QUANTIZE/DEQUANTIZE outputs, the model input) get their float
counterpart by walking back through QUANTIZE/DEQUANTIZE to a paired tensor or
to the model input at the same position. Layers with no counterpart are listed
as unmatched, not guessed.
"""

from __future__ import annotations

import collections
import dataclasses

from edgequant.analyze.records import MatchMethod
from edgequant.errors import InputError
from edgequant.graph.submodel import GraphModel

__all__ = ["LayerPair", "Matching", "match_graphs", "CONVERT_OPS", "is_activation", "dequantized_weights"]

CONVERT_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
_VALUE_DTYPES = frozenset({"float32", "float16", "int8", "uint8", "int16"})


@dataclasses.dataclass(frozen=True)
class LayerPair:
    """One quantized op and the float tensor its output corresponds to."""

    op_index: int
    op: str
    q_tensor: int
    f_tensor: int
    method: MatchMethod
    inputs: tuple[int, ...]  # the op's activation inputs (quantized tensor indices)


@dataclasses.dataclass(frozen=True)
class Matching:
    """Layer pairs in execution order, the counterpart of every other tensor we could pair, and the rest."""

    layers: tuple[LayerPair, ...]
    counterpart: dict[int, int]
    unmatched: tuple[str, ...]


def is_activation(g: GraphModel, tensor: int) -> bool:
    """A non-constant tensor holding real values: float, or an integer with a scale."""
    if g.is_constant(tensor):
        return False
    dtype = g.tensor_dtype(tensor)
    if dtype in ("float32", "float16"):
        return True
    return dtype in _VALUE_DTYPES and g.quantization(tensor) is not None


def dequantized_weights(g: GraphModel) -> set[int]:
    """Outputs of DEQUANTIZE ops that expand stored weights (weight-only, fp16): constants in effect."""
    return {g.op_outputs(i)[0] for i in range(g.num_ops)
            if g.op_names[i] == "DEQUANTIZE" and g.op_inputs(i) and g.is_constant(g.op_inputs(i)[0])
            and g.op_outputs(i)}


def _same_shape(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    # Batch sizes differ between a dynamic (-1) and a fixed (1) model of the same network.
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a[1:], b[1:]))


def _check_inputs(fg: GraphModel, qg: GraphModel) -> None:
    fi, qi = fg.graph_inputs, qg.graph_inputs
    if len(fi) != len(qi):
        raise InputError(f"the quantized model does not correspond to the reference: expected {len(fi)} input(s) "
                         f"as in the reference, found {len(qi)}")
    for k, (f, q) in enumerate(zip(fi, qi)):
        fs, qs = fg.tensor_shape(f), qg.tensor_shape(q)
        if not _same_shape(fs, qs):
            raise InputError(f"the quantized model does not correspond to the reference: input {k} has shape "
                             f"{qs}, the reference expects {fs}")


def match_graphs(fg: GraphModel, qg: GraphModel) -> Matching:
    """Pair ``qg``'s layers with ``fg``'s tensors (see the module docstring for the rules)."""
    _check_inputs(fg, qg)
    f_names: dict[str, int] = {}
    f_ops_by_type: dict[str, list[int]] = collections.defaultdict(list)
    for i in range(fg.num_ops):
        outs = fg.op_outputs(i)
        for t in outs:
            if is_activation(fg, t):
                f_names.setdefault(fg.tensor_name(t), t)
        if outs and is_activation(fg, outs[0]) and fg.op_names[i] not in CONVERT_OPS:
            f_ops_by_type[fg.op_names[i]].append(outs[0])
    for t in fg.graph_inputs:
        f_names.setdefault(fg.tensor_name(t), t)

    candidates: list[tuple[int, int]] = []  # (op index, output tensor) of the quantized layers
    for i in range(qg.num_ops):
        outs = qg.op_outputs(i)
        if qg.op_names[i] in CONVERT_OPS or not outs or not is_activation(qg, outs[0]):
            continue
        candidates.append((i, outs[0]))

    claimed: set[int] = set()
    chosen: dict[int, tuple[int, MatchMethod]] = {}
    for i, t in candidates:
        f = f_names.get(qg.tensor_name(t))
        if f is not None and f not in claimed and _same_shape(fg.tensor_shape(f), qg.tensor_shape(t)):
            chosen[i] = (f, MatchMethod.NAME)
            claimed.add(f)
    seen_of_type: collections.Counter[str] = collections.Counter()
    for i, t in candidates:
        op = qg.op_names[i]
        k = seen_of_type[op]
        seen_of_type[op] += 1
        if i in chosen:
            continue
        same_type = f_ops_by_type.get(op, [])
        if k < len(same_type):
            f = same_type[k]
            if f not in claimed and _same_shape(fg.tensor_shape(f), qg.tensor_shape(t)):
                chosen[i] = (f, MatchMethod.POSITION)
                claimed.add(f)

    counterpart: dict[int, int] = {t: chosen[i][0] for i, t in candidates if i in chosen}
    for q, f in zip(qg.graph_inputs, fg.graph_inputs):
        counterpart[q] = f
    producers = qg.producers()

    def trace(t: int, depth: int = 0) -> int | None:
        if t in counterpart:
            return counterpart[t]
        p = producers.get(t)
        if p is not None and qg.op_names[p] in CONVERT_OPS and depth < 8:
            src = qg.op_inputs(p)
            if src and not qg.is_constant(src[0]):
                return trace(src[0], depth + 1)
        f = f_names.get(qg.tensor_name(t))
        if f is not None and _same_shape(fg.tensor_shape(f), qg.tensor_shape(t)):
            return f
        return None

    for i in range(qg.num_ops):
        for t in qg.op_inputs(i) + qg.op_outputs(i):
            if t not in counterpart and is_activation(qg, t):
                f = trace(t)
                if f is not None:
                    counterpart[t] = f

    layers = []
    unmatched = []
    weights = dequantized_weights(qg)
    for i, t in candidates:
        if i not in chosen:
            unmatched.append(f"{qg.op_names[i]}#{i} ({qg.tensor_name(t)})")
            continue
        inputs = tuple(x for x in qg.op_inputs(i) if is_activation(qg, x) and x not in weights)
        layers.append(LayerPair(i, qg.op_names[i], t, chosen[i][0], chosen[i][1], inputs))
    if not layers:
        raise InputError("the quantized model does not correspond to the reference: no layer could be paired with a "
                         "reference tensor, by name or by op type and position")
    return Matching(tuple(layers), counterpart, tuple(unmatched))
