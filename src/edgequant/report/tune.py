"""The terminal text of ``edgequant tune``: one line per trial as it finishes, and the result."""

from __future__ import annotations

import math

from edgequant.tune.explain import metric_text
from edgequant.tune.records import Trial, TrialReport, TuneResult

__all__ = ["trial_line", "tune_text"]


def _kib(size: int | None) -> str:
    return "-" if size is None else f"{size / 1024:,.1f} KiB"


def _ratio(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def trial_line(report: TrialReport) -> str:
    """Two lines per trial: what was tried, then size, latency, metric and the verdict."""
    trial, best = report.trial, report.best
    head = f"trial {trial.id:3d} {trial.stage:<11s} {trial.move}"
    if not trial.ok:
        return f"{head}\n          FAILED: {trial.error}"
    tags = ["within budget" if trial.meets_budget else "over budget"]
    if best is not None and best.id == trial.id:
        tags.append("best so far")
    if report.replayed:
        tags.append("from the history")
    # The verdict is on the bound (docs/tune.md, "The budget"): shown wherever it differs from the figure.
    bound = "" if trial.bound is None or trial.bound == trial.metric else \
        f", bound {metric_text(report.budget, trial.bound)}"
    return (f"{head}\n          {_kib(trial.size_bytes)} ({_ratio(trial.size_ratio)} float), latency "
            f"{_ratio(trial.latency_ratio)} float, {metric_text(report.budget, trial.metric)}{bound}; "
            f"{', '.join(tags)}")


def tune_text(result: TuneResult, reproduce: str | None = None) -> str:
    """The result: the choice and why, layers kept out of the scheme, the Pareto front, where files went."""
    lines = [""] + list(result.explanation)
    if result.kept_out:
        lines += ["", "layers kept out of the scheme's precision (and the measurement that put them there):"]
        for k in result.kept_out:
            lines.append(f"  {k.precision:<8s} {k.op} {k.tensor}")
            lines.append(f"           {k.reason}")
    by_id = {t.id: t for t in result.trials}
    if result.pareto:
        lines += ["", "Pareto front of all trials (size, latency, metric; none of them beats another on all three):"]
        for i in result.pareto:
            t = by_id[i]
            lines.append(f"  trial {t.id:3d}  {_kib(t.size_bytes):>12s}  latency {_ratio(t.latency_ratio):>6s}  "
                         f"{metric_text(result.budget, t.metric)}  {t.move}")
    if result.best is not None and result.out_dir:
        lines += ["", "recipe: " + _recipe_summary(result.best)]
        lines.append(f"wrote {result.out_dir}/best.tflite, best.json, best-recipe.json and trials.json")
        if reproduce:
            lines.append(f"reproduce: {reproduce}")
    lines.append(f"stopped: {result.stopped} ({len(result.trials)} trial(s)"
                 + (f", {result.replayed} read from the history" if result.replayed else "") + ")")
    for note in result.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _recipe_summary(trial: Trial) -> str:
    from edgequant.recipe import Recipe

    return Recipe.from_dict(trial.ran_recipe or trial.recipe, "trial recipe").summary()
