"""Stage: report. Render results as terminal tables, JSON and CSV. Only strings and files here;
the CLI decides what to print."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from edgequant._util import atomic_dir_file
from edgequant.report.analysis import analysis_text, findings_text
from edgequant.types import CompareResult, Evaluation, QuantizedModel, Variant

__all__ = ["compare_table", "write_compare_files", "evaluation_text", "quantized_text", "to_json", "CSV_COLUMNS",
           "analysis_text", "findings_text"]

CSV_COLUMNS = ["scheme", "engine", "io", "path", "size_bytes", "weight_bytes", "size_ratio", "gzip_bytes", "accuracy",
               "accuracy_delta", "sqnr_db", "cosine", "max_abs_error", "latency_ms_median", "latency_ms_p90",
               "speedup", "quantize_seconds", "warnings", "error"]


def to_json(obj: Any) -> str:
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" + suffix
    return format(value, spec) + suffix


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _cells(v: Variant) -> list[str]:
    if v.error:
        return [v.label, "-", "-", "-", "-", "-", "-", "-", "-", "FAILED"]
    smaller = 1 / v.size_ratio if v.size_ratio else None
    return [v.label, _fmt(v.size_bytes / 1024 if v.size_bytes is not None else None, ",.1f", " KiB"),
            _fmt(smaller, ".2f", "x"), _fmt(v.gzip_bytes / 1024 if v.gzip_bytes is not None else None, ",.1f", " KiB"),
            _fmt(v.accuracy * 100 if v.accuracy is not None else None, ".2f", "%"),
            _fmt(v.accuracy_delta * 100 if v.accuracy_delta is not None else None, "+.2f", " pt"),
            _fmt(v.sqnr_db, ".1f", " dB"), _fmt(v.latency_ms_median, ".3f", " ms"), _fmt(v.speedup, ".2f", "x"),
            "SLOW" if any(w.startswith("slower than float") for w in v.warnings) else ""]


def compare_table(result: CompareResult) -> str:
    """The seed-003-style table, then warnings, failures and skipped pairs, as plain text."""
    headers = ["variant", "size", "x smaller", "gzip", "accuracy", "delta", "SQNR", "latency", "x faster", "flag"]
    rows = [_cells(result.float)] + [_cells(v) for v in result.variants]
    if any(v.worst_output for v in result.variants):
        # Several outputs: SQNR is the worst output's, named in its own column (compare.json has them all).
        headers.insert(7, "worst output")
        for row, v in zip(rows, (result.float, *result.variants)):
            row.insert(7, "-" if v.error or v.worst_output is None else v.worst_output[-24:])
    parts = [_table(headers, rows),
             f"\n{result.samples} samples, {result.calibration_samples} calibration samples; latency: median of "
             f"{result.latency_runs} interleaved batch-1 runs, {result.threads} thread(s)."]
    for w in result.warnings:
        parts.append(f"warning: {w}")
    for v in result.variants:
        for w in v.warnings:
            parts.append(f"{v.label}: {w}")
        if v.error:
            parts.append(f"{v.label}: FAILED: {v.error}")
    analysed = [v for v in result.variants if v.findings]
    if analysed:
        parts.append("\nfindings (compare --analyze; edgequant analyze MODEL for the full report):")
        for v in analysed:
            parts.append(f"{v.label}:\n" + findings_text(v.findings, indent="  "))
    for s in result.skipped:
        parts.append(f"skipped {s['scheme']}/{s['engine']}: {s['reason']}")
    return "\n".join(parts)


def write_compare_files(result: CompareResult, out: Path) -> None:
    """DIR/compare.json (schema in docs/compare-json.md) and DIR/compare.csv, written atomically."""
    atomic_dir_file(out / "compare.json", to_json(result))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for v in (result.float, *result.variants):
        row = v.to_dict()
        row["warnings"] = " | ".join(v.warnings)
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
    atomic_dir_file(out / "compare.csv", buf.getvalue())


def evaluation_text(ev: Evaluation) -> str:
    lines = [f"size: {ev.size.total_bytes:,} bytes, of which weights {ev.size.weight_bytes:,} "
             f"({', '.join(f'{k} {v:,}' for k, v in sorted(ev.size.weight_bytes_by_dtype.items()))})",
             f"I/O: {ev.input_dtype} in, {ev.output_dtype} out"]
    if ev.accuracy is not None:
        lines.append(f"top-1 accuracy: {ev.accuracy * 100:.2f}% on {ev.samples} samples")
    if ev.fidelity is not None:
        f = ev.fidelity
        worst = f" (worst of {len(ev.outputs)} outputs: '{ev.worst_output}')" if ev.worst_output else ""
        lines.append(f"fidelity vs reference{worst}: SQNR {_fmt(f.sqnr_db, '.2f', ' dB')}, cosine {f.cosine:.6f}, "
                     f"max abs error {f.max_abs_error:.6g}")
        if ev.worst_output:
            lines += [f"  output '{n}': SQNR {_fmt(o.sqnr_db, '.2f', ' dB')}, cosine {o.cosine:.6f}, max abs error "
                      f"{o.max_abs_error:.6g}" for n, o in ev.outputs.items()]
    if ev.latency is not None:
        lat = ev.latency
        lines.append(f"latency: median {lat.median_ms:.3f} ms, p90 {lat.p90_ms:.3f} ms "
                     f"({lat.runs} runs after {lat.warmup} warm-up, batch 1, {lat.threads} thread(s))")
    lines += [f"note: {n}" for n in ev.notes]
    return "\n".join(lines)


def stats_text(stats: Any, show: int = 8) -> str:
    """Summary of a CalibrationStats: what was seen, and each observer's range for the widest tensors."""
    from edgequant.calibrate import AUTO_CANDIDATES, compute_ranges

    lines = [f"{len(stats.tensors)} activation tensors over {stats.samples} samples (model sha256 "
             f"{stats.model_sha256[:12]})"]
    per_obs = {str(o): compute_ranges(stats, o, 8)[0] for o in AUTO_CANDIDATES}
    widest = sorted(stats.tensors.values(), key=lambda s: s.max - s.min, reverse=True)[:show]
    headers = ["tensor", "seen"] + list(per_obs)
    rows = [[s.name[-40:], f"[{s.min:.3g}, {s.max:.3g}]"] +
            [f"[{r[s.name][0]:.3g}, {r[s.name][1]:.3g}]" for r in per_obs.values()] for s in widest if s.count]
    lines.append(_table(headers, rows))
    bad = [s.name for s in stats.tensors.values() if s.nonfinite]
    if bad:
        lines.append(f"warning: NaN/Inf activations in {len(bad)} tensors, e.g. {bad[0]}")
    return "\n".join(lines)


def quantized_text(q: QuantizedModel) -> str:
    where = f" -> {q.path}" if q.path else ""
    lines = [f"{q.scheme.value} via {q.engine.value}: {len(q.tflite):,} bytes in {q.seconds:.1f} s{where}"]
    if q.recipe is not None:
        lines.append(f"recipe: {q.recipe.summary()}")
    lines += [f"note: {n}" for n in q.notes]
    return "\n".join(lines)
