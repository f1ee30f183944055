"""Latency in LiteRT, measured for several models side by side.

This machine (and most CI machines) is shared: a burst of load during one
model's runs would make it look slow. Runs are interleaved, round-robin, one
invoke per model per round, so any burst hits every model alike, and the
ratios between models stay meaningful even when absolute times drift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from edgequant._util import Progress, no_progress
from edgequant.errors import EdgequantError
from edgequant.runtime import Runner
from edgequant.types import Latency

__all__ = ["measure_interleaved", "ratio_known", "MIN_ROUNDS"]


# Rounds timed before the early stop may end the timing (``precision``), and how often it is checked.
MIN_ROUNDS = 10
CHECK_EVERY = 5


def ratio_known(times: np.ndarray, precision: float) -> bool:
    """Whether every runner's latency ratio to runner 0 is known to within ``precision`` (relative).

    ``times`` is runners x rounds. Each round gives a ratio of two invokes made
    moments apart, so load that slows both cancels; the 95% confidence interval
    of the median ratio (from the order statistics, no distribution assumed)
    must lie within median * (1 +- precision).
    """
    k = times.shape[1]
    lo = max(int(np.floor(k / 2 - 1.96 * np.sqrt(k) / 2)), 0)
    hi = min(int(np.ceil(k / 2 + 1.96 * np.sqrt(k) / 2)), k - 1)
    for row in times[1:]:
        ratios = np.sort(row / np.maximum(times[0], 1e-12))
        mid = float(np.median(ratios))
        if not (mid > 0 and ratios[lo] >= mid * (1 - precision) and ratios[hi] <= mid * (1 + precision)):
            return False
    return True


def measure_interleaved(runners: Sequence[Runner], sample: Mapping[str, np.ndarray] | np.ndarray, runs: int = 50,
                        warmup: int = 5, progress: Progress = no_progress,
                        errors: dict[int, str] | None = None, precision: float | None = None) -> list[Latency | None]:
    """Median and p90 of ``runs`` batch-1 invokes per runner, interleaved round-robin.

    ``sample`` holds named inputs (batch first); each runner takes its first row.
    Each invoke is timed where it runs, so a runner in another process adds no
    messaging time to its figure. With ``errors``, a runner that fails (its
    LiteRT worker crashed mid-timing) is recorded there by position, gets None
    and leaves the rounds; the others go on. Without, the failure is raised.

    With ``precision``, ``runs`` is a maximum: after :data:`MIN_ROUNDS` rounds
    the timing stops as soon as every runner's ratio to the first runner is
    known to within that relative precision (:func:`ratio_known`). A model 5x
    slower than float then costs a few rounds, not 50.
    """
    failed: set[int] = set()

    def attempt(i: int, step: Callable[[], object]) -> object:
        try:
            return step()
        except EdgequantError as exc:
            if errors is None:
                raise
            errors[i] = str(exc)
            failed.add(i)
            return None

    for i, r in enumerate(runners):
        attempt(i, lambda: [r.prepare_single(sample)] + [r.invoke() for _ in range(warmup)])
    times = np.zeros((len(runners), runs))
    done = runs
    for k in range(runs):
        for i, r in enumerate(runners):
            if i not in failed:
                times[i, k] = attempt(i, r.timed_invoke) or 0.0
        if k % 10 == 9 or k == runs - 1:
            progress("latency", k + 1, runs)
        if precision is not None and not failed and k + 1 >= MIN_ROUNDS and (k + 1) % CHECK_EVERY == 0 \
                and k + 1 < runs and ratio_known(times[:, :k + 1], precision):
            done = k + 1
            progress("latency", runs, runs)
            break
    times = times[:, :done]
    return [None if i in failed else
            Latency(median_ms=float(np.median(t) * 1e3), p90_ms=float(np.percentile(t, 90) * 1e3),
                    runs=done, warmup=warmup, threads=r.threads) for i, (t, r) in enumerate(zip(times, runners))]
