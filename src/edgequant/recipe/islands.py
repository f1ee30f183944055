"""Stage: plan. Float islands for attention models: integer matmuls, float everything between them.

    float .tflite + calibration inputs -> plan_islands -> IslandPlan (per-layer precision: float)

A transformer quantized to int8 end to end loses most of its accuracy in a few
places, and runs slower than it should, for the same reason: the ops between
the matrix multiplications. On paraphrase-MiniLM-L3-v2 (benchmarks/results/
minilm_islands.md) the decomposed LayerNorm (MEAN, SQUARED_DIFFERENCE, RSQRT:
its squared deviations span 0 to 5e4 in one per-tensor int8 scale), the
residual adds and one feed-forward output with a 200x outlier channel cost the
accuracy, and none of LayerNorm's, GELU's, softmax's or the masked score ops'
int8 kernels are XNNPACK's, so they ran slower than the float ones.

The plan keeps in float every op with a float output except
- the weighted matmuls and convolutions (INTEGER_OPS, and a BATCH_MATMUL with a
  constant operand): where the weights are, so where int8 saves time and size;
- ops that only move values (LAYOUT_OPS): they take their neighbours' precision;
A DEPTHWISE_CONV_2D stays float too. Each of its output channels reads only
its own input channel, through k x k taps, so a per-tensor int8 input scale
sized for the largest channel leaves a small channel a few steps, and nothing
later mixes that rounding away; between the float activations of a
conv-activation-depthwise-activation block it would also be an int8 island of
one op, a QUANTIZE and a DEQUANTIZE for a kernel XNNPACK runs fast in float;
and its k x k x C weights are a small share of the model. On PP-OCRv4's
recognizer (14 depthwise convs, input channel peaks 2.5x to 16x their median
channel) this moved int8's exact match with float on dev lines from well
below dynamic range's to beside it, at int8's latency
(benchmarks/results/ocr-patterns.md).
A BATCH_MATMUL between two activations (attention's Q.K^T and scores.V) stays
float: it has no weights to shrink, and XNNPACK has no int8 kernel for it, so
LiteRT runs it in its reference kernel, slower than the float one XNNPACK
takes (benchmarks/results/dinov2_islands_bmm.md, minilm_islands_seq32.md);
and then also keeps in float each weighted op whose output has an outlier
channel: its largest channel's peak over the median channel's peak, measured
on the calibration inputs, above OUTLIER_RATIO. A per-tensor int8 scale sized
for such a channel leaves the median channel fewer than 127 / OUTLIER_RATIO
steps; on MiniLM one such op of 18 held most of the error left once the
LayerNorms were float.

LiteRT Quantizer joins the islands with QUANTIZE and DEQUANTIZE ops. Weights
stay int8 in every integer op; the float ones keep float weights (the outlier
ops and the depthwise convs), which is what the size costs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from edgequant.graph.submodel import GraphModel
from edgequant.runtime import Inputs, stream_tensors
from edgequant.types import Precision, Record

__all__ = ["IslandPlan", "plan_islands", "is_attention_model", "INTEGER_OPS", "LAYOUT_OPS", "OUTLIER_RATIO",
           "channel_peaks"]

# Ops kept integer: the matrix multiplications with weights; a BATCH_MATMUL only when one operand is a constant
# (an activation x activation one has no weights to shrink and no XNNPACK int8 kernel: see the module's doc).
# A DEPTHWISE_CONV_2D is not among them: see the module's doc.
INTEGER_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "TRANSPOSE_CONV", "BATCH_MATMUL"})
# Weighted ops among them: their output channels are the weight's output channels, which the outlier test reads.
WEIGHTED = frozenset({"FULLY_CONNECTED", "CONV_2D", "TRANSPOSE_CONV"})
# Ops that move or select values without arithmetic: LiteRT Quantizer gives them their input's scale.
LAYOUT_OPS = frozenset({"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "CONCATENATION", "GATHER", "GATHER_ND",
                        "SLICE", "STRIDED_SLICE", "PACK", "UNPACK", "SPLIT", "SPLIT_V", "PAD", "PADV2",
                        "BROADCAST_TO", "TILE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH"})
# A weighted op whose largest output channel peaks this many times above the median channel stays float:
# int8 then leaves the median channel under 4 quantization steps.
OUTLIER_RATIO = 32.0


@dataclasses.dataclass(frozen=True)
class IslandPlan(Record):
    """Per-layer precisions (by the tensor each op writes) and why each op is in float."""

    precisions: dict[str, Precision]
    # Float ops by op type, e.g. {"MEAN": 14, "GELU": 3}.
    float_ops: dict[str, int]
    # Weighted ops kept float for an outlier channel: tensor name -> peak ratio (largest / median channel).
    outliers: dict[str, float]
    # The largest peak ratio among the weighted ops left integer (how close the next one came).
    largest_kept_ratio: float

    def notes(self) -> list[str]:
        ops = ", ".join(f"{n} {op}" for op, n in sorted(self.float_ops.items(), key=lambda kv: (-kv[1], kv[0])))
        out = [f"float islands (attention model): {sum(self.float_ops.values())} ops between the integer "
               f"matmuls stay float ({ops}); fully connected, convolution (not depthwise) and weight x activation "
               "BATCH_MATMUL ops stay int8; a BATCH_MATMUL between two activations (attention scores) stays float: "
               "it has no weights, and XNNPACK has no int8 kernel for it"]
        if self.float_ops.get("DEPTHWISE_CONV_2D"):
            out.append("float islands: depthwise convolutions stay float: each output channel reads only its own "
                       "input channel, which one per-tensor int8 scale sized for the largest channel would leave "
                       "few steps")
        if self.outliers:
            listed = "; ".join(f"{name} ({ratio:.0f}x)" for name, ratio in self.outliers.items())
            out.append(f"float islands: {len(self.outliers)} weighted op(s) kept float for an outlier output "
                       f"channel (largest channel peak over the median channel's above {OUTLIER_RATIO:g}x): {listed}")
        return out


def is_attention_model(tflite: bytes) -> bool:
    """A SOFTMAX and a BATCH_MATMUL between activations: the mark of self-attention in a LiteRT graph."""
    g = GraphModel(tflite, "float model")
    names = set(g.op_names)
    if "SOFTMAX" not in names:
        return False
    return any(op == "BATCH_MATMUL" and not _has_weights(g, i) for i, op in enumerate(g.op_names))


def channel_peaks(tflite: bytes, x: Inputs, tensors: list[int]) -> dict[int, np.ndarray]:
    """Peak |value| of every channel (last axis) of each listed tensor over the inputs, streamed in batches."""
    peaks: dict[int, np.ndarray] = {}
    for batch in stream_tensors(tflite, x, tensors):
        for t, values in batch.items():
            a = np.abs(np.asarray(values, dtype=np.float32))
            a = np.where(np.isfinite(a), a, 0.0).reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)
            peak = a.max(axis=0)
            peaks[t] = peak if t not in peaks else np.maximum(peaks[t], peak)
    return peaks


def _has_weights(g: GraphModel, i: int) -> bool:
    """Op ``i`` reads a constant operand (a weight), not only activations."""
    return any(g.is_constant(t) for t in g.op_inputs(i))


def _ratio(peak: np.ndarray) -> float:
    if peak.size < 2:
        return 1.0
    median = float(np.median(peak))
    return float(peak.max()) / median if median > 0 else 1.0


def plan_islands(tflite: bytes, x: Inputs | None, keep: Mapping[str, Precision] | None = None) -> IslandPlan:
    """The float-island plan for ``tflite``; ``x`` (calibration inputs) finds outlier ops, None skips that test.

    ``keep`` are precisions a recipe already set: those ops are left as the recipe says.
    """
    g = GraphModel(tflite, "float model")
    keep = dict(keep or {})

    def written(i: int) -> int | None:
        """The float tensor op ``i`` writes that the plan may set, or None."""
        outs = g.op_outputs(i)
        if not outs or g.tensor_dtype(outs[0]) != "float32" or g.tensor_name(outs[0]) in keep:
            return None
        return outs[0]

    # The outlier test first, so that a layout op after an outlier op can follow it into float.
    weighted = {t: g.tensor_name(t) for i, op in enumerate(g.op_names)
                if op in WEIGHTED and (t := written(i)) is not None}
    outliers: dict[str, float] = {}
    largest_kept = 0.0
    if x is not None and weighted:
        peaks = channel_peaks(tflite, x, sorted(weighted))
        for t, name in weighted.items():
            ratio = _ratio(peaks[t])
            if ratio > OUTLIER_RATIO:
                outliers[name] = ratio
            else:
                largest_kept = max(largest_kept, ratio)
    precisions: dict[str, Precision] = {}
    float_ops: dict[str, int] = {}
    floated: set[int] = set()  # tensors written by a float op
    for i, op in enumerate(g.op_names):  # flatbuffer order is execution order: producers come first
        t = written(i)
        if t is None:
            continue
        name = g.tensor_name(t)
        if op in INTEGER_OPS and name not in outliers and (op != "BATCH_MATMUL" or _has_weights(g, i)):
            continue
        # A layout op follows the op that feeds it: float after a float op, so no QUANTIZE runs just to move values.
        if op in LAYOUT_OPS and not any(s in floated for s in g.op_inputs(i)[:1]):
            continue
        floated.add(t)
        precisions[name] = Precision.FLOAT
        float_ops[op] = float_ops.get(op, 0) + 1
    return IslandPlan(precisions={**precisions, **keep}, float_ops=float_ops, outliers=outliers,
                      largest_kept_ratio=largest_kept)
