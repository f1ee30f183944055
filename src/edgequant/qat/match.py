"""Where the deployed graph has quantized tensors, found by running both graphs on the same inputs.

The folded Keras graph is converted to a float .tflite; both run on a few samples and
every float tensor of the .tflite is paired with the Keras tensor holding the same values
(same shape, outputs equal to float precision). Names are not used: the converter renames
and fuses (a conv and its ReLU become one CONV_2D whose output is the ReLU layer's output,
and the pre-activation tensor simply has no twin).

From the pairing and litert-quantizer's rules per op, each Keras tensor gets its quantizer:

- the model input and the output of every op with a range of its own (CONV_2D,
  FULLY_CONNECTED, ADD, MEAN, ...): a learned range, initialized from calibration;
- SOFTMAX, LOGISTIC, TANH outputs: the fixed scale and zero point of LiteRT's kernels;
- RESHAPE, MAX_POOL_2D, AVERAGE_POOL_2D, PAD and the other ops litert-quantizer constrains to
  their input's scale: the input's quantizer itself (shared);
- an op with no Keras twin, or one produced by a layer the simulation does not model, stays
  float in the exported model (litert inserts DEQUANTIZE before and QUANTIZE after it); its
  output gets a learned range where a simulated op reads it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgequant.calibrate import Observer, Repair, collect_stats, compute_ranges
from edgequant.errors import EngineError
from edgequant.qat.graph import FoldedGraph
from edgequant.runtime import Runner, stream_tensors

__all__ = ["TfliteOp", "Matching", "match", "QuantPoint", "plan_quantizers", "start_plan", "FIXED_OUTPUT",
           "SAME_AS_INPUT"]

# litert-quantizer 0.11, algorithms/uniform_quantize/common_quantize.py: fixed output parameters
# (hard-coded in the TFLite kernels) and ops whose output takes the input's scale.
FIXED_OUTPUT = {"SOFTMAX": (1.0 / 256, -128), "LOGISTIC": (1.0 / 256, -128), "TANH": (1.0 / 128, 0)}
SAME_AS_INPUT = frozenset({"RESHAPE", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SLICE", "TRANSPOSE", "STRIDED_SLICE",
                           "SPLIT", "PAD", "MIRROR_PAD", "SPACE_TO_DEPTH", "RESIZE_BILINEAR",
                           "RESIZE_NEAREST_NEIGHBOR", "GATHER", "GATHER_ND", "UNPACK", "BROADCAST_TO",
                           "REDUCE_MIN", "SQUEEZE"})
# Two tensors are twins when they differ by at most this fraction of the tensor's largest magnitude.
MATCH_TOLERANCE = 1e-3
MATCH_SAMPLES = 16


@dataclasses.dataclass(frozen=True)
class TfliteOp:
    index: int
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclasses.dataclass
class Matching:
    """The pairing of .tflite tensors (by index) with folded-graph keys, and the .tflite's ops."""

    key_of: dict[int, int]
    tensor_of: dict[int, int]
    names: dict[int, str]
    ops: list[TfliteOp]
    input_index: int
    activations: list[int]   # every float tensor an op writes, and the model input


@dataclasses.dataclass(frozen=True)
class QuantPoint:
    """The quantizer of one folded-graph tensor: "learned" (a range), "fixed" or "shared" (another key's)."""

    kind: str
    tensor: str
    shared_with: int | None = None
    scale: float = 0.0
    zero_point: int = 0


def _graph_of(tflite: bytes) -> tuple[list[TfliteOp], dict[int, str], int, list[int]]:
    runner = Runner(tflite, what="folded float model")
    details = {int(d["index"]): d for d in runner.tensor_details()}
    ops = [TfliteOp(op["index"], op["op_name"], tuple(op["inputs"]), tuple(op["outputs"]))
           for op in runner.ops_details() if op["op_name"] != "DELEGATE"]
    inp = next(iter(runner.input_indices.values()))
    written = [inp] + [t for op in ops for t in op.outputs if t >= 0]
    acts = [t for t in dict.fromkeys(written) if np.dtype(details[t]["dtype"]) == np.float32]
    return ops, {i: str(d["name"]) for i, d in details.items()}, inp, acts


def match(graph: FoldedGraph, tflite: bytes, x: np.ndarray) -> Matching:
    """Pair every float activation tensor of ``tflite`` (converted from ``graph.model``) with a key."""
    from edgequant._util import quiet

    x = np.asarray(x[:MATCH_SAMPLES], np.float32)
    probe, keys = graph.probe()
    with quiet():
        outs = probe(x, training=False)
    keras_values = {graph.input_key: x}
    keras_values.update({k: np.asarray(v) for k, v in zip(keys, outs if isinstance(outs, (list, tuple)) else [outs])})
    order = {k: i for i, k in enumerate(keras_values)}
    ops, names, inp, acts = _graph_of(tflite)
    lite = next(stream_tensors(tflite, x, acts, batch_size=len(x)))
    key_of: dict[int, int] = {}
    for t in acts:
        value = lite[t]
        best: tuple[float, int, int] | None = None
        for k, ref in keras_values.items():
            if ref.shape != value.shape:
                continue
            err = float(np.max(np.abs(ref - value))) / (float(np.max(np.abs(ref))) + 1e-6)
            if err <= MATCH_TOLERANCE and (best is None or (err, order[k]) < best[:2]):
                best = (err, order[k], k)
        if best is not None:
            key_of[t] = best[2]
    tensor_of: dict[int, int] = {}
    for t, k in key_of.items():
        tensor_of.setdefault(k, t)
    return Matching(key_of, tensor_of, names, ops, inp, acts)


def plan_quantizers(graph: FoldedGraph, m: Matching) -> tuple[dict[int, QuantPoint], list[str], list[str]]:
    """Quantizers by key, the .tflite tensors whose ops stay float, and notes saying why."""
    simulated = {graph.input_key: True}
    for node in graph.nodes:
        for k in node.outputs:
            simulated[k] = node.simulated
    points: dict[int, QuantPoint] = {graph.input_key: QuantPoint("learned", m.names[m.input_index])}
    keep_float: list[str] = []
    unmatched: list[str] = []
    for op in m.ops:
        out = next((t for t in op.outputs if t in m.activations), None)
        if out is None:
            continue
        key = m.key_of.get(out)
        if key is None or not simulated.get(key, False):
            keep_float.append(m.names[out])
            if key is None:
                unmatched.append(f"{op.kind} {m.names[out]}")
            else:
                points.setdefault(key, QuantPoint("learned", m.names[out]))
            continue
        if key in points:
            continue
        if op.kind in FIXED_OUTPUT:
            scale, zp = FIXED_OUTPUT[op.kind]
            points[key] = QuantPoint("fixed", m.names[out], scale=scale, zero_point=zp)
            continue
        src = m.key_of.get(op.inputs[0]) if op.inputs and op.inputs[0] >= 0 else None
        if op.kind in SAME_AS_INPUT and src is not None and src in points:
            root = points[src].shared_with if points[src].kind == "shared" else src
            points[key] = QuantPoint("shared", m.names[out], shared_with=root)
        else:
            points[key] = QuantPoint("learned", m.names[out])
    notes = [f"{len(unmatched)} op(s) with no twin tensor in the folded Keras graph stay float: "
             + ", ".join(unmatched[:4]) + (" ..." if len(unmatched) > 4 else "")] if unmatched else []
    return points, keep_float, notes


def start_plan(graph: FoldedGraph, tflite: bytes, calib: np.ndarray,
               observer: Observer) -> tuple[dict[int, QuantPoint], dict[int, tuple[float, float]], list[Repair]]:
    """Quantizers by key, each learned range's start (``observer`` over a LiteRT calibration pass of
    the folded float ``tflite`` on ``calib``), and the repairs made to those ranges.

    What stays float is decided again at export, on the exported graph.
    """
    points, _, _ = plan_quantizers(graph, match(graph, tflite, calib))
    by_name, repairs = compute_ranges(collect_stats(tflite, calib), observer, 8)
    learned = {k: p.tensor for k, p in points.items() if p.kind == "learned"}
    missing = [name for name in learned.values() if name not in by_name]
    if missing:
        raise EngineError(f"no calibration statistics for {len(missing)} simulated tensor(s) (first: {missing[0]}): "
                          "the folded float graph could not be calibrated in LiteRT")
    names = set(learned.values())
    return points, {k: by_name[name] for k, name in learned.items()}, [r for r in repairs if r.tensor in names]
