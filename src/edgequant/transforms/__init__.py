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
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from edgequant._util import quiet
from edgequant.errors import InputError, UnsupportedError
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


def stream_tensors(tflite: bytes, x: np.ndarray, tensors: Sequence[int],
                   batch_size: int = 64) -> Iterator[dict[int, np.ndarray]]:
    """Run a float model in LiteRT over ``x`` in batches and yield the listed tensors of each batch.

    Callers reduce each batch to running sums or maxima, so memory stays
    bounded by one batch whatever the size of ``x``. Intermediate tensors are
    only readable with ``experimental_preserve_all_tensors``, which also keeps
    the default delegate out (XNNPACK would reuse intermediate buffers).
    """
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with quiet(), warnings.catch_warnings():
        # LiteRT warns that preserving tensors is "for debugging": we want exactly that.
        warnings.simplefilter("ignore")
        interp = Interpreter(model_content=bytes(tflite), experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
    detail = interp.get_input_details()[0]
    signature = detail.get("shape_signature", detail["shape"])
    dynamic = len(signature) > 0 and int(signature[0]) == -1
    step = batch_size if dynamic else int(detail["shape"][0])
    current = int(detail["shape"][0])
    for start in range(0, len(x), step):
        part = np.asarray(x[start:start + step], dtype=np.float32)
        if dynamic and len(part) != current:
            interp.resize_tensor_input(detail["index"], [len(part), *detail["shape"][1:]])
            interp.allocate_tensors()
            current = len(part)
        elif not dynamic and len(part) != current:
            # A fixed-batch model: statistics must not see padding rows, so drop the tail.
            break
        interp.set_tensor(detail["index"], part)
        interp.invoke()
        yield {t: interp.get_tensor(t) for t in tensors}


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
