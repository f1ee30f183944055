"""One trial: build a recipe with ``edgequant.quantize`` and measure it in LiteRT.

Every trial goes through the same ``quantize`` that ``edgequant quantize
--recipe`` runs, so the recipe a trial records rebuilds its model byte for
byte. What keeps trials cheap is shared work: one calibration statistics pass
(``calibrate``) serves every trial without float-graph transforms, the float
model's outputs on the data are computed once, and the float model stays
loaded for the interleaved latency runs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgequant.calibrate import CalibrationStats
from edgequant.errors import EdgequantError
from edgequant.evaluate.latency import measure_interleaved
from edgequant.evaluate.metrics import fidelity_by_output, lower_bounds, paired_bound, top1, worst_output
from edgequant.recipe import Recipe
from edgequant.runtime import Inputs, Runner, rows
from edgequant.tune.records import Budget, Trial
from edgequant.tune.score import Score, per_sample
from edgequant.types import Dataset, FloatModel, QuantizedModel

__all__ = ["TrialRunner", "WARMUP", "rejudge"]

# A trial's timing stops once its latency ratio to float is known to within 3% (at 95% confidence): the
# objective treats ratios within 10% of each other as a tie (pareto.NOISE), so that is enough to rank by,
# and on real-size models the rounds of a slow candidate were half of a trial's time.
LATENCY_PRECISION = 0.03
# Warm-up invokes per model before the timed runs, as compare and analyze use.
WARMUP = 5


def rejudge(trial: Trial, budget: Budget) -> Trial:
    """``trial`` judged by ``budget``: a resumed run may change the budget, never the measurements."""
    import dataclasses

    if not trial.ok or trial.sqnr_db is None or trial.cosine is None:
        return trial
    if (budget.metric.value == "top1" and trial.accuracy is None) or (budget.metric.value == "task"
                                                                       and trial.task is None):
        return trial
    value = budget.value(trial.accuracy, trial.sqnr_db, trial.cosine, trial.task)
    # A history written before trials kept their bounds has only the figures: those are judged as they are.
    bound = value if trial.sqnr_bound_db is None or trial.cosine_bound is None else \
        budget.value(trial.accuracy_bound, trial.sqnr_bound_db, trial.cosine_bound, trial.task_bound)
    return dataclasses.replace(trial, metric=value, drop=budget.drop(value), bound=bound,
                               shortfall=budget.shortfall(bound), meets_budget=budget.meets(bound))


class TrialRunner:
    """Builds and measures candidates of one float model on one data set."""

    def __init__(self, floats: FloatModel, data: Dataset, calibration: Inputs, stats: CalibrationStats,
                 budget: Budget, runs: int, *, float_runner: Runner, reference: Mapping[str, np.ndarray],
                 output: str | None = None, score: Score | None = None,
                 float_scores: np.ndarray | None = None) -> None:
        """``float_runner`` is the float model loaded (it stays loaded for the interleaved latency runs) and
        ``reference`` its outputs on ``data``, which tune has already computed for the budget."""
        self.floats = floats
        self.data = data
        self.calibration = calibration
        self.stats = stats
        self.budget = budget
        self.runs = runs
        self.float_runner = float_runner
        self.reference = dict(reference)
        self.label = output or floats.signature.output_names[0]
        # The task score and the float model's own per-sample scores, which each candidate's are paired with.
        self.score, self.float_scores = score, float_scores
        self.samples = rows(data.inputs)

    def build(self, recipe: Recipe) -> QuantizedModel:
        """The model ``recipe`` describes, from ``quantize`` (raises EdgequantError if it cannot be built)."""
        from edgequant.pipeline import quantize

        scheme = recipe.require_scheme()
        if recipe.transforms or recipe.engine.value != "litert":
            # Transforms edit the float graph, so the shared statistics no longer describe it, and
            # TensorFlow's converter calibrates itself: both need the samples.
            return quantize(self.floats, recipe=recipe, calibration=self.calibration)
        if scheme.needs_calibration:
            return quantize(self.floats, recipe=recipe, stats=self.stats)
        return quantize(self.floats, recipe=recipe)

    def measure(self, trial_id: int, recipe: Recipe, stage: str, move: str, parent: int | None = None,
                layer: dict[str, str] | None = None) -> tuple[Trial, bytes | None]:
        """Build ``recipe`` and measure it; a recipe the engine cannot build is a failed trial, not an error."""
        start = time.perf_counter()
        common: dict[str, Any] = dict(id=trial_id, stage=stage, move=move, recipe=recipe.to_dict(), parent=parent,
                                      layer=layer)
        try:
            built = self.build(recipe)
            tflite = built.tflite
            runner = Runner(tflite, 1, f"trial {trial_id}")
            out = runner.predict(self.data.inputs)
        except EdgequantError as exc:
            return Trial(status="failed", error=str(exc), seconds=time.perf_counter() - start, **common), None
        # The budget holds for every output: the worst one's fidelity is the trial's.
        fid = worst_output(fidelity_by_output(out, self.reference))[1]
        accuracy = top1(out[self.label], self.data.y) if self.data.y is not None else None
        task = task_bound = None
        if self.score is not None and self.float_scores is not None:
            try:
                scores = per_sample(self.score, str(self.budget.score), out, self.reference, self.samples,
                                    f"trial {trial_id}")
            except EdgequantError as exc:  # outputs the score cannot take (NaN, say) fail this trial, not the run
                return Trial(status="failed", error=str(exc), seconds=time.perf_counter() - start, **common), None
            task, task_bound = float(scores.mean()), paired_bound(scores, self.float_scores)
        value = self.budget.value(accuracy, fid.sqnr_db, fid.cosine, task)
        # Judged at its lower confidence bound: the search keeps the most compressed candidate that meets the
        # budget, and a figure from a few samples that meets it only by their luck would miss it on the next.
        low = lower_bounds(out, self.reference, self.data.y, self.label)
        bound = self.budget.value(low.accuracy, low.sqnr_db, low.cosine, task_bound)
        latency_ms = float_ms = ratio = None
        if self.runs > 0:
            try:
                float_lat, lat = measure_interleaved([self.float_runner, runner], self.data.inputs, self.runs, WARMUP,
                                                     precision=LATENCY_PRECISION)
            except EdgequantError as exc:
                return Trial(status="failed", error=str(exc), seconds=time.perf_counter() - start, **common), None
            latency_ms, float_ms = lat.median_ms, float_lat.median_ms
            ratio = lat.median_ms / float_lat.median_ms if float_lat.median_ms > 0 else None
        # The plan that ran, as quantize reports it: reusable with quantize --recipe and the calibration data.
        ran = built.recipe.to_dict() if built.recipe is not None else recipe.to_dict()
        trial = Trial(status="ok", ran_recipe=ran, metric=value, drop=self.budget.drop(value), bound=bound,
                      shortfall=self.budget.shortfall(bound), meets_budget=self.budget.meets(bound),
                      accuracy=accuracy, sqnr_db=fid.sqnr_db, cosine=fid.cosine, accuracy_bound=low.accuracy,
                      sqnr_bound_db=low.sqnr_db, cosine_bound=low.cosine, task=task, task_bound=task_bound,
                      size_bytes=len(tflite),
                      size_ratio=len(tflite) / len(self.floats.tflite), latency_ms=latency_ms,
                      float_latency_ms=float_ms, latency_ratio=ratio, seconds=time.perf_counter() - start,
                      sha256=hashlib.sha256(tflite).hexdigest(), **common)
        return trial, tflite
