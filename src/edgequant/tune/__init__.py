"""Stage: tune. The smallest and fastest model that stays within the user's accuracy budget.

    options -> load -> data -> run folder (resume checks) -> calibrate once -> search -> best on disk

``tune`` wires these stages and does no work of its own: the search is in
search.py, the space it searches in space.py (recipes, the same ones
``quantize --recipe`` reads), a trial's build and measurement in trial.py,
the run folder in state.py, ranking in pareto.py and the explanation in
explain.py. docs/tune.md describes the search and every file it writes.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgequant._util import Progress, no_progress
from edgequant.checks import check_labels, check_runs, check_samples, classes_of
from edgequant.data import DataLike, select_samples
from edgequant.errors import InputError
from edgequant.provenance import Provenance, collect
from edgequant.recipe import Recipe
from edgequant.tune.explain import explanation, kept_out
from edgequant.tune.pareto import best_trial, pareto_front
from edgequant.tune.records import (Budget, LayerChoice, Metric, Objective, RankedLayer, Trial, TrialReport,
                                    TuneResult, parse_duration)
from edgequant.tune.search import Search, StopSearch
from edgequant.tune.space import converter_recipes, recipe_key
from edgequant.tune.score import Score, per_sample, resolve_score
from edgequant.tune.state import RunDir, fingerprint
from edgequant.tune.trial import TrialRunner, rejudge
from edgequant.types import Dataset, FloatModel, Precision, Scheme, parse_enum

__all__ = ["tune", "TuneResult", "Trial", "TrialReport", "Budget", "Metric", "Objective", "LayerChoice",
           "RankedLayer", "OnTrial", "RANK_TOP_K", "DEFAULT_RUNS"]

# Layers whose sensitivity is measured (each one re-quantization and one pass over the data); the
# rest follow in graph order. Every zoo model has at most 14 layers that compute activations.
RANK_TOP_K = 16
# Interleaved latency runs per trial (the float model runs as often).
DEFAULT_RUNS = 50
# Called after every trial; the library never prints, the CLI does.
OnTrial = Callable[[TrialReport], None]


def _schemes(value: Sequence[str] | str | None) -> tuple[Scheme, ...]:
    if value is None or value == "all":
        return tuple(Scheme)
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    out = tuple(parse_enum(Scheme, i, "scheme") for i in items if i)
    if not out:
        raise InputError("--schemes: expected a comma-separated list of schemes or 'all', found none")
    return out


def _check_options(max_drop: float, trials: int | None, runs: int, samples: int | None,
                   objective: Objective) -> None:
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not math.isfinite(max_drop) \
            or max_drop < 0:
        raise InputError(f"--max-drop: expected a number of 0 or more, in the metric's units, found {max_drop!r}")
    if trials is not None and trials < 1:
        raise InputError(f"--trials: expected 1 or more, found {trials}")
    check_runs(runs)
    if runs == 0 and objective is not Objective.SIZE:
        raise InputError(f"--runs 0 measures no latency: expected --runs 1 or more for objective {objective.value}, "
                         "or --objective size")
    check_samples(samples)


class _Session:
    """The run the search works on: trials (replayed from the history or measured now), limits, the ranking."""

    def __init__(self, floats: FloatModel, data: Dataset, runner: TrialRunner, rundir: RunDir, budget: Budget,
                 objective: Objective, schemes: tuple[Scheme, ...], samples: int, max_trials: int | None,
                 deadline: float | None, time_text: str, run_info: dict, progress: Progress,
                 on_trial: OnTrial | None) -> None:
        from edgequant.engines.litert import layer_ops, precision_ops

        self.floats, self.data, self.runner, self.rundir = floats, data, runner, rundir
        self.budget, self.objective, self.schemes, self.samples = budget, objective, schemes, samples
        self.max_trials, self.deadline, self.time_text = max_trials, deadline, time_text
        self.longest = 0.0  # seconds of the longest trial measured in this run
        self.opened = time.monotonic()
        self.run_info, self.progress, self.on_trial = run_info, progress, on_trial
        self.layer_ops = layer_ops(floats.tflite)
        # Stored trials keep their measurements; whether they meet the budget is this run's to judge.
        rundir.trials[:] = [rejudge(t, budget) for t in rundir.trials]
        self.able: dict[Precision, frozenset[str] | None] = {p: precision_ops(p) for p in Precision}
        self.history = {recipe_key(Recipe.from_dict(t.recipe, "trials.json")): t for t in rundir.trials}
        # Trials of an earlier run that this run's search has read back so far (reported once each).
        self.earlier = {t.id for t in rundir.trials}
        self.replayed: set[int] = set()
        # The last few built models, so the ranking rarely has to rebuild its starting model.
        self.built: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        earlier_best = best_trial(rundir.trials, objective)
        self.best_id = rundir.best_on_disk()[0] if earlier_best is not None else None

    @property
    def trials(self) -> list[Trial]:
        return self.rundir.trials

    def trial(self, recipe: Recipe, stage: str, move: str, parent: int | None = None,
              layer: dict[str, str] | None = None) -> Trial:
        stored = self.history.get(recipe_key(recipe))
        if stored is not None:
            if stored.id in self.earlier and stored.id not in self.replayed:
                self.replayed.add(stored.id)
                if self.on_trial is not None:
                    self.on_trial(TrialReport(stored, best_trial(self.trials, self.objective), self.budget, True))
            return stored
        if self.max_trials is not None and len(self.trials) >= self.max_trials:
            raise StopSearch(f"trial limit {self.max_trials} reached")
        # A trial that would end past the budget is not started: the longest one so far says how long one
        # takes (a real-size model's trial takes minutes, and --time-budget is a promise about wall time).
        if self.deadline is not None and time.monotonic() + self.longest >= self.deadline:
            raise StopSearch(f"time budget {self.time_text} reached" if time.monotonic() >= self.deadline else
                             f"time budget {self.time_text}: no time left for another trial (the longest took "
                             f"{self.longest:.0f} s)")
        new_id = max((t.id for t in self.trials), default=0) + 1
        started = time.monotonic()
        trial, tflite = self.runner.measure(new_id, recipe, stage, move, parent, layer)
        self.longest = max(self.longest, time.monotonic() - started)
        # A bar with a count and the time left: trials against --trials, else seconds against --time-budget.
        if self.max_trials is not None:
            self.progress("tune trials", len(self.trials), self.max_trials)
        elif self.deadline is not None:
            total = max(1, round(self.deadline - self.opened))
            self.progress(f"tune: {len(self.trials)} trials, seconds of the time budget",
                          min(total, round(time.monotonic() - self.opened)), total)
        self.trials.append(trial)
        self.history[recipe_key(recipe)] = trial
        if tflite is not None:
            self.built[trial.id] = tflite
            while len(self.built) > 8:
                self.built.popitem(last=False)
        best = best_trial(self.trials, self.objective)
        if best is not None and best.id != self.best_id:
            # Usually the new trial; with latency ties (pareto.NOISE) an earlier, smaller one can take over.
            self.rundir.write_best(best, tflite if best.id == trial.id and tflite else self.model_bytes(best),
                                   self.result("running"))
            self.best_id = best.id
        self.save()
        if self.on_trial is not None:
            self.on_trial(TrialReport(trial, best, self.budget, False))
        return trial

    def model_bytes(self, trial: Trial) -> bytes:
        """A trial's model: from memory if recent, else rebuilt from its recipe (quantize is deterministic)."""
        if trial.id in self.built:
            return self.built[trial.id]
        return self.runner.build(Recipe.from_dict(trial.recipe, "trials.json")).tflite

    def rank(self, base: Trial) -> list[RankedLayer]:
        from edgequant.analyze.sensitivity import layer_sensitivity

        # Rank by the budget's metric: accuracy with labels for top1, output SQNR otherwise.
        by = "accuracy" if self.budget.metric is Metric.TOP1 else "sqnr_db"
        stored = self.rundir.stored_ranking(base.id, by)
        if stored is not None:
            return stored
        data = self.data if self.budget.metric is Metric.TOP1 else self.data.without_labels()
        sens = layer_sensitivity(self.floats, self.model_bytes(base), data, top_k=RANK_TOP_K,
                                 progress=self.progress)
        ranked = [RankedLayer(tensor=s.tensor, op=s.op, gain=s.gain if math.isfinite(s.gain) else None,
                              sqnr_db=s.sqnr_db if math.isfinite(s.sqnr_db) else None,
                              local_sqnr_db=s.local_sqnr_db) for s in sens.layers]
        seen = {r.tensor for r in ranked}
        # Layers past the measured top ones: in graph order, after them.
        ranked += [RankedLayer(tensor=t, op=op, gain=None, sqnr_db=None, local_sqnr_db=None)
                   for t, op in self.layer_ops.items() if t not in seen and self._tunable(t, op)]
        self.rundir.set_ranking(base.id, by, ranked)
        self.save()
        return ranked

    def decide(self, trial: Trial, kept: bool) -> None:
        # The first decision on a trial stands: a later stage can reach the same recipe again (a tighten step
        # back to an earlier model) and judge it by another rule. Saved with the next write of the history;
        # a replay after a crash decides again, the same way.
        for i, t in enumerate(self.trials):
            if t.id == trial.id and t.accepted is None:
                self.trials[i] = dataclasses.replace(t, accepted=kept)
                self.history[recipe_key(Recipe.from_dict(t.recipe, "trials.json"))] = self.trials[i]

    def _tunable(self, tensor: str, op: str) -> bool:
        # A layer computes a float activation (shape arithmetic such as SHAPE or PACK does not) with an op
        # that some precision is allowed for.
        return tensor in self.runner.stats.tensors and any(ops is not None and op in ops for ops in self.able.values())

    def converter(self, scheme: Scheme) -> Recipe | None:
        return converter_recipes(self.schemes, self.floats.kind, self.samples).get(scheme)

    # --------------------------------------------------------------------------- results

    def result(self, stopped: str) -> TuneResult:
        trials = list(self.trials)
        best = best_trial(trials, self.objective)
        ranking = self.rundir.stored_ranking(int(self.rundir.ranking["base_trial"])) \
            if self.rundir.ranking else []
        return TuneResult(model=str(self.floats.source), data=self.data.source, budget=self.budget,
                          objective=self.objective, float_size_bytes=len(self.floats.tflite),
                          float_accuracy=self.run_info["float"].get("accuracy"), best=best,
                          met=bool(best is not None and best.meets_budget),
                          shortfall=None if best is None or best.meets_budget else best.shortfall,
                          explanation=explanation(best, trials, self.budget, self.objective,
                                                  len(self.floats.tflite)),
                          kept_out=kept_out(best, trials, ranking or [], self.budget), pareto=pareto_front(trials),
                          trials=tuple(trials), ranking=tuple(ranking or []), stopped=stopped,
                          replayed=len(self.replayed), out_dir=str(self.rundir.path),
                          notes=tuple(self.rundir.notes + self.run_info["notes"]),
                          provenance=self.run_info["provenance"])

    def save(self) -> None:
        best = best_trial(self.trials, self.objective)
        self.rundir.write_history(self.run_info["run"], self.run_info["float"], pareto_front(self.trials),
                                  best.id if best else None)

    def finish(self, stopped: str) -> TuneResult:
        """Make DIR/best.* name the final best (a replayed best is rebuilt), then write the summary."""
        result = self.result(stopped)
        best = result.best
        if best is not None:
            on_disk = self.rundir.best_on_disk()
            if on_disk != (best.id, best.sha256):
                tflite = self.model_bytes(best)
                self.rundir.write_best(best, tflite, result)
        if self.trials:
            self.rundir.write_summary(result)
            self.save()
        return result


def tune(model: FloatModel | str | Path, data: DataLike, max_drop: float, out: str | Path,
         calibration: DataLike | None = None, metric: Metric | str | None = None,
         objective: Objective | str = Objective.BALANCED, time_budget: str | float | None = None,
         trials: int | None = None, resume: bool = False, schemes: Sequence[str] | str | None = None,
         samples: int | None = None, runs: int = DEFAULT_RUNS, unsafe: bool = False,
         resize: tuple[int, int] | None = None, normalize: tuple[float, float] | None = None,
         progress: Progress = no_progress, on_trial: OnTrial | None = None,
         provenance: Provenance | None = None, *, signature: str | None = None,
         output: str | None = None, score: Score | str | None = None) -> TuneResult:
    """Search recipes for the best model by ``objective`` whose ``metric`` stays within ``max_drop``.

    ``metric`` is top1 (needs labels; the default with labels), sqnr (the
    default without), cosine, or task (the default with ``score``): the mean
    of ``score(outputs, float_outputs)``, one number per sample, a function or
    "FILE.py:FUNCTION" (tune/score.py); ``max_drop`` is in its units: points of
    accuracy, the lowest output SQNR in dB, cosine, or the score's own. ``objective`` is size,
    latency or balanced. The best model so far is in ``out`` (best.tflite,
    best.json, best-recipe.json) after every trial, with every trial in
    trials.json; ``resume`` continues from that history. ``on_trial`` is
    called after every trial (the CLI prints a line).
    """
    from edgequant.calibrate import collect_stats, shared_stats
    from edgequant.pipeline import DEFAULT_SAMPLES, load_checked_data, resolve_model
    from edgequant.evaluate import label_output
    from edgequant.evaluate.metrics import top1
    from edgequant.runtime import Runner, rows

    # Every option is checked before any model work or file.
    objective_ = parse_enum(Objective, objective, "objective")
    metric_ = None if metric is None else parse_enum(Metric, metric, "metric")
    seconds = parse_duration(time_budget)
    _check_options(max_drop, trials, runs, samples, objective_)
    schemes_ = _schemes(schemes)
    if metric_ is None and score is not None:
        metric_ = Metric.TASK
    if metric_ is Metric.TASK and score is None:
        raise InputError("--metric task needs a score: expected --score FILE.py:FUNCTION, found none")
    if score is not None and metric_ is not Metric.TASK:
        raise InputError(f"--score is the task metric's: expected --metric task (or no --metric), found --metric "
                         f"{metric_.value if metric_ else None}")
    score_fn, score_label, score_id = (None, None, None) if score is None else resolve_score(score)
    started = time.monotonic()
    floats = resolve_model(model, unsafe, signature)
    label, label_notes = label_output(floats.signature, output)
    ds = load_checked_data(data, floats, resize, normalize)
    check_labels(ds.y, classes_of(floats.signature.output(label).shape), ds.source)
    if metric_ is None:
        metric_ = Metric.TOP1 if ds.has_labels else Metric.SQNR
    if metric_ is Metric.TOP1 and not ds.has_labels:
        raise InputError("--metric top1 needs labels: expected DATA with labels (array y in a .npz, or one "
                         "subfolder per class), found none; use --metric sqnr or --metric cosine")
    notes: list[str] = list(label_notes) if metric_ is Metric.TOP1 else []
    n = samples if samples is not None else DEFAULT_SAMPLES
    if calibration is None:
        calib_ds = ds
        notes.append("no --calibration: calibrating on --data, which flatters every static candidate's accuracy")
    else:
        calib_ds = load_checked_data(calibration, floats, resize, normalize)
    x_cal = select_samples(calib_ds, n).inputs
    rundir = RunDir(Path(out), resume, fingerprint(floats.tflite, ds.inputs, ds.y, x_cal, score_id))
    float_runner = Runner(floats.tflite, 1, "float model")
    float_out = float_runner.predict(ds.inputs)
    float_acc = top1(float_out[label], ds.y) if ds.y is not None else None
    # The score runs on the float model's own outputs first: a score that fails stops the run before any trial.
    float_scores = None if score_fn is None else \
        per_sample(score_fn, str(score_label), float_out, float_out, rows(ds.inputs), "the float model")
    reference = {Metric.TOP1: float_acc, Metric.COSINE: 1.0, Metric.SQNR: None,
                 Metric.TASK: None if float_scores is None else float(float_scores.mean())}[metric_]
    budget = Budget(metric_, float(max_drop), reference, score_label)
    if metric_ is Metric.SQNR:
        notes.append(f"metric sqnr: --max-drop is the lowest output SQNR accepted ({max_drop:g} dB), since the "
                     "float model's own SQNR is infinite")
    with shared_stats():  # a trial that calibrates again (a transform's check) reuses the float model's pass
        stats = collect_stats(floats.tflite, x_cal, progress=progress)
        runner = TrialRunner(floats, ds, x_cal, stats, budget, runs, float_runner=float_runner, reference=float_out,
                             output=label, score=score_fn, float_scores=float_scores)
        run_info = {"run": {"model": str(floats.source), "data": ds.source, "samples": rows(x_cal), "runs": runs,
                            "metric": metric_.value, "max_drop": float(max_drop), "objective": objective_.value,
                            "schemes": [s.value for s in schemes_]},
                    "float": {"size_bytes": len(floats.tflite), "accuracy": float_acc,
                              **({"task": budget.reference} if metric_ is Metric.TASK else {})}, "notes": notes,
                    "provenance": provenance or collect({"model": model, "data": data, "calibration": calibration})}
        session = _Session(floats, ds, runner, rundir, budget, objective_, schemes_, n, trials,
                           None if seconds is None else started + seconds, str(time_budget), run_info, progress,
                           on_trial)
        stopped = Search(session, objective_, schemes_, n).run()
        return session.finish(stopped)
