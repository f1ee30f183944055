"""The CLI end to end, in-process, as a user would run it on the demo CNN."""

import csv
import json

import numpy as np

from edgequant.cli import main
from edgequant.engines import ENGINES

REQUIRED = {"scheme", "engine", "path", "size_bytes", "size_ratio", "accuracy", "accuracy_delta", "sqnr_db",
            "latency_ms_median", "latency_ms_p90", "speedup", "warnings"}


def test_convert_quantize_run_eval(seed_cnn_path, digits, tmp_path, capsys) -> None:
    flt = tmp_path / "float.tflite"
    assert main(["convert", str(seed_cnn_path), "-o", str(flt)]) == 0
    assert flt.read_bytes()[4:8] == b"TFL3"
    # A float .tflite passes through convert after the check.
    again = tmp_path / "again.tflite"
    assert main(["convert", str(flt), "-o", str(again)]) == 0 and again.read_bytes() == flt.read_bytes()

    q = tmp_path / "int8.tflite"
    assert main(["quantize", str(seed_cnn_path), "--scheme", "int8", "--calibration", str(digits["calibration"]),
                 "--samples", "50", "--io", "int8", "-o", str(q)]) == 0
    out = capsys.readouterr().out
    assert "int8 via litert" in out and "note:" in out

    x = tmp_path / "x.npy"
    with np.load(digits["test"]) as z:
        np.save(x, z["x"][:5])
    y = tmp_path / "y.npy"
    assert main(["run", str(q), "--input", str(x), "-o", str(y)]) == 0
    out = capsys.readouterr().out
    assert "quantized from float" in out and "dequantized to float" in out and "top-1:" in out
    assert np.load(y).shape == (5, 10)

    js = tmp_path / "eval.json"
    assert main(["eval", str(q), "--data", str(digits["test"]), "--reference", str(flt), "--runs", "5",
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "top-1 accuracy" in out and "SQNR" in out and "median" in out and "1 thread" in out
    report = json.loads(js.read_text())
    assert report["latency"]["runs"] == 5 and report["size"]["weight_bytes"] > 0


def test_compare_writes_json_csv_and_models(seed_cnn_path, digits, tmp_path, capsys) -> None:
    out_dir = tmp_path / "cmp"
    code = main(["compare", str(seed_cnn_path), "--data", str(digits["test"]), "--calibration",
                 str(digits["calibration"]), "--samples", "50", "--schemes", "fp16,dynamic,int8",
                 "--runs", "10", "--out", str(out_dir)])
    assert code == 0
    table = capsys.readouterr().out
    # fp16 comes from both engines: TensorFlow's converter and LiteRT Quantizer's float casting.
    for label in ("float", "fp16/tflite-converter", "fp16/litert", "dynamic/litert", "int8/litert",
                  "int8/tflite-converter"):
        assert label in table
    data = json.loads((out_dir / "compare.json").read_text())
    assert {"model", "float", "variants"} <= set(data)
    assert data["float"]["scheme"] == "float" and REQUIRED <= set(data["float"])
    assert len(data["variants"]) == 6  # fp16 on both engines, dynamic and int8 on both
    for v in data["variants"]:
        assert REQUIRED <= set(v)
        assert (out_dir / v["path"].split("/")[-1]).exists()
        assert 0 < v["size_ratio"] < 0.6 and v["speedup"] > 0
    rows = list(csv.DictReader((out_dir / "compare.csv").open()))
    assert [r["scheme"] for r in rows][0] == "float" and len(rows) == 7


def test_demo_runs_end_to_end(tmp_path, capsys) -> None:
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out", str(out_dir), "--epochs", "2", "--runs", "5"]) == 0
    data = json.loads((out_dir / "compare.json").read_text())
    pairs = {(v["scheme"], v["engine"]) for v in data["variants"]}
    supported = {(s.value, e.value) for e, eng in ENGINES.items() for s in eng.schemes}
    # Seed 003's QAT row and seed 002's pruning (then int8) come after every (scheme, engine) pair.
    extra = {("int8", "qat"), ("int8", "pruned-litert")}
    assert pairs == supported | extra and ("fp16", "tflite-converter") in pairs and ("weight-only-int4", "litert") in pairs
    assert [(v["scheme"], v["engine"]) for v in data["variants"][-2:]] == [("int8", "qat"), ("int8", "pruned-litert")]
    assert data["float"]["accuracy"] > 0.8
    rows = {(v["scheme"], v["engine"]): v for v in data["variants"]}
    assert all(rows[p]["error"] is None and rows[p]["accuracy"] > 0.8 for p in extra)
    # Pruning shows in the compressed size only: 80% zeros make the int8 model much smaller after gzip.
    assert rows[("int8", "pruned-litert")]["gzip_bytes"] < 0.6 * rows[("int8", "litert")]["gzip_bytes"]
    assert (out_dir / "seed_cnn_pruned.keras").exists() and (out_dir / "int8-qat.tflite").exists()
    # The demo's page, and how the run was made: the command and the files it trained on, by hash.
    assert f"report -> {out_dir / 'report.html'}" in capsys.readouterr().out
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert html.count('class="chart"') == 2 and "int8/pruned-litert" in html
    prov = data["provenance"]
    assert prov["command"][:2] == ["edgequant", "demo"]
    assert {i["role"] for i in prov["inputs"]} == {"model", "data", "calibration"}
    assert all(len(i["sha256"]) == 64 for i in prov["inputs"])


def test_usage_error_is_exit_2(capsys) -> None:
    assert main(["quantize"]) == 2


def test_compare_on_a_tflite_source_skips_the_converter(float_tflite, digits, tmp_path, capsys) -> None:
    out_dir = tmp_path / "cmp"
    assert main(["compare", str(float_tflite), "--data", str(digits["test"]), "--schemes", "dynamic",
                 "--runs", "3", "--out", str(out_dir)]) == 0
    data = json.loads((out_dir / "compare.json").read_text())
    assert [v["engine"] for v in data["variants"]] == ["litert"]
    assert data["skipped"][0]["engine"] == "tflite-converter" and "Keras or SavedModel" in data["skipped"][0]["reason"]
    assert data["warnings"] == []  # dynamic needs no calibration, so no calibration warning
    assert (out_dir / "report.html").exists()  # on by default


def test_no_report_writes_no_page(seed_cnn_path, digits, tmp_path, capsys) -> None:
    out_dir = tmp_path / "cmp"
    assert main(["compare", str(seed_cnn_path), "--data", str(digits["test"]), "--schemes", "dynamic",
                 "--engines", "litert", "--runs", "0", "--no-report", "--out", str(out_dir)]) == 0
    assert (out_dir / "compare.json").exists() and not (out_dir / "report.html").exists()
    assert main(["analyze", str(out_dir / "dynamic-litert.tflite"), "--reference", str(seed_cnn_path), "--data",
                 str(digits["test"]), "--samples", "50", "--top-k", "0", "--runs", "0", "--no-report",
                 "--json", str(tmp_path / "an.json")]) == 0
    assert (tmp_path / "an.json").exists() and not (tmp_path / "an.html").exists()
    assert "report ->" not in capsys.readouterr().out


def test_compare_rejects_bad_measurement_options(float_tflite, digits, tmp_path, capsys) -> None:
    for opt in (["--runs", "-1"], ["--threads", "0"]):
        code = main(["compare", str(float_tflite), "--data", str(digits["test"]), "--out", str(tmp_path / "o"), *opt])
        assert code == 2 and opt[0] in capsys.readouterr().err
        assert not (tmp_path / "o").exists()


def test_a_reader_that_closes_early_gets_no_traceback(tmp_path) -> None:
    """`edgequant runs list | head -1`: the pipe closes before edgequant writes; it stops as SIGPIPE would."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, EDGEQUANT_REGISTRY=str(tmp_path / "runs.sqlite3"))
    proc = subprocess.Popen([sys.executable, "-m", "edgequant", "runs", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err
