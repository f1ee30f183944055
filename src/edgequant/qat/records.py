"""The frozen results of ``qat`` and ``prune``, JSON-ready through ``to_dict()``."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path

from edgequant.types import Record, Scheme

__all__ = ["LossKind", "PruneSchedule", "EpochLog", "QATResult", "LayerSparsity", "SizeReport", "PruneResult"]

_NOJSON = {"json": False}


class LossKind(str, enum.Enum):
    """What fine-tuning minimizes: cross-entropy on labels, or the distance to the float model's outputs."""

    AUTO = "auto"
    LABELS = "labels"
    DISTILL = "distill"


class PruneSchedule(str, enum.Enum):
    """How sparsity rises during pruning (TensorFlow Model Optimization's two schedules)."""

    POLYNOMIAL = "polynomial"
    CONSTANT = "constant"


@dataclasses.dataclass(frozen=True)
class EpochLog(Record):
    """One fine-tuning epoch. ``val_accuracy`` is top-1 of the model being trained (fake-quantized
    for qat) on the validation data; ``sparsity`` is the pruned share of prunable weights (prune)."""

    epoch: int
    epochs: int
    loss: float
    train_accuracy: float | None
    val_accuracy: float | None
    seconds: float
    sparsity: float | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class QATResult(Record):
    """An integer .tflite fine-tuned with simulated quantization, and how well the simulation held.

    The accuracies are top-1 on ``check_data``: the float model and the exported model in
    LiteRT, and the fake-quantized Keras model. ``agreement`` is the share of samples on
    which the fake-quantized Keras model and the exported model pick the same class, and
    ``simulation_sqnr_db`` compares their outputs (the exported model's error against the
    simulation).
    """

    scheme: Scheme
    path: Path | None
    tflite: bytes = dataclasses.field(repr=False, metadata=_NOJSON)
    loss: LossKind
    epochs: tuple[EpochLog, ...]
    best_epoch: int
    check_data: str
    check_samples: int
    float_accuracy: float | None
    fake_quant_accuracy: float | None
    litert_accuracy: float | None
    agreement: float
    simulation_sqnr_db: float
    folded: tuple[str, ...]
    float_layers: tuple[str, ...]
    float_ops: tuple[str, ...]
    learned_ranges: int
    seconds: float
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class LayerSparsity(Record):
    """Zeros in one layer's kernel after pruning."""

    layer: str
    weights: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.weights if self.weights else 0.0

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "sparsity": self.sparsity}


@dataclasses.dataclass(frozen=True)
class SizeReport(Record):
    """Bytes before and after pruning, raw and gzip-compressed (DEFLATE, level 9), as TensorFlow's
    pruning guide measures them: pruning zeros weights but does not remove them, so only
    compression shows the gain."""

    float_tflite_bytes: int
    float_tflite_gzip_bytes: int
    pruned_tflite_bytes: int
    pruned_tflite_gzip_bytes: int
    keras_bytes: int
    keras_gzip_bytes: int

    @property
    def gzip_ratio(self) -> float:
        """How many times smaller the pruned float .tflite is than the original after gzip."""
        return self.float_tflite_gzip_bytes / self.pruned_tflite_gzip_bytes if self.pruned_tflite_gzip_bytes else 0.0

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "gzip_ratio": self.gzip_ratio}


@dataclasses.dataclass(frozen=True, eq=False)
class PruneResult(Record):
    """A magnitude-pruned Keras model (plain layers, zeros in the kernels) and what it cost and saved."""

    path: Path | None
    keras: bytes = dataclasses.field(repr=False, metadata=_NOJSON)
    target_sparsity: float
    schedule: PruneSchedule
    loss: LossKind
    epochs: tuple[EpochLog, ...]
    layers: tuple[LayerSparsity, ...]
    sparsity: float
    size: SizeReport
    check_data: str | None
    float_accuracy: float | None
    pruned_accuracy: float | None
    seconds: float
    notes: tuple[str, ...] = ()
