"""The built-in demo: the seeds' whole workflow on data that ships with scikit-learn.

Train the seed 000 CNN on digits, then compare the float model against every
scheme with both engines, the way seed 003 compared its v1/v2/v3 and QAT models.
"""

from __future__ import annotations

from pathlib import Path

from edgequant._util import Progress, atomic_npz, no_progress
from edgequant.compare import compare
from edgequant.train import split_digits, train_seed_cnn
from edgequant.types import CompareResult

__all__ = ["demo"]


def demo(out_dir: str | Path = "demo-out", epochs: int = 5, runs: int = 100,
         progress: Progress = no_progress) -> CompareResult:
    """Train, save model and data under ``out_dir``, and run compare over every scheme and engine."""
    out = Path(out_dir)
    train, test = split_digits()
    model_path = train_seed_cnn(train, out / "seed_cnn.keras", epochs=epochs, progress=progress)
    # Keep the data next to the model so every edgequant command can be re-run on it by hand.
    atomic_npz(out / "digits_test.npz", x=test.x, y=test.y)
    atomic_npz(out / "digits_calibration.npz", x=train.x)
    return compare(model_path, data=out / "digits_test.npz", calibration=out / "digits_calibration.npz",
                   schemes="all", engines="all", out_dir=out, runs=runs, progress=progress)
