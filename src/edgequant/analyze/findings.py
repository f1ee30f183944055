"""Findings: what the measurements mean, in plain words, each tied to the number it rests on.

Every finding is derived from figures already in the Analysis (measured in
LiteRT or read from the flatbuffer); nothing here runs a model, so a test can
hand it any measurement and check what it concludes. A variant is called slow
only when its measured median is at least evaluate.SLOW_TOLERANCE times
float's, as compare does. Kinds (the ``kind`` field) are listed in
docs/analyze.md; warnings come first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from edgequant.analyze.records import Analysis, LayerError, OpRuntime
from edgequant.evaluate.explain import SLOW_TOLERANCE
from edgequant.types import Finding

__all__ = ["findings", "OUTLIER_RATIO", "CLIPPED_SHARE", "FIXED_SCALE_OPS", "TOP_LAYERS"]

# A representable range 4x wider than the 99.99% bulk wastes 2 of 8 bits on 0.01% of values.
OUTLIER_RATIO = 4.0
# Clipping more than 0.1% of values is visible in the output.
CLIPPED_SHARE = 0.001
# Ops whose output scale the LiteRT spec fixes (e.g. softmax 1/256): their clipping is by design.
FIXED_SCALE_OPS = frozenset({"SOFTMAX", "LOGISTIC", "TANH", "LOG_SOFTMAX"})
# Layers (by local error) that get a finding of their own.
TOP_LAYERS = 3
# An op alone must be this much slower than its float version, and the gap this share of the
# model's latency, to be worth a finding when the model as a whole is not slow.
SLOW_OP_RATIO = 1.5
SLOW_OP_SHARE = 0.10


def _short(name: str, width: int = 48) -> str:
    # Converter names join fused ops with ";": the first part names the layer.
    first = name.split(";")[0]
    return first if len(first) <= width else "..." + first[-(width - 3):]


def _cause(op: OpRuntime) -> str:
    if op.compute.startswith("hybrid"):
        where = "" if op.xnnpack else f"XNNPACK does not take a hybrid {op.op}, so LiteRT's builtin kernel runs it; "
        return (f"dynamic range: {where}the float activations are quantized on the fly at every call and the int32 "
                "result rescaled, work the float kernel does not do; use int8 (static) for integer speed")
    if not op.xnnpack and op.compute == "int16":
        return "XNNPACK has no 16x8 kernels, so it runs in LiteRT's reference kernels"
    if not op.xnnpack and op.weight_dtype and "dequantized" in op.weight_dtype:
        stored = op.weight_dtype.split()[0]
        return (f"XNNPACK does not take the DEQUANTIZE of its {stored} weights, so the weights are dequantized at "
                "every call and the op runs in LiteRT's builtin kernels; weight-only-int8 weights are expanded once "
                "at load, and int8 computes in integer")
    if not op.xnnpack:
        return "it runs outside XNNPACK, in LiteRT's builtin kernels"
    return f"XNNPACK's {op.compute} kernel is slower than its float32 kernel for this op's shapes"


def _float_kernel(op: OpRuntime) -> bool:
    # The op runs the very kernel the float model runs for it (fp16 and weight-only weights reach XNNPACK
    # expanded to float32 at load), so a time difference between the two is noise, not a cause.
    return bool(op.xnnpack) and op.compute == "float32"


def _speed(a: Analysis, graph_reasons: Sequence[str]) -> list[Finding]:
    rt = a.runtime
    ratio = rt.latency_ratio
    if ratio is None or not math.isfinite(ratio) or rt.latency is None or rt.float_latency is None:
        return []
    source = f"latency: median of {rt.latency.runs} interleaved batch-1 runs, {rt.latency.threads} thread(s)"
    timed = [o for o in rt.ops if o.time_ms is not None and o.float_time_ms is not None]
    causes = [o for o in timed if not _float_kernel(o)]
    worst = max(causes, key=lambda o: o.time_ms - o.float_time_ms, default=None)  # type: ignore[operator]
    scheme = a.scheme or "the quantized model"
    out = []
    if ratio >= SLOW_TOLERANCE:
        measured = f"{rt.latency.median_ms:.3f} ms vs {rt.float_latency.median_ms:.3f} ms"
        computing = [o for o in rt.ops if o.role == "compute"]
        if worst is not None and worst.time_ms > worst.float_time_ms:  # type: ignore[operator]
            why = (f"{worst.op}#{worst.index} ({worst.compute}) takes {worst.time_ms:.3f} ms alone vs "
                   f"{worst.float_time_ms:.3f} ms in float: {_cause(worst)}")
        elif computing and all(_float_kernel(o) for o in computing):
            why = ("every op runs the float model's own XNNPACK kernel (weights stored in fewer bits are expanded "
                   "to float32 once, at load), so no op can be slower: the gap is timing noise on this machine; "
                   "measure again with more --runs")
        else:
            why = graph_reasons[0] if graph_reasons else "no op was timed slower than its float version alone"
        out.append(Finding("slow", "warning", f"{scheme} runs {ratio:.2f}x slower than float on this CPU "
                           f"({measured}); {why}", ratio, "x float latency", source))
    else:
        measured = f"{rt.latency.median_ms:.3f} ms vs {rt.float_latency.median_ms:.3f} ms"
        text = (f"{scheme} runs {1 / ratio:.2f}x faster than float on this CPU ({measured})"
                if ratio < 1 / SLOW_TOLERANCE else
                f"{scheme} runs about as fast as float on this CPU ({measured}, within the "
                f"{SLOW_TOLERANCE - 1:.0%} noise tolerance)")
        out.append(Finding("speed", "info", text, 1 / ratio, "x float speed", source))
        base = rt.latency.median_ms
        for o in sorted(causes, key=lambda o: o.float_time_ms - o.time_ms):  # type: ignore[operator]
            gap = o.time_ms - o.float_time_ms  # type: ignore[operator]
            if o.float_time_ms and o.time_ms / o.float_time_ms >= SLOW_OP_RATIO and gap >= SLOW_OP_SHARE * base:
                out.append(Finding("slow-op", "info", f"{o.op}#{o.index} ({o.compute}) takes {o.time_ms:.3f} ms "
                                   f"alone vs {o.float_time_ms:.3f} ms in float ({o.time_ms / o.float_time_ms:.1f}x); "
                                   f"{_cause(o)}", o.time_ms / o.float_time_ms, "x float op time", rt.op_timing))
                break
    return out


def _layer(e: LayerError, rank: int, samples: int) -> Finding:
    where = f"layer {_short(e.tensor)} ({e.op}#{e.index})"
    head = ("adds the most error on its own" if rank == 1 else f"ranks {rank} by the error it adds on its own")
    inh = "" if e.inherited_sqnr_db is None or math.isinf(e.inherited_sqnr_db) else \
        f", having received {e.inherited_sqnr_db:.1f} dB"
    text = f"{where} {head}: local SQNR {e.local_sqnr_db:.1f} dB (its output carries {e.sqnr_db:.1f} dB{inh})"
    cause = None
    ratio = e.outlier_ratio
    seen = max(e.float_max, 0.0) - min(e.float_min, 0.0)
    width = None if e.range_min is None or e.range_max is None else e.range_max - e.range_min
    if width is not None and seen > 0 and width >= OUTLIER_RATIO * seen:
        # No value comes near the range's ends: not outliers but a range set elsewhere.
        cause = (f"its range [{e.range_min:.4g}, {e.range_max:.4g}] is {width / seen:.0f}x wider than every value seen "
                 f"here ([{e.float_min:.4g}, {e.float_max:.4g}]): calibration data unlike this data, or a minimum "
                 "scale (edgequant widens ranges narrower than a scale of 1e-8) set it; calibrate on data like this")
    elif ratio is not None and ratio >= OUTLIER_RATIO:
        cause = (f"its range [{e.range_min:.4g}, {e.range_max:.4g}] is set by 0.01% of values: 99.99% lie within "
                 f"[{e.p9999_min:.4g}, {e.p9999_max:.4g}], {ratio:.0f}x narrower; try the percentile:99.99 or mse "
                 "observer, or keep it in 16-bit")
    elif e.clipped_share is not None and e.clipped_share >= CLIPPED_SHARE and e.op not in FIXED_SCALE_OPS:
        cause = (f"{e.clipped_share:.2%} of its float values fall outside its range [{e.range_min:.4g}, "
                 f"{e.range_max:.4g}] and are clipped; widen it (minmax observer) or keep it in 16-bit")
    source = f"layers: local error of the op alone on float inputs, over {samples} samples"
    return Finding("layer-error", "warning" if cause else "info", text + (f"; {cause}" if cause else ""),
                   e.local_sqnr_db, "dB local SQNR", source)


def _layers(a: Analysis) -> list[Finding]:
    out = []
    for e in a.ranked()[:TOP_LAYERS]:
        if e.local_rank is None or e.local_sqnr_db is None or not math.isfinite(e.local_sqnr_db):
            continue
        f = _layer(e, e.local_rank, a.samples)
        if e.local_rank == 1 or f.severity == "warning":
            out.append(f)
    return out


def _sensitivity(a: Analysis) -> list[Finding]:
    s = a.sensitivity
    if s is None or not s.layers:
        return []
    best = s.layers[0]
    source = f"sensitivity: re-quantized with the litert engine, {s.samples} samples"
    sqnr = f"output SQNR {s.baseline_sqnr_db:.1f} -> {best.sqnr_db:.1f} dB"
    if s.metric == "accuracy" and best.accuracy is not None and s.baseline_accuracy is not None:
        text = (f"keeping {_short(best.tensor)} ({best.op}) in float moves accuracy from {s.baseline_accuracy:.2%} "
                f"to {best.accuracy:.2%} ({best.gain * 100:+.2f} pt; {sqnr})")
        value, unit = best.gain * 100, "accuracy points"
    else:
        text = (f"keeping {_short(best.tensor)} ({best.op}) in float moves output SQNR from {s.baseline_sqnr_db:.1f} "
                f"to {best.sqnr_db:.1f} dB ({best.gain:+.1f} dB)")
        value, unit = best.gain, "dB output SQNR"
    if best.gain <= 0:
        text = f"no single layer kept in float helps: the best, {text}"
    return [Finding("sensitivity", "info", text, value, unit, source)]


def _graph(a: Analysis) -> list[Finding]:
    rt = a.runtime
    out = []
    floats = [o for o in rt.ops if o.float_reason]
    if floats:
        listed = "; ".join(f"{o.op}#{o.index} ({o.float_reason.split(':')[0]})" for o in floats[:4])
        out.append(Finding("float-ops", "warning", f"{len(floats)} op(s) stayed float in an integer model: {listed}",
                           float(len(floats)), "ops", "graph: op dtypes"))
    interior = [c for c in rt.conversions if c.where == "interior"]
    if interior:
        timed = [c.time_ms for c in interior if c.time_ms is not None]
        cost = f" and cost {sum(timed):.3f} ms (sum of their one-op times)" if timed else ""
        beside = sorted({b for c in interior for b in c.beside})
        shape_ops = {f"{o.op}#{o.index}" for o in rt.ops if o.role == "shape"}
        text = (f"{len(interior)} QUANTIZE/DEQUANTIZE op(s) convert activations inside the model, around "
                f"{', '.join(beside[:5])}{cost}")
        shape_only = [c for c in interior if c.op == "DEQUANTIZE" and c.consumers
                      and all(x in shape_ops for x in c.consumers)]
        if shape_only:
            text += (f"; {len(shape_only)} of them only feed{'s' if len(shape_only) == 1 else ''} shape ops, which "
                     "read the shape, not the values")
        base = rt.latency.median_ms if rt.latency else None
        heavy = bool(timed) and base is not None and sum(timed) >= SLOW_OP_SHARE * base
        out.append(Finding("conversions", "warning" if heavy else "info", text,
                           sum(timed) if timed else float(len(interior)), "ms" if timed else "ops",
                           rt.op_timing if timed else "graph: QUANTIZE/DEQUANTIZE placement"))
    outside = [o for o in rt.ops if o.role in ("compute", "quantize", "dequantize", "requantize") and not o.xnnpack]
    if outside:
        timed = [o.time_ms for o in outside if o.time_ms is not None]
        total = sum(timed)
        base = rt.latency.median_ms if rt.latency else None
        heavy = bool(timed) and base is not None and total >= SLOW_OP_SHARE * base
        listed = ", ".join(f"{o.op}#{o.index} ({o.compute})" for o in outside[:5])
        cost = f", {total:.3f} ms of per-op time" if timed else ""
        out.append(Finding("not-delegated", "warning" if heavy else "info",
                           f"{len(outside)} op(s) run outside XNNPACK, in LiteRT's builtin kernels: {listed}{cost}",
                           total if timed else float(len(outside)), "ms" if timed else "ops",
                           "runtime: delegate partitions read from the LiteRT interpreter"))
    return out


def _size(a: Analysis) -> list[Finding]:
    size = a.size
    if not size.tensors or size.weight_bytes <= 0:
        return []
    source = "size: constant tensors read from the flatbuffer"
    out = []
    f32 = size.weight_bytes_by_dtype.get("float32", 0)
    share = f32 / size.weight_bytes
    if a.scheme not in (None, "fp16") and share >= 0.10:
        largest = next(t for t in size.tensors if t.dtype == "float32")
        out.append(Finding("size", "warning", f"float32 weights still take {f32 / 1024:,.1f} KiB ({share:.0%} of the "
                           f"weights); the largest is {_short(largest.name)} ({largest.bytes / 1024:,.1f} KiB)",
                           float(f32), "bytes", source))
    top = size.tensors[0]
    readers = f", read by {', '.join(top.consumers[:2])}" if top.consumers else ""
    out.append(Finding("size", "info", f"{size.total_bytes / 1024:,.1f} KiB vs {size.float_total_bytes / 1024:,.1f} "
                       f"KiB float ({size.float_total_bytes / max(size.total_bytes, 1):.2f}x smaller); the largest "
                       f"tensor is {_short(top.name)}, {top.dtype}, {top.bytes / 1024:,.1f} KiB "
                       f"({top.bytes / size.total_bytes:.0%} of the file){readers}", float(size.total_bytes), "bytes",
                       source))
    return out


def _fidelity(a: Analysis) -> list[Finding]:
    sqnr = a.fidelity.sqnr_db
    text = f"outputs match float at {sqnr:.1f} dB SQNR" if math.isfinite(sqnr) else "outputs are identical to float"
    severity = "info"
    if a.accuracy is not None and a.float_accuracy is not None:
        delta = (a.accuracy - a.float_accuracy) * 100
        text += f"; accuracy {a.accuracy:.2%} vs {a.float_accuracy:.2%} float ({delta:+.2f} pt)"
        severity = "warning" if delta <= -1.0 else "info"
    return [Finding("fidelity", severity, text, sqnr if math.isfinite(sqnr) else None, "dB output SQNR",
                    f"outputs on {a.samples} samples")]


def findings(a: Analysis, graph_reasons: Sequence[str] = ()) -> tuple[Finding, ...]:
    """Every finding the measurements in ``a`` support, warnings first.

    ``graph_reasons`` (evaluate.explain.slow_reasons of the quantized graph) explain a slow
    variant when no op was timed on its own.
    """
    found = _fidelity(a) + _speed(a, graph_reasons) + _layers(a) + _sensitivity(a) + _graph(a) + _size(a)
    return tuple(sorted(found, key=lambda f: f.severity != "warning"))
