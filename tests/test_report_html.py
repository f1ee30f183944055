"""The HTML report without a browser: sources, the Pareto front, what the page holds, and the CLI.

The page drawn in a real browser is tested in test_report_browser.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgequant.cli import main
from edgequant.errors import InputError
from edgequant.report.charts import pareto_front
from edgequant.report.html import write_report
from edgequant.report.sources import SourceKind, classify, find_sources

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "latest.json"


def _variant(scheme: str, engine: str, size: int, acc: float | None, latency: float | None,
             error: str | None = None, **extra: object) -> dict:
    row = {"scheme": scheme, "engine": engine, "io": "float", "path": None, "size_bytes": size,
           "weight_bytes": size, "size_ratio": size / 4000, "accuracy": acc,
           "accuracy_delta": None if acc is None else acc - 0.9, "sqnr_db": None if scheme == "float" else 30.0,
           "cosine": 0.99, "max_abs_error": 0.1, "latency_ms_median": latency, "latency_ms_p90": latency,
           "speedup": None, "gzip_bytes": None, "quantize_seconds": 1.0, "warnings": [], "notes": [],
           "error": error, "findings": []}
    row.update(extra)
    return row


def _compare_json(folder: Path, model: str = "m.keras") -> Path:
    data = {"model": model, "data": "d.npz", "samples": 10, "calibration_samples": 5, "threads": 1,
            "latency_runs": 3, "float": _variant("float", "keras", 4000, 0.9, 1.0),
            "variants": [_variant("int8", "litert", 1000, 0.89, 0.5),
                         _variant("dynamic", "litert", 1100, 0.91, 0.9,
                                  findings=[{"kind": "slow", "severity": "warning", "message": "slow because",
                                             "value": 1.2, "unit": "x", "source": "measured"}]),
                         _variant("w4a8", "litert", 600, 0.80, 0.4),
                         _variant("int16x8", "litert", 1200, 0.9, None),  # latency not measured
                         _variant("fp16", "tflite-converter", 0, None, None, error="converter failed")],
            "skipped": [{"scheme": "fp16", "engine": "litert", "reason": "not supported"}], "out_dir": str(folder),
            "warnings": ["no --calibration"], "provenance": None}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "compare.json"
    path.write_text(json.dumps(data))
    return path


def _chart_specs(html: str) -> list[dict]:
    block = re.search(r'<script type="application/json" id="eq-data">(.*?)</script>', html, re.S)
    assert block is not None
    return json.loads(block.group(1))["charts"]


def test_pareto_front_keeps_only_undominated_points() -> None:
    # (cost, quality): 0 dominates 3; 1 and 2 trade off; 4 equals 1 and stays with it.
    pts = [(1.0, 0.9), (2.0, 0.95), (0.5, 0.7), (1.5, 0.85), (2.0, 0.95)]
    assert pareto_front(pts) == {0, 1, 2, 4}
    assert pareto_front([]) == set()


def test_sources_are_recognised_by_content(tmp_path: Path) -> None:
    assert classify({"variants": [], "float": {}}) is SourceKind.COMPARE
    assert classify({"layers": [], "fidelity": {}}) is SourceKind.ANALYSIS
    assert classify({"trials": [], "run": {}}) is SourceKind.TUNE
    assert classify({"meta": {}, "cells": []}) is SourceKind.BENCH
    assert classify({"version": 1}) is None and classify([1, 2]) is None
    _compare_json(tmp_path / "run")
    (tmp_path / "run" / "renamed.json").write_text((tmp_path / "run" / "compare.json").read_text())
    (tmp_path / "run" / "other.json").write_text('{"unrelated": true}')
    kinds = [(s.kind, s.path.name) for s in find_sources(tmp_path / "run")]
    assert kinds == [(SourceKind.COMPARE, "compare.json"), (SourceKind.COMPARE, "renamed.json")]


def test_compare_page_holds_table_charts_findings_and_is_self_contained(tmp_path: Path) -> None:
    _compare_json(tmp_path / "run", model="<script>alert(1)</script>.keras")
    rep = write_report(tmp_path / "run")
    assert rep.path == str(tmp_path / "run" / "report.html")
    html = Path(rep.path).read_text(encoding="utf-8")
    # Built variants with size and accuracy, plus float; the failed one has no point.
    size_chart, latency_chart = _chart_specs(html)
    assert len(size_chart["points"]) == 1 + 4
    assert len(latency_chart["points"]) == 1 + 3  # int16x8 has no latency: left off, not plotted at 0
    assert [p["label"] for p in size_chart["points"] if p["float"]] == ["float"]
    front = {p["label"] for p in size_chart["points"] if p["front"]}
    assert front == {"w4a8/litert", "int8/litert", "dynamic/litert"}  # float (0.90 at 3.9 KiB) is dominated
    assert rep.charts == 2 and rep.marks == 5 + 4
    # Table: float + every variant, including the failed one with its error.
    assert html.count("<tr class=") == 1 + 5
    assert "converter failed" in html and "slow because" in html and "not supported" in html
    # The user's file names are escaped, in the page and in the chart data.
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Self-contained: nothing loads from anywhere, and the policy forbids it.
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "default-src 'none'" in html
    assert not list((tmp_path / "run").glob("*.part"))


def test_page_without_labels_plots_sqnr_and_says_float_is_off_the_chart(tmp_path: Path) -> None:
    path = _compare_json(tmp_path / "run")
    data = json.loads(path.read_text())
    for row in [data["float"], *data["variants"]]:
        row["accuracy"] = row["accuracy_delta"] = None
    path.write_text(json.dumps(data))
    html = Path(write_report(path).path).read_text(encoding="utf-8")
    size_chart = _chart_specs(html)[0]
    assert size_chart["y"]["label"].startswith("output SQNR")
    assert not any(p["float"] for p in size_chart["points"])
    assert "infinite SQNR" in html


def test_benchmark_results_make_one_chart_pair_per_model() -> None:
    data = json.loads(BENCH.read_text())
    [source] = find_sources(BENCH)
    assert source.kind is SourceKind.BENCH
    from edgequant.report.sections import page_sections

    sections = page_sections([source])
    charts = [c for s in sections for c in s.charts]
    assert len(charts) == 2 * len(data["models"])
    first = data["models"][0]["name"]
    shown = {"tf-converter", "litert-quantizer", "edgequant", "qat", "tuned"}
    cells = [c for c in data["cells"] if c["model"] == first and c["status"] == "ok" and c["method"] in shown
             and c["size_ratio"] is not None and c["accuracy_delta"] is not None]
    assert charts[0].marks() == 1 + len(cells)


def test_cli_report_writes_one_page_from_several_sources(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _compare_json(tmp_path / "a")
    out = tmp_path / "page.html"
    assert main(["report", str(tmp_path / "a"), str(BENCH), "-o", str(out), "--title", "mine"]) == 0
    said = capsys.readouterr().out
    assert f"report -> {out}" in said
    html = out.read_text(encoding="utf-8")
    assert "<title>mine</title>" in html and "Benchmark: latest.json" in html and "Variants: m.keras" in html


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing", "found no such path"),
    (lambda d: (d / "bad.json").write_text("{not json") and d / "bad.json", "expected JSON, found a syntax error"),
    (lambda d: (d / "x.json").write_text('{"a": 1}') and d / "x.json", "found JSON with a"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "found no .json file"),
    (lambda d: (d / "an.json").write_text('{"layers": [], "fidelity": {}, "sensitivity": [1]}') and d / "an.json",
     "expected analysis JSON as edgequant writes it, found a field of another shape"),
])
def test_cli_report_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                    make, expected: str) -> None:
    source = make(tmp_path)
    out = tmp_path / "r.html"
    assert main(["report", str(source), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgequant: error: ") and expected in err and "\n" not in err
    assert not out.exists()


def test_library_raises_input_error_not_system_exit(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        write_report(tmp_path / "nothing-here")


def test_names_that_close_the_script_survive_in_chart_data(tmp_path: Path) -> None:
    # A layer name is the user's: "</script>" or "<!--" in it must neither end the data block nor be lost.
    odd = "CONV</script><!--x"
    layer = {"index": 0, "op": odd, "tensor": "t", "dtype": "int8", "sqnr_db": 30.0, "local_sqnr_db": 31.0,
             "range_min": -1.0, "range_max": 1.0, "float_min": -0.9, "float_max": 1.2, "p9999_min": -0.8,
             "p9999_max": 1.0}
    analysis = {"model": "q.tflite", "reference": "f.keras", "data": "d.npz", "samples": 3, "scheme": "int8",
                "accuracy": None, "float_accuracy": None, "fidelity": {"sqnr_db": 30.0}, "layers": [layer],
                "findings": [{"severity": "warning", "message": "clipped </script>", "source": "layers"}]}
    path = tmp_path / "an.json"
    path.write_text(json.dumps(analysis))
    html = Path(write_report(path).path).read_text(encoding="utf-8")
    layers_chart, ranges_chart = _chart_specs(html)
    assert layers_chart["categories"] == [f"{odd}#0"] and ranges_chart["categories"] == [f"{odd}#0"]
    assert [s["values"] for s in layers_chart["series"]] == [[30.0], [31.0]]
    assert [s["spans"] for s in ranges_chart["series"]] == [[[-0.9, 1.2]], [[-0.8, 1.0]], [[-1.0, 1.0]]]
    assert html.count("</script>") == 2  # the data block's and the script's own, nothing from the names
