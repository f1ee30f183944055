"""What ``analyze`` hands back: frozen records with ``to_dict()``, one per figure.

The schema is documented field by field in docs/analyze.md. Every number is
measured (LiteRT runs over the user's data, or timed invokes) or read from the
flatbuffer; a figure that could not be measured is None, never estimated.
Infinite SQNRs (identical values) are None in JSON, as everywhere in edgequant.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from edgequant.types import Fidelity, Finding, Latency, Record

__all__ = ["MatchMethod", "LayerError", "OpRuntime", "Conversion", "RuntimeReport", "WeightTensor",
           "SizeBreakdown", "LayerSensitivity", "Sensitivity", "Analysis"]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class MatchMethod(str, enum.Enum):
    """How a quantized tensor was paired with a float tensor (docs/analyze.md, "Matching")."""

    NAME = "name"
    POSITION = "position"


@dataclasses.dataclass(frozen=True)
class LayerError(Record):
    """The error at one layer's output: accumulated (full quantized run) and local (this op alone).

    ``index`` is the op's position in the quantized model; ``tensor`` is the
    float model's name for the output, ``quantized_tensor`` the quantized
    model's. ``range_min``/``range_max`` is what the quantized dtype can
    represent (None for a float output); ``p9999_min``/``p9999_max`` holds
    99.99% of the float values seen. ``clipped_share`` is the share of float
    values outside the representable range. ``inherited_sqnr_db`` is the
    accumulated SQNR of the op's activation inputs: the error it receives.
    """

    index: int
    op: str
    tensor: str
    quantized_tensor: str
    match: MatchMethod
    dtype: str
    scale: float | None
    zero_point: int | None
    range_min: float | None
    range_max: float | None
    float_min: float
    float_max: float
    p9999_min: float
    p9999_max: float
    clipped_share: float | None
    sqnr_db: float
    cosine: float
    mean_abs_error: float
    max_abs_error: float
    local_sqnr_db: float | None
    local_mean_abs_error: float | None
    local_max_abs_error: float | None
    inherited_sqnr_db: float | None
    local_rank: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def outlier_ratio(self) -> float | None:
        """Representable range width / width holding 99.99% of values (1 = no headroom wasted)."""
        if self.range_min is None or self.range_max is None:
            return None
        bulk = self.p9999_max - self.p9999_min
        return (self.range_max - self.range_min) / bulk if bulk > 0 else None

    def to_dict(self) -> dict[str, Any]:
        # The derived ratio goes into JSON too: findings quote it.
        return {**super().to_dict(), "outlier_ratio": _finite(self.outlier_ratio)}


@dataclasses.dataclass(frozen=True)
class OpRuntime(Record):
    """One op of the quantized model as LiteRT runs it.

    ``compute`` is the arithmetic it does: "int8", "int16", "float32", "int32"
    (shape arithmetic), "hybrid int8" (dynamic range: float activations, int8
    weights), or "float32->int8"-style for QUANTIZE/DEQUANTIZE. ``xnnpack``
    says whether LiteRT's default XNNPACK delegate took it. ``time_ms`` is the
    median batch-1 time of this op alone (see RuntimeReport.op_timing);
    ``float_time_ms`` is the same for its float counterpart, for ops matched
    to one. ``float_reason`` says why an op computes in float in a model whose
    other ops are integer.
    """

    index: int
    op: str
    tensor: str
    role: str
    compute: str
    input_dtype: str
    output_dtype: str
    weight_dtype: str | None
    xnnpack: bool | None
    time_ms: float | None
    float_time_ms: float | None = None
    float_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class Conversion(Record):
    """A QUANTIZE or DEQUANTIZE op converting activations at run time, and where it sits.

    ``where`` is "model input", "model output" or "interior"; ``beside`` names
    the op(s) on the float side of the conversion (the reason it exists).
    """

    index: int
    op: str
    from_dtype: str
    to_dtype: str
    where: str
    producer: str | None
    consumers: tuple[str, ...]
    beside: tuple[str, ...]
    time_ms: float | None


@dataclasses.dataclass(frozen=True)
class RuntimeReport(Record):
    """What the graph does at run time: per-op dtypes, conversions, delegation, time."""

    ops: tuple[OpRuntime, ...]
    conversions: tuple[Conversion, ...]
    float_latency: Latency | None
    latency: Latency | None
    op_timing: str
    notes: tuple[str, ...] = ()

    @property
    def latency_ratio(self) -> float | None:
        """Quantized median / float median (above 1 is slower), or None when not measured."""
        if self.latency is None or self.float_latency is None or self.float_latency.median_ms <= 0:
            return None
        return self.latency.median_ms / self.float_latency.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "latency_ratio": _finite(self.latency_ratio)}


@dataclasses.dataclass(frozen=True)
class WeightTensor(Record):
    """One constant tensor: bytes stored in the file, dtype, shape, and the ops that read it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    bytes: int
    consumers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SizeBreakdown(Record):
    """Where the quantized file's bytes go, next to the float model's."""

    total_bytes: int
    weight_bytes: int
    weight_bytes_by_dtype: dict[str, int]
    float_total_bytes: int
    float_weight_bytes: int
    tensors: tuple[WeightTensor, ...]


@dataclasses.dataclass(frozen=True)
class LayerSensitivity(Record):
    """The model's output metric when only this layer is kept in float."""

    tensor: str
    op: str
    local_sqnr_db: float | None
    accuracy: float | None
    sqnr_db: float
    gain: float


@dataclasses.dataclass(frozen=True)
class Sensitivity(Record):
    """Per-layer sensitivity: the top layers by local error, each re-quantized alone in float.

    ``metric`` is "accuracy" with labels, else "sqnr_db" (output SQNR against
    float); ``gain`` in each layer is that metric minus the baseline's. The
    baseline is the float model re-quantized by the litert engine with the same
    scheme and, where tensor names match, the analysed model's own ranges;
    ``reproduction_sqnr_db`` says how close it comes to the analysed model.
    """

    metric: str
    scheme: str
    samples: int
    baseline_accuracy: float | None
    baseline_sqnr_db: float
    reproduction_sqnr_db: float | None
    layers: tuple[LayerSensitivity, ...]
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Analysis(Record):
    """Everything ``edgequant.analyze`` measured on one quantized model against its float reference."""

    model: str
    reference: str
    data: str
    samples: int
    scheme: str | None
    accuracy: float | None
    float_accuracy: float | None
    fidelity: Fidelity
    layers: tuple[LayerError, ...]
    unmatched: tuple[str, ...]
    sensitivity: Sensitivity | None
    runtime: RuntimeReport
    size: SizeBreakdown
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()
    provenance: Any = None  # edgequant.provenance.Provenance of the run

    def ranked(self) -> tuple[LayerError, ...]:
        """Layers by the error they add on their own, worst first (layers without a local figure last)."""
        return tuple(sorted(self.layers, key=lambda e: (e.local_rank is None, e.local_rank or 0)))
