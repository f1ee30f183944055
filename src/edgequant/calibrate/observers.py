"""Observers: turn one tensor's streaming stats into a quantization range.

Every observer reads the same TensorStats, so one calibration pass serves all
of them (and every scheme). Registered in ``OBSERVERS``; an unknown name lists
the supported ones.

- minmax: the global min and max seen. Exact, and hostage to one outlier.
- ema-minmax: moving average of per-sample min/max (litert-quantizer's default).
- percentile:P: clip both tails at the P-th percentile (e.g. percentile:99.99).
- mse: the clipping range minimizing the expected squared quantization error
  (rounding noise inside, clipping error outside) for the target bit width.
- entropy: the range minimizing KL divergence between the reference and the
  quantized distribution, as TensorRT calibrates (8-bit; minmax at 16 bits),
  with point masses such as ReLU's zeros capped to the density around them.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgequant.calibrate.histogram import BINS, TensorStats
from edgequant.errors import UnsupportedError
from edgequant.types import parse_enum

__all__ = ["ObserverName", "Observer", "parse_observer", "observe", "OBSERVERS"]


class ObserverName(str, enum.Enum):
    MINMAX = "minmax"
    EMA_MINMAX = "ema-minmax"
    PERCENTILE = "percentile"
    MSE = "mse"
    ENTROPY = "entropy"


@dataclasses.dataclass(frozen=True)
class Observer:
    """An observer and its parameter (the percentile for ``percentile``)."""

    name: ObserverName
    param: float | None = None

    def __str__(self) -> str:
        return f"{self.name.value}:{self.param:g}" if self.param is not None else self.name.value


def parse_observer(text: str | Observer) -> Observer:
    """'mse' -> Observer(MSE); 'percentile:99.9' -> Observer(PERCENTILE, 99.9)."""
    if isinstance(text, Observer):
        return text
    name, _, param = str(text).partition(":")
    kind = parse_enum(ObserverName, name, "observer")
    if kind is ObserverName.PERCENTILE:
        try:
            p = float(param) if param else 99.99
        except ValueError:
            raise UnsupportedError(f"observer percentile:P: expected a number P, found {param!r}") from None
        if not 50 < p <= 100:
            raise UnsupportedError(f"observer percentile:P: expected 50 < P <= 100, found {p:g}")
        return Observer(kind, p)
    if param:
        raise UnsupportedError(f"observer {kind.value} takes no parameter, found {param!r}")
    return Observer(kind)


def _cdf_value(s: TensorStats, q: float) -> float:
    """The value below which a fraction q of the histogram's mass lies."""
    cum = np.cumsum(s.counts)
    if cum[-1] == 0:
        return 0.0
    i = int(np.searchsorted(cum, q * cum[-1]))
    edges = np.linspace(s.lo, s.hi, BINS + 1)
    return float(edges[min(i + 1, BINS)] if q >= 0.5 else edges[min(i, BINS - 1)])


def _percentile(s: TensorStats, bits: int, p: float | None) -> tuple[float, float]:
    tail = (100.0 - (p if p is not None else 99.99)) / 100.0
    lo = max(s.min, _cdf_value(s, tail)) if s.min < 0 else s.min
    hi = min(s.max, _cdf_value(s, 1 - tail)) if s.max > 0 else s.max
    return lo, hi


def _expected_errors(centers: np.ndarray, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     levels: int) -> np.ndarray:
    """Expected squared quantization error for many candidate ranges at once.

    Inside [lo, hi] a uniform quantizer adds scale^2 / 12 per value; outside,
    the clipping error (x - edge)^2. With prefix sums of n, n*c and n*c^2 over
    the bins, each candidate costs O(log bins), not O(bins): the LSTM's 500
    tensors x 600 candidates went from 14 s to well under a second.
    """
    n0 = np.concatenate([[0.0], np.cumsum(counts)])
    n1 = np.concatenate([[0.0], np.cumsum(counts * centers)])
    n2 = np.concatenate([[0.0], np.cumsum(counts * centers * centers)])
    i_lo = np.searchsorted(centers, lo, side="left")    # bins [0, i_lo) lie below lo
    i_hi = np.searchsorted(centers, hi, side="right")   # bins [i_hi, end) lie above hi
    below = lo * lo * n0[i_lo] - 2 * lo * n1[i_lo] + n2[i_lo]
    above = (n2[-1] - n2[i_hi]) - 2 * hi * (n1[-1] - n1[i_hi]) + hi * hi * (n0[-1] - n0[i_hi])
    scale = (hi - lo) / levels
    return (n0[i_hi] - n0[i_lo]) * scale * scale / 12.0 + below + above


def _mse(s: TensorStats, bits: int, p: float | None) -> tuple[float, float]:
    if s.count == 0 or s.max <= s.min:
        return s.min, s.max
    centers, counts = s.bin_centers(), s.counts.astype(np.float64)
    levels = 2 ** bits - 1
    lo, hi = min(0.0, s.min), max(0.0, s.max)
    # Coordinate descent: the best upper end for the current lower end, then
    # the reverse. Ends move independently because activation ranges are
    # rarely symmetric; both stay on their side of zero (zero must be exact).
    for _ in range(3):
        if s.max > 0:
            grid = np.linspace(s.max / 100, s.max, 100)
            hi = float(grid[int(np.argmin(_expected_errors(centers, counts, np.full(100, lo), grid, levels)))])
        if s.min < 0:
            grid = np.linspace(s.min, s.min / 100, 100)
            lo = float(grid[int(np.argmin(_expected_errors(centers, counts, grid, np.full(100, hi), levels)))])
    return lo, hi


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


# Why entropy reads a density, not raw counts: q spreads each quantization bucket's mass evenly over
# its bins, so a point mass of weight m costs about m * ln(bins per bucket), a cost that grows with the
# threshold although the point mass rounds like any other value. ReLU's exact zeros (quantized exactly)
# are such a point mass, often half of all values; the search traded them for clipping up to 13% of the
# values, thresholds fell to 1/7-1/4 of the range, and mobilenet_like lost 85.6 points of top-1. Layers
# fed discrete inputs (digits' 17 grey levels) have point masses inside the range as well. So a bin more
# than about four Poisson deviations above the median of the 33 bins around it is capped to that level
# (NVIDIA's pytorch-quantization overwrites the zero bin with its neighbour for the same reason).
_SPIKE_WINDOW = 33


def _folded_density(s: TensorStats) -> tuple[np.ndarray, float]:
    """Mass of |x| in BINS equal bins over [0, max|x|], point masses capped to the density around them."""
    amax = max(-s.min, s.max)
    # Fold through the histogram's cumulative counts, interpolated within each bin: a histogram bin can
    # be several folded bins wide (growing doubles the span, often past what [min, max] needs, and
    # folding halves a signed range). Mapping whole bins left empty folded bins in between (79% of them
    # on a Laplace tensor), which made every filled bin a point mass as above and clipped it at 0.75 max.
    cum = np.concatenate([[0.0], np.cumsum(s.counts, dtype=np.float64)])
    edges = np.linspace(s.lo, s.hi, BINS + 1)
    at = np.linspace(0.0, amax, BINS + 1)
    folded = np.diff(np.interp(at, edges, cum) - np.interp(-at, edges, cum))
    half = _SPIKE_WINDOW // 2
    local = np.median(sliding_window_view(np.pad(folded, half, mode="reflect"), _SPIKE_WINDOW), axis=1)
    return np.minimum(folded, local + 4 * np.sqrt(local) + 4), amax


def _entropy(s: TensorStats, bits: int, p: float | None) -> tuple[float, float]:
    if bits > 8 or s.count == 0 or s.max <= s.min:
        return s.min, s.max  # KL search over 65k levels is meaningless; 16 bits rarely need clipping
    # Histogram of |x| over [0, max|x|] (TensorRT's formulation), then a symmetric threshold,
    # or a one-sided one for non-negative tensors (ReLU outputs).
    folded, amax = _folded_density(s)
    nonzero = folded > 0
    beyond = np.concatenate([np.cumsum(folded[::-1])[::-1], [0.0]])  # beyond[i]: mass in bins i and up
    levels = 2 ** (bits - 1) if s.min < 0 else 2 ** bits
    best_i, best_kl = BINS, np.inf
    for i in range(levels, BINS + 1, 16):
        ref = folded[:i].copy()
        ref[-1] += beyond[i]  # clipped mass lands on the edge
        # Quantize the first i bins into `levels` groups, spreading each group's mass over its non-empty
        # bins (vectorized: the LSTM's 500 tensors took 110 s as a Python loop over groups).
        group = np.arange(i) * levels // i
        per_bin = np.bincount(group, folded[:i], levels) / np.maximum(np.bincount(group, nonzero[:i], levels), 1)
        q = np.where(nonzero[:i], per_bin[group], 0.0)
        kl = _kl(ref / max(ref.sum(), 1e-12), q / max(q.sum(), 1e-12))
        if kl < best_kl:
            best_i, best_kl = i, kl
    t = best_i / BINS * amax
    return (max(s.min, -t), min(s.max, t)) if s.min < 0 else (s.min, min(s.max, t))


def _minmax(s: TensorStats, bits: int, p: float | None) -> tuple[float, float]:
    return s.min, s.max


def _ema(s: TensorStats, bits: int, p: float | None) -> tuple[float, float]:
    return (s.ema_min, s.ema_max) if s.ema_min is not None and s.ema_max is not None else (s.min, s.max)


OBSERVERS: dict[ObserverName, Callable[[TensorStats, int, float | None], tuple[float, float]]] = {
    ObserverName.MINMAX: _minmax,
    ObserverName.EMA_MINMAX: _ema,
    ObserverName.PERCENTILE: _percentile,
    ObserverName.MSE: _mse,
    ObserverName.ENTROPY: _entropy,
}


def observe(observer: Observer, stats: TensorStats, bits: int) -> tuple[float, float]:
    """The (lo, hi) range ``observer`` picks for a tensor quantized to ``bits``."""
    return OBSERVERS[observer.name](stats, bits, observer.param)
