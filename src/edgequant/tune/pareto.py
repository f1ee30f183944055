"""Ranking trials: the objective's score, the best trial, and the Pareto front of all of them.

Scores are measured figures only: size is the file's bytes, latency the
candidate's median batch-1 latency over the float model's median in the same
interleaved rounds (a ratio, so that machine load that slows every model
alike cancels out between trials measured minutes apart).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from edgequant.evaluate.explain import SLOW_TOLERANCE
from edgequant.tune.records import Objective, Trial
from edgequant.types import Scheme

_FLOAT_KERNEL_SCHEMES = frozenset(s.value for s in Scheme if s.float_kernels)

__all__ = ["score", "quality", "best_trial", "pareto_front", "ranked_latency", "runs_float_kernels", "NOISE"]

# Latency figures within this factor of each other are one tie: on a shared machine the same model
# measured in two trials differs by that much (the slow-variant threshold of evaluate/explain.py).
NOISE = SLOW_TOLERANCE


def score(trial: Trial, objective: Objective) -> tuple[float, ...]:
    """Lower is better. Ties on the objective fall to the other figure, then to the earlier trial.

    balanced is the geometric mean of the size ratio and the latency ratio
    (both against float): halving either one counts the same, and a model
    twice as small but twice as slow scores like the float model. Files of
    equal size (the same scheme with another observer or transform) fall to
    the better metric before latency, which differs between two such models
    by measurement noise only.
    """
    size = float(trial.size_bytes if trial.size_bytes is not None else math.inf)
    ratio = ranked_latency(trial)
    if objective is Objective.SIZE:
        metric, sqnr = quality(trial)
        return (size, -metric, -sqnr, ratio, trial.id)
    if objective is Objective.LATENCY:
        return (ratio, size, trial.id)
    size_ratio = trial.size_ratio if trial.size_ratio is not None else math.inf
    return (math.sqrt(size_ratio * ratio), size, trial.id)


def runs_float_kernels(trial: Trial) -> bool:
    """Whether every op of the trial's model runs the float model's own kernel: a scheme with
    :attr:`Scheme.float_kernels` and no layer set to an integer precision."""
    layers = (trial.recipe.get("tensors") or {}).values()
    return (trial.recipe.get("scheme") in _FLOAT_KERNEL_SCHEMES
            and all(rule.get("precision") in (None, "float") for rule in layers))


def ranked_latency(trial: Trial) -> float:
    """The latency ratio the objectives rank by: the measured one, but 1.0 (a tie with float) for a model
    that runs only float's own kernels, whatever its timing noise; infinite when not measured. Taken as
    measured, the lowest of a long search's many noisy ratios anchored the latency tie below 1 and shut the
    other float-kernel trials out of it, so one of them could win over a smaller one by luck."""
    if trial.latency_ratio is None:
        return math.inf
    return 1.0 if runs_float_kernels(trial) else trial.latency_ratio


def quality(trial: Trial) -> tuple[float, float]:
    """Higher is better: the budget's metric, then output SQNR (accuracy on small data often ties)."""
    if not trial.ok or trial.metric is None:
        return (-math.inf, -math.inf)
    return (trial.metric, trial.sqnr_db if trial.sqnr_db is not None else -math.inf)


def best_trial(trials: Iterable[Trial], objective: Objective) -> Trial | None:
    """The best by the objective among trials that meet the budget; if none does, the closest one.

    For latency and balanced, every trial within :data:`NOISE` of the best
    score ties with it, and the smallest file among them wins: a 5% latency
    difference between two trials is not a measurement, a 2x size difference is.
    A model that runs only float's kernels is ranked at 1.0x float latency
    (:func:`ranked_latency`).
    Closest (when no trial meets the budget) is the highest metric, ties
    broken by the objective.
    """
    ok = [t for t in trials if t.ok]
    meeting = [t for t in ok if t.meets_budget]
    if meeting:
        top = min(score(t, objective)[0] for t in meeting)
        if objective is not Objective.SIZE and math.isfinite(top):
            meeting = [t for t in meeting if score(t, objective)[0] <= top * NOISE]
            return min(meeting, key=lambda t: (score(t, Objective.SIZE), score(t, objective)))
        return min(meeting, key=lambda t: score(t, objective))
    if not ok:
        return None
    top = max(quality(t)[0] for t in ok)
    return min((t for t in ok if quality(t)[0] == top), key=lambda t: score(t, objective))


def pareto_front(trials: Sequence[Trial]) -> tuple[int, ...]:
    """Ids of the trials no other trial beats on size, latency (as ranked) and metric at once (ties are kept)."""
    ok = [t for t in trials if t.ok and t.size_bytes is not None and t.metric is not None]

    def figures(t: Trial) -> tuple[float, float, float]:
        return (float(t.size_bytes or 0), ranked_latency(t), -float(t.metric or 0.0))

    front = []
    for t in ok:
        mine = figures(t)
        dominated = any(all(o <= m for o, m in zip(figures(u), mine)) and figures(u) != mine for u in ok if u is not t)
        if not dominated:
            front.append(t.id)
    return tuple(sorted(front))
