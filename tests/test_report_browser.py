"""The HTML report in a real browser: Debian's Chromium (installed by `make test`), driven headless.

Real outputs of compare, analyze and tune on the seed CNN are turned into reports by the commands
themselves (the report is on by default), then each page is opened from disk. For every chart the
test checks that Chromium drew as many marks as the data holds, and for the compare charts that
number is counted independently from compare.json. It also checks that the page logs no console
error, asks for nothing over the network, and sorts its table on a click. Screenshots go to
test-artifacts/ (or $EDGEQUANT_TEST_ARTIFACTS) for a person to look at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgequant.cli import main

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Without the networking switches Chromium phones home at start-up, which a closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]
ARTIFACTS = Path(os.environ.get("EDGEQUANT_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: `make test` installs Debian's chromium package (run `make browser`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, seed_cnn_path: Path, digits: dict[str, Path]) -> Path:
    """compare, analyze and tune run through the CLI, each writing its report by default."""
    out = tmp_path_factory.mktemp("report")
    common = ["--data", str(digits["test"]), "--calibration", str(digits["calibration"])]
    assert main(["compare", str(seed_cnn_path), *common, "--schemes", "int8,dynamic,w4a8,fp16",
                 "--engines", "all", "--runs", "5", "--out", str(out / "cmp")]) == 0
    assert main(["analyze", str(out / "cmp" / "w4a8-litert.tflite"), "--reference", str(seed_cnn_path), "--data",
                 str(digits["test"]), "--samples", "120", "--top-k", "1", "--runs", "5",
                 "--json", str(out / "cmp" / "w4a8-analysis.json")]) == 0
    assert main(["tune", str(seed_cnn_path), *common, "--max-drop", "5", "--schemes", "int8,w4a8", "--trials", "3",
                 "--runs", "5", "--out", str(out / "tune")]) == 0
    return out


def _open(browser, page_path: Path, shot: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_path.resolve().as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    charts = page.evaluate("""() => Array.from(document.querySelectorAll('[data-expected]')).map(d => ({
        id: d.id, expected: Number(d.getAttribute('data-expected')), reported: Number(d.getAttribute('data-marks')),
        drawn: d.querySelectorAll('svg .mark').length,
        width: d.querySelector('svg') ? d.querySelector('svg').getBoundingClientRect().width : 0}))""")
    return page, charts, problems, [u for u in requests if not u.startswith("file:")]


def _check_drawn(charts: list[dict], count: int) -> None:
    assert len(charts) == count
    for c in charts:
        assert c["drawn"] > 0 and c["width"] > 100, c
        assert c["drawn"] == c["expected"] == c["reported"], c


def test_compare_report_draws_every_variant(browser, outputs: Path) -> None:
    page, charts, problems, remote = _open(browser, outputs / "cmp" / "report.html", "report-compare.png")
    assert problems == [] and remote == []
    _check_drawn(charts, 2)
    data = json.loads((outputs / "cmp" / "compare.json").read_text())
    built = [v for v in data["variants"] if v["error"] is None]
    assert len(built) == 7  # int8, dynamic, w4a8, fp16 on litert; int8, dynamic, fp16 on the converter
    # Independent count: float plus every built variant, on both charts (all were timed).
    assert [c["drawn"] for c in charts] == [1 + len(built)] * 2
    assert page.locator("svg circle.float").count() == 2
    # Sorting: a click on "size KiB" puts the smallest model first, a second click the largest.
    header = page.locator("section").first.locator("th", has_text="size KiB")
    header.click()
    sizes = page.locator("section").first.locator("table.sortable tbody tr td:nth-child(2)").all_inner_texts()
    values = [float(s.replace(",", "")) for s in sizes]
    assert values == sorted(values)
    header.click()
    sizes = page.locator("section").first.locator("table.sortable tbody tr td:nth-child(2)").all_inner_texts()
    assert [float(s.replace(",", "")) for s in sizes] == sorted(values, reverse=True)
    page.close()


def test_analysis_report_draws_sqnr_by_layer_and_ranges(browser, outputs: Path) -> None:
    page, charts, problems, remote = _open(browser, outputs / "cmp" / "w4a8-analysis.html", "report-analysis.png")
    assert problems == [] and remote == []
    _check_drawn(charts, 2)
    an = json.loads((outputs / "cmp" / "w4a8-analysis.json").read_text())
    accumulated = sum(l["sqnr_db"] is not None for l in an["layers"])
    local = sum(l["local_sqnr_db"] is not None for l in an["layers"])
    assert charts[0]["drawn"] == accumulated + local
    assert page.locator("ul.findings li").count() == len(an["findings"])
    page.close()


def test_tune_and_combined_reports(browser, outputs: Path, tmp_path: Path) -> None:
    page, charts, problems, remote = _open(browser, outputs / "tune" / "report.html", "report-tune.png")
    assert problems == [] and remote == []
    _check_drawn(charts, 2)
    assert page.locator("svg circle.best").count() == 2
    assert '"scheme"' in page.locator("pre").first.inner_text()  # the chosen recipe
    page.close()
    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "latest.json"
    combined = tmp_path / "all.html"
    assert main(["report", str(outputs / "cmp"), str(outputs / "tune"), str(bench), "-o", str(combined)]) == 0
    page, charts, problems, remote = _open(browser, combined, "report-combined.png")
    assert problems == [] and remote == []
    models = len(json.loads(bench.read_text())["models"])
    _check_drawn(charts, 2 + 2 + 2 + 2 * models)  # compare, analysis, tune, and a pair per benchmark model
    assert page.locator("#provenance").inner_text().count("sha256") >= 3
    page.close()
