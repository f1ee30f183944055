"""Fine-tuning shared by qat and prune: the loss, seeded epochs, per-epoch logs, the best epoch kept.

With labels the loss is sparse cross-entropy (on probabilities when the model ends in a
softmax, else on logits), or binary cross-entropy for a one-unit output (labels 0 and 1, on a
sigmoid's probabilities or on logits), the two cases edgequant's top-1 scores. Without labels the model learns to reproduce the float model's
outputs on the same inputs (distillation): KL divergence for probability outputs, mean
squared error for anything else. The teacher's outputs are computed once, before training.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgequant.errors import InputError, UnsupportedError
from edgequant.evaluate.metrics import top1
from edgequant.qat.records import EpochLog, LossKind
from edgequant.types import Dataset, parse_enum

__all__ = ["FitOptions", "check_fit_options", "resolve_loss", "fine_tune", "OnEpoch", "infer", "output_activation"]

OnEpoch = Callable[[EpochLog], None]


def no_epoch_log(log: EpochLog) -> None:
    """The default per-epoch callback: do nothing (the library never prints)."""


@dataclasses.dataclass(frozen=True)
class FitOptions:
    epochs: int
    batch_size: int = 32
    learning_rate: float = 3e-4
    seed: int = 0
    # Cosine decay of the learning rate to 0 over all steps, so that the last epoch, which is
    # exported when there is no validation data, is a settled one rather than a noisy one.
    cosine: bool = False


def check_fit_options(epochs: int, batch_size: int, learning_rate: float, seed: int = 0) -> None:
    """Fail before any model work on options that cannot train."""
    from edgequant.checks import check_seed

    check_seed(seed)  # Keras takes 0 .. 2**32 - 1 and raises a bare ValueError otherwise
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"--epochs: expected a whole number of at least 1, found {epochs}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"--batch-size: expected a whole number of at least 1, found {batch_size}")
    if not (isinstance(learning_rate, (int, float)) and np.isfinite(learning_rate) and learning_rate > 0):
        raise InputError(f"--learning-rate: expected a positive number, found {learning_rate}")


def resolve_loss(loss: LossKind | str, data: Dataset) -> LossKind:
    """``auto`` picks labels when the data has them, else distillation; labels without labels is bad input."""
    kind = parse_enum(LossKind, loss, "loss")
    if kind is LossKind.AUTO:
        return LossKind.LABELS if data.has_labels else LossKind.DISTILL
    if kind is LossKind.LABELS and not data.has_labels:
        raise InputError(f"--loss labels trains on labels: expected labels (array y) in {data.source}, found none; "
                         "use --loss distill (or auto) to match the float model's outputs instead")
    return kind


def infer(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's outputs on ``x`` in inference mode, called eagerly batch by batch.

    Keras' predict() first traces a graph, which costs a second or more per model
    and is not repaid on the few hundred samples checked here.
    """
    outs = [np.asarray(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def output_activation(layer: Any) -> str:
    """"softmax" or "sigmoid" when ``layer`` (the model's last) outputs probabilities that way, else ""."""
    import keras

    if type(layer).__name__ == "Softmax":
        return "softmax"
    act = getattr(layer, "activation", None)
    name = keras.activations.serialize(act) if act is not None else None
    return name if name in ("softmax", "sigmoid") else ""


def _loss(kind: LossKind, activation: str, units: int) -> tuple[Any, list[str]]:
    """The loss and the accuracy metric for the model's output (``units`` values per sample)."""
    import keras

    if kind is LossKind.LABELS and units == 1:
        return keras.losses.BinaryCrossentropy(from_logits=activation != "sigmoid"), \
            ["binary_accuracy" if activation == "sigmoid" else keras.metrics.BinaryAccuracy(threshold=0.0)]
    if kind is LossKind.LABELS:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=activation != "softmax"), ["accuracy"]
    return (keras.losses.KLDivergence() if activation == "softmax" else keras.losses.MeanSquaredError()), []


def fine_tune(model: Any, train: Dataset, teacher: np.ndarray | None, kind: LossKind, activation: str,
              options: FitOptions, val: Dataset | None, on_epoch: OnEpoch = no_epoch_log,
              callbacks: Sequence[Any] = (), sparsity: Callable[[], float] | None = None,
              keep_best: bool = True) -> tuple[tuple[EpochLog, ...], int]:
    """Train ``model`` in place; returns the epoch logs and the epoch whose weights it ends with.

    With labelled ``val`` and ``keep_best``, the weights of the epoch with the best validation
    top-1 are restored at the end (ties: the later epoch); otherwise those of the last epoch.
    """
    import keras

    from edgequant._util import quiet

    if kind is LossKind.LABELS and train.y is None:
        raise InputError(f"labels needed to train on {train.source}, found none")
    if kind is LossKind.DISTILL and teacher is None:
        raise UnsupportedError("distillation needs the float model's outputs, found none")
    target = train.y if kind is LossKind.LABELS else teacher
    loss, metrics = _loss(kind, activation, int(np.prod(model.outputs[0].shape[1:])))
    with quiet():
        steps = options.epochs * -(-len(train) // options.batch_size)
        rate = keras.optimizers.schedules.CosineDecay(options.learning_rate, steps) if options.cosine \
            else options.learning_rate
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss,
                      metrics=metrics, jit_compile=False)
    logs: list[EpochLog] = []
    best: tuple[float, int, list[Any]] | None = None
    for epoch in range(1, options.epochs + 1):
        start = time.perf_counter()
        with quiet():
            hist = model.fit(train.x, target, batch_size=options.batch_size, epochs=1, shuffle=True, verbose=0,
                             callbacks=list(callbacks))
        val_acc = None
        if val is not None and val.y is not None:
            with quiet():
                val_acc = top1(infer(model, val.x), val.y)
        acc = next((v[-1] for k, v in hist.history.items() if k.endswith("accuracy")), None)
        log = EpochLog(epoch, options.epochs, float(hist.history["loss"][-1]), None if acc is None else float(acc),
                       val_acc, time.perf_counter() - start, sparsity() if sparsity is not None else None)
        logs.append(log)
        on_epoch(log)
        if keep_best and val_acc is not None and (best is None or val_acc >= best[0]):
            best = (val_acc, epoch, [np.array(w) for w in model.get_weights()])
    if best is not None and best[1] != options.epochs:
        model.set_weights(best[2])
        return tuple(logs), best[1]
    return tuple(logs), options.epochs
