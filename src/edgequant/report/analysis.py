"""Terminal text for an Analysis (edgequant analyze). Strings only; the CLI prints them.

The JSON form is ``Analysis.to_dict()`` (report.to_json), documented in docs/analyze.md.
"""

from __future__ import annotations

import math
from typing import Any

from edgequant.types import Finding

__all__ = ["analysis_text", "findings_text"]


def _db(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "exact" if value > 0 else "-inf"
    # Beyond 100 dB the residue is float32 rounding in the comparison itself, not quantization.
    return ">100" if value > 100 else f"{value:.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _short(name: str, width: int = 36) -> str:
    first = name.split(";")[0]
    return first if len(first) <= width else "..." + first[-(width - 3):]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def findings_text(found: tuple[Finding, ...] | list[Finding], indent: str = "  ") -> str:
    """One line per finding: "!" marks a warning; the measurement it rests on follows in brackets."""
    return "\n".join(f"{indent}{'!' if f.severity == 'warning' else '-'} {f.message}  [{f.source}]" for f in found)


def _range(lo: float | None, hi: float | None) -> str:
    return "-" if lo is None or hi is None else f"[{lo:.3g}, {hi:.3g}]"


def analysis_text(a: Any, show: int = 20) -> str:
    """The Analysis as text: headline, findings, then the layer, sensitivity, op and size tables."""
    rt = a.runtime
    acc = ""
    if a.accuracy is not None:
        acc = f", accuracy {a.accuracy:.2%} (float {a.float_accuracy:.2%})"
    sqnr = a.fidelity.sqnr_db
    head = "identical to float" if math.isinf(sqnr) and sqnr > 0 else f"SQNR {_db(sqnr)} dB"
    lines = [f"{a.model} ({a.scheme}) against {a.reference}, {a.samples} samples",
             f"outputs: {head}, cosine {a.fidelity.cosine:.6f}, max abs error {a.fidelity.max_abs_error:.4g}{acc}"]
    if rt.latency is not None and rt.float_latency is not None:
        ratio = rt.latency_ratio
        lines.append(f"latency: {rt.latency.median_ms:.3f} ms vs {rt.float_latency.median_ms:.3f} ms float "
                     f"({ratio:.2f}x float), median of {rt.latency.runs} interleaved batch-1 runs")
    lines += ["", "findings:", findings_text(a.findings)]

    ranked = a.ranked()
    rows = []
    for e in ranked[:show]:
        rows.append([str(e.local_rank or "-"), f"{e.op}#{e.index}", _short(e.tensor), e.dtype,
                     "-" if e.scale is None else f"{e.scale:.4g}", _db(e.local_sqnr_db), _db(e.sqnr_db),
                     _db(e.inherited_sqnr_db), f"{e.cosine:.5f}",
                     "-" if e.clipped_share is None else f"{e.clipped_share:.2%}",
                     _range(e.range_min, e.range_max), _range(e.float_min, e.float_max),
                     _range(e.p9999_min, e.p9999_max), e.match.value])
    lines += ["", "layers, by the error each adds on its own (SQNR in dB, higher is closer to float; local: the op "
                  "alone on float inputs; accum.: at its output in the full model; inherited: at its inputs):",
              _table(["rank", "op", "tensor", "dtype", "scale", "local", "accum.", "inherited", "cosine", "clipped",
                      "quantized range", "float range", "99.99% of values", "matched by"], rows)]
    if len(ranked) > show:
        lines.append(f"... {len(ranked) - show} more layers in --json")
    if a.unmatched:
        lines.append(f"not paired with a reference tensor: {', '.join(a.unmatched)}")

    s = a.sensitivity
    if s is not None:
        base = f"accuracy {s.baseline_accuracy:.2%}, " if s.baseline_accuracy is not None else ""
        repro = "identical outputs" if s.reproduction_sqnr_db is None or math.isinf(s.reproduction_sqnr_db) \
            else f"{s.reproduction_sqnr_db:.1f} dB"
        lines += ["", f"sensitivity, one layer kept in float (metric: {s.metric}; baseline {base}output SQNR "
                      f"{_db(s.baseline_sqnr_db)} dB; baseline vs the analysed model: {repro}):",
                  _table(["layer", "op", "local", "accuracy", "SQNR", "gain"],
                         [[_short(x.tensor), x.op, _db(x.local_sqnr_db),
                           "-" if x.accuracy is None else f"{x.accuracy:.2%}", _db(x.sqnr_db),
                           f"{x.gain * 100:+.2f} pt" if s.metric == "accuracy" else f"{x.gain:+.1f} dB"]
                          for x in s.layers])]
        lines += [f"note: {n}" for n in s.notes]

    rows = [[str(o.index), o.op, o.role, o.compute, o.weight_dtype or "-", "yes" if o.xnnpack else "no",
             _ms(o.time_ms), _ms(o.float_time_ms), o.float_reason or ""] for o in rt.ops]
    lines += ["", f"run time (time: {rt.op_timing}):",
              _table(["#", "op", "role", "compute", "weights", "XNNPACK", "ms", "float ms", "why float"], rows)]
    for c in rt.conversions:
        lines.append(f"{c.op}#{c.index} {c.from_dtype}->{c.to_dtype} at {c.where}: after "
                     f"{c.producer or 'the model input'}, before {', '.join(c.consumers) or 'the model output'}"
                     + ("" if c.time_ms is None else f", {c.time_ms:.4f} ms"))
    lines += [f"note: {n}" for n in rt.notes]

    z = a.size
    dtypes = ", ".join(f"{k} {v / 1024:,.1f} KiB" for k, v in sorted(z.weight_bytes_by_dtype.items(),
                                                                      key=lambda kv: -kv[1]))
    lines += ["", f"size: {z.total_bytes / 1024:,.1f} KiB (float {z.float_total_bytes / 1024:,.1f} KiB); weights "
                  f"{z.weight_bytes / 1024:,.1f} KiB: {dtypes}",
              _table(["weight tensor", "dtype", "shape", "KiB", "read by"],
                     [[_short(t.name), t.dtype, "x".join(str(d) for d in t.shape) or "scalar", f"{t.bytes / 1024:,.1f}",
                       ", ".join(t.consumers)] for t in z.tensors[:8]])]
    if len(z.tensors) > 8:
        lines.append(f"... {len(z.tensors) - 8} more constant tensors in --json")
    lines += ["", *[f"note: {n}" for n in a.notes]]
    return "\n".join(lines)
