"""Stage: calibrate. Run the float model in LiteRT (the deployment runtime) on
calibration data and keep per-tensor statistics, saved as JSON and reusable.

    collect_stats(tflite, x) -> CalibrationStats -> ranges(observer, bits) -> repaired ranges

One pass serves every observer and scheme; ``edgequant calibrate`` saves it and
``quantize --stats`` reuses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgequant._util import Progress, atomic_dir_file, no_progress
from edgequant.calibrate.histogram import BINS, SENTINEL, TensorStats
from edgequant.calibrate.observers import Observer, ObserverName, observe, parse_observer
from edgequant.errors import InputError
from edgequant.runtime import Inputs, Runner, batch_for, rows
from edgequant.types import Record

__all__ = ["CalibrationStats", "collect_stats", "Repair", "compute_ranges", "Observer", "ObserverName",
           "parse_observer", "DEFAULT_OBSERVER", "AUTO_CANDIDATES", "STATS_VERSION", "model_digest", "shared_stats",
           "repair_notes",
           "check_tensor_names"]

STATS_VERSION = 1
# The default is not one observer but a choice among these, per model: the one
# whose quantized outputs match float best (SQNR) on the calibration samples.
# Measured on the benchmark zoo (int8, 200 samples): minmax loses to outliers
# (outlier_mlp 23 dB), mse and percentiles win elsewhere, and no single one was
# best on every model. Entropy is left out. It used to collapse mobilenet_like
# (-85.6 points); since point masses such as ReLU's zeros no longer pull its
# thresholds down it stays within 0.5 point of float on all 8 models (SQNR within
# 0.8 dB of mse or better). But as a sixth candidate it never scored best on the
# calibration samples (the same observer won on all 8) and doubled the lstm's time.
AUTO_CANDIDATES = (Observer(ObserverName.MINMAX), Observer(ObserverName.MSE),
                   Observer(ObserverName.PERCENTILE, 99.99), Observer(ObserverName.PERCENTILE, 99.9),
                   Observer(ObserverName.EMA_MINMAX))
# Used when there are no samples to choose with (saved --stats alone).
DEFAULT_OBSERVER = Observer(ObserverName.MSE)
# A scale below this is refused by some kernels (DESIGN.md: litert-quantizer
# produced ~1e-12 on dead activations); ranges are widened to reach it.
MIN_SCALE = 1e-8


def model_digest(tflite: bytes) -> str:
    return hashlib.sha256(tflite).hexdigest()


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationStats(Record):
    """Statistics of every activation tensor of one float model."""

    model_sha256: str
    samples: int
    tensors: dict[str, TensorStats] = dataclasses.field(repr=False, metadata={"json": False})

    def to_json(self) -> str:
        return json.dumps({"version": STATS_VERSION, "model_sha256": self.model_sha256, "samples": self.samples,
                           "bins": BINS, "tensors": {n: s.to_json() for n, s in self.tensors.items()}}) + "\n"

    def save(self, path: Path) -> Path:
        return atomic_dir_file(Path(path), self.to_json())

    @classmethod
    def load(cls, path: Path | str) -> CalibrationStats:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"statistics not found: {path} (expected a JSON file from 'edgequant calibrate')")
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {path.name}: expected JSON from 'edgequant calibrate', found: {exc}") from None
        return cls.from_dict(data, path.name)

    @classmethod
    def from_dict(cls, data: Any, where: str = "statistics") -> CalibrationStats:
        def need(obj: Any, key: str, kind: type | tuple[type, ...], at: str) -> Any:
            if not isinstance(obj, dict) or key not in obj:
                raise InputError(f"{where}: field {at}{key} is missing")
            if not isinstance(obj[key], kind):
                raise InputError(f"{where}: field {at}{key}: expected {getattr(kind, '__name__', kind)}, "
                                 f"found {type(obj[key]).__name__}")
            return obj[key]

        version = need(data, "version", int, "")
        if version != STATS_VERSION:
            raise InputError(f"{where}: field version: expected {STATS_VERSION}, found {version}")
        if need(data, "bins", int, "") != BINS:
            raise InputError(f"{where}: field bins: expected {BINS}, found {data['bins']}")
        tensors = {}
        for name, t in need(data, "tensors", dict, "").items():
            for key, kind in (("rank", int), ("count", int), ("hist_lo", (int, float)), ("hist_hi", (int, float)),
                              ("hist_bins", list), ("hist_counts", list)):
                need(t, key, kind, f"tensors[{name!r}].")
            tensors[name] = TensorStats.from_json(name, t)
        return cls(need(data, "model_sha256", str, ""), need(data, "samples", int, ""), tensors)


@dataclasses.dataclass(frozen=True)
class Repair(Record):
    """A range that could not be used as computed, and what was done instead."""

    tensor: str
    problem: str
    before: tuple[float, float]
    after: tuple[float, float]

    def describe(self) -> str:
        return (f"{self.tensor}: {self.problem}; range [{self.before[0]:.4g}, {self.before[1]:.4g}] -> "
                f"[{self.after[0]:.4g}, {self.after[1]:.4g}]")


# Repairs listed one note each up to this many; beyond, one note counts them by problem.
LISTED_REPAIRS = 3


def repair_notes(repairs: Iterable[Repair]) -> list[str]:
    """Notes for the user: each repair, or (a deep model with many dead channels) one summary line."""
    found = list(repairs)
    if len(found) <= LISTED_REPAIRS:
        return [f"range repaired: {r.describe()}" for r in found]
    problems: dict[str, int] = {}
    for r in found:
        problems[r.problem] = problems.get(r.problem, 0) + 1
    counted = "; ".join(f"{problem} ({n})" for problem, n in problems.items())
    return [f"ranges repaired on {len(found)} tensors: {counted}; the first: {found[0].describe()}"]


def _repair(name: str, lo: float, hi: float, stats: TensorStats, bits: int) -> tuple[float, float, Repair | None]:
    before = (lo, hi)
    problem = None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        problem = "non-finite range"
        lo, hi = (stats.min, stats.max) if math.isfinite(stats.min) and math.isfinite(stats.max) else (0.0, 1.0)
    if stats.nonfinite:
        problem = f"{stats.nonfinite} NaN/Inf values seen (ignored)"
    if stats.sentinels:
        problem = (f"{stats.sentinels} values beyond ±{SENTINEL:g} (mask fill) set aside; they saturate at the "
                   "range's end")
    # Zero must be exactly representable (padding, ReLU); every LiteRT range contains it.
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    min_width = MIN_SCALE * (2 ** bits - 1)
    if hi - lo < min_width:
        problem = f"range narrower than {min_width:.2g} (scale below {MIN_SCALE:g})"
        hi = lo + min_width
    return lo, hi, (Repair(name, problem, before, (lo, hi)) if problem else None)


def compute_ranges(stats: CalibrationStats, observer: Observer | str, bits: int,
                   overrides: Mapping[str, Observer | None] | None = None,
                   label: Callable[[str], str] | None = None,
                   tensor_bits: Mapping[str, int] | None = None) -> tuple[dict[str, tuple[float, float]], list[Repair]]:
    """Per-tensor (lo, hi) for ``bits``-bit activations, with every repair listed.

    ``observer`` reads every tensor except those named in ``overrides`` with
    an observer of their own (None keeps ``observer``). Every name in
    ``overrides`` must be in ``stats``; ``label(name)`` begins the error for an override naming no
    tensor in ``stats`` (a recipe passes its file and field path). ``tensor_bits``
    gives single tensors other bits than ``bits`` (a layer with its own precision).
    """
    obs = parse_observer(observer)
    overrides = overrides or {}
    tensor_bits = tensor_bits or {}
    check_tensor_names(stats, overrides, label)
    ranges, repairs = {}, []
    for name, s in stats.tensors.items():
        if s.count == 0:
            continue
        b = tensor_bits.get(name, bits)
        lo, hi = observe(overrides.get(name) or obs, s, b)
        lo, hi, fix = _repair(name, lo, hi, s, b)
        ranges[name] = (lo, hi)
        if fix:
            repairs.append(fix)
    return ranges, repairs


def check_tensor_names(stats: CalibrationStats, names: Iterable[str],
                       label: Callable[[str], str] | None = None) -> None:
    """Refuse a name that is not an activation tensor in ``stats``, listing a few that are."""
    label = label or (lambda n: f'per-tensor observer for "{n}"')
    for name in names:
        if name not in stats.tensors:
            # The first few real names show the naming scheme (TFLite joins fused op names with ';').
            known = list(stats.tensors)
            shown = ", ".join(json.dumps(n) for n in known[:5])
            if len(known) > 5:
                shown += f" (and {len(known) - 5} more)"
            raise InputError(f"{label(name)}: no activation tensor of that name in this model's calibration "
                             f"statistics; expected one of {shown or 'none (no tensors)'}")


class _StatsReducer:
    """Every watched tensor's TensorStats, updated in the process running the model (runtime.Reducer)."""

    def __init__(self, watch: Mapping[int, str], ranks: Mapping[int, int]) -> None:
        self.indices = list(watch)
        self.stats = {i: TensorStats(n, ranks[i]) for i, n in watch.items()}

    def update(self, batch: int, tensors: dict[int, np.ndarray]) -> None:
        for i, value in tensors.items():
            # Tensors without a batch axis (rare) count as one sample.
            self.stats[i].update(value if value.ndim and value.shape[0] == batch else value[None])


# Statistics already gathered inside a shared_stats() block, by model and samples.
_shared: dict[tuple[str, str], CalibrationStats] | None = None


@contextlib.contextmanager
def shared_stats() -> Iterator[None]:
    """Within the block, one model's statistics on the same samples are gathered once.

    compare's variants and tune's trials each quantize the same float model on
    the same calibration samples; each used to run the whole calibration pass
    again. Outside a block nothing is kept.
    """
    global _shared
    outer = _shared
    _shared = {} if outer is None else outer
    try:
        yield
    finally:
        _shared = outer


def _samples_digest(x: Inputs) -> str:
    digest = hashlib.blake2b(digest_size=20)
    for name in sorted(x):
        v = np.ascontiguousarray(x[name])
        digest.update(f"{name}|{v.dtype.str}|{v.shape}|".encode())
        digest.update(memoryview(v).cast("B"))
    return digest.hexdigest()


def collect_stats(tflite: bytes, x: Inputs | np.ndarray, batch_size: int | None = None,
                  progress: Progress = no_progress) -> CalibrationStats:
    """Run the float model on named inputs ``x`` and accumulate stats for its float inputs and every float op output.

    Integer inputs (token ids, masks) and integer tensors are never calibrated: they pass through unquantized.
    ``batch_size`` None sizes batches to the runtime's memory budget (runtime.batch_for): LiteRT keeps every
    intermediate of the batch, so a fixed batch would let memory grow with the model's activations. The
    statistics are folded in where LiteRT runs (Runner.reduce): shipping every intermediate to this process
    cost more than the model itself on MobileNetV2-224 (benchmarks/results/scale.md).
    Inside :func:`shared_stats` a repeated request is answered from the first.
    """
    if _shared is None:
        return _gather(tflite, x, batch_size, progress)
    named = x if isinstance(x, Mapping) else {"": np.asarray(x)}
    key = (model_digest(tflite), _samples_digest(named))
    if key not in _shared:
        _shared[key] = _gather(tflite, x, batch_size, progress)
    return _shared[key]


def _gather(tflite: bytes, x: Inputs | np.ndarray, batch_size: int | None, progress: Progress) -> CalibrationStats:
    runner = Runner(tflite, what="float model", preserve=True)
    batch_size = batch_size or batch_for(runner, most=32)
    details = {int(d["index"]): d for d in runner.tensor_details()}
    watch: dict[int, str] = {i: details[i]["name"] for i in runner.input_indices.values()}
    for i in runner.op_outputs():
        if i in details:
            watch[i] = details[i]["name"]
    watch = {i: n for i, n in watch.items() if np.dtype(details[i]["dtype"]) == np.float32}
    reducer = _StatsReducer(watch, {i: len(details[i]["shape"]) for i in watch})
    n_samples = rows(x)
    progress("calibrate", 0, n_samples)
    for done, result in runner.reduce(x, reducer, batch_size):
        if result is not None:
            reducer = result
            break
        progress("calibrate", done, n_samples)  # per sample: a fixed-batch model's dropped tail never counts
    progress("calibrate", n_samples, n_samples)
    return CalibrationStats(model_digest(tflite), n_samples, {s.name: s for s in reducer.stats.values()})
