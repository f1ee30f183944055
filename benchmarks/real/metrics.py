"""Metrics of the real-model benchmark: label-free ones against the float model, task ones against labels.

All functions are pure numpy on outputs already in float (edgequant's Runner dequantizes integer outputs).
"""

from __future__ import annotations

import numpy as np


def top1_agreement(out: np.ndarray, ref: np.ndarray) -> float:
    """Share of samples whose arg-max class equals the float model's."""
    return float((out.reshape(len(out), -1).argmax(1) == ref.reshape(len(ref), -1).argmax(1)).mean())


def top5_overlap(out: np.ndarray, ref: np.ndarray, k: int = 5) -> float:
    """Mean share of the float model's top-k classes that are also in the model's top-k."""
    a = np.argsort(-out.reshape(len(out), -1), 1)[:, :k]
    b = np.argsort(-ref.reshape(len(ref), -1), 1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))


def sqnr_db(out: np.ndarray, ref: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (ref - out)^2) over every value; inf when identical."""
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    noise = float(np.sum((ref64 - out64) ** 2))
    signal = float(np.sum(ref64 ** 2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


def cosine(out: np.ndarray, ref: np.ndarray) -> float:
    """Mean per-sample cosine similarity of the flattened outputs (1.0 for two all-zero rows)."""
    a = out.reshape(len(out), -1).astype(np.float64)
    b = ref.reshape(len(ref), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-30)
    return float(np.where(both_zero, 1.0, cos).mean())


def pearson(out: np.ndarray, ref: np.ndarray) -> float:
    """Mean per-sample Pearson correlation of two maps (saliency-map correlation); 1.0 for two constant maps
    that are equal, 0.0 when only one is constant."""
    a = out.reshape(len(out), -1).astype(np.float64)
    b = ref.reshape(len(ref), -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    r = np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-30)
    r = np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, r))
    return float(r.mean())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(predicted: list[str], truth: list[str]) -> float:
    """Character error rate: total edit distance over total reference length."""
    total = sum(len(t) for t in truth)
    return sum(edit_distance(p, t) for p, t in zip(predicted, truth)) / max(total, 1)


def exact_match(predicted: list[str], truth: list[str]) -> float:
    return float(np.mean([p == t for p, t in zip(predicted, truth)])) if truth else 0.0


def ctc_greedy(probs: np.ndarray, charset: str | list[str], blank: int = 0) -> list[str]:
    """Greedy CTC decoding of (N, steps, classes): best class per step, repeats merged, blanks dropped;
    class i >= 1 is charset[i - 1]."""
    out = []
    for seq in probs.argmax(-1):
        chars, last = [], blank
        for c in seq:
            c = int(c)
            if c != last and c != blank and c - 1 < len(charset):
                chars.append(charset[c - 1])
            last = c
        out.append("".join(chars))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of boxes given as (x_min, y_min, x_max, y_max); 0 where the union is empty."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    area = lambda r: np.clip(r[:, 2] - r[:, 0], 0, None) * np.clip(r[:, 3] - r[:, 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def pair_ranking(emb: np.ndarray, shift: int = 7) -> dict[str, float]:
    """Rows 2i and 2i+1 are paraphrases; sentence a of pair i against b of pair i + shift is unrelated.
    ranked: share of pairs whose paraphrase cosine beats the unrelated one; gap: mean paraphrase cosine
    minus mean unrelated cosine."""
    e = emb.reshape(len(emb), -1).astype(np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-30)
    n = len(e) // 2
    para = np.sum(e[0:2 * n:2] * e[1:2 * n:2], 1)
    other = np.array([2 * ((i + shift) % n) + 1 for i in range(n)])
    unrel = np.sum(e[0:2 * n:2] * e[other], 1)
    return {"ranked": float(np.mean(para > unrel)), "gap": float(para.mean() - unrel.mean())}
