"""Decide what a static scheme's engine gets: samples, or one or more candidate range sets.

With an explicit observer there is one candidate. By default there is one per
observer in AUTO_CANDIDATES, and the pipeline keeps the candidate whose
quantized model matches float best on the calibration samples. Per-tensor
observers (a recipe's "tensors") apply to every candidate alike, so the auto
choice is among global observers with the user's exceptions kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path


from edgequant._util import Progress
from edgequant.calibrate import (AUTO_CANDIDATES, DEFAULT_OBSERVER, CalibrationStats, Observer, ObserverName,
                                 collect_stats, compute_ranges, model_digest, repair_notes)
from edgequant.errors import InputError
from edgequant.graph import output_tensor_names
from edgequant.runtime import Inputs, rows
from edgequant.types import CalibrationInput, Scheme

__all__ = ["calibration_candidates"]


def _load_stats(stats: CalibrationStats | str | Path, tflite: bytes) -> CalibrationStats:
    loaded = stats if isinstance(stats, CalibrationStats) else CalibrationStats.load(stats)
    if loaded.model_sha256 != model_digest(tflite):
        raise InputError("--stats were gathered on a different model: expected statistics of this float model "
                         f"(sha256 {model_digest(tflite)[:12]}), found {loaded.model_sha256[:12]}")
    return loaded


def calibration_candidates(engine_name: str, calibrates_itself: bool, scheme: Scheme, tflite: bytes,
                           x: Inputs | None, observer: Observer | None,
                           stats: CalibrationStats | str | Path | None,
                           progress: Progress, overrides: Mapping[str, Observer | None] | None = None,
                           label: Callable[[str], str] | None = None,
                           tensor_bits: Mapping[str, int] | None = None) -> tuple[list[CalibrationInput], list[str]]:
    """Candidate calibrations for the engine, and notes about what does not apply or was repaired.

    ``overrides`` maps tensor names to their own observer (None: the global
    one); ``label`` words the error for a name the model lacks (see
    calibrate.compute_ranges). ``tensor_bits`` gives tensors whose op has a
    per-layer precision their own activation bits.
    """
    overrides = overrides or {}
    own = sum(1 for o in overrides.values() if o is not None)
    if calibrates_itself:
        if x is None:
            raise InputError(f"engine {engine_name} calibrates scheme {scheme.value} by itself: expected "
                             "--calibration DATA (saved --stats do not apply to it), found none")
        notes = [f"--observer {observer} does not apply: engine {engine_name} computes its own min-max ranges"] \
            if observer is not None else []
        if own:
            notes.append(f"per-tensor observers ({own}) do not apply: engine {engine_name} computes "
                         "its own min-max ranges")
        return [CalibrationInput(x, None, rows(x), f"the engine's own min-max over {rows(x)} samples")], notes
    if stats is not None:
        collected = _load_stats(stats, tflite)
    elif x is not None:
        collected = collect_stats(tflite, x, progress=progress)
    else:
        raise InputError(f"scheme {scheme.value} calibrates activation ranges: expected --calibration DATA "
                         "or --stats FILE, found neither")
    notes: list[str] = []
    if observer is not None:
        observers: tuple[Observer, ...] = (observer,)
    elif x is not None:
        observers = AUTO_CANDIDATES
    else:
        observers = (DEFAULT_OBSERVER,)
        notes.append(f"observer {DEFAULT_OBSERVER}: no --calibration samples to choose an observer with")
    bits = 16 if scheme is Scheme.INT16X8 else 8
    if observer is None:
        # The model's outputs keep their whole calibrated range: their extremes are what a user reads
        # (argmax, top scores), and a clipped logit ties with its rivals at the top of the range.
        kept = [n for n in output_tensor_names(tflite) if n in collected.tensors and overrides.get(n) is None]
        if kept:
            overrides = {**overrides, **{n: Observer(ObserverName.MINMAX) for n in kept}}
            notes.append(f"model outputs ({len(kept)}) keep their full calibrated range (min-max) whatever "
                         "observer is chosen")
    candidates = []
    for obs in observers:
        ranges, repairs = compute_ranges(collected, obs, bits, overrides, label, tensor_bits)
        mine = "" if not own else " (1 tensor with its own observer)" if own == 1 else \
            f" ({own} tensors with their own observer)"
        candidates.append(CalibrationInput(x, ranges, collected.samples,
                                           f"ranges from edgequant's {obs} observer{mine} over {collected.samples} "
                                           "samples",
                                           observer=str(obs),
                                           repairs=tuple(repair_notes(repairs))))
    return candidates, notes
