"""benchmarks: the --quick run produces a complete, well-formed result (shape, not timings)."""

import json

import numpy as np
import pytest

from benchmarks.__main__ import main
from benchmarks.methods import METHODS, NotApplicable, get_method
from benchmarks.run import HEADLINE, PEERS, QUICK_MODELS, QUICK_SCHEMES, Cell, paired_summary, summarize


def test_quick_run_has_every_cell(tmp_path, capsys) -> None:
    out = tmp_path / "results"
    assert main(["--quick", "--runs", "3", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    result = json.loads((out / "quick.json").read_text())
    assert [m["name"] for m in result["models"]] == list(QUICK_MODELS)
    cells = result["cells"]
    expected = {(m, s, k) for m in QUICK_MODELS for s in QUICK_SCHEMES for k, meth in METHODS.items()
                if meth.applies_to is None or s in meth.applies_to}
    assert len(cells) == len(expected)
    assert {(c["model"], c["scheme"], c["method"]) for c in cells} == expected
    for c in cells:
        assert c["status"] in ("ok", "n/a", "error")
        if c["status"] == "ok":
            assert 0 <= c["accuracy"] <= 1 and 0 < c["size_ratio"] < 1 and c["latency_ratio"] > 0
            assert c["quantize_seconds"] > 0
        else:
            assert c["reason"]
    # dynamic and int8 are within every method's reach on these models.
    assert all(c["status"] == "ok" for c in cells)
    for scheme in QUICK_SCHEMES:
        s = result["summary"][scheme]
        in_scheme = {k for _, sch, k in expected if sch == scheme}
        # The headline ranks the peers against edgequant's default; ablations are ranked over every column.
        assert s["models"] == len(QUICK_MODELS) and set(s["best_sqnr"]) == in_scheme & set(HEADLINE)
        assert set(s["all_methods"]["best_sqnr"]) == in_scheme
        assert sum(s["best_accuracy_delta"].values()) >= len(QUICK_MODELS)  # at least one winner per model
        assert sum(s["fewest_changed"].values()) >= len(QUICK_MODELS)
    # Every cell counts the images whose top-1 moved away from float's, and edgequant is compared image by
    # image with each peer: the counts must agree with the cells' accuracies.
    by_key = {(c["model"], c["scheme"], c["method"]): c for c in cells}
    pairs = result["paired"]["pairs"]
    assert {(p["model"], p["scheme"], p["peer"]) for p in pairs} == {
        (m, s, peer) for m in QUICK_MODELS for s in QUICK_SCHEMES for peer in PEERS}
    for p in pairs:
        eq, peer = by_key[(p["model"], p["scheme"], "edgequant")], by_key[(p["model"], p["scheme"], p["peer"])]
        assert 0 <= eq["changed"] <= p["samples"] and 0 <= peer["changed"] <= p["samples"]
        assert p["a_only"] - p["b_only"] == round((eq["accuracy"] - peer["accuracy"]) * p["samples"])
        assert 0 < p["p_value"] <= 1
    memory = result["calibration_memory"]
    assert [r["model"] for r in memory] == list(QUICK_MODELS)
    for r in memory:  # issue 4's bound: calibration on 1,000 samples stays under 2 GB
        assert r["samples"] == 1000 and r["tensors"] > 0 and 0 < r["peak_rss_mb"] < 2048
    md = (out / "quick.md").read_text()
    assert "## Calibration memory" in md
    # one row each in the float-models and memory tables, one per (scheme, method) cell, one per scheme image by image
    assert "## Summary" in md and md.count("| seed_cnn |") == (2 + sum(1 for m, _, _ in expected if m == "seed_cnn")
                                                               + len(QUICK_SCHEMES))
    assert "## Image by image" in md
    assert "best accuracy delta" in capsys.readouterr().out


def test_peers_say_what_they_cannot_do(tmp_path) -> None:
    with pytest.raises(NotApplicable, match="4-bit"):
        get_method("tf-converter").build(tmp_path / "m.keras", "w4a8", None)
    with pytest.raises(NotApplicable, match="float16"):
        get_method("litert-quantizer").build(tmp_path / "m.keras", "fp16", None)
    with pytest.raises(KeyError, match="edgequant"):
        get_method("onnxruntime")


def test_summary_counts_ties_for_every_tied_method() -> None:
    cells = [Cell("m", "int8", "a", "ok", accuracy_delta=0.0, sqnr_db=30.0),
             Cell("m", "int8", "b", "ok", accuracy_delta=0.0, sqnr_db=30.02),
             Cell("m", "int8", "c", "error", reason="boom")]
    s = summarize(cells, ["int8"], ["a", "b", "c"])["int8"]  # no headline method: every column ranks
    assert s["best_accuracy_delta"] == {"a": 1, "b": 1, "c": 0}
    assert s["best_sqnr"] == {"a": 1, "b": 1, "c": 0}


def test_paired_summary_needs_chance_ruled_out() -> None:
    def pair(model, peer, a_only, b_only, p):
        return {"model": model, "scheme": "int8", "peer": peer, "a_only": a_only, "b_only": b_only, "p_value": p}

    pairs = [pair("even", "x", 1, 2, 1.0), pair("even", "y", 0, 0, 1.0),        # one image: chance
             pair("behind", "x", 0, 8, 0.008), pair("behind", "y", 3, 0, 0.25),  # clearly behind x
             pair("ahead", "x", 9, 0, 0.004), pair("ahead", "y", 7, 0, 0.016),   # clearly ahead of both
             pair("half", "x", 9, 0, 0.004), pair("half", "y", 1, 0, 1.0)]       # ahead of x only
    s = paired_summary(pairs, ["int8"])["int8"]
    assert s == {"models": 4, "behind": ["behind"], "ahead": ["ahead"]}


def test_unknown_scheme_is_exit_2(tmp_path, capsys) -> None:
    assert main(["--schemes", "int3", "--models", "seed_mlp", "--out", str(tmp_path)]) == 2
    assert "expected one of" in capsys.readouterr().err


def test_shifted_heldout_is_nine_labelled_copies() -> None:
    from benchmarks.shifted import shifted_heldout

    x = np.zeros((2, 5, 5, 1), np.float32)
    x[0, 2, 2, 0] = 1.0
    x[1, 1, 3, 0] = 1.0
    images, labels = shifted_heldout(x, np.array([3, 7]))
    assert images.shape == (18, 5, 5, 1) and list(labels) == [3, 7] * 9
    # Each copy of the first image holds its one pixel at a distinct neighbour of (2, 2), the original included.
    spots = {tuple(np.argwhere(images[i, ..., 0])[0]) for i in range(0, 18, 2)}
    assert spots == {(2 + dy, 2 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def test_replicates_aggregate_means_and_counts_in_images() -> None:
    from benchmarks.replicates import aggregate

    def row(rep, method, delta_images, changed, sqnr=40.0):
        return {"model": "m", "replicate": rep, "method": method, "accuracy_delta": delta_images / 450,
                "changed": changed, "sqnr_db": sqnr, "test_samples": 450, "float_accuracy": 0.97}

    rows = [row(0, "tf-converter", 1, 3), row(0, "litert-quantizer", -1, 5), row(0, "edgequant", 0, 1),
            row(1, "tf-converter", -2, 4), row(1, "litert-quantizer", 0, 2), row(1, "edgequant", 0, 0, None)]
    (m,) = aggregate(rows, ["tf-converter", "litert-quantizer", "edgequant"])
    eq = m["methods"]["edgequant"]
    assert eq["mean_delta_pt"] == 0 and eq["mean_changed"] == 0.5 and eq["mean_sqnr_db"] == 40.0
    assert m["methods"]["tf-converter"]["mean_delta_pt"] == pytest.approx(-0.5 / 4.5)
    assert m["methods"]["tf-converter"]["sd_delta_pt"] == pytest.approx(np.std([1 / 4.5, -2 / 4.5], ddof=1))
    # replicate 0: the converter's +1 image beats edgequant; replicate 1: the better peer's 0 ties it
    assert m["replicates_at_least_better_peer"] == 1
    # means: converter -0.11, LiteRT Quantizer -0.11, edgequant 0.00
    assert m["mean_at_least_better_peer"] and m["fewest_mean_changed"]
    # paired by replicate against the converter: -1 and +2 images, mean +1/9 pt; two replicates cannot
    # rule chance out either way
    vs = m["vs_peer"]["tf-converter"]
    assert vs["mean"] == pytest.approx(1 / 9) and vs["low"] < 0 < vs["high"] and vs["n"] == 2
    assert not m["behind_beyond_chance"] and not m["ahead_beyond_chance"]
    # a peer with no result on a replicate (it could not build the model) is paired on the others only
    (m,) = aggregate([r for r in rows if (r["replicate"], r["method"]) != (1, "tf-converter")],
                     ["tf-converter", "litert-quantizer", "edgequant"])
    assert m["vs_peer"]["tf-converter"]["n"] == 1 and m["vs_peer"]["litert-quantizer"]["n"] == 2


def test_replicates_run_trains_a_second_instance(tmp_path, capsys) -> None:
    from benchmarks.replicates import main as replicates_main

    out = tmp_path / "results"
    assert replicates_main(["--models", "seed_mlp", "--replicates", "2", "--methods", "tf-converter,edgequant",
                            "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    assert (tmp_path / "cache" / "seed_mlp-seed1" / "meta.json").is_file()
    result = json.loads((out / "replicates.json").read_text())
    assert [(r["replicate"], r["method"]) for r in result["rows"]] == [
        (0, "tf-converter"), (0, "edgequant"), (1, "tf-converter"), (1, "edgequant")]
    # two trained instances, evaluated on the same held-out images
    assert {r["test_samples"] for r in result["rows"]} == {450}
    assert "| seed_mlp |" in (out / "replicates.md").read_text()
    assert replicates_main(["--replicates", "0", "--out", str(out)]) == 2
    assert replicates_main(["--models", "vgg", "--out", str(out)]) == 2
    assert replicates_main(["--scheme", "int3", "--out", str(out)]) == 2
    assert "expected" in capsys.readouterr().err
