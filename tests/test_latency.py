"""evaluate/latency.py: interleaved timing, and its early stop once every ratio to the first runner is known.

The runners here are stand-ins with scripted invoke times (no LiteRT), so the
stop rule is tested on exact figures; nothing is timed for real.
"""

from __future__ import annotations

import itertools

import numpy as np

from edgequant.evaluate.latency import MIN_ROUNDS, measure_interleaved, ratio_known


class _Scripted:
    """The Runner calls measure_interleaved makes, with each timed invoke taking the next scripted time."""

    threads = 1

    def __init__(self, seconds: list[float]) -> None:
        self.seconds = itertools.cycle(seconds)
        self.timed = 0

    def prepare_single(self, sample: object) -> None:
        pass

    def invoke(self) -> None:
        pass

    def timed_invoke(self) -> float:
        self.timed += 1
        return next(self.seconds)


def test_a_steady_ratio_stops_the_timing_after_the_minimum_rounds() -> None:
    # Machine load moves both runners alike round to round: the ratio is 5.0 in every round.
    load = [1.0, 1.3, 0.9, 2.0, 1.1]
    fl, slow = _Scripted([0.01 * x for x in load]), _Scripted([0.05 * x for x in load])
    a, b = measure_interleaved([fl, slow], np.zeros((1, 3)), runs=50, warmup=1, precision=0.03)
    assert a is not None and b is not None and a.runs == b.runs == MIN_ROUNDS
    assert fl.timed == slow.timed == MIN_ROUNDS


def test_a_noisy_ratio_runs_every_round_and_no_precision_always_does() -> None:
    fl, noisy = _Scripted([0.01]), _Scripted([0.005, 0.02, 0.008, 0.015])  # ratio 0.5 to 2.0
    a, b = measure_interleaved([fl, noisy], np.zeros((1, 3)), runs=40, warmup=1, precision=0.03)
    assert a is not None and b is not None and a.runs == b.runs == 40 and noisy.timed == 40
    load = [1.0, 1.3, 0.9, 2.0, 1.1]
    fl, slow = _Scripted([0.01 * x for x in load]), _Scripted([0.05 * x for x in load])
    a, b = measure_interleaved([fl, slow], np.zeros((1, 3)), runs=30, warmup=1)
    assert a is not None and a.runs == 30 and slow.timed == 30


def test_ratio_known_needs_every_runner_within_the_precision() -> None:
    rounds = 20
    base = np.ones(rounds)
    steady = np.full(rounds, 2.0)
    spread = np.where(np.arange(rounds) % 2 == 0, 1.5, 2.5)
    assert ratio_known(np.stack([base, steady]), 0.03)
    assert not ratio_known(np.stack([base, spread]), 0.03)
    assert not ratio_known(np.stack([base, steady, spread]), 0.03), "one uncertain ratio keeps the timing going"
    # Within 3%: ratios 1.98-2.02 around a median of 2.0.
    close = 2.0 + 0.02 * np.sin(np.arange(rounds))
    assert ratio_known(np.stack([base, close]), 0.03)
