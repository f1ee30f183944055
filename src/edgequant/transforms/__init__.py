"""Float-graph transforms: rewrite a float .tflite so that it quantizes better.

A transform takes a float .tflite and calibration inputs and returns an edited
float .tflite (same ops, new weights or biases) plus plain-language lines
saying what it changed and numbers a caller can report. Transforms run before
an engine quantizes the model; they never quantize anything themselves.

Transforms register in ``TRANSFORMS`` against :class:`TransformName`; an
unknown name fails with :class:`UnsupportedError` listing the supported ones.

- ``cle`` (cle.py): cross-layer equalization (Nagel et al. 2019).
- ``bias-correction`` (bias_correction.py): empirical bias correction of the
  expected output shift that weight quantization causes.
- ``adaround`` (adaround.py): learned rounding (Nagel et al. 2020), weights
  placed exactly on the engine's grid.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from edgequant._util import Progress, no_progress, quiet
from edgequant.errors import InputError, UnsupportedError
from edgequant.runtime import Inputs, as_inputs, rows, stream_tensors
from edgequant.types import Precision, Record, Scheme

__all__ = ["TransformName", "Transform", "TransformResult", "TRANSFORMS", "ORDER", "get_transform", "ordered",
           "stream_tensors", "stored_mismatches"]


class TransformName(str, enum.Enum):
    """The float-graph transforms edgequant can apply."""

    CLE = "cle"
    BIAS_CORRECTION = "bias-correction"
    ADAROUND = "adaround"


@dataclasses.dataclass(frozen=True, eq=False)
class TransformResult(Record):
    """The edited float model, what changed (plain language) and numbers to report."""

    tflite: bytes = dataclasses.field(repr=False, metadata={"json": False})
    name: str
    changes: tuple[str, ...]
    metrics: dict[str, float]
    # Integer grid values a transform placed weights on, by weight tensor name
    # (AdaRound), so a caller can check the engine stored exactly these.
    grid_values: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False,
                                                           metadata={"json": False})
    # True when no op's output moved by more than rounding its weights to 8 bits moves it (AdaRound with
    # every layer at 8 bits): the user's model's activation statistics then still describe this one.
    activations_kept: bool = dataclasses.field(default=False, metadata={"json": False})


class Transform(Protocol):
    """One float-graph transform; ``weight_bits`` is what the weights will be quantized to later."""

    name: TransformName

    def apply(self, tflite: bytes, calibration: Inputs, weight_bits: int = 8) -> TransformResult: ...

    def apply_for(self, tflite: bytes, calibration: Inputs | None, scheme: Scheme,
                  precisions: Mapping[str, Precision] | None = None,
                  progress: Progress = no_progress) -> TransformResult:
        """Apply with the settings ``scheme`` implies (the pipeline's entry point).

        ``precisions`` are a recipe's per-layer precisions, by the name of the
        tensor the op writes: a transform that places weights on a grid uses
        that op's weight bits (float: left alone).
        """
        ...


def check_calibration(calibration: Inputs | np.ndarray | None, what: str) -> dict[str, np.ndarray]:
    """The calibration inputs as float32, or an InputError saying what the transform needs."""
    if calibration is None or rows(calibration) == 0:
        raise InputError(f"{what} measures activations: expected calibration inputs, found none")
    return as_inputs(calibration)


# The implementations import the types above, so they are imported after them.
from edgequant.transforms.adaround import AdaRound  # noqa: E402
from edgequant.transforms.bias_correction import BiasCorrection  # noqa: E402
from edgequant.transforms.cle import CrossLayerEqualization  # noqa: E402

TRANSFORMS: dict[TransformName, Transform] = {
    TransformName.CLE: CrossLayerEqualization(),
    TransformName.BIAS_CORRECTION: BiasCorrection(),
    TransformName.ADAROUND: AdaRound(),
}


# Transforms always run in this order, whatever order a user lists them in.
# CLE rescales weights, so it goes before anything that fixes weights to a
# grid; AdaRound places weights on the grid and corrects its own mean error;
# bias correction after it finds no rounding left to correct (a no-op), while
# before it, it would pre-compensate a rounding AdaRound then changes.
ORDER = (TransformName.CLE, TransformName.ADAROUND, TransformName.BIAS_CORRECTION)


def ordered(names: Sequence[TransformName]) -> tuple[TransformName, ...]:
    """``names`` without repeats, in :data:`ORDER`."""
    return tuple(n for n in ORDER if n in set(names))


def stored_mismatches(quantized: bytes, grid_values: Mapping[str, np.ndarray]) -> list[str]:
    """Weight tensors whose stored integers differ from the grid values a transform placed them on.

    Matched by tensor name (engines keep weight names). A name the quantized
    model lacks, or a weight left float, counts as a mismatch too.
    """
    from edgequant.graph.edit import GraphEditor

    ed = GraphEditor(quantized, "quantized model")
    # Every integer constant, whoever reads it: weight-only schemes feed the
    # weights through a DEQUANTIZE op instead of into the conv directly.
    stored = {}
    for t in range(len(ed.model.subgraphs[0].tensors)):
        if ed.tensor_dtype(t) in ("int8", "int4") and ed.is_constant(t):
            stored.setdefault(ed.tensor_name(t), t)
    bad = []
    for name, values in grid_values.items():
        t = stored.get(name)
        if t is None or not np.array_equal(ed.read_integers(t), values):
            bad.append(name)
    return bad


def get_transform(name: TransformName | str) -> Transform:
    """The registered transform called ``name``, or an UnsupportedError listing the supported names."""
    try:
        key = TransformName(name)
    except ValueError:
        names = ", ".join(t.value for t in TransformName)
        raise UnsupportedError(f"unknown transform {name!r}: expected one of {names}") from None
    return TRANSFORMS[key]
