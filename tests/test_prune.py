"""Magnitude pruning: the schedule, exact per-layer sparsity, a plain saved model, sizes after gzip.

A tiny MLP built in code (seeded, a few steps) checks the mechanics; the seed CNN fixture
(conftest.py) checks the issue's bar: 80% sparsity within 2 points of float top-1 on the
held-out digits, and the float .tflite at least 2.5x smaller after gzip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgequant
from edgequant.cli import main
from edgequant.qat.pruning import polynomial_sparsity
from edgequant.qat.records import LossKind, PruneSchedule
from edgequant.types import Dataset

pytest.importorskip("keras")


def test_polynomial_schedule() -> None:
    """TF's PolynomialDecay with power 3 from 0: fast at first, exactly the target at the end and after."""
    values = [polynomial_sparsity(t, 0.8, 100) for t in (0, 25, 50, 100, 150)]
    assert values[0] == 0.0 and values[3] == values[4] == 0.8
    np.testing.assert_allclose(values[1:3], [0.8 * (1 - 0.75 ** 3), 0.8 * (1 - 0.5 ** 3)])
    assert all(a < b for a, b in zip(values[:3], values[1:4]))


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype(np.float32)
    y = (x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu", name="hidden"),
                              keras.layers.Dense(3, activation="softmax", name="out")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=10, verbose=0)
    path = tmp_path_factory.mktemp("prune") / "mlp.keras"
    model.save(path)
    return path, Dataset(x, y, "mlp-data")


def test_constant_schedule_prunes_each_layer_exactly(mlp: tuple[Path, Dataset], tmp_path: Path) -> None:
    import keras

    path, data = mlp
    out = tmp_path / "pruned.keras"
    logs: list = []
    result = edgequant.prune(path, data, sparsity=0.5, schedule="constant", epochs=2, output=out,
                             on_epoch=logs.append)
    assert result.schedule is PruneSchedule.CONSTANT and [log.sparsity for log in logs] == [0.5, 0.5]
    assert [(r.layer, r.weights, r.zeros) for r in result.layers] == [("hidden", 512, 256), ("out", 96, 48)]
    # The file is the original architecture with plain layers (no wrappers), zeros in the kernels.
    loaded = keras.models.load_model(out)
    assert [type(layer).__name__ for layer in loaded.layers] == ["Dense", "Dense"]
    assert getattr(loaded, "optimizer", None) is None  # saved without the optimizer state
    assert int(np.sum(loaded.get_layer("hidden").kernel.numpy() == 0)) == 256
    assert np.count_nonzero(loaded.get_layer("hidden").bias.numpy()) > 0  # biases are not pruned
    assert out.read_bytes() == result.keras
    json.dumps(result.to_dict(), allow_nan=False)


def test_distillation_without_labels(mlp: tuple[Path, Dataset]) -> None:
    path, data = mlp
    result = edgequant.prune(path, Dataset(data.x, None, "unlabelled"), sparsity=0.3, epochs=1, val=data)
    assert result.loss is LossKind.DISTILL and result.float_accuracy > 0.85
    # 30% of each kernel: round(0.3 * 512) = 154 and round(0.3 * 96) = 29 zeros.
    assert [r.zeros for r in result.layers] == [154, 29]
    assert result.pruned_accuracy >= result.float_accuracy - 0.05


def test_seed_cnn_80_percent(seed_cnn_path: Path, digits: dict[str, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's bar through the CLI, then the pruned model feeds quantize: int8 keeps the zeros."""
    from edgequant.graph.edit import GraphEditor

    train_npz = digits["train"]
    out, js = tmp_path / "pruned.keras", tmp_path / "prune.json"
    assert main(["prune", str(seed_cnn_path), "--data", str(train_npz), "--val", str(digits["test"]),
                 "--sparsity", "0.8", "--epochs", "4", "-o", str(out), "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "epoch 4/4" in text and "sparsity 80.0%" in text and "smaller than before" in text
    data = json.loads(js.read_text())
    assert data["float_accuracy"] - data["pruned_accuracy"] <= 0.02
    assert data["size"]["gzip_ratio"] >= 2.5 and abs(data["sparsity"] - 0.8) < 0.001

    # Default int8 (AdaRound on): every pruned zero is still zero in the stored integers (symmetric weights).
    import keras

    q = edgequant.quantize(out, "int8", calibration=digits["calibration"], samples=50)
    ed = GraphEditor(q.tflite)
    dense = max((op for op in ed.ops if op.op == "FULLY_CONNECTED"), key=lambda op: ed.tensor_shape(op.inputs[1])[1])
    conv = next(op for op in ed.ops if op.op == "CONV_2D")
    pruned = keras.models.load_model(out)
    conv_kernel = next(layer.kernel.numpy() for layer in pruned.layers if type(layer).__name__ == "Conv2D")
    dense_kernel = next(layer.kernel.numpy() for layer in pruned.layers if type(layer).__name__ == "Dense")
    # LiteRT layouts: FULLY_CONNECTED [out, in] = kernel.T, CONV_2D [out, kh, kw, in].
    assert np.all(ed.read_integers(dense.inputs[1])[dense_kernel.T == 0] == 0)
    assert np.all(ed.read_integers(conv.inputs[1])[np.transpose(conv_kernel, (3, 0, 1, 2)) == 0] == 0)
