"""The terminal text of ``edgequant runs``: the list, one run in full, and two runs' differences.
Only strings; the CLI prints them."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from edgequant.registry.diff import flatten
from edgequant.registry.records import Change, RunDiff, RunRecord, RunStatus, VariantRecord

__all__ = ["runs_table", "run_text", "diff_text", "short_command"]


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _delta(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:+,}"
    return f"{v:+.6g}"


def _table(headers: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _when(iso: str | None) -> str:
    # Stored as ISO 8601 UTC ("2025-06-01T10:00:00+00:00"); the table says UTC once in its header.
    return "-" if not iso else iso.replace("T", " ").removesuffix("+00:00")


def short_command(argv: tuple[str, ...], width: int = 60) -> str:
    """The command line with paths cut to their file names, cut to ``width`` characters."""
    words = [PurePath(a).name if "/" in a and not a.startswith("-") else a for a in argv[1:]]
    text = " ".join(words)
    return text if len(text) <= width else text[:width - 3] + "..."


def _summary(run: RunRecord) -> str:
    """One variant's headline figures: the first quantized one (compare lists float first)."""
    if run.status is RunStatus.FAILED:
        return f"error: {(run.error or '')[:50]}"
    if not run.variants:
        return "-"
    v = next((v for v in run.variants if v.label != "float" and v.error is None), run.variants[0])
    m = v.metrics
    parts = [v.label]
    if m.get("size_bytes") is not None:
        parts.append(f"{m['size_bytes'] / 1024:,.1f} KiB")
    if m.get("accuracy") is not None:
        parts.append(f"top-1 {m['accuracy'] * 100:.2f}%")
    if m.get("sqnr_db") is not None:
        parts.append(f"{m['sqnr_db']:.1f} dB")
    if m.get("latency_ms_median") is not None:
        parts.append(f"{m['latency_ms_median']:.3f} ms")
    return " ".join(parts)


def runs_table(runs: tuple[RunRecord, ...], where: str) -> str:
    if not runs:
        return f"no runs recorded in {where}"
    rows = [[str(r.id), _when(r.started), r.status.value, short_command(r.argv) or r.command,
             str(len(r.variants)), _summary(r)] for r in runs]
    table = _table(["id", "started (UTC)", "status", "command", "variants", "summary"], rows, right=(0, 4))
    return f"{table}\n\n{len(runs)} run(s) from {where}; 'edgequant runs show ID' for one in full."


def _variant_lines(v: VariantRecord) -> list[str]:
    lines = [f"  {v.label}" + (f"  FAILED: {v.error}" if v.error else "")]
    lines.append(f"    path     {v.path or '-'}")
    if v.artifact is not None:
        lines.append(f"    stored   {v.artifact.object} ({v.artifact.bytes:,} bytes, sha256 {v.artifact.sha256})")
    if v.recipe:
        lines.append("    recipe   " + ", ".join(f"{k}={_value(x)}" for k, x in flatten(v.recipe).items()))
    shown = {k: x for k, x in v.metrics.items() if x is not None}
    if shown:
        lines.append("    metrics  " + ", ".join(f"{k} {_value(x)}" for k, x in shown.items()))
    return lines


def run_text(run: RunRecord) -> str:
    exit_text = f" (exit {run.exit_code})" if run.exit_code is not None else ""
    lines = [f"run {run.id}: {run.command}, {run.status.value}{exit_text}",
             f"command   {' '.join(run.argv)}",
             f"cwd       {run.cwd}",
             f"started   {_when(run.started)} UTC" + (f", finished {_when(run.finished)} UTC" if run.finished else ""),
             f"process   pid {run.pid} on {run.host}"]
    if run.status is RunStatus.INCOMPLETE:
        lines.append("note      its process ended before the run finished (killed or crashed): no variants")
    if run.error:
        lines.append(f"error     {run.error}")
    lines.append("inputs")
    for i in run.inputs:
        digest = f"sha256 {i.sha256} ({i.bytes:,} bytes)" if i.sha256 else "not a file on disk"
        lines.append(f"  {i.role:<12s} {i.path}  {digest}")
    if not run.inputs:
        lines.append("  -")
    lines.append("versions  " + ", ".join(f"{k} {v or '-'}" for k, v in run.versions.items()))
    lines.append("machine   " + ", ".join(f"{k} {_value(v)}" for k, v in run.machine.items()))
    lines.append("recipe" + ("" if run.recipe else "    -"))
    lines += [f"  {k}: {_value(v)}" for k, v in flatten(run.recipe).items()]
    lines.append("variants" + ("" if run.variants else "  -"))
    for v in run.variants:
        lines += _variant_lines(v)
    return "\n".join(lines)


def _changes(title: str, changes: tuple[Change, ...], a: int, b: int) -> list[str]:
    if not changes:
        return []
    rows = [[c.key, _value(c.a), _value(c.b)] for c in changes]
    table = _table(["key", f"run {a}", f"run {b}"], rows)
    return ["", title] + ["  " + line for line in table.splitlines()]


def diff_text(d: RunDiff) -> str:
    lines = [f"run {d.a} (A) vs run {d.b} (B): differences only; metrics of shared variants in full"]
    if d.command is not None:
        lines.append(f"command: {d.command.a} vs {d.command.b}")
    lines += _changes("recipe", d.recipe, d.a, d.b)
    lines += _changes("inputs (sha256 of the content; '-': not given)", d.inputs, d.a, d.b)
    lines += _changes("versions", d.versions, d.a, d.b)
    lines += _changes("machine", d.machine, d.a, d.b)
    if not (d.command or d.recipe or d.inputs or d.versions or d.machine):
        lines.append("same command, recipe, inputs, versions and machine")
    for v in d.variants:
        same = {True: "byte-identical models", False: "different model bytes", None: "model not stored"}[v.same_bytes]
        rows = [[m.name, _value(m.a), _value(m.b), _delta(m.delta)] for m in v.metrics if m.a is not None
                or m.b is not None]
        lines += ["", f"variant {v.label} ({same})"]
        lines += ["  " + line for line in _table(["metric", "A", "B", "B - A"], rows, right=(1, 2, 3)).splitlines()]
        for c in v.recipe:
            lines.append(f"  recipe {c.key}: {_value(c.a)} vs {_value(c.b)}")
    if d.only_a:
        lines += ["", f"only in run {d.a}: " + ", ".join(d.only_a)]
    if d.only_b:
        lines += ["", f"only in run {d.b}: " + ", ".join(d.only_b)]
    return "\n".join(lines)
