"""The run folder: the history of every trial, and the best model so far, always on disk.

    DIR/trials.json       the run (model, data, settings), the ranking, every trial, the Pareto front
    DIR/best.tflite       the best model so far
    DIR/best.json         why it is the best: the budget, the trial, layers kept out of the scheme
    DIR/best-recipe.json  its recipe, for ``edgequant quantize --recipe``

Every file is written atomically (a temporary file, then a rename), the best
model before the history that names it: a run killed at any instant leaves a
consistent folder, and at worst re-runs the trial it was in. ``--resume``
reads trials.json, refuses a folder made for another model or other data,
and replays the search over the stored measurements (search.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgequant._util import atomic_dir_file, atomic_write
from edgequant.errors import InputError
from edgequant.recipe import Recipe
from edgequant.tune.records import RankedLayer, Trial, TuneResult

__all__ = ["RunDir", "fingerprint", "TRIALS", "BEST", "BEST_JSON", "BEST_RECIPE", "STATE_VERSION"]

TRIALS = "trials.json"
BEST = "best.tflite"
BEST_JSON = "best.json"
BEST_RECIPE = "best-recipe.json"
STATE_VERSION = 1
# What a resumed run must share with the stored one: measurements of another model or other data
# would be silently wrong. Budget, objective and limits may change; the stored trials stay valid.
IDENTITY = ("model_sha256", "data_sha256", "calibration_sha256", "score")


def _digest(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _arrays(inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    # One input hashes as its array alone (as before inputs had names), so earlier run folders still resume.
    if len(inputs) == 1:
        return list(inputs.values())
    return [a for name, v in inputs.items() for a in (np.frombuffer(name.encode(), np.uint8), v)]


def fingerprint(model: bytes, x: Mapping[str, np.ndarray], y: np.ndarray | None,
                calibration: Mapping[str, np.ndarray], score: str | None = None) -> dict[str, Any]:
    """The identity of a run: the float model, the data, the calibration samples (which --samples picks) and
    the task score's name (None without one): a history measured with another score is not this run's."""
    return {"model_sha256": hashlib.sha256(model).hexdigest(), "data_sha256": _digest(*_arrays(x), y),
            "calibration_sha256": _digest(*_arrays(calibration)), "score": score}


class RunDir:
    """One run folder. Nothing is written until the first trial finishes."""

    def __init__(self, path: Path, resume: bool, identity: dict[str, Any]) -> None:
        self.path = Path(path)
        self.identity = identity
        self.trials: list[Trial] = []
        self.ranking: dict[str, Any] | None = None
        self.notes: list[str] = []
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"--out: expected a folder, found a file: {self.path}")
        stored = self.path / TRIALS
        if not stored.exists():
            if resume:
                self.notes.append(f"--resume: no earlier run in {self.path} ({TRIALS} not found); started a new one")
            return
        if not resume:
            raise InputError(f"--out {self.path} holds an earlier run ({TRIALS}): expected --resume to continue it, "
                             "or another --out folder")
        self._load(stored)

    def _load(self, stored: Path) -> None:
        try:
            data = json.loads(stored.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError(f"expected version {STATE_VERSION}")
            run = data["run"]
            trials = [Trial.from_dict(t) for t in data["trials"]]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise InputError(f"--resume: cannot read {stored}: expected a {TRIALS} written by edgequant tune, "
                             f"found: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        for key in IDENTITY:
            if run.get(key) != self.identity[key]:
                what = {"model_sha256": "another model", "data_sha256": "other --data",
                        "calibration_sha256": "other calibration samples (--calibration or --samples)",
                        "score": f"another task score ({run.get(key)})"}[key]
                raise InputError(f"--resume: {self.path} holds the history of a run with {what} "
                                 f"({key} differs): expected the same MODEL, --data, --calibration, --samples and "
                                 "--score, or another --out folder")
        self.trials = trials
        self.ranking = data.get("ranking")
        self.notes.append(f"resumed from {stored}: {len(trials)} trial(s) in the history")

    # --------------------------------------------------------------------------- writing

    def write_best(self, trial: Trial, tflite: bytes, result: TuneResult) -> None:
        """The best model, its recipe and its explanation (before the history that names it)."""
        atomic_write(self.path / BEST, tflite)
        recipe = Recipe.from_dict(trial.ran_recipe or trial.recipe, "trial recipe")
        recipe.save(self.path / BEST_RECIPE)
        self.write_summary(result)

    def write_summary(self, result: TuneResult) -> None:
        data = result.to_dict()
        data.pop("trials", None)  # every trial is in trials.json
        atomic_dir_file(self.path / BEST_JSON, json.dumps(data, indent=2, allow_nan=False) + "\n")

    def write_history(self, run: dict[str, Any], float_info: dict[str, Any], pareto: Sequence[int],
                      best: int | None) -> None:
        data = {"version": STATE_VERSION, "run": {**run, **self.identity}, "float": float_info,
                "ranking": self.ranking, "trials": [t.to_dict() for t in self.trials], "pareto": list(pareto),
                "best": best}
        atomic_dir_file(self.path / TRIALS, json.dumps(data, indent=1, allow_nan=False) + "\n")

    def best_on_disk(self) -> tuple[int | None, str | None]:
        """The trial id and model sha256 that DIR/best.* hold now (None when absent or unreadable)."""
        try:
            data = json.loads((self.path / BEST_JSON).read_text(encoding="utf-8"))
            best = data.get("best") or {}
            on_disk = hashlib.sha256((self.path / BEST).read_bytes()).hexdigest()
        except (OSError, ValueError, AttributeError):
            return None, None
        return best.get("id"), on_disk

    def set_ranking(self, base: int, metric: str, layers: Sequence[RankedLayer]) -> None:
        self.ranking = {"base_trial": base, "metric": metric, "layers": [r.to_dict() for r in layers]}

    def stored_ranking(self, base: int, metric: str | None = None) -> list[RankedLayer] | None:
        """The ranking of trial ``base``'s model, if stored (and measured by ``metric``, when given)."""
        if not self.ranking or self.ranking.get("base_trial") != base:
            return None
        if metric is not None and self.ranking.get("metric") != metric:
            return None
        return [RankedLayer(**r) for r in self.ranking.get("layers", [])]
