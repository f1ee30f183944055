"""Output metrics: top-1 accuracy and fidelity to a reference model's outputs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from edgequant.errors import InputError
from edgequant.types import Fidelity, PairedTop1

__all__ = ["top1", "fidelity", "predictions", "gzip_size", "paired_top1", "mcnemar_p", "changed_top1",
           "fidelity_by_output", "worst_output", "Bounds", "lower_bounds", "paired_bound", "CONFIDENCE"]

# The one-sided confidence of lower_bounds: tune holds its budget at this bound (docs/tune.md, "Budget").
CONFIDENCE = 0.95
# Bootstrap resamples behind each bound; seeded, so a bound is the same on every run.
RESAMPLES = 1000


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


def _per_sample(outputs: np.ndarray,
                reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each sample's signal energy (reference), noise energy (reference - outputs), cosine and largest
    absolute error, as float64."""
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    out = outputs.reshape(len(outputs), -1).astype(np.float64)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    dots = np.sum(ref * out, axis=1)
    # Two all-zero rows are identical: count them as cosine 1.
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.where(dots == 0, 1.0, 0.0))
    err = ref - out
    return np.sum(ref ** 2, axis=1), np.sum(err ** 2, axis=1), cos, np.max(np.abs(err), axis=1)


def _sqnr_db(signal: float, noise: float) -> float:
    return math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)


def fidelity(outputs: np.ndarray, reference: np.ndarray) -> Fidelity:
    """SQNR in dB (signal = reference), mean per-sample cosine, and max abs error.

    SQNR is over all output values at once: 10 log10(sum(ref^2) / sum((ref - out)^2)).
    It is infinite when the outputs are identical.
    """
    signal, noise, cos, worst = _per_sample(outputs, reference)
    return Fidelity(sqnr_db=_sqnr_db(float(signal.sum()), float(noise.sum())), cosine=float(cos.mean()),
                    max_abs_error=float(worst.max()), samples=len(reference))


def _check_outputs(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> None:
    missing = [n for n in reference if n not in outputs]
    if missing:
        raise InputError(f"expected the outputs of the reference model ({', '.join(reference)}), found "
                         f"{', '.join(outputs)} (missing {', '.join(missing)})")


def fidelity_by_output(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> dict[str, Fidelity]:
    """Fidelity of every output the reference model has, by name (the two models share a signature)."""
    _check_outputs(outputs, reference)
    return {n: fidelity(np.asarray(outputs[n]), np.asarray(ref)) for n, ref in reference.items()}


@dataclasses.dataclass(frozen=True)
class Bounds:
    """One-sided lower confidence bounds of a model's figures over the samples they were measured on.

    ``accuracy`` is top-1 (None without labels); ``sqnr_db`` and ``cosine`` are those of the output whose bound
    is lowest, each output judged on its own as the budget holds for every output.
    """

    accuracy: float | None
    sqnr_db: float
    cosine: float
    confidence: float
    samples: int


def lower_bounds(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                 labels: np.ndarray | None = None, label: str | None = None, *, confidence: float = CONFIDENCE,
                 resamples: int = RESAMPLES, seed: int = 0) -> Bounds:
    """How low top-1, output SQNR and cosine could be on new samples like these, by a seeded bootstrap.

    A figure averaged over a few samples is a noisy estimate, and a search that keeps the most compressed
    candidate whose estimate meets a budget keeps, more often than not, one whose estimate came out high. The
    bound is the ``1 - confidence`` quantile of the figure over ``resamples`` draws of the samples with
    replacement. Top-1 is paired with the reference model's on the same draw (``labels`` against the
    ``label`` output of each): its bound is the reference's top-1 on all samples plus the quantile of the
    difference, so it measures the drop, not the data's difficulty.
    """
    _check_outputs(outputs, reference)
    n = len(next(iter(reference.values())))
    draws = _draws(n, resamples, seed)
    q = 1.0 - confidence
    sqnr, cosine = math.inf, math.inf
    for name, ref in reference.items():
        out = np.asarray(outputs[name])
        if not np.isfinite(out).all():
            # A non-finite output on any sample: the worst bound there is, not one a draw might leave it out of.
            sqnr, cosine = -math.inf, -1.0
            continue
        signal, noise, cos, _ = _per_sample(out, np.asarray(ref))
        drawn = [_sqnr_db(float(a), float(b)) for a, b in zip(signal[draws].sum(axis=1), noise[draws].sum(axis=1))]
        # Never above the figure itself.
        sqnr = min(sqnr, _quantile(np.array(drawn), q), _sqnr_db(float(signal.sum()), float(noise.sum())))
        cosine = min(cosine, _quantile(cos[draws].mean(axis=1), q), float(cos.mean()))
    accuracy = None
    if labels is not None and label is not None:
        mine = (predictions(np.asarray(outputs[label])) == labels).astype(np.float64)
        theirs = (predictions(np.asarray(reference[label])) == labels).astype(np.float64)
        accuracy = _paired(mine, theirs, draws, q)
    return Bounds(accuracy=accuracy, sqnr_db=sqnr, cosine=cosine, confidence=confidence, samples=n)


def paired_bound(mine: np.ndarray, theirs: np.ndarray, *, confidence: float = CONFIDENCE,
                 resamples: int = RESAMPLES, seed: int = 0) -> float:
    """The lower confidence bound of the mean of per-sample scores ``mine``, paired with the reference model's
    ``theirs`` on the same samples: theirs' mean plus the ``1 - confidence`` quantile of the mean difference
    over seeded bootstrap draws (so it bounds the drop, not how hard the samples are); never above mine's mean.
    The same draws as :func:`lower_bounds` for the same sample count and seed."""
    mine, theirs = np.asarray(mine, np.float64), np.asarray(theirs, np.float64)
    return _paired(mine, theirs, _draws(len(mine), resamples, seed), 1.0 - confidence)


def _draws(n: int, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, (resamples, n)) if n > 1 else np.zeros((1, max(n, 1)), np.int64)


def _paired(mine: np.ndarray, theirs: np.ndarray, draws: np.ndarray, q: float) -> float:
    diff = (mine - theirs)[draws].mean(axis=1)
    return min(float(theirs.mean()) + _quantile(diff, q), float(mine.mean()))


def _quantile(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile as one of the values (no interpolation, so infinite values stay meaningful)."""
    ordered = np.sort(values)
    return float(ordered[min(len(ordered) - 1, int(math.floor(q * len(ordered))))])


def worst_output(by_output: Mapping[str, Fidelity]) -> tuple[str | None, Fidelity | None]:
    """The output with the lowest SQNR (the first of equals), and its figures."""
    if not by_output:
        return None, None
    name = min(by_output, key=lambda n: by_output[n].sqnr_db)
    return name, by_output[name]


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: 2 P(X <= min) for X ~ Binomial(a_only + b_only, 1/2), at most 1.

    Exact rather than the chi-square form, because quantized models differ from
    each other on a handful of samples, where the approximation is poor.
    """
    n, k = a_only + b_only, min(a_only, b_only)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def changed_top1(outputs: np.ndarray, reference: np.ndarray) -> int:
    """How many samples' predicted class differs from the reference model's (right or wrong alike)."""
    return int(np.sum(predictions(outputs) != predictions(reference)))


def paired_top1(a_outputs: np.ndarray, b_outputs: np.ndarray, labels: np.ndarray) -> PairedTop1:
    """Compare two models' top-1 on the same samples: which samples each gets right alone, and McNemar's p."""
    if len(a_outputs) != len(b_outputs) or len(a_outputs) != len(labels):
        raise ValueError(f"expected outputs and labels for the same samples, found {len(a_outputs)}, "
                         f"{len(b_outputs)} and {len(labels)}")
    a_right = predictions(a_outputs) == labels
    b_right = predictions(b_outputs) == labels
    a_only, b_only = int(np.sum(a_right & ~b_right)), int(np.sum(b_right & ~a_right))
    return PairedTop1(a_only=a_only, b_only=b_only, p_value=mcnemar_p(a_only, b_only), samples=len(labels))
