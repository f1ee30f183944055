"""Output metrics: top-1 accuracy and fidelity to a reference model's outputs."""

from __future__ import annotations

import math

import numpy as np

from edgequant.types import Fidelity

__all__ = ["top1", "fidelity", "predictions", "gzip_size"]


def gzip_size(data: bytes) -> int:
    """Bytes after gzip at level 9, mtime fixed so the figure is reproducible.

    What a download or an app store actually moves; TensorFlow's pruning guide measures
    pruned models this way, since zeroed weights shrink only under compression.
    """
    import gzip

    return len(gzip.compress(data, compresslevel=9, mtime=0))


def predictions(outputs: np.ndarray) -> np.ndarray:
    """Class ids: argmax over the last axis, or a 0.5 threshold for one-unit outputs."""
    flat = outputs.reshape(len(outputs), -1)
    if flat.shape[1] == 1:
        return (flat[:, 0] > 0.5).astype(np.int64)
    return flat.argmax(axis=1)


def top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose predicted class equals the label, in 0..1."""
    return float((predictions(outputs) == labels).mean())


def fidelity(outputs: np.ndarray, reference: np.ndarray) -> Fidelity:
    """SQNR in dB (signal = reference), mean per-sample cosine, and max abs error.

    SQNR is over all output values at once: 10 log10(sum(ref^2) / sum((ref - out)^2)).
    It is infinite when the outputs are identical.
    """
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    out = outputs.reshape(len(outputs), -1).astype(np.float64)
    noise = float(np.sum((ref - out) ** 2))
    signal = float(np.sum(ref ** 2))
    sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    dots = np.sum(ref * out, axis=1)
    # Two all-zero rows are identical: count them as cosine 1.
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.where(dots == 0, 1.0, 0.0))
    return Fidelity(sqnr_db=sqnr, cosine=float(cos.mean()), max_abs_error=float(np.max(np.abs(ref - out))),
                    samples=len(ref))
