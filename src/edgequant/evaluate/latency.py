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

__all__ = ["measure_interleaved"]


def measure_interleaved(runners: Sequence[Runner], sample: Mapping[str, np.ndarray] | np.ndarray, runs: int = 50,
                        warmup: int = 5, progress: Progress = no_progress,
                        errors: dict[int, str] | None = None) -> list[Latency | None]:
    """Median and p90 of ``runs`` batch-1 invokes per runner, interleaved round-robin.

    ``sample`` holds named inputs (batch first); each runner takes its first row.
    Each invoke is timed where it runs, so a runner in another process adds no
    messaging time to its figure. With ``errors``, a runner that fails (its
    LiteRT worker crashed mid-timing) is recorded there by position, gets None
    and leaves the rounds; the others go on. Without, the failure is raised.
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
    for k in range(runs):
        for i, r in enumerate(runners):
            if i not in failed:
                times[i, k] = attempt(i, r.timed_invoke) or 0.0
        if k % 10 == 9 or k == runs - 1:
            progress("latency", k + 1, runs)
    return [None if i in failed else
            Latency(median_ms=float(np.median(t) * 1e3), p90_ms=float(np.percentile(t, 90) * 1e3),
                    runs=runs, warmup=warmup, threads=r.threads) for i, (t, r) in enumerate(zip(times, runners))]
