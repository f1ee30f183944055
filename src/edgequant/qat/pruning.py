"""Magnitude pruning of Keras 3 models, with TensorFlow Model Optimization's two schedules.

    load -> float .tflite (the "before" size) -> fine-tune with masks -> plain model -> sizes, sparsity

Each prunable layer's kernel (Conv1D/2D/3D, DepthwiseConv2D, Dense, EinsumDense, also inside
nested models) loses its smallest-magnitude weights until it reaches the target sparsity, as
``prune_low_magnitude`` prunes each wrapped layer. Biases and normalization weights are kept.

- ``polynomial``: sparsity rises from 0 as s(t) = s_f * (1 - (1 - t / T)^3) (PolynomialDecay with
  power 3) over the first two thirds of the training steps, T; the last third recovers at s_f.
- ``constant``: s_f from the first step (ConstantSparsity).

Masks are recomputed every ``frequency`` steps from the current magnitudes and applied after every
optimizer step, so a pruned weight is zero in every forward pass. There are no wrapper layers,
so "stripping" is saving the model: the result has the original layers and loads anywhere.
Sizes after gzip (DEFLATE level 9) are what the TensorFlow pruning guide reports: zeros cost
as much as any weight in the raw file, and only compression turns them into bytes saved.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgequant._util import Progress, atomic_write, no_progress
from edgequant.data import DataLike
from edgequant.errors import InputError
from edgequant.evaluate.metrics import gzip_size, top1
from edgequant.qat.finetune import (FitOptions, OnEpoch, check_fit_options, infer, no_epoch_log, output_activation,
                                    resolve_loss)
from edgequant.qat.records import EpochLog, LayerSparsity, LossKind, PruneResult, PruneSchedule, SizeReport
from edgequant.types import parse_enum

__all__ = ["prune", "PRUNABLE", "polynomial_sparsity", "gzip_size", "prunable_layers"]

PRUNABLE = frozenset({"Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "Dense", "EinsumDense"})
# Share of training steps over which the polynomial schedule reaches the target; the rest recovers.
RAMP_SHARE = 2 / 3
# Mask updates during the ramp (TF's default frequency of 100 steps is longer than a small data set's epoch).
RAMP_UPDATES = 16


def polynomial_sparsity(step: int, target: float, end_step: int, power: int = 3) -> float:
    """Sparsity at ``step`` of a ramp from 0 to ``target`` ending at ``end_step``."""
    if step >= end_step:
        return target
    return target * (1.0 - (1.0 - step / end_step) ** power)


def prunable_layers(model: Any) -> list[Any]:
    """Layers whose kernel is pruned, nested ones included, each once."""
    found, seen = [], set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if type(layer).__name__ in PRUNABLE and getattr(layer, "kernel", None) is not None and id(layer) not in seen:
            seen.add(id(layer))
            found.append(layer)
    return found


def _masker(layers: list[Any], target: float, schedule: PruneSchedule, total_steps: int) -> Any:
    import keras

    end = max(1, int(round(total_steps * RAMP_SHARE))) if schedule is PruneSchedule.POLYNOMIAL else 0
    frequency = max(1, end // RAMP_UPDATES) if end else max(1, total_steps // RAMP_UPDATES)

    class Masker(keras.callbacks.Callback):
        """Recomputes masks on schedule, and zeroes pruned weights after every optimizer step."""

        def __init__(self) -> None:
            super().__init__()
            self.step = 0
            self.masks = [None] * len(layers)
            self.current = 0.0

        def sparsity_at(self, step: int) -> float:
            return polynomial_sparsity(step, target, end) if end else target

        def update(self, sparsity: float) -> None:
            self.current = sparsity
            for i, layer in enumerate(layers):
                w = np.abs(np.asarray(layer.kernel.numpy()))
                k = int(round(sparsity * w.size))
                mask = np.ones(w.size, np.float32)
                # Stable sort: equal magnitudes are pruned in index order, so a run is reproducible.
                mask[np.argsort(w, axis=None, kind="stable")[:k]] = 0.0
                self.masks[i] = mask.reshape(w.shape)
            self.apply()

        def apply(self) -> None:
            for layer, mask in zip(layers, self.masks):
                if mask is not None:
                    layer.kernel.assign(layer.kernel.numpy() * mask)

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if self.step % frequency == 0 or (end and self.step == end):
                self.update(self.sparsity_at(self.step))

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.apply()
            self.step += 1

    return Masker()


def _sparsity(layers: list[Any]) -> tuple[tuple[LayerSparsity, ...], float]:
    rows = tuple(LayerSparsity(layer.name, int(np.size(layer.kernel)), int(np.sum(layer.kernel.numpy() == 0)))
                 for layer in layers)
    total = sum(r.weights for r in rows)
    return rows, (sum(r.zeros for r in rows) / total if total else 0.0)


def prune(model: str | Path, data: DataLike, sparsity: float = 0.8,
          schedule: PruneSchedule | str = PruneSchedule.POLYNOMIAL, epochs: int = 4, val: DataLike | None = None,
          loss: LossKind | str = LossKind.AUTO, batch_size: int = 32, learning_rate: float = 1e-3,
          output: str | Path | None = None, unsafe: bool = False, resize: tuple[int, int] | None = None,
          normalize: tuple[float, float] | None = None, seed: int = 0, progress: Progress = no_progress,
          on_epoch: OnEpoch = no_epoch_log) -> PruneResult:
    """Prune a Keras 3 model to ``sparsity`` (each prunable kernel), fine-tuning on ``data``; write a .keras.

    Without labels in ``data`` the model learns to match the original's outputs. Sizes
    compare the float .tflite before and after, raw and after gzip; with labelled ``val``
    (else ``data``) both are measured in LiteRT for top-1.
    """
    from edgequant.qat import load_keras_source, load_training_data

    start = time.perf_counter()
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 < float(sparsity) < 1.0:
        raise InputError(f"--sparsity: expected a fraction strictly between 0 and 1 (0.8 prunes 80% of each kernel), "
                         f"found {sparsity}")
    sched = parse_enum(PruneSchedule, schedule, "schedule")
    check_fit_options(epochs, batch_size, learning_rate, seed)
    parse_enum(LossKind, loss, "loss")
    if output is not None and Path(output).suffix != ".keras":
        raise InputError(f"-o/--output: prune writes a Keras 3 model, expected a path ending in .keras, found "
                         f"{Path(output).name}")
    path, keras_model = load_keras_source(model, unsafe, "prune")
    train = load_training_data(data, keras_model, resize, normalize, "training data")
    val_ds = load_training_data(val, keras_model, resize, normalize, "validation data") if val is not None else None
    kind = resolve_loss(loss, train)
    import keras

    from edgequant._util import quiet
    from edgequant.frontends.keras import convert_keras_model, load_keras
    from edgequant.qat.finetune import fine_tune
    from edgequant.runtime import Runner

    layers = prunable_layers(keras_model)
    if not layers:
        raise InputError(f"{path.name} has no prunable layer: expected at least one of "
                         f"{', '.join(sorted(PRUNABLE))}")
    progress("prune prepare", 0, 1)
    before = convert_keras_model(keras_model, path.name)
    with quiet():
        keras.utils.set_random_seed(seed)
        teacher = infer(keras_model, train.x) if kind is LossKind.DISTILL else None
    steps = epochs * -(-len(train) // batch_size)
    masker = _masker(layers, float(sparsity), sched, steps)
    progress("prune prepare", 1, 1)

    def report(log: EpochLog) -> None:
        progress("prune fine-tune", log.epoch, log.epochs)
        on_epoch(log)

    logs, _ = fine_tune(keras_model, train, teacher, kind, output_activation(keras_model.layers[-1]), FitOptions(epochs, batch_size, learning_rate,
                                                                                     seed),
                        val_ds, report, callbacks=[masker], sparsity=lambda: _sparsity(layers)[1], keep_best=False)
    masker.update(float(sparsity))  # the target, exactly, whatever step the schedule's last update fell on
    # A fresh, uncompiled copy: the saved file holds the model, not the optimizer's state.
    plain = load_keras(path, unsafe)
    plain.set_weights(keras_model.get_weights())
    rows, overall = _sparsity(prunable_layers(plain))
    saved = _keras_bytes(plain, path.stem)
    after = convert_keras_model(plain, f"pruned {path.name}")
    check = val_ds if val_ds is not None else train
    accs: list[float | None] = [None, None]
    if check.y is not None:
        accs = [top1(Runner(t, what=w).predict_output(check.x), check.y)
                for t, w in ((before, "float model"), (after, "pruned model"))]
    size = SizeReport(len(before), gzip_size(before), len(after), gzip_size(after), len(saved), gzip_size(saved))
    notes = [f"schedule {sched.value}: " + (f"sparsity ramped from 0 over {int(round(steps * RAMP_SHARE))} of "
                                            f"{steps} steps (power 3), then held" if sched is PruneSchedule.POLYNOMIAL
                                            else f"target sparsity from the first of {steps} steps"),
             "no pruning wrappers to strip: masks were applied to the kernels, and the saved model has the "
             "original layers (it loads without edgequant)",
             f"loss: {'cross-entropy on labels' if kind is LossKind.LABELS else 'distillation from the float model'}",
             "zeros stay zero through int8 and w4a8 quantization (symmetric weights, zero point 0)"]
    if val_ds is None and check.y is not None:
        notes.append("accuracy measured on the training data: pass validation data for a held-out figure")
    return PruneResult(path=atomic_write(Path(output), saved) if output is not None else None, keras=saved,
                       target_sparsity=float(sparsity), schedule=sched, loss=kind, epochs=logs, layers=rows,
                       sparsity=overall, size=size, check_data=check.source if check.y is not None else None,
                       float_accuracy=accs[0], pruned_accuracy=accs[1], seconds=time.perf_counter() - start,
                       notes=tuple(notes))


def _keras_bytes(model: Any, stem: str) -> bytes:
    """The model as a .keras file's bytes (Keras writes to a path; a private temp folder keeps it atomic)."""
    import tempfile

    from edgequant._util import quiet

    with tempfile.TemporaryDirectory(prefix="edgequant-prune-") as tmp:
        target = Path(tmp) / f"{stem}.keras"
        with quiet():
            model.save(target)
        return target.read_bytes()
