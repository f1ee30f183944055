"""Shared fixtures: one seeded seed-CNN trained once per session on bundled digits.

Training takes about 5 s on 2 cores; every TensorFlow-dependent test shares it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session", autouse=True)
def registry_path(tmp_path_factory: pytest.TempPathFactory):
    """Every command the suite runs is recorded in a throwaway run registry, never in the user's data
    folder. Set in os.environ, so in-process calls and subprocesses alike use it."""
    path = tmp_path_factory.mktemp("registry") / "registry.sqlite3"
    before = os.environ.get("EDGEQUANT_REGISTRY")
    os.environ["EDGEQUANT_REGISTRY"] = str(path)
    yield path
    if before is None:
        os.environ.pop("EDGEQUANT_REGISTRY", None)
    else:
        os.environ["EDGEQUANT_REGISTRY"] = before


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edgequant")


@pytest.fixture(scope="session")
def digits(workdir: Path) -> dict[str, Path]:
    """Paths to the held-out test set (x, y), the calibration set (x) and the labelled training split
    (x, y; what qat and prune fine-tune on) as .npz."""
    from edgequant.train import split_digits

    train, test = split_digits()
    paths = {"test": workdir / "digits_test.npz", "calibration": workdir / "digits_calib.npz",
             "train": workdir / "digits_train.npz"}
    np.savez(paths["test"], x=test.x, y=test.y)
    np.savez(paths["calibration"], x=train.x)
    np.savez(paths["train"], x=train.x, y=train.y)
    return paths


@pytest.fixture(scope="session")
def seed_cnn_path(workdir: Path, digits: dict[str, Path]) -> Path:
    """The seed 000 CNN, trained 5 epochs (seeded), saved as .keras."""
    from edgequant.train import split_digits, train_seed_cnn

    train, _ = split_digits()
    return train_seed_cnn(train, workdir / "seed_cnn.keras", epochs=5)


@pytest.fixture(scope="session")
def float_tflite(workdir: Path, seed_cnn_path: Path) -> Path:
    import edgequant

    out = workdir / "float.tflite"
    edgequant.convert(seed_cnn_path, out)
    return out


@pytest.fixture(scope="session")
def test_arrays(digits: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
    with np.load(digits["test"]) as z:
        return z["x"], z["y"]
