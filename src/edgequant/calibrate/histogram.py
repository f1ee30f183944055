"""Per-tensor statistics gathered in one streaming pass, in bounded memory.

A tensor's stats are its exact min and max, a moving average of per-sample
min/max (what litert-quantizer does), and a fixed-size histogram whose range
grows by merging bins when a value falls outside it. Memory is O(bins) per
tensor however many samples pass through: ONNX Runtime's percentile and
entropy calibration keep every activation and users report 200 GB; this does
not.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["TensorStats", "BINS", "EMA_SMOOTHING", "SENTINEL", "HIST_PER_SAMPLE"]

BINS = 2048
# Values this large are not activations but sentinels: attention masks fill masked scores with about
# -3.4e38 (float32's lowest) before a softmax. One such value in a min-max range leaves a single step of
# a few 1e36 for the real scores, so they are set aside like NaN and saturate at the range's end instead.
SENTINEL = 1e30
# A sample with more values than this feeds the histogram every s-th of them (s = ceil(values / this)),
# each counted s times; min, max and the moving averages still see every value. At 224x224 the histogram
# was most of calibration's time (MobileNetV2: 112x112x96 = 1.2M values a tensor); 2^17 leaves 28x28
# models (up to 28x28x128) untouched. Per sample, so the statistics do not depend on the batch size.
HIST_PER_SAMPLE = 2 ** 17
# litert-quantizer's moving-average smoothing factor, so ema-minmax matches it.
EMA_SMOOTHING = 0.95


@dataclasses.dataclass
class TensorStats:
    """Mutable accumulator for one tensor; frozen into JSON by CalibrationStats."""

    name: str
    rank: int
    count: int = 0
    min: float = math.inf
    max: float = -math.inf
    ema_min: float | None = None
    ema_max: float | None = None
    nonfinite: int = 0
    sentinels: int = 0
    lo: float = 0.0
    hi: float = 0.0
    counts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(BINS, np.int64))

    def update(self, batch: np.ndarray) -> None:
        """Add a batch (first axis = samples) of this tensor's values."""
        values = np.asarray(batch, dtype=np.float32).reshape(len(batch), -1) if batch.ndim else batch.reshape(1, 1)
        if values.size == 0:
            return
        per_min, per_max = values.min(axis=1), values.max(axis=1)
        # NaN and Inf reach the per-sample extremes, so finite extremes under SENTINEL mean a clean batch
        # and the element-wise checks (three passes over every value) are skipped.
        lo, hi = float(per_min.min()), float(per_max.max())
        if not (math.isfinite(lo) and math.isfinite(hi) and max(-lo, hi) < SENTINEL):
            finite = np.isfinite(values)
            if not finite.all():
                self.nonfinite += int((~finite).sum())
                values = np.where(finite, values, 0.0)
            huge = np.abs(values) >= SENTINEL
            if huge.any():
                self.sentinels += int(huge.sum())
                values = np.where(huge, 0.0, values)
            per_min, per_max = values.min(axis=1), values.max(axis=1)
            lo, hi = float(per_min.min()), float(per_max.max())
        for a, b in zip(per_min.tolist(), per_max.tolist()):
            # Per sample, in order, as litert-quantizer's moving average does.
            if self.ema_min is None:
                self.ema_min, self.ema_max = a, b
            else:
                self.ema_min = EMA_SMOOTHING * self.ema_min + (1 - EMA_SMOOTHING) * a
                self.ema_max = EMA_SMOOTHING * self.ema_max + (1 - EMA_SMOOTHING) * b
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        self.count += values.size
        stride = -(-values.shape[1] // HIST_PER_SAMPLE)
        self._add_to_histogram(values.ravel()[::stride], lo, hi, stride)

    def _add_to_histogram(self, flat: np.ndarray, lo: float, hi: float, weight: int = 1) -> None:
        if self.hi <= self.lo:  # first data: span exactly what was seen (plus a hair for a constant)
            self.lo, self.hi = lo, hi if hi > lo else lo + 1e-12
        while lo < self.lo or hi > self.hi:
            self._grow(lo, hi)
        # Every value lies in [self.lo, self.hi] now: only the top edge (index BINS) needs clipping.
        idx = ((flat - self.lo) / (self.hi - self.lo) * BINS).astype(np.int64)
        np.minimum(idx, BINS - 1, out=idx)
        self.counts += np.bincount(idx, minlength=BINS)[:BINS] * weight

    def _grow(self, lo: float, hi: float) -> None:
        """Double the histogram's width towards the side that overflowed, merging bin pairs."""
        width = self.hi - self.lo
        merged = self.counts.reshape(BINS // 2, 2).sum(axis=1)
        self.counts = np.zeros(BINS, np.int64)
        if hi > self.hi:  # extend upwards: old range becomes the lower half
            self.counts[: BINS // 2] = merged
            self.hi = self.lo + 2 * width
        else:  # extend downwards: old range becomes the upper half
            self.counts[BINS // 2:] = merged
            self.lo = self.hi - 2 * width

    def bin_centers(self) -> np.ndarray:
        edges = np.linspace(self.lo, self.hi, BINS + 1)
        return (edges[:-1] + edges[1:]) / 2

    def to_json(self) -> dict[str, Any]:
        nz = np.nonzero(self.counts)[0]
        return {"rank": self.rank, "count": self.count, "min": _num(self.min), "max": _num(self.max),
                "ema_min": _num(self.ema_min), "ema_max": _num(self.ema_max), "nonfinite": self.nonfinite,
                "sentinels": self.sentinels,
                "hist_lo": self.lo, "hist_hi": self.hi,
                # Sparse: most activation histograms are empty over much of their range.
                "hist_bins": nz.tolist(), "hist_counts": self.counts[nz].tolist()}

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> TensorStats:
        counts = np.zeros(BINS, np.int64)
        counts[np.asarray(d["hist_bins"], np.int64)] = np.asarray(d["hist_counts"], np.int64)
        return cls(name=name, rank=int(d["rank"]), count=int(d["count"]), min=_inf(d["min"], math.inf),
                   max=_inf(d["max"], -math.inf), ema_min=d["ema_min"], ema_max=d["ema_max"],
                   nonfinite=int(d["nonfinite"]), sentinels=int(d.get("sentinels", 0)), lo=float(d["hist_lo"]),
                   hi=float(d["hist_hi"]), counts=counts)


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _inf(v: float | None, default: float) -> float:
    return default if v is None else float(v)
