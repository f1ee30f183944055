"""benchmarks/real's metric functions, data generators and goal judging (fast), and one end-to-end run of
``python -m benchmarks.real`` on BlazeFace, the smallest real model (slow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks.real import data, goals, metrics, score

# ------------------------------------------------------------------ metrics


def test_edit_distance_and_cer():
    assert metrics.edit_distance("kitten", "sitting") == 3
    assert metrics.edit_distance("", "abc") == 3
    assert metrics.edit_distance("abc", "abc") == 0
    # 1 substitution over 6 reference characters, then 2 deletions over 3
    assert metrics.cer(["abcdeX"], ["abcdef"]) == pytest.approx(1 / 6)
    assert metrics.cer(["a", "abcdef"], ["abc", "abcdef"]) == pytest.approx(2 / 9)
    assert metrics.exact_match(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    charset = ["a", "b", "c"]
    steps = [0, 1, 1, 0, 1, 2, 2, 3, 0]  # blank a a blank a b b c blank -> "aabc"
    probs = np.eye(4)[steps][None]
    assert metrics.ctc_greedy(probs, charset) == ["aabc"]


def test_iou():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 1, 1]])
    b = np.array([[1, 1, 3, 3], [0, 0, 1, 1], [2, 2, 3, 3]])
    assert metrics.iou(a, b) == pytest.approx([1 / 7, 1.0, 0.0])
    assert metrics.iou([[0, 0, 0, 0]], [[0, 0, 0, 0]]) == pytest.approx([0.0])  # empty union


def test_pair_ranking():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(8, 16))
    emb = np.repeat(base, 2, axis=0) + 0.01 * rng.normal(size=(16, 16))  # rows 2i, 2i+1 near-equal
    good = metrics.pair_ranking(emb, shift=3)
    assert good["ranked"] == 1.0 and good["gap"] > 0.5
    swapped = emb.copy()
    swapped[1::2] = rng.normal(size=(8, 16))  # paraphrases replaced by noise
    assert metrics.pair_ranking(swapped, shift=3)["gap"] < good["gap"]


def test_saliency_correlation_sqnr_cosine():
    rng = np.random.default_rng(1)
    ref = rng.random((3, 1, 8, 8))
    assert metrics.pearson(ref, ref) == pytest.approx(1.0)
    assert metrics.pearson(2 * ref + 5, ref) == pytest.approx(1.0)  # invariant to scale and offset
    assert metrics.pearson(-ref, ref) == pytest.approx(-1.0)
    assert metrics.pearson(np.ones_like(ref), ref) == 0.0
    assert metrics.sqnr_db(ref, ref) == math.inf
    assert metrics.sqnr_db(ref + 0.1 * ref, ref) == pytest.approx(20.0)
    assert metrics.cosine(3 * ref, ref) == pytest.approx(1.0)
    logits = np.array([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]])
    other = np.array([[4.0, 5, 3, 2, 0, 1], [5, 1, 2, 3, 4, 0]])
    assert metrics.top1_agreement(other, logits) == 0.0
    assert metrics.top5_overlap(other, logits) == pytest.approx(4 / 5)  # each row shares 4 of its top 5


def test_blazeface_decoding():
    anchors = score.blazeface_anchors()
    assert anchors.shape == (896, 2)
    regressors = np.zeros((1, 896, 16), np.float32)
    scores = np.full((1, 896, 1), -5.0, np.float32)
    scores[0, 520] = 3.0  # an 8x8-grid anchor: (520 - 512) // 6 = cell 1 -> centre (1.5 / 8, 0.5 / 8)
    regressors[0, 520, :4] = [0.0, 0.0, 32.0, 16.0]  # pixels of the 128-pixel input
    box = score.blazeface_top_boxes(regressors, scores)[0]
    assert box == pytest.approx([1.5 / 8 - 0.125, 0.5 / 8 - 0.0625, 1.5 / 8 + 0.125, 0.5 / 8 + 0.0625])


def test_score_ocr_strips_and_drops_spaces_the_charset_cannot_write():
    charset = list("ab")
    probs = np.eye(3)[[1, 0, 2, 2]][None]  # "ab"
    row = score.score("ocr", {"p": probs}, {"p": probs}, ["a b"], charset)
    assert row["exact_match"] == 1.0 and row["cer"] == 0.0 and row["float_text_agreement"] == 1.0


# ------------------------------------------------------------------ data


def test_splits_share_no_photo_face_or_sentence():
    photos = [set(data.PHOTOS[s]) for s in data.SPLITS]
    faces = [set(data.FACES[s]) for s in data.SPLITS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not photos[i] & photos[j] and not faces[i] & faces[j]
    assert "cat" not in {p for s in data.SPLITS for p in data.PHOTOS[s]}  # skimage's cat is chelsea
    sentences = [set(data.sentence_split(s)) for s in data.SPLITS]
    assert all(len(s) >= 24 for s in sentences)
    assert not (sentences[0] & sentences[1]) and not (sentences[0] & sentences[2]) and not (sentences[1] & sentences[2])


def test_test_strings_are_new_and_seeded():
    test = data.text_strings("test", 40)
    others = set(data.text_strings("calibration", 512)) | set(data.text_strings("dev", 512))
    assert not set(test) & others
    assert test == data.text_strings("test", 40)


def test_image_generators_shapes_and_seeds():
    pytest.importorskip("skimage")
    x = data.crops("dev", 5, 64)
    assert x.shape == (5, 64, 64, 3) and x.dtype == np.uint8
    assert np.array_equal(x, data.crops("dev", 5, 64))
    assert not np.array_equal(x, data.crops("test", 5, 64))
    f = data.faces("test", 3, 128)
    assert f.shape == (3, 128, 128, 3) and f.dtype == np.uint8


def test_render_text():
    if not (data.FONT_DIR / data.FONTS[0]).exists():
        pytest.skip("fonts-dejavu-core is not installed (make test installs it)")
    imgs = data.render_text(["hello 42", "a"], "dev", 32)
    assert [i.shape[0] for i in imgs] == [32, 32] and imgs[0].shape[1] > imgs[1].shape[1]
    assert imgs[0].dtype == np.uint8 and imgs[0].std() > 10  # there is text on it


def test_text_lines_render_given_strings_as_the_split_does():
    """ocr_patterns renders its own endings with text_lines: the same pixels as the split's lines."""
    if not (data.FONT_DIR / data.FONTS[0]).exists():
        pytest.skip("fonts-dejavu-core is not installed (make test installs it)")
    from benchmarks.real.models import MODELS, text_lines

    split = MODELS["ppocr_rec"].make_split("dev", 3)
    x = text_lines(data.text_strings("dev", 3), "dev", 48, 320, keep_aspect=True)
    assert x.shape == (3, 3, 48, 320) and np.array_equal(x, split.inputs["x"])
    assert not np.array_equal(text_lines([s + " 7" for s in data.text_strings("dev", 3)], "dev", 48, 320, True), x)


def test_tune_reads_text_recognizers_by_the_text():
    """The OCR tune cells' task score: 1 where a line decodes (CTC greedy, stripped) to float's text."""
    from benchmarks.real.cells import SameText

    def probs(*rows):
        out = np.zeros((len(rows), 4, 3), np.float32)
        for i, row in enumerate(rows):
            out[i, np.arange(4), row] = 1.0
        return {"y": out}

    same = SameText(("a", " "))
    ref = probs([1, 0, 1, 0], [1, 2, 1, 0])  # "aa", "a a"
    got = same(probs([1, 1, 0, 1], [1, 0, 1, 2]), ref)  # "aa", "aa " -> stripped "aa"
    assert got.tolist() == [1.0, 0.0]


def test_ocr_patterns_table():
    from benchmarks.real.ocr_patterns import _markdown

    cell = {"agreement": 0.85, "sqnr_db": 13.2}
    text = _markdown({"lines": 4, "calibration": 16, "variants": {"int8": "scheme int8"}, "date": "d", "seconds": 1.0,
                      "latency": {"int8": 0.66}, "runs": 30,
                      "rows": [{"suffix": " 7", "float_truth": 1.0, "int8": cell},
                               {"suffix": "", "float_truth": 1.0, "int8": {**cell, "agreement": 0.95}}]})
    assert "| ' 7' | 1.000 | 0.850 / 13.2 |" in text and "| mean over endings | | 0.900 |" in text
    assert "| latency (x float, median of 30 interleaved batch-1 rounds) | | 0.66x |" in text


# ------------------------------------------------------------------ goals


def _cell(method, scheme, peer, **figures):
    base = {"method": method, "scheme": scheme, "peer": peer, "sqnr_db": 20.0, "cosine": 0.99,
            "top1_agreement": 0.9, "bytes": 100, "size_ratio": 0.25, "latency_ratio": 0.5}
    return {**base, **figures}


def _model(**cells):
    return {"kind": "classifier", "primary": "top1_agreement", "transformer": False, "cnn": True,
            "cells": {"float": _cell("float", "float", False, sqnr_db="inf", cosine=1.0, top1_agreement=1.0,
                                     size_ratio=1.0, latency_ratio=1.0), **cells}}


def test_goals_int8_and_w4a8_judged_from_the_cells():
    good = _model(**{"edgequant int8": _cell("edgequant", "int8", False, sqnr_db=25.0),
                     "edgequant w4a8": _cell("edgequant", "w4a8", False, top1_agreement=0.895),
                     "litert-quantizer int8": _cell("litert-quantizer", "int8", True, sqnr_db=22.0)})
    bad = _model(**{"edgequant int8": _cell("edgequant", "int8", False, sqnr_db=21.0),
                    "edgequant w4a8": {"method": "edgequant", "scheme": "w4a8", "peer": False, "error": "x"},
                    "litert-quantizer int8": _cell("litert-quantizer", "int8", True, sqnr_db=22.0)})
    by = {g["goal"].split(":")[0]: g["status"] for g in goals.evaluate({"m": good})}
    assert by["int8"] == "met" and by["w4a8 on the CNNs"] == "met"
    by = {g["goal"].split(":")[0]: g["status"] for g in goals.evaluate({"m": bad})}
    assert by["int8"] == "not met" and by["w4a8 on the CNNs"] == "not met"
    failed = goals.evaluate({"m": good, "x": {"error": "float conversion failed", "cnn": True}})
    assert {g["goal"].split(":")[0]: g["status"] for g in failed}["int8"] == "not met"
    assert json.dumps(failed)  # JSON-ready


def test_a_slow_verdict_needs_analyze_to_measure_it_too():
    """A model measured slow in the benchmark's rounds must be flagged by analyze, unless analyze's own paired
    measurement finds it within the tolerance: then it is not counted, and the detail says so with both figures."""
    int8 = {"kinds": ["layer-error"], "findings": ["..."], "latency_ratio": 0.5}

    def judged(analysis_fp16):
        m = _model(**{"edgequant int8": _cell("edgequant", "int8", False),
                      "edgequant fp16": _cell("edgequant", "fp16", False, latency_ratio=1.32)})
        m["analysis"] = {"edgequant int8": int8, "edgequant fp16": analysis_fp16}
        [goal] = [g for g in goals.evaluate({"m": m}) if g["goal"].startswith("analyze")]
        return goal["status"], goal["detail"]

    status, detail = judged({"kinds": ["speed"], "latency_ratio": 1.0})
    assert status == "met" and "edgequant fp16 measured 1.32x here but 1.00x by analyze, not counted" in detail
    assert judged({"kinds": ["slow"], "latency_ratio": 1.4})[0] == "met"
    assert judged({"kinds": ["speed"], "latency_ratio": 1.2})[0] == "not met"  # slow to both, not flagged
    assert judged({"error": "ValueError: x"})[0] == "not met"


def test_speed_counts_a_float_kernel_model_as_a_tie_whatever_its_noise():
    """fp16 and weight-only-int8 run float's own kernels: their measured ratio is noise, so they tie float
    (1.00x, which is "at least as fast"); an integer model's measured ratio stands."""
    def judged(**cells):
        [goal] = [g for g in goals.evaluate({"m": _model(**cells)}) if g["goal"].startswith("speed")]
        return goal["status"], goal["detail"]

    close = {"top1_agreement": 0.995}
    status, detail = judged(**{"edgequant fp16": _cell("edgequant", "fp16", False, latency_ratio=1.05, **close)})
    assert status == "met" and "fp16 runs float's own kernels: a tie, measured 1.05x" in detail
    tuned = _cell("edgequant tune", "tuned", False, latency_ratio=0.86, note="top1 within 1.0 on dev, latency "
                  "objective, 90s: scheme fp16, engine litert, io float, observer auto, transforms none", **close)
    int8 = _cell("edgequant", "int8", False, latency_ratio=0.9, **close)
    status, detail = judged(**{"edgequant tune tuned": tuned, "edgequant int8": int8})
    assert status == "met" and detail.endswith("edgequant int8 0.90x float latency"), "0.86x noise is no win"
    slow = _cell("edgequant", "int8", False, latency_ratio=1.3, **close)
    assert judged(**{"edgequant int8": slow})[0] == "not met"


def test_fp16_and_dynamic_are_compared_with_peers_no_larger_than_edgequant():
    """A peer's dynamic model that kept most weights in float (larger than 1.1x edgequant's) is listed, not
    compared; one at edgequant's size or smaller is compared, and beats it when its figures are higher."""
    def judged(peer_size, peer_sqnr):
        m = _model(**{"edgequant fp16": _cell("edgequant", "fp16", False, size_ratio=0.5, sqnr_db=60.0),
                      "edgequant dynamic": _cell("edgequant", "dynamic", False, size_ratio=0.29, sqnr_db=28.0),
                      "peer dynamic": _cell("peer", "dynamic", True, size_ratio=peer_size, sqnr_db=peer_sqnr)})
        [goal] = [g for g in goals.evaluate({"m": m}) if g["goal"].startswith("fp16 and dynamic")]
        return goal["status"], goal["detail"]

    status, detail = judged(0.75, 41.0)
    assert status == "met"
    assert "not compared: peer dynamic, 0.75x float size against 0.29x (top1_agreement 0.900, SQNR 41.0)" in detail
    assert judged(0.31, 41.0)[0] == "not met"  # within 1.1x of edgequant's size: compared
    assert judged(0.25, 41.0)[0] == "not met"  # smaller and better
    assert judged(0.25, 19.0)[0] == "met"


def test_a_methods_run_refuses_other_sizes_than_the_kept_cells(tmp_path, capsys):
    """Cells kept from an earlier run were measured on its splits; new cells on other splits would sit in one
    table as if comparable."""
    from benchmarks.real import real

    earlier = {"models": {"blazeface": {"title": "BlazeFace", "date": "d", "cells": {},
                                        "sizes": {"calibration": 24, "dev": 24, "test": 48, "runs": 20,
                                                  "tune_budget": "120"}}}}
    (tmp_path / "real.json").write_text(json.dumps(earlier))
    code = real.main(["--models", "blazeface", "--methods", "edgequant w4a8", "--test", "32", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--test 32 (earlier 48)" in err and len(err.strip().splitlines()) == 1
    assert json.loads((tmp_path / "real.json").read_text()) == earlier
    # tune's budget shapes only tune's cell: another one is refused unless that cell is rebuilt.
    code = real.main(["--models", "blazeface", "--methods", "edgequant w4a8", "--tune-budget", "4m", "--out",
                      str(tmp_path)])
    assert code == 2 and "--tune-budget 4m (earlier 120)" in capsys.readouterr().err


# ------------------------------------------------------------------ end to end (slow)


@pytest.mark.slow
def test_real_benchmark_runs_on_blazeface(tmp_path, capsys):
    pytest.importorskip("skimage")
    from benchmarks.real import real

    try:
        from benchmarks.real.fetch import path

        path("blazeface")
    except Exception as exc:  # no network and no cached wheel
        pytest.skip(f"mediapipe wheel unavailable: {exc}")
    code = real.main(["--models", "blazeface", "--quick", "--methods", "edgequant,litert-quantizer",
                      "--calibration", "4", "--dev", "4", "--test", "4", "--runs", "2", "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "real.json").read_text())
    cells = result["models"]["blazeface"]["cells"]
    assert cells["float"]["face_iou"] == pytest.approx(1.0)
    assert {"edgequant int8", "litert-quantizer dynamic"} <= set(cells)
    assert all("error" in c or 0 <= c["face_iou"] <= 1 for c in cells.values())
    md = (tmp_path / "real.md").read_text()
    assert "BlazeFace" in md and "## Goals" in md
    assert "int8: edgequant's default" in capsys.readouterr().out


def test_a_methods_run_keeps_the_other_cells_marked_with_their_run():
    from benchmarks.real.real import carry, render

    cell = {"method": "m", "scheme": "int8", "peer": False, "bytes": 10, "size_ratio": 0.5, "top1_agreement": 1.0,
            "top5_overlap": 1.0, "sqnr_db": 20.0, "cosine": 0.99, "latency_ratio": 0.5, "seconds": 1}
    base = {"title": "T", "kind": "classifier", "primary": "top1_agreement", "transformer": False, "cnn": True,
            "sizes": {"runs": 5, "tune_budget": "40s"}, "split_sizes": {"calibration": 8, "dev": 8, "test": 12},
            "seconds": 3}
    old = {**base, "date": "OLD", "cells": {"float": {**cell, "method": "float"}, "a int8": {**cell, "method": "a"},
                                            "b int8": {**cell, "method": "b", "error": "crashed"}}}
    new = {**base, "date": "NEW", "cells": {"float": {**cell, "method": "float"}, "b int8": {**cell, "method": "b"}}}
    got = carry(new, old)
    assert list(got["cells"]) == ["float", "a int8", "b int8"]
    assert got["cells"]["a int8"]["run"] == "OLD" and "run" not in got["cells"]["b int8"]
    assert "error" not in got["cells"]["b int8"] and "run" not in got["cells"]["float"]
    text = render({"models": {"x": got}, "goals": []})
    assert "| a (run OLD) | int8 |" in text and "| b | int8 |" in text and "Rows marked (run DATE)" in text
    assert carry(new, None) is new
