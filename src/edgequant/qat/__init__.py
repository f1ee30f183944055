"""Stage: train-time compression of Keras 3 models. ``qat`` (quantization-aware training) and ``prune``.

TensorFlow Model Optimization's quantize_model and prune_low_magnitude work only on legacy
tf_keras models; on Keras 3 (TensorFlow 2.21's default Keras) they fail. This package does
both for Keras 3 models, with LiteRT as the deployment target:

    load -> fold (graph.py) -> convert + pair tensors (match.py) -> calibrate the start ranges
        -> fake-quantized model (sim.py, fakequant.py) -> fine-tune (finetune.py)
        -> export through the litert engine (export.py) -> check the simulation against LiteRT

``qat`` below only wires these steps; ``prune`` lives in pruning.py. Keras and TensorFlow are
imported inside functions, so ``import edgequant`` stays light.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgequant._util import Progress, atomic_write, no_progress
from edgequant.checks import check_labels, classes_of
from edgequant.data import DataLike, check_against_model, load_data, select_samples
from edgequant.errors import InputError, UnsupportedError
from edgequant.calibrate import parse_observer, repair_notes
from edgequant.evaluate.metrics import predictions, top1
from edgequant.qat.finetune import FitOptions, OnEpoch, check_fit_options, infer, no_epoch_log, resolve_loss
from edgequant.qat.records import EpochLog, LayerSparsity, LossKind, PruneResult, PruneSchedule, QATResult, SizeReport
from edgequant.types import UNNAMED, Dataset, Scheme, Signature, SourceKind, TensorSpec, parse_enum

__all__ = ["qat", "prune", "QATResult", "PruneResult", "EpochLog", "LayerSparsity", "SizeReport", "LossKind",
           "PruneSchedule", "QAT_SCHEMES", "load_keras_source", "load_training_data"]

# Full-integer schemes: QAT simulates integer activations, which only these have.
QAT_SCHEMES = (Scheme.INT8, Scheme.W4A8)
DEFAULT_QAT_SAMPLES = 200
# Measured on the zoo's held-out digits (3 epochs, Adam, batch 32; the models were trained at 1e-3):
# a constant 3e-4 lifted mobilenet_like's w4a8 top-1 from about 96.7% (at 1e-4) to 97.8-98.2%, where 4-bit
# weights must move by whole grid steps, but its last epoch was noisy (resnet_like w4a8 95.1%); decaying
# from 3e-4 to 0 along a cosine gave resnet_like 99.3% and beat post-training int8 on all four CNNs.
DEFAULT_QAT_LEARNING_RATE = 3e-4


def load_keras_source(model: str | Path, unsafe: bool, command: str) -> tuple[Path, Any]:
    """The Keras 3 model to train, loaded safely; anything that is not a Keras file is bad input."""
    from edgequant.frontends import detect_kind

    path = Path(model)
    kind = detect_kind(path)
    if kind is SourceKind.TFLITE:
        raise UnsupportedError(f"{command} trains the model, so it needs the Keras model (.keras or .h5), found "
                               f"the .tflite {path.name}; use 'edgequant quantize' for a .tflite")
    if kind is SourceKind.SAVED_MODEL:
        raise UnsupportedError(f"{command} needs a Keras model (.keras or .h5), found the SavedModel folder {path.name}, "
                               "which has no Keras layers to train; legacy tf_keras models need TensorFlow Model "
                               "Optimization with tf-keras, which edgequant does not install")
    from edgequant.frontends.keras import load_keras

    return path, load_keras(path, unsafe)


def load_training_data(data: DataLike, keras_model: Any, resize: tuple[int, int] | None,
                       normalize: tuple[float, float] | None, what: str) -> Dataset:
    """``data`` checked against the Keras model's single input, as float32.

    The graph walker behind qat and prune follows one float input; a model with several is refused.
    """
    if len(keras_model.inputs) != 1:
        raise UnsupportedError(f"qat and prune need a Keras model with one input, found {len(keras_model.inputs)}: "
                               "their graph walker follows one input (docs/qat.md)")
    shape = tuple(-1 if d is None else int(d) for d in keras_model.inputs[0].shape)
    channels = shape[-1] if len(shape) == 4 else None
    signature = Signature("keras", (TensorSpec(UNNAMED, shape, "float32"),), ())
    ds = check_against_model(load_data(data, resize, normalize, channels), signature)
    if ds.y is not None and len(keras_model.outputs[0].shape) == 2:
        # The same rule as eval, compare, analyze and tune (checks.classes_of: a one-unit output is binary).
        shape = tuple(-1 if d is None else int(d) for d in keras_model.outputs[0].shape)
        check_labels(ds.y, classes_of(shape), ds.source, what)
    return ds


def qat(model: str | Path, data: DataLike, val: DataLike | None = None, scheme: Scheme | str = Scheme.INT8,
        epochs: int = 3, loss: LossKind | str = LossKind.AUTO, batch_size: int = 32,
        learning_rate: float = DEFAULT_QAT_LEARNING_RATE,
        observer: str = "mse", samples: int = DEFAULT_QAT_SAMPLES, learn_ranges: bool = True,
        output: str | Path | None = None, unsafe: bool = False, resize: tuple[int, int] | None = None,
        normalize: tuple[float, float] | None = None, seed: int = 0, progress: Progress = no_progress,
        on_epoch: OnEpoch = no_epoch_log, cosine: bool = True) -> QATResult:
    """Quantization-aware training of a Keras 3 model; returns (and writes) the integer .tflite.

    ``data`` trains (labels, or distillation from the float model without them);
    ``val`` picks the best epoch and is where the simulation is checked against LiteRT
    (else the training data). Activation ranges start from ``observer`` over ``samples``
    training samples and are learned with the weights unless ``learn_ranges`` is False.
    """
    start = time.perf_counter()
    scheme_ = parse_enum(Scheme, scheme, "scheme")
    if scheme_ not in QAT_SCHEMES:
        raise UnsupportedError(f"qat simulates integer activations: expected --scheme "
                               f"{' or '.join(s.value for s in QAT_SCHEMES)}, found {scheme_.value}")
    check_fit_options(epochs, batch_size, learning_rate, seed)
    parse_enum(LossKind, loss, "loss")
    obs = parse_observer(observer)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise InputError(f"--samples: expected a positive number, found {samples}")
    path, keras_model = load_keras_source(model, unsafe, "qat")
    train = load_training_data(data, keras_model, resize, normalize, "training data")
    val_ds = load_training_data(val, keras_model, resize, normalize, "validation data") if val is not None else None
    kind = resolve_loss(loss, train)
    progress("qat prepare", 0, 3)
    import keras

    from edgequant._util import quiet
    from edgequant.evaluate import fidelity
    from edgequant.frontends.keras import convert_keras_model
    from edgequant.qat.export import export
    from edgequant.qat.finetune import fine_tune
    from edgequant.qat.graph import fold_graph
    from edgequant.qat.match import start_plan
    from edgequant.qat.sim import build_simulation
    from edgequant.runtime import Runner

    check = val_ds if val_ds is not None else train
    with quiet():
        keras.utils.set_random_seed(seed)
        # Before training: fine-tuning updates the layers the folded graph shares with this model.
        teacher = infer(keras_model, train.x) if kind is LossKind.DISTILL else None
        float_out = infer(keras_model, check.x)
        graph = fold_graph(keras_model)
    calib = select_samples(train, samples).x
    folded_tflite = convert_keras_model(graph.model, "the folded float graph")
    progress("qat prepare", 1, 3)
    points, ranges, repairs = start_plan(graph, folded_tflite, calib, obs)
    progress("qat prepare", 2, 3)
    with quiet():
        sim = build_simulation(graph, points, ranges, scheme_, learn_ranges)
    progress("qat prepare", 3, 3)

    def report(log: EpochLog) -> None:
        progress("qat fine-tune", log.epoch, log.epochs)
        on_epoch(log)

    logs, best = fine_tune(sim.model, train, teacher, kind, graph.output_activation,
                           FitOptions(epochs, batch_size, learning_rate, seed, cosine), val_ds, report)
    progress("qat export", 0, 1)
    tflite, float_ops, export_notes = export(graph, sim, scheme_, calib, path)
    progress("qat export", 1, 1)
    # The check: the exported model in LiteRT against the fake-quantized Keras model it came from.
    with quiet():
        sim_out = infer(sim.model, check.x)
    lite_out = Runner(tflite, what="QAT model").predict_output(check.x)
    notes = [f"loss: {'cross-entropy on labels' if kind is LossKind.LABELS else 'distillation from the float model'}"
             + (f" (outputs are {graph.output_activation} probabilities)" if graph.output_activation else
                " (outputs are logits)"),
             f"activation ranges start from the {obs} observer over {len(calib)} training samples and are "
             + ("learned with the weights" if learn_ranges else "kept fixed"),
             f"learning rate {learning_rate:g}" + (", decaying to 0 along a cosine" if cosine else ", constant")]
    notes += repair_notes(repairs) + export_notes
    if best != epochs:
        notes.append(f"kept epoch {best} of {epochs} (best validation top-1)")
    if val_ds is None:
        notes.append("checked on the training data: pass validation data for a held-out check")
    labels = check.y
    result = QATResult(
        scheme=scheme_, path=atomic_write(Path(output), tflite) if output is not None else None, tflite=tflite,
        loss=kind, epochs=logs, best_epoch=best, check_data=check.source, check_samples=len(check),
        float_accuracy=top1(float_out, labels) if labels is not None else None,
        fake_quant_accuracy=top1(sim_out, labels) if labels is not None else None,
        litert_accuracy=top1(lite_out, labels) if labels is not None else None,
        agreement=float(np.mean(predictions(sim_out) == predictions(lite_out))),
        simulation_sqnr_db=fidelity(lite_out, sim_out).sqnr_db, folded=graph.folded, float_layers=graph.float_layers,
        float_ops=float_ops, learned_ranges=sum(1 for p in points.values() if p.kind == "learned"),
        seconds=time.perf_counter() - start, notes=tuple(notes))
    return result


# After qat's helpers, which pruning reuses.
from edgequant.qat.pruning import prune  # noqa: E402
