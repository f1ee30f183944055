"""The built-in demo: the seeds' whole workflow on data that ships with scikit-learn.

Train the seed 000 CNN on digits, then compare the float model against every
scheme with both engines, the way seed 003 compared its v1/v2/v3 and QAT models:
the comparison includes a quantization-aware-trained int8 model (seed 003's QAT
row) and the model pruned to 80% sparsity then quantized to int8 (seed 002's
pruning), both fine-tuned on the training split only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgequant._util import Progress, atomic_npz, no_progress
from edgequant.checks import check_epochs, check_runs
from edgequant.compare import compare
from edgequant.pipeline import quantize
from edgequant.provenance import collect
from edgequant.qat import prune, qat
from edgequant.train import split_digits, train_seed_cnn
from edgequant.types import CompareResult, EngineName, PrebuiltVariant, Scheme

__all__ = ["demo", "DEMO_SPARSITY"]

DEMO_SPARSITY = 0.8


def demo(out_dir: str | Path = "demo-out", epochs: int = 5, runs: int = 100,
         progress: Progress = no_progress, qat_epochs: int = 2, prune_epochs: int = 4,
         command: Sequence[str] | None = None) -> CompareResult:
    """Train, save model and data under ``out_dir``, and run compare over every scheme and engine,
    plus the QAT int8 row ("int8/qat") and the pruned-then-int8 row ("int8/pruned-litert").
    ``command`` (the CLI's argv) goes into compare.json's provenance with the files made here."""
    # Every number before training: a bad --runs must not cost 30 s of training first.
    check_epochs(epochs)
    check_epochs(qat_epochs, "qat_epochs")
    check_epochs(prune_epochs, "prune_epochs")
    check_runs(runs)
    out = Path(out_dir)
    train, test = split_digits()
    model_path = train_seed_cnn(train, out / "seed_cnn.keras", epochs=epochs, progress=progress)
    # Keep the data next to the model so every edgequant command can be re-run on it by hand.
    atomic_npz(out / "digits_test.npz", x=test.x, y=test.y)
    atomic_npz(out / "digits_calibration.npz", x=train.x)
    # Both train on the training split with its labels; the test data stays held out for the table.
    trained = qat(model_path, train, scheme=Scheme.INT8, epochs=qat_epochs, progress=progress)
    pruned = prune(model_path, train, sparsity=DEMO_SPARSITY, epochs=prune_epochs,
                   output=out / "seed_cnn_pruned.keras", progress=progress)
    pruned_int8 = quantize(pruned.path or out / "seed_cnn_pruned.keras", Scheme.INT8, EngineName.LITERT,
                           calibration=out / "digits_calibration.npz", progress=progress)
    extra = [PrebuiltVariant("int8", "qat", trained.tflite, trained.seconds,
                             (f"quantization-aware training, {qat_epochs} epochs on the training split",)
                             + trained.notes),
             PrebuiltVariant("int8", "pruned-litert", pruned_int8.tflite, pruned.seconds + pruned_int8.seconds,
                             (f"pruned to {pruned.sparsity * 100:.1f}% sparsity ({pruned.schedule.value}, "
                              f"{prune_epochs} epochs), then int8 with the litert engine",) + pruned_int8.notes)]
    inputs = {"model": model_path, "data": out / "digits_test.npz", "calibration": out / "digits_calibration.npz"}
    return compare(model_path, data=inputs["data"], calibration=inputs["calibration"], schemes="all", engines="all",
                   out_dir=out, runs=runs, progress=progress, prebuilt=extra, provenance=collect(inputs, command))
