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
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Protocol

import numpy as np

from edgequant._util import quiet
from edgequant.errors import InputError, UnsupportedError
from edgequant.runtime import stream_tensors
from edgequant.types import Record, Scheme

__all__ = ["TransformName", "Transform", "TransformResult", "TRANSFORMS", "get_transform", "stream_tensors"]


class TransformName(str, enum.Enum):
    """The float-graph transforms edgequant can apply."""

    CLE = "cle"
    BIAS_CORRECTION = "bias-correction"


@dataclasses.dataclass(frozen=True, eq=False)
class TransformResult(Record):
    """The edited float model, what changed (plain language) and numbers to report."""

    tflite: bytes = dataclasses.field(repr=False, metadata={"json": False})
    name: str
    changes: tuple[str, ...]
    metrics: dict[str, float]


class Transform(Protocol):
    """One float-graph transform; ``weight_bits`` is what the weights will be quantized to later."""

    name: TransformName

    def apply(self, tflite: bytes, calibration: np.ndarray, weight_bits: int = 8) -> TransformResult: ...

    def apply_for(self, tflite: bytes, calibration: np.ndarray | None, scheme: Scheme) -> TransformResult:
        """Apply with the settings ``scheme`` implies (the pipeline's entry point)."""
        ...


def check_calibration(calibration: np.ndarray | None, what: str) -> np.ndarray:
    """The calibration inputs as float32, or an InputError saying what the transform needs."""
    if calibration is None or len(calibration) == 0:
        raise InputError(f"{what} measures activations: expected calibration inputs, found none")
    return np.asarray(calibration, dtype=np.float32)


# The implementations import the types above, so they are imported after them.
from edgequant.transforms.bias_correction import BiasCorrection  # noqa: E402
from edgequant.transforms.cle import CrossLayerEqualization  # noqa: E402

TRANSFORMS: dict[TransformName, Transform] = {
    TransformName.CLE: CrossLayerEqualization(),
    TransformName.BIAS_CORRECTION: BiasCorrection(),
}


def get_transform(name: TransformName | str) -> Transform:
    """The registered transform called ``name``, or an UnsupportedError listing the supported names."""
    try:
        key = TransformName(name)
    except ValueError:
        names = ", ".join(t.value for t in TransformName)
        raise UnsupportedError(f"unknown transform {name!r}: expected one of {names}") from None
    return TRANSFORMS[key]
