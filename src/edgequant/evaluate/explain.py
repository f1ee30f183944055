"""Reasons a quantized variant can be slower than float, read off its graph.

These are facts about the graph (which ops take which dtypes, what was
inserted), stated next to the measured ratio; they never replace the
measurement. A variant is only called slow when its measured median is.
"""

from __future__ import annotations

import collections

from edgequant.graph import GraphSummary

__all__ = ["slow_reasons", "SLOW_TOLERANCE"]

# Ratios within 10% of float are treated as noise on a shared machine.
SLOW_TOLERANCE = 1.10


def _hist(ops: tuple) -> str:
    counts = collections.Counter(o.op for o in ops)
    return ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()))


def slow_reasons(graph: GraphSummary) -> list[str]:
    """Plain-language causes visible in the graph, most important first."""
    reasons: list[str] = []
    hybrid = graph.hybrid_ops()
    if hybrid:
        reasons.append(
            f"{len(hybrid)} dynamic-range op(s) ({_hist(hybrid)}) take float activations with int8 weights: "
            "every call quantizes the activations on the fly and rescales the int32 result, work the float "
            "kernels (XNNPACK) do not do; use int8 for integer speed")
    int16 = tuple(o for o in graph.ops if o.input_dtype == "int16" or o.output_dtype == "int16")
    if int16:
        reasons.append(
            f"{len(int16)} op(s) compute on int16 activations: XNNPACK has no 16x8 kernels, so they run in "
            "LiteRT's reference kernels")
    deq_weights = tuple(o for o in graph.ops if o.op == "DEQUANTIZE" and o.input_dtype in ("int8", "int4", "float16"))
    if deq_weights:
        kinds = sorted({o.input_dtype for o in deq_weights})
        reasons.append(
            f"{len(deq_weights)} DEQUANTIZE op(s) expand stored {'/'.join(kinds)} weights to float32 and the "
            "compute stays float: the gain is size, not speed")
    boundary = graph.count("QUANTIZE") + sum(1 for o in graph.ops if o.op == "DEQUANTIZE" and o.input_dtype in ("int8", "uint8", "int16"))
    if boundary and graph.integer_compute_ops():
        reasons.append(f"{boundary} QUANTIZE/DEQUANTIZE op(s) convert activations between float and integer at run time")
    if not reasons:
        reasons.append("nothing in the graph explains it; the ops are the same kinds as in float "
                       "(small models are dominated by per-op overhead)")
    return reasons
