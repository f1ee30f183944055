"""The report's sections, one builder per source kind: compare, tune, analysis, benchmark, provenance.

Builders read the JSON as written (documented in docs/compare-json.md, analyze.md, tune.md) and
tolerate fields an older edgequant did not write: a missing figure shows as "-" and is left off
the charts, never invented.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from edgequant.errors import InputError
from edgequant.report.charts import Layers, Point, Ranges, Scatter, Series, finite, pareto_front
from edgequant.report.html import Cell, Section, chart_div, esc, kv, table
from edgequant.report.sources import Source, SourceKind

__all__ = ["page_sections", "page_title"]


# --------------------------------------------------------------------------- formatting

def _num(value: Any, spec: str, suffix: str = "", scale: float = 1.0) -> Cell:
    v = finite(value)
    if v is None:
        return Cell("-", None)
    shown = int(round(v * scale)) if spec.endswith("d") else v * scale  # counts and ids print as integers
    return Cell(format(shown, spec) + suffix, round(v * scale, 9))


def _text(value: Any) -> Cell:
    return Cell("-" if value is None or value == "" else str(value), None)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


class _Ids:
    """Unique element ids across the page (two analyses of the same model must not share one)."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, *parts: str) -> str:
        base = "c-" + _slug("-".join(parts))
        name, n = base, 2
        while name in self.used:
            name, n = f"{base}-{n}", n + 1
        self.used.add(name)
        return name


def _findings(items: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Findings in plain words, each with the number's source; warnings first."""
    if not items:
        return '<p class="muted">No findings.</p>'
    ordered = sorted(items, key=lambda it: it[1].get("severity") != "warning")
    lis = []
    for who, f in ordered:
        sev = str(f.get("severity", "info"))
        prefix = f"{esc(who)}: " if who else ""
        source = f' <span class="source">({esc(f["source"])})</span>' if f.get("source") else ""
        message = esc(f.get("message", ""))
        lis.append(f'<li><span class="sev-{esc(sev)}">{esc(sev)}</span> {prefix}{message}{source}</li>')
    return f'<ul class="findings">{"".join(lis)}</ul>'


def _scatter(ids: _Ids, key: str, title: str, x_label: str, y_label: str, raw: Sequence[dict[str, Any]],
             groups: Sequence[str], tag_front: bool = True) -> Scatter | None:
    """Points from dicts with x, y, label, group, float, best; those missing a figure are left off.
    The Pareto front is over the points drawn (lower x, higher y)."""
    kept = [r for r in raw if finite(r.get("x")) is not None and finite(r.get("y")) is not None]
    if not kept:
        return None
    front = pareto_front([(float(r["x"]), float(r["y"])) for r in kept])
    points = tuple(Point(x=float(r["x"]), y=float(r["y"]), label=str(r["label"]), group=int(r.get("group", 0)),
                         float=bool(r.get("float")), best=bool(r.get("best")), front=i in front,
                         tip=str(r.get("tip", r["label"])), tag=str(r["label"]) if i in front and tag_front else "")
                   for i, r in enumerate(kept))
    return Scatter(ids(key), title, x_label, y_label, points, tuple(groups))


def _charts_html(charts: Sequence[Any], wide: bool = False) -> str:
    return '<div class="charts">' + "".join(chart_div(c, wide) for c in charts if c is not None) + "</div>"


# --------------------------------------------------------------------------- compare

def _variant_label(v: dict[str, Any]) -> str:
    return "float" if v.get("scheme") == "float" else f"{v.get('scheme')}/{v.get('engine')}"


def compare_section(src: Source, ids: _Ids) -> Section:
    d = src.data
    fl, variants = d["float"], [v for v in d.get("variants", []) if isinstance(v, dict)]
    rows_all = [fl] + variants
    labelled = finite(fl.get("accuracy")) is not None
    headers = ["variant", "size KiB", "x smaller", "gzip KiB", "accuracy %", "delta pt", "SQNR dB", "cosine",
               "latency ms", "x faster", "quantize s", "warnings / error"]
    rows, css = [], []
    for v in rows_all:
        ratio = finite(v.get("size_ratio"))
        rows.append([_text(_variant_label(v)), _num(v.get("size_bytes"), ",.1f", scale=1 / 1024),
                     _num(1 / ratio if ratio else None, ".2f", "x"), _num(v.get("gzip_bytes"), ",.1f", scale=1 / 1024),
                     _num(v.get("accuracy"), ".2f", scale=100), _num(v.get("accuracy_delta"), "+.2f", scale=100),
                     _num(v.get("sqnr_db"), ".1f"), _num(v.get("cosine"), ".5f"),
                     _num(v.get("latency_ms_median"), ".3f"), _num(v.get("speedup"), ".2f", "x"),
                     _num(v.get("quantize_seconds"), ".1f"),
                     _text(v.get("error") or "; ".join(v.get("warnings") or []) or "")])
        css.append("float" if v is fl else ("failed" if v.get("error") else ""))
    engines = sorted({str(v.get("engine")) for v in variants if not v.get("error")})
    metric_key, y_label = ("accuracy", "top-1 accuracy (%)") if labelled else ("sqnr_db", "output SQNR vs float (dB)")
    scale = 100 if labelled else 1

    def points(x_key: str, x_scale: float) -> list[dict[str, Any]]:
        pts = []
        for v in rows_all:
            if v.get("error"):
                continue
            is_float, engine = v is fl, str(v.get("engine"))
            y = finite(v.get(metric_key))
            x = finite(v.get(x_key))
            tip = f"{_variant_label(v)}\n{y_label}: {'-' if y is None else round(y * scale, 3)}"
            # Without labels the float model has no finite SQNR against itself: it is not drawn,
            # and the caption says so.
            pts.append({"x": None if x is None else x * x_scale, "y": None if y is None else y * scale,
                        "label": _variant_label(v), "float": is_float, "tip": tip,
                        "group": engines.index(engine) if engine in engines else 0})
        return pts

    name = src.path.parent.name or "compare"
    charts = [_scatter(ids, f"{name}-size", f"{y_label.split(' (')[0]} against size", "size (KiB)", y_label,
                       points("size_bytes", 1 / 1024), engines),
              _scatter(ids, f"{name}-latency", f"{y_label.split(' (')[0]} against latency",
                       "median batch-1 latency (ms)", y_label, points("latency_ms_median", 1.0), engines)]
    charts = [c for c in charts if c is not None]
    caption = ("Each point is a variant, coloured by engine; the float model is ringed. The dashed line joins the "
               "Pareto front: no other variant is both smaller (or faster) and more accurate.")
    if not labelled:
        caption += (" The data has no labels, so the charts show output SQNR; the float model (infinite SQNR) "
                    "is not drawn.")
    found = [(_variant_label(v), f) for v in variants for f in (v.get("findings") or []) if isinstance(f, dict)]
    found += [(_variant_label(v), {"severity": "warning", "message": w}) for v in variants
              for w in (v.get("warnings") or []) if not any(w == f.get("message") for f in v.get("findings") or [])]
    skipped = d.get("skipped") or []
    body = [kv([("model", d.get("model")), ("data", d.get("data")), ("samples", d.get("samples")),
                ("calibration samples", d.get("calibration_samples")), ("threads", d.get("threads")),
                ("latency runs", d.get("latency_runs")), ("file", str(src.path))]),
            f'<p class="muted">{esc(caption)}</p>', _charts_html(charts),
            "<h3>Variants</h3><p class=\"muted\">Click a column to sort.</p>",
            f'<div class="scroll">{table(headers, rows, css, text_cols=(0, 11))}</div>',
            "<h3>Findings</h3>", _findings(found)]
    if d.get("warnings"):
        body.append("<h3>Warnings</h3><ul>" + "".join(f"<li>{esc(w)}</li>" for w in d["warnings"]) + "</ul>")
    if skipped:
        items = "".join(f"<li>{esc(s.get('scheme'))}/{esc(s.get('engine'))}: {esc(s.get('reason'))}</li>"
                        for s in skipped)
        body.append(f"<h3>Not built</h3><ul>{items}</ul>")
    return Section(ids("sec", "compare", name)[2:], f"Variants: {d.get('model', '')}", "".join(body), tuple(charts))


# --------------------------------------------------------------------------- analysis

def analysis_section(src: Source, ids: _Ids) -> Section:
    d = src.data
    layers = [l for l in d.get("layers", []) if isinstance(l, dict)]
    names = tuple(f"{l.get('op')}#{l.get('index')}" for l in layers)
    layer_chart = Layers(ids(src.path.stem, "sqnr"), "SQNR by layer (graph order)", "layer", "SQNR vs float (dB)",
                         names, (Series("accumulated (error of every layer up to here)",
                                        tuple(finite(l.get("sqnr_db")) for l in layers)),
                                 Series("local (this layer alone, float inputs)",
                                        tuple(finite(l.get("local_sqnr_db")) for l in layers))), unit="dB")
    ranged = [l for l in layers if finite(l.get("range_min")) is not None and finite(l.get("range_max")) is not None]

    def span(l: dict[str, Any], lo: str, hi: str) -> tuple[float, float] | None:
        a, b = finite(l.get(lo)), finite(l.get(hi))
        return None if a is None or b is None else (a, b)

    range_chart = Ranges(ids(src.path.stem, "ranges"), "Float range against quantized range, per quantized layer",
                         "activation value", tuple(f"{l.get('op')}#{l.get('index')}" for l in ranged),
                         (Series("float min..max", spans=tuple(span(l, "float_min", "float_max") for l in ranged)),
                          Series("float 99.99% of values",
                                 spans=tuple(span(l, "p9999_min", "p9999_max") for l in ranged)),
                          Series("quantized range (scale x integer range)",
                                 spans=tuple(span(l, "range_min", "range_max") for l in ranged)))) if ranged else None
    charts = tuple(c for c in (layer_chart if layer_chart.marks() else None, range_chart) if c is not None)
    fid = d.get("fidelity") or {}
    acc, facc = finite(d.get("accuracy")), finite(d.get("float_accuracy"))
    summary = kv([("model", d.get("model")), ("reference", d.get("reference")), ("data", d.get("data")),
                  ("samples", d.get("samples")), ("scheme", d.get("scheme")),
                  ("top-1", None if acc is None else f"{acc * 100:.2f}% (float {facc * 100:.2f}%)" if facc is not None
                   else f"{acc * 100:.2f}%"),
                  ("output SQNR", None if finite(fid.get("sqnr_db")) is None else f"{fid['sqnr_db']:.1f} dB"),
                  ("cosine", fid.get("cosine")), ("file", str(src.path))])
    headers = ["rank", "layer", "dtype", "SQNR dB", "local dB", "inherited dB", "cosine", "max abs err", "scale",
               "zero point", "clipped %", "match", "tensor"]
    rows = [[_num(l.get("local_rank"), "d"), _text(n), _text(l.get("dtype")), _num(l.get("sqnr_db"), ".1f"),
             _num(l.get("local_sqnr_db"), ".1f"), _num(l.get("inherited_sqnr_db"), ".1f"), _num(l.get("cosine"), ".5f"),
             _num(l.get("max_abs_error"), ".4g"), _num(l.get("scale"), ".4g"), _num(l.get("zero_point"), "d"),
             _num(l.get("clipped_share"), ".3f", scale=100), _text(l.get("match")), _text(l.get("tensor"))]
            for n, l in zip(names, layers)]
    body = [summary, "<h3>Findings</h3>",
            _findings([("", f) for f in d.get("findings", []) if isinstance(f, dict)]),
            '<p class="muted">Accumulated SQNR compares each layer\'s output in the quantized model with the float '
            "model's; local SQNR runs the quantized layer alone on the float layer's inputs, so a drop in the local "
            "line is error this layer adds, not error it inherits.</p>", _charts_html(charts, wide=True),
            "<h3>Layers</h3>", f'<div class="scroll">{table(headers, rows, text_cols=(1, 2, 11, 12))}</div>']
    sens = d.get("sensitivity") or {}
    if sens.get("layers"):
        body.append("<h3>Sensitivity: each layer kept in float alone</h3>" + table(
            ["layer", "op", "local dB", "accuracy %", "SQNR dB", "gain"],
            [[_text(s.get("tensor")), _text(s.get("op")), _num(s.get("local_sqnr_db"), ".1f"),
              _num(s.get("accuracy"), ".2f", scale=100), _num(s.get("sqnr_db"), ".1f"), _num(s.get("gain"), "+.4f")]
             for s in sens["layers"]], text_cols=(0, 1)))
    rt = d.get("runtime") or {}
    if rt.get("ops"):
        body.append("<h3>Run time, op by op</h3>" + (f'<p class="muted">{esc(rt.get("op_timing", ""))}</p>') + table(
            ["#", "op", "role", "compute", "weights", "XNNPACK", "ms alone", "float ms alone"],
            [[_num(o.get("index"), "d"), _text(o.get("op")), _text(o.get("role")), _text(o.get("compute")),
              _text(o.get("weight_dtype")), _text({True: "yes", False: "no"}.get(o.get("xnnpack"), "-")),
              _num(o.get("time_ms"), ".4f"), _num(o.get("float_time_ms"), ".4f")] for o in rt["ops"]],
            text_cols=(1, 2, 3, 4, 5)))
    size = d.get("size") or {}
    if size.get("weight_bytes_by_dtype"):
        body.append("<h3>Where the bytes are</h3>" + table(
            ["dtype", "KiB"], [[_text(k), _num(v, ",.1f", scale=1 / 1024)]
                               for k, v in size["weight_bytes_by_dtype"].items()]))
    return Section(ids("sec", "analysis", src.path.stem)[2:], f"Layer by layer: {d.get('model', '')}", "".join(body),
                   charts)


# --------------------------------------------------------------------------- tune

_TUNE_METRIC = {"top1": ("accuracy", 100.0, "top-1 accuracy (%)"), "sqnr": ("sqnr_db", 1.0, "output SQNR (dB)"),
                "cosine": ("cosine", 1.0, "cosine vs float"), "task": ("task", 1.0, "task score (mean)")}


def tune_section(src: Source, ids: _Ids) -> Section:
    trials_doc, best_doc, recipe = src.data["trials"], src.data.get("best") or {}, src.data.get("recipe")
    run = trials_doc.get("run") or {}
    trials = [t for t in trials_doc.get("trials", []) if isinstance(t, dict)]
    key, scale, y_label = _TUNE_METRIC.get(str(run.get("metric")), _TUNE_METRIC["top1"])
    best_id = trials_doc.get("best")
    stages = sorted({str(t.get("stage")) for t in trials}, key=lambda s: [str(t.get("stage")) for t in trials].index(s))
    fl = trials_doc.get("float") or {}
    # The float model's own cosine is 1; its SQNR against itself is infinite and cannot be drawn.
    f_metric = finite(fl.get(key)) if key in ("accuracy", "task") else (1.0 if key == "cosine" else None)

    def points(x_key: str) -> list[dict[str, Any]]:
        pts: list[dict[str, Any]] = []
        if f_metric is not None:
            pts.append({"x": 1.0, "y": f_metric * scale, "label": "float", "float": True, "group": 0,
                        "tip": f"float\n{y_label}: {f_metric * scale:.3f}"})
        for t in trials:
            if t.get("status") != "ok":
                continue
            y = finite(t.get(key))
            pts.append({"x": t.get(x_key), "y": None if y is None else y * scale, "label": f"trial {t.get('id')}",
                        "best": t.get("id") == best_id, "group": stages.index(str(t.get("stage"))),
                        "tip": f"trial {t.get('id')}: {t.get('move')}\n{y_label}: "
                               f"{'-' if y is None else round(y * scale, 3)}"})
        return pts

    charts = tuple(c for c in (
        _scatter(ids, "tune-size", "Trials: metric against size", "size (x float)", y_label,
                 points("size_ratio"), stages),
        _scatter(ids, "tune-latency", "Trials: metric against latency", "latency (x float)", y_label,
                 points("latency_ratio"), stages)) if c is not None)
    budget = best_doc.get("budget") or {}
    status = ("budget met" if best_doc.get("met") else
              f"budget NOT met (short by {best_doc.get('shortfall')})" if best_doc else "-")
    summary = kv([("model", run.get("model")), ("data", run.get("data")), ("metric", run.get("metric")),
                  ("max drop", run.get("max_drop")), ("objective", run.get("objective")),
                  ("reference", None if finite(budget.get("reference")) is None else f"{budget['reference']:.4g}"),
                  ("trials", len(trials)), ("best trial", best_id),
                  ("result", status), ("stopped", best_doc.get("stopped")), ("folder", str(src.path.parent))])
    headers = ["id", "stage", "move", "status", "metric", "drop", "in budget", "size x", "latency x", "SQNR dB",
               "seconds", "accepted"]
    rows, css = [], []
    for t in trials:
        rows.append([_num(t.get("id"), "d"), _text(t.get("stage")), _text(t.get("move")),
                     _text(t.get("status") if t.get("status") == "ok" else f"{t.get('status')}: {t.get('error')}"),
                     _num(t.get("metric"), ".4f"), _num(t.get("drop"), "+.3f"),
                     _text({True: "yes", False: "no"}.get(t.get("meets_budget"), "-")),
                     _num(t.get("size_ratio"), ".3f"), _num(t.get("latency_ratio"), ".2f"),
                     _num(t.get("sqnr_db"), ".1f"), _num(t.get("seconds"), ".1f"),
                     _text({True: "yes", False: "stepped back"}.get(t.get("accepted"), "-"))])
        css.append("float" if t.get("id") == best_id else ("failed" if t.get("status") != "ok" else ""))
    caption = ("Every trial is a point, coloured by search stage; the float model and the chosen trial are ringed, "
               "and the dashed line is the Pareto front of the trials.")
    if f_metric is None:
        caption += " The float model's SQNR against itself is infinite, so it is not drawn."
    body = [summary, f'<p class="muted">{esc(caption)}</p>', _charts_html(charts)]
    if best_doc.get("explanation"):
        body.append("<h3>Why this model</h3><ul>" + "".join(f"<li>{esc(e)}</li>" for e in best_doc["explanation"])
                    + "</ul>")
    body += ["<h3>Trials</h3>", f'<div class="scroll">{table(headers, rows, css, text_cols=(1, 2, 3))}</div>']
    if recipe is not None:
        body.append("<h3>The chosen recipe</h3><p class=\"muted\">best-recipe.json: <code>edgequant quantize MODEL "
                    "--recipe best-recipe.json</code> rebuilds the chosen model.</p>"
                    f"<pre>{esc(json.dumps(recipe, indent=2))}</pre>")
    if best_doc.get("notes"):
        body.append("<h3>Notes</h3><ul>" + "".join(f"<li>{esc(n)}</li>" for n in best_doc["notes"]) + "</ul>")
    return Section(ids("sec", "tune", src.path.parent.name)[2:], f"Tune: {run.get('model', '')}", "".join(body), charts)


# --------------------------------------------------------------------------- benchmark

# The methods a reader compares; the eq-* ablation columns stay in the table only.
BENCH_CHART_METHODS = ("tf-converter", "litert-quantizer", "edgequant", "qat", "tuned")


def bench_section(src: Source, ids: _Ids) -> Section:
    d = src.data
    cells = [c for c in d.get("cells", []) if isinstance(c, dict)]
    methods = [m for m in BENCH_CHART_METHODS if any(c.get("method") == m for c in cells)]
    charts = []
    for model in d.get("models", []):
        name = str(model.get("name"))
        def points(x_key: str) -> list[dict[str, Any]]:
            pts: list[dict[str, Any]] = [{"x": 1.0, "y": 0.0, "label": "float", "float": True, "tip": "float"}]
            for c in cells:
                if c.get("model") != name or c.get("status") != "ok" or c.get("method") not in methods:
                    continue
                y = finite(c.get("accuracy_delta"))
                pts.append({"x": c.get(x_key), "y": None if y is None else y * 100,
                            "label": f"{c.get('scheme')}/{c.get('method')}", "group": methods.index(c["method"]),
                            "tip": f"{c.get('scheme')} / {c.get('method')}\ndelta "
                                   f"{'-' if y is None else f'{y * 100:+.2f}'} pt, SQNR "
                                   f"{'-' if finite(c.get('sqnr_db')) is None else round(c['sqnr_db'], 1)} dB"})
            return pts
        charts += [_scatter(ids, f"bench-{name}-size", f"{name}: accuracy change against size",
                            "size (x float)", "top-1 change (pt)", points("size_ratio"), methods),
                   _scatter(ids, f"bench-{name}-latency", f"{name}: accuracy change against latency",
                            "latency (x float)", "top-1 change (pt)", points("latency_ratio"), methods)]
    charts = [c for c in charts if c is not None]
    meta = d.get("meta") or {}
    summary_rows = []
    for scheme, s in (d.get("summary") or {}).items():
        for what in ("best_accuracy_delta", "best_sqnr"):
            wins = s.get(what) or {}
            summary_rows.append([_text(scheme), _text(what.replace("_", " ")), _num(s.get("models"), "d")]
                                + [_num(wins.get(m), "d") for m in ("tf-converter", "litert-quantizer", "edgequant")])
    headers = ["model", "scheme", "method", "status", "delta pt", "SQNR dB", "size x", "latency x", "quantize s",
               "note"]
    rows = [[_text(c.get("model")), _text(c.get("scheme")), _text(c.get("method")), _text(c.get("status")),
             _num(c.get("accuracy_delta"), "+.2f", scale=100), _num(c.get("sqnr_db"), ".1f"),
             _num(c.get("size_ratio"), ".3f"), _num(c.get("latency_ratio"), ".2f"),
             _num(c.get("quantize_seconds"), ".1f"), _text(c.get("reason"))] for c in cells]
    body = [kv([("date", meta.get("date")), ("commit", meta.get("commit")), ("machine", meta.get("machine")),
                ("calibration samples", meta.get("calibration_samples")), ("latency runs", meta.get("latency_runs")),
                ("seconds", meta.get("seconds")), ("file", str(src.path))]),
            '<p class="muted">One chart pair per zoo model: top-1 change against float (points) by size and latency '
            "as ratios of float, coloured by method; float is ringed at (1, 0).</p>", _charts_html(charts),
            "<h3>Wins per scheme</h3>" + table(["scheme", "figure", "models", "tf-converter", "litert-quantizer",
                                                "edgequant"], summary_rows, text_cols=(0, 1)),
            "<h3>Every cell</h3>", f'<div class="scroll">{table(headers, rows, text_cols=(0, 1, 2, 3, 9))}</div>']
    return Section(ids("sec", "bench", src.path.stem)[2:], f"Benchmark: {src.path.name}", "".join(body),
                   tuple(charts))


# --------------------------------------------------------------------------- provenance

def _provenance_of(src: Source) -> dict[str, Any] | None:
    if src.kind is SourceKind.TUNE:
        prov = (src.data.get("best") or {}).get("provenance") or (src.data["trials"].get("run") or {}).get("provenance")
    elif src.kind is SourceKind.BENCH:
        meta = src.data.get("meta") or {}
        return {"command": ["make", "bench"], "started": meta.get("date"), "versions": meta.get("versions") or {},
                "machine": {"machine": meta.get("machine"), "python": meta.get("python"),
                            "commit": meta.get("commit")}, "inputs": []}
    else:
        prov = src.data.get("provenance")
    return prov if isinstance(prov, dict) else None


def provenance_section(sources: Sequence[Source]) -> Section:
    parts = []
    for src in sources:
        prov = _provenance_of(src)
        parts.append(f"<h3>{esc(src.kind.value)}: {esc(src.path)}</h3>")
        if prov is None:
            parts.append('<p class="muted">Not recorded in this file (written by an edgequant before provenance '
                         "was kept).</p>")
            continue
        command = prov.get("command")
        parts.append(kv([("command", " ".join(command) if command else "Python API (no command line)"),
                         ("started", prov.get("started")), ("folder", prov.get("cwd"))]))
        inputs = [i for i in prov.get("inputs") or [] if isinstance(i, dict)]
        if inputs:
            parts.append(table(["input", "path", "sha256", "bytes"],
                               [[_text(i.get("role")), _text(i.get("path")), _text(i.get("sha256") or "not a file"),
                                 _num(i.get("bytes"), ",d")] for i in inputs], sortable=False, text_cols=(0, 1, 2)))
        versions = prov.get("versions") or {}
        machine = prov.get("machine") or {}
        parts.append(kv([(k, v) for k, v in versions.items()] + [(k, v) for k, v in machine.items()]))
    return Section("provenance", "How these results were made", "".join(parts))


# --------------------------------------------------------------------------- page

BUILDERS = {SourceKind.COMPARE: compare_section, SourceKind.ANALYSIS: analysis_section,
            SourceKind.TUNE: tune_section, SourceKind.BENCH: bench_section}


def page_sections(sources: Sequence[Source]) -> list[Section]:
    ids = _Ids()
    sections = []
    for s in sources:
        try:
            sections.append(BUILDERS[s.kind](s, ids))
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
            # Recognised by its keys, but a field has another shape: an edited or foreign file.
            raise InputError(f"{s.path}: expected {s.kind.value} JSON as edgequant writes it, found a field of "
                             f"another shape ({type(exc).__name__}: {exc})") from None
    try:
        return sections + [provenance_section(sources)]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"expected provenance as edgequant writes it, found a field of another shape "
                         f"({type(exc).__name__}: {exc})") from None


def page_title(sources: Sequence[Source]) -> tuple[str, str]:
    kinds = sorted({s.kind.value for s in sources})
    return "edgequant report", f"From {len(sources)} result file(s): {', '.join(kinds)}"
