"""Latency in LiteRT, measured for several models side by side.

This machine (and most CI machines) is shared: a burst of load during one
model's runs would make it look slow. Runs are interleaved, round-robin, one
invoke per model per round, so any burst hits every model alike, and the
ratios between models stay meaningful even when absolute times drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgequant._util import Progress, no_progress
from edgequant.runtime import Runner
from edgequant.types import Latency

__all__ = ["measure_interleaved"]


def measure_interleaved(runners: Sequence[Runner], sample: Mapping[str, np.ndarray] | np.ndarray, runs: int = 50,
                        warmup: int = 5, progress: Progress = no_progress) -> list[Latency]:
    """Median and p90 of ``runs`` batch-1 invokes per runner, interleaved round-robin.

    ``sample`` holds named inputs (batch first); each runner takes its first row.
    Each invoke is timed where it runs, so a runner in another process adds no
    messaging time to its figure.
    """
    for r in runners:
        r.prepare_single(sample)
        for _ in range(warmup):
            r.invoke()
    times = np.zeros((len(runners), runs))
    for k in range(runs):
        for i, r in enumerate(runners):
            times[i, k] = r.timed_invoke()
        if k % 10 == 9 or k == runs - 1:
            progress("latency", k + 1, runs)
    return [Latency(median_ms=float(np.median(t) * 1e3), p90_ms=float(np.percentile(t, 90) * 1e3),
                    runs=runs, warmup=warmup, threads=r.threads) for t, r in zip(times, runners)]
