"""What the quantized graph does at run time: dtypes, conversions, delegation, time per op.

- Dtypes and roles come from the flatbuffer (graph/submodel.py's view).
- XNNPACK delegation is read from LiteRT itself: after the default delegate is
  applied, the interpreter lists one DELEGATE node per partition with the
  partition's boundary tensors; walking back from its outputs to its inputs
  gives the ops it took.
- Time per op: LiteRT 2.3's Python interpreter has no per-op profiler
  (no profiling hook on ai_edge_litert.interpreter.Interpreter), so each op is
  timed alone: cut into a one-op model, fed the activations it sees on the
  first data sample, invoked batch 1 with XNNPACK on, round-robin with every
  other op (evaluate.latency.measure_interleaved). Each figure includes
  LiteRT's per-invoke overhead and misses fusion across ops inside one
  XNNPACK partition, so per-op times need not add up to the model's latency;
  the report states both.
- Whole-model latency of float and quantized, interleaved the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgequant._util import Progress, no_progress
from edgequant.analyze.layers import PreservedRun
from edgequant.analyze.local import OpModel
from edgequant.analyze.match import CONVERT_OPS, Matching, dequantized_weights, is_activation
from edgequant.analyze.records import Conversion, OpRuntime, RuntimeReport
from edgequant.errors import EdgequantError
from edgequant.evaluate.latency import measure_interleaved
from edgequant.graph import WEIGHTED_OPS
from edgequant.graph.edit import SHAPE_ONLY_OPS
from edgequant.graph.submodel import GraphModel
from edgequant.runtime import Inputs, Runner, ops_details
from edgequant.types import Latency, Scheme

__all__ = ["Timer", "infer_scheme", "xnnpack_ops", "runtime_report", "label"]

# (runners, sample, runs, warmup, progress) -> one Latency per runner; tests pass a fake.
Timer = Callable[[Sequence[Any], np.ndarray, int, int, Progress], list[Latency]]
_INT_ACTIVATIONS = ("int8", "uint8", "int16")


def label(g: GraphModel, op: int) -> str:
    """How an op is named in text: its type and position, e.g. ``FULLY_CONNECTED#8``."""
    return f"{g.op_names[op]}#{op}"


def infer_scheme(g: GraphModel) -> Scheme | None:
    """The scheme a quantized graph was built with, read from its dtypes; None for a float graph."""
    weights = {g.tensor_dtype(t) for i in range(g.num_ops) for t in g.op_inputs(i)[1:2] if g.is_constant(t)}
    acts = {g.tensor_dtype(t) for i in range(g.num_ops) if g.op_names[i] not in CONVERT_OPS
            for t in g.op_inputs(i)[:1] + g.op_outputs(i)[:1] if is_activation(g, t)}
    if "int16" in acts:
        return Scheme.INT16X8
    if acts & {"int8", "uint8"}:
        return Scheme.W4A8 if "int4" in weights else Scheme.INT8
    hybrid = any(g.op_names[i] in WEIGHTED_OPS and g.tensor_dtype(g.op_inputs(i)[0]) == "float32"
                 and len(g.op_inputs(i)) > 1 and g.tensor_dtype(g.op_inputs(i)[1]) in ("int8", "int4")
                 for i in range(g.num_ops) if g.op_inputs(i))
    if hybrid:
        return Scheme.DYNAMIC
    expanded = {g.tensor_dtype(g.op_inputs(i)[0]) for i in range(g.num_ops)
                if g.op_names[i] == "DEQUANTIZE" and g.op_inputs(i) and g.is_constant(g.op_inputs(i)[0])}
    if "int4" in expanded:
        return Scheme.WEIGHT_ONLY_INT4
    if "int8" in expanded:
        return Scheme.WEIGHT_ONLY_INT8
    if "float16" in expanded:
        return Scheme.FP16
    return None


def xnnpack_ops(g: GraphModel, threads: int = 1) -> set[int]:
    """Indices of the ops LiteRT's default XNNPACK delegate took, read from the delegated interpreter."""
    details = ops_details(g.tflite, g.what, threads)
    producers = g.producers()
    taken: set[int] = set()
    # Nodes past the model's own ops are the delegate kernels LiteRT added, one per partition.
    for node in details[g.num_ops:]:
        if node["op_name"] != "DELEGATE":
            continue
        boundary = {int(t) for t in node["inputs"]}
        stack = [int(t) for t in node["outputs"]]
        while stack:
            t = stack.pop()
            p = producers.get(t)
            if t in boundary or p is None or p in taken:
                continue
            taken.add(p)
            stack.extend(g.op_inputs(p))
    return taken


def _role_and_compute(g: GraphModel, i: int, dq_weights: set[int]) -> tuple[str, str, str | None]:
    op, ins, outs = g.op_names[i], g.op_inputs(i), g.op_outputs(i)
    in_dtype = g.tensor_dtype(ins[0]) if ins else "none"
    out_dtype = g.tensor_dtype(outs[0]) if outs else "none"
    weight = None
    if len(ins) > 1 and op in WEIGHTED_OPS:
        w = ins[1]
        if g.is_constant(w):
            weight = g.tensor_dtype(w)
        elif w in dq_weights:
            src = g.op_inputs(g.producers()[w])[0]
            weight = f"{g.tensor_dtype(src)} (dequantized to float32)"
    if op in CONVERT_OPS:
        if ins and g.is_constant(ins[0]):
            return "weight-dequantize", f"{in_dtype}->{out_dtype} (weights)", None
        role = "quantize" if op == "QUANTIZE" and in_dtype in ("float32", "float16") else (
            "dequantize" if op == "DEQUANTIZE" else "requantize")
        return role, f"{in_dtype}->{out_dtype}", None
    if op in SHAPE_ONLY_OPS or not outs or not is_activation(g, outs[0]):
        return "shape", out_dtype, weight
    if op in WEIGHTED_OPS and in_dtype == "float32" and weight in ("int8", "int4"):
        return "compute", f"hybrid {weight}", weight
    act = next((g.tensor_dtype(t) for t in ins if is_activation(g, t) and t not in dq_weights), in_dtype)
    return "compute", act, weight


def _float_reason(op: str, scheme: Scheme | None, engine_ops: frozenset[str]) -> str:
    if op in engine_ops:
        return (f"excluded: litert-quantizer can quantize {op} under {scheme.value if scheme else '?'}, so a "
                "recipe rule (keep in float) or the converter's float fallback left it float")
    return (f"unsupported: litert-quantizer's policy has no {scheme.value if scheme else '?'} rule for {op}, so the "
            "engine leaves it float")


def runtime_report(fg: GraphModel, qg: GraphModel, matching: Matching, x: Inputs, runs: int, warmup: int = 5,
                   threads: int = 1, timer: Timer = measure_interleaved, taken: set[int] | None = None,
                   model_latency: tuple[Latency, Latency] | None = None,
                   progress: Progress = no_progress) -> RuntimeReport:
    """Per-op dtypes, conversions, XNNPACK delegation and timing (``runs`` 0 skips every timing).

    ``taken`` is :func:`xnnpack_ops` of ``qg`` when the caller has it already;
    ``model_latency`` is (float, quantized) latency the caller measured already
    (compare does, interleaved with every variant), so it is not measured twice.
    """
    from edgequant.engines.litert import quantizable_ops

    scheme = infer_scheme(qg)
    dq_weights = dequantized_weights(qg)
    taken = xnnpack_ops(qg, threads) if taken is None else taken
    integer = any(_role_and_compute(qg, i, dq_weights)[1] in _INT_ACTIVATIONS for i in range(qg.num_ops))
    engine_ops = quantizable_ops(scheme) if scheme is not None else frozenset()
    notes: list[str] = []

    times: dict[int, float] = {}
    float_times: dict[int, float] = {}
    float_latency = latency = None
    first = {n: v[:1] for n, v in x.items()}
    timing = "not measured (runs = 0)"
    if runs > 0:
        if model_latency is not None:
            float_latency, latency = model_latency
        else:
            float_latency, latency = timer([Runner(fg.tflite, threads, "reference"),
                                            Runner(qg.tflite, threads, "quantized")], first, runs, warmup, progress)
        times, float_times, skipped = _time_ops(fg, qg, matching, first, runs, warmup, threads, timer, progress,
                                                taken, dq_weights)
        timing = (f"each op alone in a one-op model, batch 1, XNNPACK on where it takes the op, median of {runs} runs "
                  f"interleaved with every other op; includes LiteRT's per-invoke overhead")
        if times:
            fastest = min(times.values())
            notes.append(f"per-op times include LiteRT's per-invoke overhead (the fastest op took {fastest:.4f} ms, "
                         f"an upper bound on it); they add up to {sum(times.values()):.3f} ms against a whole-model "
                         f"median of {latency.median_ms:.3f} ms")
        if skipped:
            notes.append(f"not timed alone: {', '.join(skipped)}")
    f_producers = fg.producers()
    f_op_of = {lay.op_index: f_producers.get(lay.f_tensor) for lay in matching.layers}
    ops = []
    for i in range(qg.num_ops):
        role, compute, weight = _role_and_compute(qg, i, dq_weights)
        ins, outs = qg.op_inputs(i), qg.op_outputs(i)
        reason = None
        if integer and role == "compute" and compute in ("float32", "float16"):
            reason = _float_reason(qg.op_names[i], scheme, engine_ops)
        fop = f_op_of.get(i)
        ops.append(OpRuntime(index=i, op=qg.op_names[i], tensor=qg.tensor_name(outs[0]) if outs else "",
                             role=role, compute=compute, input_dtype=qg.tensor_dtype(ins[0]) if ins else "none",
                             output_dtype=qg.tensor_dtype(outs[0]) if outs else "none", weight_dtype=weight,
                             xnnpack=i in taken, time_ms=times.get(i),
                             float_time_ms=float_times.get(fop) if fop is not None else None, float_reason=reason))
    return RuntimeReport(ops=tuple(ops), conversions=tuple(_conversions(qg, ops, times)), float_latency=float_latency,
                         latency=latency, op_timing=timing, notes=tuple(notes))


def _conversions(qg: GraphModel, ops: Sequence[OpRuntime], times: dict[int, float]) -> list[Conversion]:
    producers, consumers = qg.producers(), qg.consumers()
    out = []
    for o in ops:
        if o.role not in ("quantize", "dequantize", "requantize"):
            continue
        t_in, t_out = qg.op_inputs(o.index)[0], qg.op_outputs(o.index)[0]
        prod = producers.get(t_in)
        cons = tuple(label(qg, c) for c in consumers.get(t_out, []))
        if t_in in qg.graph_inputs:
            where = "model input"
        elif t_out in qg.graph_outputs:
            where = "model output"
        else:
            where = "interior"
        # The float side of the conversion is why it exists: what DEQUANTIZE feeds, what QUANTIZE reads.
        if o.op == "DEQUANTIZE":
            beside = cons if where != "model output" else ("model output",)
        else:
            beside = (label(qg, prod),) if prod is not None else ("model input",)
        out.append(Conversion(index=o.index, op=o.op, from_dtype=qg.tensor_dtype(t_in), to_dtype=qg.tensor_dtype(t_out),
                              where=where, producer=label(qg, prod) if prod is not None else None, consumers=cons,
                              beside=beside, time_ms=times.get(o.index)))
    return out


def _time_ops(fg: GraphModel, qg: GraphModel, matching: Matching, sample: Inputs, runs: int, warmup: int,
              threads: int, timer: Timer, progress: Progress, taken: set[int],
              dq_weights: set[int]) -> tuple[dict[int, float], dict[int, float], list[str]]:
    """Batch-1 median per op of the quantized model, and of the float ops paired with its layers.

    Each op runs on the kernel it gets in the whole model: XNNPACK if the
    delegate took it there, LiteRT's builtin kernels otherwise.
    """
    values = {}
    for name, g in (("q", qg), ("f", fg)):
        model = PreservedRun(g.tflite, "model")
        model.run(sample)
        values[name] = (g, model)
    f_producers = fg.producers()
    jobs: list[tuple[str, int, OpModel]] = []
    skipped: list[str] = []
    f_taken = xnnpack_ops(fg, threads)
    targets = []
    for i in range(qg.num_ops):
        if qg.op_outputs(i) and qg.op_outputs(i)[0] in dq_weights:
            # A DEQUANTIZE of stored weights is timed with the op it feeds: cut apart, the op would
            # see run-time weights, which XNNPACK handles far more slowly than the stored ones it
            # packs (and dequantizes) once at load.
            skipped.append(f"{label(qg, i)} (weights: timed with the op it feeds)")
            continue
        targets.append(("q", i))
    targets += [("f", f_producers[lay.f_tensor]) for lay in matching.layers if lay.f_tensor in f_producers]
    for side, i in targets:
        g, model = values[side]
        try:
            probe = OpModel(g, i, with_weight_dequantize=True, threads=threads,
                            delegate=i in (taken if side == "q" else f_taken))
            probe.set_single({t: model.get(t) for t in probe.inputs})
            probe.prepare_single(sample)
            probe.invoke()
        except (EdgequantError, ValueError, RuntimeError):
            if side == "q":
                skipped.append(f"{label(g, i)} (cannot run on its own in LiteRT)")
            continue
        jobs.append((side, i, probe))
    if not jobs:
        return {}, {}, skipped
    results = timer([j[2] for j in jobs], sample, runs, warmup, lambda s, d, t: progress("analyze op timing", d, t))
    q_times = {i: lat.median_ms for (side, i, _), lat in zip(jobs, results) if side == "q"}
    f_times = {i: lat.median_ms for (side, i, _), lat in zip(jobs, results) if side == "f"}
    return q_times, f_times, skipped
