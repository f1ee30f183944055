"""What ``tune`` hands back and keeps on disk: the budget, one record per trial, the result.

Every number in a trial is measured in LiteRT on the user's data (metric,
fidelity, batch-1 latency interleaved with the float model) or read from the
built file (size). Infinite SQNRs (identical outputs) are None in JSON, as
everywhere in edgequant. The schema is documented in docs/tune.md.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from edgequant.evaluate.metrics import CONFIDENCE
from edgequant.errors import InputError
from edgequant.types import Record

__all__ = ["Metric", "Objective", "Budget", "Trial", "TrialReport", "RankedLayer", "LayerChoice", "TuneResult",
           "parse_duration"]


class Metric(str, enum.Enum):
    """What the budget is measured in (docs/tune.md, "Budget")."""

    TOP1 = "top1"
    SQNR = "sqnr"
    COSINE = "cosine"
    # The user's own per-sample score of the outputs (tune/score.py), higher is better.
    TASK = "task"


class Objective(str, enum.Enum):
    """What "best" means among the candidates that meet the budget."""

    SIZE = "size"
    LATENCY = "latency"
    BALANCED = "balanced"


@dataclasses.dataclass(frozen=True)
class Budget(Record):
    """The accuracy budget: ``metric`` and how far it may fall (``max_drop``, in the metric's units).

    ``reference`` is the float model's value: top-1 as a fraction, cosine 1,
    the task score's mean over the samples. Output SQNR against the float
    model is infinite for the float model itself, so no finite drop from it
    exists: for ``sqnr``, ``max_drop`` is the lowest output SQNR accepted, in
    dB, and ``reference`` is None. ``score`` names the task score (its file and
    function), for messages and the resume check.
    """

    metric: Metric
    max_drop: float
    reference: float | None
    score: str | None = None

    def value(self, accuracy: float | None, sqnr_db: float, cosine: float, task: float | None = None) -> float:
        """This budget's metric from a candidate's measured figures."""
        if self.metric is Metric.TOP1:
            assert accuracy is not None, "top1 needs labels; tune() checks them first"
            return accuracy
        if self.metric is Metric.TASK:
            assert task is not None, "task needs a score; tune() checks it first"
            return task
        return sqnr_db if self.metric is Metric.SQNR else cosine

    def drop(self, value: float) -> float | None:
        """How far ``value`` fell from the float model, in the metric's units (points for top1, the score's own
        units for task); None for sqnr."""
        if self.metric is Metric.TOP1:
            return (float(self.reference or 0.0) - value) * 100.0
        if self.metric is Metric.COSINE:
            return 1.0 - value
        if self.metric is Metric.TASK:
            return float(self.reference or 0.0) - value
        return None

    def shortfall(self, value: float) -> float:
        """How far ``value`` misses the budget, in the metric's units; 0 or less means it meets it."""
        if self.metric is Metric.SQNR:
            return self.max_drop - value
        drop = self.drop(value)
        assert drop is not None
        return drop - self.max_drop

    def meets(self, value: float) -> bool:
        # Accuracy moves in steps of 1/samples: a drop equal to the budget must count as within it, even
        # after float rounding ((a - b) * 100 can land a hair above the exact quotient).
        return self.shortfall(value) <= 1e-9

    def describe(self) -> str:
        held = f"held at the metric's {100 * CONFIDENCE:g}% lower confidence bound over the samples"
        if self.metric is Metric.TOP1:
            return (f"top-1 drop <= {self.max_drop:g} points (float model {100 * float(self.reference or 0):.2f}%), "
                    f"{held}")
        if self.metric is Metric.COSINE:
            return f"cosine drop <= {self.max_drop:g} (1 - mean cosine of the outputs against float), {held}"
        if self.metric is Metric.TASK:
            return (f"task score drop <= {self.max_drop:g} (mean of {self.score} over the samples; float model "
                    f"{float(self.reference or 0):.4g}), {held}")
        return f"output SQNR >= {self.max_drop:g} dB against the float model, {held}"

    @property
    def unit(self) -> str:
        return {Metric.TOP1: "pt", Metric.SQNR: "dB", Metric.COSINE: "", Metric.TASK: ""}[self.metric]


@dataclasses.dataclass(frozen=True)
class Trial(Record):
    """One candidate the search built and measured.

    ``recipe`` is the plan asked for, ``ran_recipe`` the plan that ran (the
    observer resolved), reusable with ``quantize --recipe``. ``stage`` and
    ``move`` say why the search tried it; ``parent`` is the trial it changed
    and ``accepted`` whether the search kept the change. ``layer`` is the
    per-layer change of a layer move: tensor, op, from and to precision.
    Latency is the median of interleaved batch-1 runs, ``latency_ratio`` the
    candidate's median over the float model's in the same rounds.
    """

    id: int
    stage: str
    move: str
    recipe: dict[str, Any]
    status: str
    ran_recipe: dict[str, Any] | None = None
    error: str | None = None
    parent: int | None = None
    layer: dict[str, str] | None = None
    accepted: bool | None = None
    metric: float | None = None
    drop: float | None = None
    # The budget's metric at its lower confidence bound over the samples (evaluate.metrics.lower_bounds):
    # what meets_budget and shortfall judge.
    bound: float | None = None
    shortfall: float | None = None
    meets_budget: bool = False
    accuracy: float | None = None
    sqnr_db: float | None = None
    cosine: float | None = None
    accuracy_bound: float | None = None
    sqnr_bound_db: float | None = None
    cosine_bound: float | None = None
    # The task score's mean over the samples and its lower bound (metric task only).
    task: float | None = None
    task_bound: float | None = None
    size_bytes: int | None = None
    size_ratio: float | None = None
    latency_ms: float | None = None
    float_latency_ms: float | None = None
    latency_ratio: float | None = None
    seconds: float = 0.0
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        """A trial as trials.json stores it (SQNR None there means infinite: identical outputs)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if values.get("status") == "ok" and values.get("sqnr_db") is None:
            values["sqnr_db"] = math.inf
        if values.get("status") == "ok" and "sqnr_bound_db" in data and values.get("sqnr_bound_db") is None:
            values["sqnr_bound_db"] = math.inf
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class TrialReport(Record):
    """What ``tune(on_trial=...)`` is called with after every trial (the CLI prints it as it comes).

    ``replayed`` is true for a trial of an earlier run read back from the
    history by ``--resume`` (reported once, when the search reaches it again).
    """

    trial: Trial
    best: Trial | None
    budget: Budget
    replayed: bool


@dataclasses.dataclass(frozen=True)
class RankedLayer(Record):
    """One layer of the sensitivity ranking the layer search follows (analyze.layer_sensitivity).

    ``gain`` is the metric with only this layer in float minus the starting
    model's (accuracy as a fraction with labels, else output SQNR in dB);
    None for a layer past the measured top ones, ranked after them.
    """

    tensor: str
    op: str
    gain: float | None
    sqnr_db: float | None
    local_sqnr_db: float | None


@dataclasses.dataclass(frozen=True)
class LayerChoice(Record):
    """A layer the chosen recipe keeps out of the scheme's precision, and the measurement that put it there."""

    tensor: str
    op: str
    precision: str
    trial: int | None
    before: float | None
    after: float | None
    reason: str


@dataclasses.dataclass(frozen=True)
class TuneResult(Record):
    """The outcome of a search; written as DIR/best.json (with every trial in DIR/trials.json)."""

    model: str
    data: str
    budget: Budget
    objective: Objective
    float_size_bytes: int
    float_accuracy: float | None
    best: Trial | None
    met: bool
    shortfall: float | None
    explanation: tuple[str, ...]
    kept_out: tuple[LayerChoice, ...]
    pareto: tuple[int, ...]
    trials: tuple[Trial, ...] = dataclasses.field(repr=False)
    ranking: tuple[RankedLayer, ...] = ()
    stopped: str = "search finished"
    replayed: int = 0
    out_dir: str | None = None
    notes: tuple[str, ...] = ()
    provenance: Any = None  # edgequant.provenance.Provenance of this invocation (a resumed run: the resume)


def parse_duration(text: str | float | int | None) -> float | None:
    """Seconds from "90", "90s", "10m", "1.5h" or "1h30m"; None stays None (no limit)."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        import re

        s = str(text).strip().lower()
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", s)
        if not s or parts is None or not any(parts.groups()):
            raise InputError(f"--time-budget: expected a duration such as 90s, 10m, 1h or 1h30m, found {text!r}")
        h, m, sec = (float(g) if g else 0.0 for g in parts.groups())
        seconds = h * 3600 + m * 60 + sec
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"--time-budget: expected a positive duration, found {text!r}")
    return seconds
