"""One model's outputs against the float model's (and the labels), by the model's kind.

``score`` returns the figures of one cell: SQNR and cosine per output, their worst over the outputs, and
the kind's task metrics; ``PRIMARY`` names the task metric the goals use ("agreement" in the issue).
"""

from __future__ import annotations

import numpy as np

from benchmarks.real import metrics

# The task metric each kind's goals are judged on (a share in 0..1; "1 point" is 0.01).
PRIMARY = {"classifier": "top1_agreement", "ocr": "exact_match", "saliency": "saliency_corr",
           "sentence": "ranked", "face": "face_iou"}

BLAZEFACE_SIZE = 128.0


def blazeface_anchors() -> np.ndarray:
    """The 896 anchor centres (x, y) in 0..1 of MediaPipe's short-range face detector: 16x16 cells with 2
    anchors (stride 8) then 8x8 cells with 6 (three stride-16 layers of 2), row-major."""
    out = []
    for grid, per in ((16, 2), (8, 6)):
        for y in range(grid):
            for x in range(grid):
                out += [((x + 0.5) / grid, (y + 0.5) / grid)] * per
    return np.asarray(out, np.float32)


def blazeface_top_boxes(regressors: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each image's highest-scoring box as (x_min, y_min, x_max, y_max) in 0..1, decoded at its anchor."""
    anchors = blazeface_anchors()
    best = scores.reshape(len(scores), -1).argmax(1)
    raw = regressors[np.arange(len(best)), best, :4] / BLAZEFACE_SIZE
    cx, cy = raw[:, 0] + anchors[best, 0], raw[:, 1] + anchors[best, 1]
    w, h = raw[:, 2], raw[:, 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def decode_text(probs: np.ndarray, charset: list[str]) -> list[str]:
    return [s.strip() for s in metrics.ctc_greedy(probs, charset)]


def truth_for(labels: list[str], charset: list[str]) -> list[str]:
    """A charset without a space (SVTRv2's 94 characters) cannot write one: its truth has none."""
    return labels if " " in charset else [t.replace(" ", "") for t in labels]


def score(kind: str, outs: dict[str, np.ndarray], ref: dict[str, np.ndarray], labels: list[str] | None = None,
          charset: list[str] | None = None) -> dict:
    per = {name: {"sqnr_db": metrics.sqnr_db(outs[name], r), "cosine": metrics.cosine(outs[name], r)}
           for name, r in ref.items()}
    row: dict = {"outputs": per, "sqnr_db": min(v["sqnr_db"] for v in per.values()),
                 "cosine": min(v["cosine"] for v in per.values())}
    main = next(iter(ref))
    if kind == "classifier":
        row["top1_agreement"] = metrics.top1_agreement(outs[main], ref[main])
        row["top5_overlap"] = metrics.top5_overlap(outs[main], ref[main])
    elif kind == "ocr":
        assert labels is not None and charset is not None
        pred = decode_text(outs[main], charset)
        truth = truth_for(labels, charset)
        row["exact_match"] = metrics.exact_match(pred, truth)
        row["cer"] = metrics.cer(pred, truth)
        row["float_text_agreement"] = metrics.exact_match(pred, decode_text(ref[main], charset))
    elif kind == "saliency":
        row["saliency_corr"] = metrics.pearson(outs[main], ref[main])
    elif kind == "sentence":
        rank = metrics.pair_ranking(outs[main])
        row["ranked"], row["gap"] = rank["ranked"], rank["gap"]
    elif kind == "face":
        box = blazeface_top_boxes(outs["regressors"], outs["classificators"])
        ref_box = blazeface_top_boxes(ref["regressors"], ref["classificators"])
        row["face_iou"] = float(metrics.iou(box, ref_box).mean())
    else:
        raise KeyError(f"unknown model kind {kind!r}: expected one of {', '.join(PRIMARY)}")
    return row
