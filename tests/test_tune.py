"""tune/: the search to an accuracy budget, on the zoo's seed_mlp (benchmarks/zoo.py, cached in .bench-cache).

The model is used as its float .tflite, so that no TensorFlow runs during the
searches (and the converter stages, which need a Keras source, are skipped).
Latency is measured (a few interleaved runs) but never asserted on: only
sizes, recipes and the metric, which are deterministic for fixed data.

- loose budget: the fully int8 model (``schemes=["int8"]``), and in the
  whole space a one-scheme model, the smallest that meets the budget;
- tight budget (output SQNR 3.5 dB above what whole-model int8 reaches):
  at least one layer falls back, the result meets the budget, explains each
  fallback, and ``quantize --recipe best-recipe.json`` rebuilds it byte for byte;
- a run killed after its first trial resumes to the same best model;
- limits: a trial limit that stops short of the budget keeps the closest model
  and states the gap (exit 1); a spent time budget stops before any trial.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import edgequant
from edgequant.cli import main
from edgequant.errors import InputError
from edgequant.tune import TuneResult
from edgequant.tune.records import Metric, parse_duration

RUNS = 5  # latency runs per trial: measured, never asserted on


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from benchmarks import zoo

    zm = zoo.load("seed_mlp")
    folder = tmp_path_factory.mktemp("tune")
    model = folder / "seed_mlp.tflite"
    edgequant.convert(zm.keras_path, model)
    return {"model": str(model), "data": str(zm.test_path), "calibration": str(zm.calibration_path),
            "folder": str(folder)}


def _tune(mlp: dict[str, str], out: Path, **kwargs: object) -> TuneResult:
    return edgequant.tune(mlp["model"], mlp["data"], out=out, calibration=mlp["calibration"], runs=RUNS,
                          **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def loose(mlp: dict[str, str]) -> TuneResult:
    return _tune(mlp, Path(mlp["folder"]) / "loose", max_drop=5.0, schemes=["int8"])


@pytest.fixture(scope="module")
def tight_floor(loose: TuneResult) -> float:
    """An output SQNR floor 3.5 dB above what whole-model int8 reaches (44.5 dB measured): beyond any observer."""
    assert loose.best is not None and loose.best.sqnr_db is not None
    return round(loose.best.sqnr_db + 3.5, 3)


def _tight_args(mlp: dict[str, str], floor: float, out: Path) -> list[str]:
    return ["tune", mlp["model"], "--data", mlp["data"], "--calibration", mlp["calibration"], "--metric", "sqnr",
            "--max-drop", repr(floor), "--objective", "size", "--schemes", "int8", "--runs", str(RUNS),
            "--out", str(out)]


@pytest.fixture(scope="module")
def tight(mlp: dict[str, str], tight_floor: float) -> Path:
    """The uninterrupted tight run, through the command line; its folder."""
    out = Path(mlp["folder"]) / "tight"
    assert main(_tight_args(mlp, tight_floor, out)) == 0
    return out


def _best(folder: Path) -> dict:
    return json.loads((folder / "best.json").read_text())


def test_loose_budget_gives_the_fully_int8_model(loose: TuneResult) -> None:
    assert loose.met and loose.best is not None and loose.budget.metric is Metric.TOP1
    assert loose.best.recipe["scheme"] == "int8" and loose.best.recipe["tensors"] == {}
    assert loose.best.stage == "scheme" and not loose.kept_out
    # The budget was met at once: no observer, algorithm or layer was tried.
    assert [t.stage for t in loose.trials] == ["scheme"]
    folder = Path(loose.out_dir or "")
    assert (folder / "best.tflite").read_bytes()[4:8] == b"TFL3"
    assert json.loads((folder / "best-recipe.json").read_text())["scheme"] == "int8"


def test_the_budget_is_judged_at_its_lower_confidence_bound(loose: TuneResult) -> None:
    """A trial meets the budget when its metric's 95% lower bound over the samples does, not its estimate:
    an SQNR floor between the two is missed, by the bound's distance to it."""
    from edgequant.tune.records import Budget
    from edgequant.tune.trial import rejudge

    t = loose.best
    assert t is not None and t.sqnr_db is not None and t.sqnr_bound_db is not None and t.cosine_bound is not None
    assert t.bound is not None and t.metric is not None and t.bound <= t.metric
    assert t.sqnr_bound_db < t.sqnr_db and t.cosine_bound <= (t.cosine or 0.0)
    floor = (t.sqnr_bound_db + t.sqnr_db) / 2
    judged = rejudge(t, Budget(Metric.SQNR, floor, None))
    assert judged.metric == t.sqnr_db and judged.bound == t.sqnr_bound_db and not judged.meets_budget
    assert judged.shortfall == pytest.approx(floor - t.sqnr_bound_db)
    assert rejudge(t, Budget(Metric.SQNR, t.sqnr_bound_db - 0.01, None)).meets_budget
    assert "lower confidence bound" in loose.budget.describe()
    stored = json.loads((Path(loose.out_dir or "") / "trials.json").read_text())["trials"][0]
    assert stored["bound"] == t.bound and stored["sqnr_bound_db"] == t.sqnr_bound_db


def test_tune_is_silent_and_serializable(mlp: dict[str, str], tmp_path: Path,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    result = _tune(mlp, tmp_path / "quiet", max_drop=5.0, schemes="int8")
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", "the library must not print (fd level included)"
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["best"]["recipe"]["scheme"] == "int8" and data["budget"]["metric"] == "top1"


def test_loose_budget_in_the_whole_space_keeps_one_scheme(mlp: dict[str, str], tmp_path: Path) -> None:
    result = _tune(mlp, tmp_path / "run", max_drop=5.0, objective="size")
    assert result.met and result.best is not None
    assert [t.recipe["scheme"] for t in result.trials if t.stage == "scheme"] == [
        "fp16", "w4a8", "weight-only-int4", "int8", "dynamic", "weight-only-int8", "int16x8"]
    assert result.best.recipe["tensors"] == {}, "a loose budget needs no per-layer fallback"
    meeting = [t for t in result.trials if t.meets_budget]
    assert result.best.size_bytes == min(t.size_bytes for t in meeting)
    assert result.best.id in result.pareto
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    assert trials["pareto"] == list(result.pareto) and len(trials["trials"]) == len(result.trials)


def test_tight_budget_falls_back_layers_and_meets_it(tight: Path, tight_floor: float) -> None:
    best = _best(tight)
    assert best["met"] and best["best"]["sqnr_db"] >= tight_floor
    whole_int8 = [t for t in json.loads((tight / "trials.json").read_text())["trials"]
                  if t["status"] == "ok" and not t["recipe"]["tensors"]]
    assert whole_int8 and all(not t["meets_budget"] for t in whole_int8), "the budget must be beyond int8"
    rules = best["best"]["recipe"]["tensors"]
    assert rules and all(r["precision"] in ("float", "int16x8") for r in rules.values())
    assert best["best"]["recipe"]["version"] == 2
    # Every layer kept out of int8 says which trial put it there and what it measured.
    assert {k["tensor"] for k in best["kept_out"]} == set(rules)
    for k in best["kept_out"]:
        assert k["trial"] is not None and f"trial {k['trial']}" in k["reason"] and "dB" in k["reason"]
    assert best["ranking"], "the layer search follows a sensitivity ranking"


def test_best_recipe_rebuilds_the_tuned_model(tight: Path, mlp: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "again.tflite"
    assert main(["quantize", mlp["model"], "--recipe", str(tight / "best-recipe.json"), "--calibration",
                 mlp["calibration"], "-o", str(out)]) == 0
    assert out.read_bytes() == (tight / "best.tflite").read_bytes()


def test_an_interrupted_run_resumes_to_the_same_best(tight: Path, mlp: dict[str, str], tight_floor: float,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "edgequant", *_tight_args(mlp, tight_floor, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "trials.json").exists():
            assert proc.poll() is None, "the run ended before its first trial was written"
            assert time.monotonic() < deadline, "no trial within 120 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # mid-run, as a crash or a killed job would
    finally:
        proc.wait(timeout=60)
    history = json.loads((out / "trials.json").read_text())
    uninterrupted = json.loads((tight / "trials.json").read_text())
    assert 1 <= len(history["trials"]) < len(uninterrupted["trials"]), "the kill must land mid-run"
    # The best model so far was on disk before the history that names it.
    assert _best(out)["best"]["id"] == history["best"]
    assert main(_tight_args(mlp, tight_floor, out)) == 2, "an existing history needs --resume"
    assert main(_tight_args(mlp, tight_floor, out) + ["--resume"]) == 0
    resumed = _best(out)
    assert resumed["replayed"] >= 1
    assert (out / "best.tflite").read_bytes() == (tight / "best.tflite").read_bytes()
    assert (out / "best-recipe.json").read_text() == (tight / "best-recipe.json").read_text()
    assert len(json.loads((out / "trials.json").read_text())["trials"]) == len(uninterrupted["trials"])


def test_a_budget_not_met_keeps_the_closest_and_states_the_gap(mlp: dict[str, str], tight_floor: float,
                                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    out = tmp_path / "short"
    code = main(_tight_args(mlp, tight_floor, out) + ["--trials", "2"])
    text = capsys.readouterr().out
    assert code == 1, "a missed budget is a failed check"
    best = _best(out)
    assert not best["met"] and best["stopped"] == "trial limit 2 reached"
    assert best["shortfall"] > 0 and best["best"]["id"] in (1, 2)
    assert "budget not met" in text and "misses it by" in text
    assert (out / "best.tflite").exists()


def test_the_first_trial_is_fp16_so_a_search_cut_short_still_meets_the_budget(mlp: dict[str, str],
                                                                              tmp_path: Path) -> None:
    # 60 dB is beyond what 8-bit weights reach on seed_mlp and within fp16's reach.
    result = _tune(mlp, tmp_path / "fp16", max_drop=60.0, metric="sqnr", objective="size", trials=7)
    schemes = [t.recipe["scheme"] for t in result.trials]
    assert schemes == ["fp16", "w4a8", "weight-only-int4", "int8", "dynamic", "weight-only-int8", "int16x8"]
    assert [t.recipe["scheme"] for t in result.trials if t.meets_budget] == ["fp16"]
    assert result.met and result.best is not None and result.best.recipe["scheme"] == "fp16"
    assert result.best.recipe["engine"] == "litert", "fp16 comes from the litert engine, for any source"
    # Cut short after one trial, the run still has the model within budget.
    one = _tune(mlp, tmp_path / "one", max_drop=60.0, metric="sqnr", objective="size", trials=1)
    assert one.met and one.best is not None and one.best.recipe["scheme"] == "fp16"


def test_a_spent_time_budget_stops_before_any_trial(mlp: dict[str, str], tmp_path: Path) -> None:
    result = _tune(mlp, tmp_path / "none", max_drop=0.5, time_budget=1e-9)
    assert result.stopped.startswith("time budget") and result.best is None and not result.trials
    assert not result.met


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0),
                                               ("1h30m", 5400.0), (None, None)])
def test_durations(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "10x", "0s", "-5m", "", "m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InputError, match="--time-budget"):
        parse_duration(text)


@pytest.mark.parametrize(("metric", "value", "text"), [
    (Metric.TOP1, 0.9, "top-1 90.00% (+0.00 pt)"), (Metric.TOP1, 0.89999, "top-1 90.00% (+0.00 pt)"),
    (Metric.TOP1, 0.88, "top-1 88.00% (-2.00 pt)"), (Metric.TASK, 0.9, "task score 0.9 (+0)"),
    (Metric.TASK, 0.85, "task score 0.85 (-0.05)")])
def test_a_change_that_rounds_to_zero_prints_without_a_minus(metric: Metric, value: float, text: str) -> None:
    from edgequant.tune.explain import metric_text
    from edgequant.tune.records import Budget
    assert metric_text(Budget(metric, 1.0, 0.9, score="s.py:f" if metric is Metric.TASK else None), value) == text


def test_float_kernel_trials_tie_with_float_whatever_their_noise() -> None:
    """fp16 and weight-only int8 run float's own kernels: ranked at 1.0x, so a noisy 0.85x fp16 neither
    anchors the latency tie below a weight-only int8 model measured at 1.02x nor beats it when larger; an
    integer model's measured ratio still stands, and a layer mix with int8 layers is ranked as measured."""
    from edgequant.tune.pareto import best_trial, pareto_front, ranked_latency
    from edgequant.tune.records import Objective, Trial

    def trial(id_, scheme, size, ratio, tensors=None):
        return Trial(id=id_, stage="scheme", move=scheme, recipe={"scheme": scheme, "tensors": tensors or {}},
                     status="ok", metric=0.999, meets_budget=True, size_bytes=size, size_ratio=size / 1000,
                     latency_ratio=ratio)

    fp16 = trial(1, "fp16", 540, 0.85)
    wo8 = trial(2, "weight-only-int8", 373, 1.02)
    assert ranked_latency(fp16) == ranked_latency(wo8) == 1.0
    assert best_trial([fp16, wo8], Objective.LATENCY) is wo8
    assert pareto_front([fp16, wo8]) == (2,)
    int8 = trial(3, "int8", 280, 0.60)
    assert best_trial([fp16, wo8, int8], Objective.LATENCY) is int8
    mixed = trial(4, "weight-only-int8", 300, 0.85, tensors={"t": {"precision": "int8"}})
    assert ranked_latency(mixed) == 0.85 and best_trial([fp16, wo8, mixed], Objective.LATENCY) is mixed
    unmeasured = trial(5, "fp16", 540, None)
    assert ranked_latency(unmeasured) == float("inf")


# ------------------------------------------------------------------ the task metric (tune/score.py)

SCORES = '''
import numpy as np

def same_top1(outputs, reference):
    (name, out), = outputs.items()
    return (out.argmax(-1) == reference[name].argmax(-1)).astype(float)

def close(outputs, reference):
    (name, out), = outputs.items()
    return -np.abs(out - reference[name]).max(-1)

def broken(outputs, reference):
    raise ValueError("no labels here")

def one_number(outputs, reference):
    return 1.0

def nan_unless_float(outputs, reference):
    (name, out), = outputs.items()
    return np.where(np.array_equal(out, reference[name]), 1.0, np.nan) * np.ones(len(out))
'''


def test_a_task_score_is_the_budget(mlp: dict[str, str], tmp_path: Path) -> None:
    """The user's per-sample score of (outputs, float outputs) is the metric: the float model's own mean is the
    reference, each trial stores the mean and its paired lower bound, and the budget is judged at the bound."""
    scores = tmp_path / "scores.py"
    scores.write_text(SCORES)
    result = _tune(mlp, tmp_path / "task", max_drop=0.01, score=f"{scores}:same_top1", objective="size",
                   schemes="int8,w4a8")
    assert result.budget.metric.value == "task" and result.budget.reference == 1.0
    assert result.budget.score == "scores.py:same_top1"
    ok = [t for t in result.trials if t.ok]
    assert ok and all(t.task is not None and t.task_bound is not None and t.task_bound <= t.task for t in ok)
    assert all(t.metric == t.task and t.bound == t.task_bound for t in ok)
    assert all(t.meets_budget == (1.0 - t.task_bound <= 0.01 + 1e-9) for t in ok)
    assert result.met and result.best is not None and result.best.size_bytes == min(
        t.size_bytes for t in ok if t.meets_budget)
    stored = json.loads((tmp_path / "task" / "trials.json").read_text())
    assert stored["run"]["score"].startswith("scores.py:same_top1 sha256:") and stored["float"]["task"] == 1.0
    # Resumed with another score, the history is not this run's.
    with pytest.raises(InputError, match="another task score"):
        _tune(mlp, tmp_path / "task", max_drop=0.01, score=f"{scores}:close", objective="size",
              schemes="int8,w4a8", resume=True)
    # A score given as a Python function, through the API: a drop in the score's own units.
    def largest_error(outputs, reference):
        return -np.max([np.abs(outputs[k] - reference[k]).max(-1) for k in reference], axis=0)

    from_api = _tune(mlp, tmp_path / "api", max_drop=0.05, score=largest_error, objective="size", schemes="int8",
                     trials=2)
    assert from_api.budget.reference == 0.0 and all(t.task is not None and t.task <= 0 for t in from_api.trials if t.ok)


def test_task_score_on_the_command_line(mlp: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    scores = tmp_path / "scores.py"
    scores.write_text(SCORES)
    base = ["tune", mlp["model"], "--data", mlp["data"], "--calibration", mlp["calibration"], "--max-drop", "0.01",
            "--runs", str(RUNS), "--objective", "size", "--schemes", "int8"]
    assert main([*base, "--score", f"{scores}:same_top1", "--out", str(tmp_path / "ok")]) == 0
    out = capsys.readouterr().out
    html = (tmp_path / "ok" / "report.html").read_text(encoding="utf-8")
    assert "task score (mean)" in html and "float\ntask score (mean): 1.000" in html.replace("\\n", "\n")
    assert "budget: task score drop <= 0.01 (mean of scores.py:same_top1 over the samples; float model 1)" in out
    assert "task score 1 (+0)" in out
    # A candidate the score cannot take (here: NaN for any output but float's) fails that trial, not the run.
    assert main([*base, "--score", f"{scores}:nan_unless_float", "--out", str(tmp_path / "nan"), "--trials", "1",
                 "--no-report"]) == 1
    trial = json.loads((tmp_path / "nan" / "trials.json").read_text())["trials"][0]
    assert trial["status"] == "failed" and "NaN or infinite on trial 1" in trial["error"]


@pytest.mark.parametrize(("score", "message"), [
    ("{s}:broken", "task score scores.py:broken failed on the float model: ValueError: no labels here"),
    ("{s}:one_number", "task score scores.py:one_number: expected one number per sample, shape (450,), found "
                       "shape () on the float model"),
    ("{s}:missing", "--score: expected a function missing in "),
    ("{s}", "--score: expected FILE.py:FUNCTION, found "),
    ("{d}/none.py:f", "--score: expected an existing Python file (.py) before ':', found "),
])
def test_bad_task_scores_stop_before_any_trial(mlp: dict[str, str], tmp_path: Path, score: str,
                                               message: str) -> None:
    scores = tmp_path / "scores.py"
    scores.write_text(SCORES)
    with pytest.raises(InputError, match=re.escape(message)):
        _tune(mlp, tmp_path / "out", max_drop=0.01, score=score.format(s=scores, d=tmp_path))
    assert not (tmp_path / "out").exists()


def test_task_metric_and_score_go_together(mlp: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--metric task needs a score"):
        _tune(mlp, tmp_path / "out", max_drop=0.01, metric="task")
    with pytest.raises(InputError, match="--score is the task metric's: expected --metric task"):
        _tune(mlp, tmp_path / "out", max_drop=0.01, metric="cosine", score=lambda o, r: np.ones(1))
