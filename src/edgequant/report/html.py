"""The self-contained HTML report: one file, styles, script and data inline, no network to open it.

A page is a list of sections (one per source, then provenance). Tables are HTML; charts are
descriptions (report/charts.py) that the inline script draws as SVG. Everything a reader sees is
escaped here, since model, layer and file names come from the user's files.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from edgequant._util import atomic_dir_file
from edgequant.errors import InputError
from edgequant.report.charts import Chart
from edgequant.report.sources import Source, find_sources
from edgequant.types import Record

__all__ = ["Section", "Cell", "ReportFile", "render_page", "write_report", "write_report_for", "table", "kv",
           "default_output"]


def esc(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


@dataclasses.dataclass(frozen=True)
class Cell:
    """A table cell: what is shown, and the value it sorts by (a number where there is one)."""

    text: str
    sort: float | str | None = None
    css: str = ""


@dataclasses.dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    body: str  # HTML
    charts: tuple[Chart, ...] = ()


@dataclasses.dataclass(frozen=True)
class ReportFile(Record):
    """What ``edgequant report`` wrote."""

    path: str
    sources: tuple[str, ...]  # "kind: file" for every source read
    sections: tuple[str, ...]
    charts: int
    marks: int  # data marks the charts hold (points, bars)
    bytes: int


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell | str]], row_css: Sequence[str] | None = None,
          sortable: bool = True, text_cols: Sequence[int] = ()) -> str:
    """An HTML table; sortable tables sort by each cell's ``sort`` value when a header is clicked."""
    out = [f'<table class="{"sortable" if sortable else ""}"><thead><tr>']
    out += [f'<th class="{"text" if i in text_cols else ""}">{esc(h)}</th>' for i, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for r, row in enumerate(rows):
        css = row_css[r] if row_css and r < len(row_css) else ""
        out.append(f'<tr class="{esc(css)}">')
        for i, cell in enumerate(row):
            c = cell if isinstance(cell, Cell) else Cell(str(cell))
            sort = "" if c.sort is None else f' data-v="{esc(c.sort)}"'
            klass = " ".join(x for x in (c.css, "text" if i in text_cols else "") if x)
            out.append(f'<td class="{klass}"{sort}>{esc(c.text)}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if v is not None and v != "")
    return f'<dl class="kv">{items}</dl>'


def chart_div(chart: Chart, wide: bool = False) -> str:
    return (f'<div class="chart{" wide" if wide else ""}"><h4>{esc(chart.title)}</h4>'
            f'<div id="{esc(chart.id)}" data-title="{esc(chart.title)}" data-expected="{chart.marks()}"></div></div>')


def _asset(name: str) -> str:
    return resources.files("edgequant.report").joinpath("assets", name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    # "</script>" or "<!--" in a name would end or confuse the <script> element; in JSON every "<"
    # may be written as \u003c, which parses back to the same string.
    return json.dumps(data, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")


def render_page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    charts = [c for s in sections for c in s.charts]
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    data = {"charts": [c.spec() for c in charts]}
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            # Nothing on this page may load from the network: it is opened from disk, often offline.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
            f"<title>{esc(title)}</title><style>{_asset('report.css')}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p><nav>{nav}</nav></header><main>"
            "<noscript><p>The charts need JavaScript; the tables below hold every figure.</p></noscript>"
            f"{body}</main>"
            f"<script type=\"application/json\" id=\"eq-data\">{_script_json(data)}</script>"
            f"<script>{_asset('report.js')}</script></body></html>\n")


def default_output(path: Path) -> Path:
    """report.html inside a folder, or beside a JSON file with its stem (an.json -> an.html)."""
    path = Path(path)
    return path / "report.html" if path.is_dir() else path.with_suffix(".html")


def write_report_for(sources: Sequence[Source], output: Path, title: str | None = None) -> ReportFile:
    """Render ``sources`` into one page at ``output`` (written atomically)."""
    from edgequant.report.sections import page_sections, page_title

    sections = page_sections(sources)
    heading, subtitle = page_title(sources)
    text = render_page(title or heading, subtitle, sections)
    atomic_dir_file(Path(output), text)
    charts = [c for s in sections for c in s.charts]
    return ReportFile(path=str(output), sources=tuple(f"{s.kind.value}: {s.path}" for s in sources),
                      sections=tuple(s.title for s in sections), charts=len(charts),
                      marks=sum(c.marks() for c in charts), bytes=len(text.encode("utf-8")))


def write_report(source: str | Path | Sequence[str | Path], output: str | Path | None = None,
                 title: str | None = None) -> ReportFile:
    """One HTML page from the JSON that compare, analyze, tune or the benchmark wrote.

    ``source`` is a folder (every result JSON in it, and a tune run's files), one JSON file, or a
    list of those. ``output`` defaults to DIR/report.html, or FILE.html beside a JSON file (the
    first source's).
    """
    paths = [Path(source)] if isinstance(source, (str, Path)) else [Path(s) for s in source]
    if not paths:
        raise InputError("report: expected at least one folder or JSON file, found none")
    sources = [s for p in paths for s in find_sources(p)]
    # The same file named twice (a folder and a file in it) is one source.
    unique = list({s.path.resolve(): s for s in sources}.values())
    return write_report_for(unique, Path(output) if output is not None else default_output(paths[0]), title)
