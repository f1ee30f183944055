"""Why the chosen model is the chosen one, in measured numbers: the result explains itself.

Two parts, both read off the trials (nothing is run here):

- ``kept_out``: every layer the chosen recipe keeps out of its scheme's
  precision, with the trial that moved it there and the metric before and after.
- ``explanation``: plain lines: the budget, the choice, and the more
  compressed candidates that missed the budget, each with its trial number.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgequant.evaluate.metrics import CONFIDENCE
from edgequant.tune.records import Budget, LayerChoice, Metric, Objective, RankedLayer, Trial
from edgequant.tune.pareto import runs_float_kernels

__all__ = ["kept_out", "explanation", "lineage", "metric_text"]


def metric_text(budget: Budget, value: float | None) -> str:
    if value is None:
        return "-"
    if budget.metric is Metric.TOP1:
        drop = budget.drop(value)
        return f"top-1 {100 * value:.2f}% ({_signed(-(drop or 0.0), '.2f')} pt)"
    if budget.metric is Metric.COSINE:
        return f"cosine {value:.6f}"
    if budget.metric is Metric.TASK:
        return f"task score {value:.4g} ({_signed(-(budget.drop(value) or 0.0), '.4g')})"
    return "output SQNR inf dB" if value == float("inf") else f"output SQNR {value:.1f} dB"


def _signed(change: float, spec: str) -> str:
    """``change`` with its sign, and no "-0.00" for a change that rounds to zero."""
    text = format(change, "+" + spec)
    return text if float(text) != 0.0 else format(0.0, "+" + spec)


def lineage(best: Trial, trials: Sequence[Trial]) -> list[Trial]:
    """``best`` and its parents back to the trial the search started from, oldest first."""
    by_id = {t.id: t for t in trials}
    chain, seen = [], set()
    t: Trial | None = best
    while t is not None and t.id not in seen:
        chain.append(t)
        seen.add(t.id)
        t = by_id.get(t.parent) if t.parent is not None else None
    return list(reversed(chain))


def kept_out(best: Trial | None, trials: Sequence[Trial], ranking: Sequence[RankedLayer],
             budget: Budget) -> tuple[LayerChoice, ...]:
    """The per-layer rules of ``best``'s recipe, each with the measured step that set it."""
    if best is None:
        return ()
    rules = {name: rule.get("precision") for name, rule in (best.recipe.get("tensors") or {}).items()
             if rule.get("precision")}
    by_id = {t.id: t for t in trials}
    rank = {r.tensor: (i + 1, r) for i, r in enumerate(ranking)}
    out = []
    for name, precision in rules.items():
        setter = None
        for t in lineage(best, trials):
            if t.layer and t.layer.get("tensor") == name and t.layer.get("to") == precision:
                setter = t
        parent = by_id.get(setter.parent) if setter is not None and setter.parent is not None else None
        before = parent.metric if parent is not None else None
        after = setter.metric if setter is not None else None
        op = setter.layer["op"] if setter is not None and setter.layer else ""
        if setter is not None:
            reason = (f"trial {setter.id} ({setter.layer['from'] if setter.layer else '?'} -> {precision}): "
                      f"{metric_text(budget, before)} -> {metric_text(budget, after)}")
        else:
            reason = "set by the recipe the search started from"
        if name in rank:
            position, r = rank[name]
            gain = "" if r.gain is None else (f", {100 * r.gain:+.2f} pt with it alone in float"
                                              if budget.metric is Metric.TOP1 else
                                              f", {r.gain:+.1f} dB output SQNR with it alone in float")
            reason += f"; sensitivity rank {position} of {len(ranking)}{gain}"
            op = op or r.op
        out.append(LayerChoice(tensor=name, op=op, precision=precision, trial=setter.id if setter else None,
                               before=before, after=after, reason=reason))
    return tuple(out)


def _describe(t: Trial) -> str:
    scheme = t.recipe.get("scheme", "?")
    engine = t.recipe.get("engine", "litert")
    layers = sum(1 for r in (t.recipe.get("tensors") or {}).values() if r.get("precision"))
    mix = f" with {layers} layer(s) at other precision" if layers else ""
    return f"{scheme}/{engine}{mix}"


def explanation(best: Trial | None, trials: Sequence[Trial], budget: Budget, objective: Objective,
                float_size: int) -> tuple[str, ...]:
    """Plain lines: the budget, the choice and its figures, and the more compressed trials that missed."""
    lines = [f"budget: {budget.describe()}; objective: {objective.value}"]
    ok = [t for t in trials if t.ok]
    if best is None:
        lines.append("no trial finished: no model to choose" if not trials else
                     f"every trial failed ({len(trials)}): no model to choose")
        return tuple(lines)
    size = best.size_bytes or 0
    lat = f", latency {best.latency_ratio:.2f}x float" if best.latency_ratio is not None else ""
    if lat and objective is not Objective.SIZE and runs_float_kernels(best):
        lat += " (every op runs float's own kernel: ranked as a tie with float)"
    bound = "" if best.bound is None or best.bound == best.metric else \
        f" (at its {100 * CONFIDENCE:g}% lower confidence bound: {metric_text(budget, best.bound)})"
    lines.append(f"chosen: trial {best.id}, {_describe(best)}: {size:,} bytes ({size / float_size:.3f}x float)"
                 f"{lat}, {metric_text(budget, best.metric)}{bound}")
    if best.meets_budget:
        meeting = [t for t in ok if t.meets_budget]
        lines.append(f"{len(meeting)} of {len(trials)} trial(s) met the budget; this one is the best by "
                     f"{objective.value}")
    else:
        gap = best.shortfall or 0.0
        lines.append(f"budget not met: no trial reached it; the closest candidate (this one) misses it by "
                     f"{gap:.4g}{(' ' + budget.unit) if budget.unit else ''}")
    smaller = sorted((t for t in ok if not t.meets_budget and (t.size_bytes or 0) < size), key=lambda t: t.size_bytes or 0)
    for t in smaller[:3]:
        lines.append(f"smaller but over budget: trial {t.id}, {_describe(t)}: {t.size_bytes:,} bytes, "
                     f"{metric_text(budget, t.metric)}")
    return tuple(lines)
