"""Quantization-aware training: the simulation's arithmetic is the engine's, and the export matches it.

Tiny models are built and trained in code (seeded, a few steps) on synthetic 8x8 data;
the seed CNN fixture (conftest.py) gives the end-to-end check on digits. Tolerances:
top-1 of the exported model in LiteRT within 0.5 point of the fake-quantized Keras model
on the same data (the issue's bar), weights bit-exact on the engine's grid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgequant
from edgequant.cli import main
from edgequant.qat.records import LossKind
from edgequant.types import Dataset

pytest.importorskip("keras")

# The bar: LiteRT top-1 within 0.5 point of the fake-quantized model's (float slack for 1/200).
BAR = 0.005 + 1e-9


def _synthetic(n: int, seed: int) -> Dataset:
    """8x8x1 images of three classes: a bright row band, column band or centre blob, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0.0, 0.25, (n, 8, 8, 1)).astype(np.float32)
    for i, c in enumerate(y):
        if c == 0:
            x[i, 2:4, :, 0] += 1.5
        elif c == 1:
            x[i, :, 5:7, 0] += 1.5
        else:
            x[i, 3:6, 3:6, 0] += 2.0
    return Dataset(x, y.astype(np.int64), f"synthetic-{seed}")


def _train_and_save(model: Any, path: Path, data: Dataset, epochs: int = 15) -> Path:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(data.x, data.y, epochs=epochs, batch_size=32, verbose=0)
    model.save(path)
    return path


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, Dataset]:
    return _synthetic(256, 1), _synthetic(200, 2)


@pytest.fixture(scope="module")
def bn_model(tmp_path_factory: pytest.TempPathFactory, data: tuple[Dataset, Dataset]) -> Path:
    """Conv+BN+ReLU6, depthwise+BN+ReLU, a residual Add, average pooling, GAP and a softmax Dense."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(inp)))
    y = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
    x = L.AveragePooling2D(2)(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(L.Conv2D(12, 1, activation="relu")(x))
    out = L.Dense(3, activation="softmax")(x)
    return _train_and_save(keras.Model(inp, out), tmp_path_factory.mktemp("qat") / "bn.keras", data[0])


@pytest.fixture(scope="module")
def ln_model(tmp_path_factory: pytest.TempPathFactory, data: tuple[Dataset, Dataset]) -> Path:
    """A LayerNormalization (not simulated) between a conv and a dense head, logits out (no softmax)."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = L.LayerNormalization(name="norm")(L.Flatten()(x))
    out = L.Dense(3, name="logits")(L.Dense(16, activation="relu")(x))
    return _train_and_save(keras.Model(inp, out), tmp_path_factory.mktemp("qat") / "ln.keras", data[0])


# --------------------------------------------------------------------------- arithmetic


def test_activation_fake_quant_is_litert_quantizers_arithmetic() -> None:
    """Scale, zero point, rounding and clipping as litert-quantizer computes them from (min, max)."""
    from litert_quantizer import qtyping
    from litert_quantizer.algorithms.uniform_quantize import uniform_quantize_tensor as uqt

    from edgequant.qat.fakequant import ActQuant

    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 2.0, 4096).astype(np.float32)
    for lo, hi in ((-1.7, 3.1), (0.0, 6.0), (0.4, 2.0), (-5.0, -0.5)):
        simulated = np.asarray(ActQuant(lo, hi)(x))
        zp, scale = uqt.tensor_zp_scale_from_min_max(np.array(lo, np.float32), np.array(hi, np.float32), 8, False,
                                                      qtyping.QuantGranularity.TENSORWISE)
        params = qtyping.UniformQuantParams(8, None, np.atleast_1d(scale), np.atleast_1d(zp), symmetric=False)
        q = uqt.uniform_quantize(x, params)
        np.testing.assert_allclose(simulated, (q.astype(np.float32) - zp) * scale, rtol=0, atol=1e-5 * scale + 1e-7)


@pytest.mark.parametrize("bits", [8, 4])
def test_weight_grid_is_the_engines_grid(bits: int) -> None:
    from edgequant.qat.fakequant import fake_quantize_weight, weight_grid
    from edgequant.qat.export import tflite_layout
    from edgequant.transforms.bias_correction import fake_quantize

    rng = np.random.default_rng(bits)
    kernel = rng.normal(0, 0.2, (3, 3, 4, 6)).astype(np.float32)  # Conv2D (kh, kw, in, out)
    q, scale = weight_grid(kernel, bits, (0, 1, 2))
    engine = fake_quantize(tflite_layout("Conv2D", kernel), "CONV_2D", bits)
    np.testing.assert_array_equal(tflite_layout("Conv2D", q.astype(np.float32) * scale), engine)
    assert q.min() >= (-127 if bits == 8 else -8) and q.max() <= (127 if bits == 8 else 7)
    np.testing.assert_allclose(np.asarray(fake_quantize_weight(kernel, bits, (0, 1, 2))), q * scale, rtol=1e-6)


def test_straight_through_gradients() -> None:
    """d out / d x is 1 inside the range and 0 outside; the range gets the clipped values' gradient."""
    import tensorflow as tf

    from edgequant.qat.fakequant import ActQuant

    fq = ActQuant(-1.0, 1.0)
    x = tf.constant([-3.0, -0.5, 0.2, 0.9, 2.5])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fq(x)
        total = tf.reduce_sum(y)
    gx, glo, ghi = tape.gradient(total, [x, fq.lo, fq.hi])
    np.testing.assert_array_equal(gx.numpy(), [0, 1, 1, 1, 0])
    # One value clipped at each end: each bound gets exactly its own value's gradient.
    assert glo.numpy() == 1.0 and ghi.numpy() == 1.0


def test_folding_keeps_the_function(bn_model: Path, data: tuple[Dataset, Dataset]) -> None:
    """BN folded into the conv before it gives the original outputs (float tolerance)."""
    from edgequant.frontends.keras import load_keras
    from edgequant.qat.graph import fold_graph

    model = load_keras(bn_model)
    graph = fold_graph(model)
    x = data[1].x[:32]
    assert len(graph.folded) == 2 and not graph.float_layers
    assert not any(type(n.op).__name__ == "BatchNormalization" for n in graph.nodes)
    np.testing.assert_allclose(np.asarray(graph.model(x)), np.asarray(model(x)), atol=1e-5)


# --------------------------------------------------------------------------- end to end


def test_qat_export_matches_the_simulation(bn_model: Path, data: tuple[Dataset, Dataset], tmp_path: Path,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    """The issue's bar: the exported model's top-1 in LiteRT within 0.5 point of the fake-quantized model's."""
    from edgequant.graph import read_graph

    train, val = data
    logs: list = []
    out = tmp_path / "qat.tflite"
    capfd.readouterr()
    result = edgequant.qat(bn_model, train, val=val, epochs=2, output=out, on_epoch=logs.append)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", "the library must not print (fd level included)"
    assert [log.epoch for log in logs] == [1, 2] and all(log.val_accuracy is not None for log in logs)
    assert out.read_bytes() == result.tflite and result.loss is LossKind.LABELS
    assert abs(result.litert_accuracy - result.fake_quant_accuracy) <= BAR
    assert result.agreement >= 0.99 and result.simulation_sqnr_db > 30
    assert result.litert_accuracy >= result.float_accuracy - 0.02
    assert any(n.startswith("checked: the exported model stores exactly the simulated weights (4 kernels")
               for n in result.notes)
    graph = read_graph(result.tflite)
    assert graph.quantized_tensors > 0 and not result.float_ops and not result.float_layers
    json.dumps(result.to_dict(), allow_nan=False)


def test_w4a8_stores_4_bit_conv_and_dense_weights(bn_model: Path, data: tuple[Dataset, Dataset]) -> None:
    from edgequant.graph.edit import GraphEditor

    train, val = data
    result = edgequant.qat(bn_model, train, val=val, scheme="w4a8", epochs=1)
    ed = GraphEditor(result.tflite)
    weight_dtypes = {op.op: ed.tensor_dtype(op.inputs[1]) for op in ed.ops if op.op in
                     ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")}
    # litert-quantizer allows int4 weights with int8 activations only on CONV_2D and FULLY_CONNECTED.
    assert weight_dtypes == {"CONV_2D": "int4", "DEPTHWISE_CONV_2D": "int8", "FULLY_CONNECTED": "int4"}
    assert abs(result.litert_accuracy - result.fake_quant_accuracy) <= BAR


def test_layers_it_cannot_simulate_stay_float_and_distillation(ln_model: Path, data: tuple[Dataset, Dataset]) -> None:
    """Without labels it distills; LayerNormalization is listed and its ops stay float in the .tflite."""
    from edgequant.graph.edit import GraphEditor

    unlabelled = Dataset(data[0].x, None, "unlabelled")
    result = edgequant.qat(ln_model, unlabelled, val=data[1], epochs=1)
    assert result.loss is LossKind.DISTILL and result.epochs[0].train_accuracy is None
    assert [f.split(" ")[0] for f in result.float_layers] == ["norm"]
    assert result.float_ops and all("norm" in name for name in result.float_ops)
    ed = GraphEditor(result.tflite)
    float_ops = [op.op for op in ed.ops if ed.tensor_dtype(op.outputs[0]) == "float32"
                 and op.op not in ("DEQUANTIZE",)]
    assert "MEAN" in float_ops and "FULLY_CONNECTED" not in float_ops
    assert result.agreement >= 0.99


def test_binary_sigmoid_classifier(tmp_path: Path, data: tuple[Dataset, Dataset]) -> None:
    """One sigmoid unit and labels 0/1: binary cross-entropy, LOGISTIC's fixed output scale simulated."""
    import keras

    keras.utils.set_random_seed(0)
    train, val = (Dataset(d.x, (d.y == 2).astype(np.int64), d.source) for d in data)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    model.fit(train.x, train.y, epochs=10, verbose=0)
    model.save(tmp_path / "binary.keras")
    result = edgequant.qat(tmp_path / "binary.keras", train, val=val, epochs=1)
    assert result.epochs[0].train_accuracy is not None and result.fake_quant_accuracy > 0.9
    assert abs(result.litert_accuracy - result.fake_quant_accuracy) <= BAR
    assert any("sigmoid probabilities" in n for n in result.notes)


def test_seed_cnn_cli_end_to_end(seed_cnn_path: Path, digits: dict[str, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`edgequant qat` on the seed CNN: per-epoch lines, the check on held-out digits, JSON, within the bar."""
    train_npz = digits["train"]
    out, js = tmp_path / "qat.tflite", tmp_path / "qat.json"
    assert main(["qat", str(seed_cnn_path), "--data", str(train_npz), "--val", str(digits["test"]), "--epochs", "1",
                 "-o", str(out), "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "epoch 1/1: loss" in text and "fake-quantized" in text and "exported in LiteRT" in text
    data = json.loads(js.read_text())
    assert data["scheme"] == "int8" and data["check_samples"] == 450
    assert abs(data["litert_accuracy"] - data["fake_quant_accuracy"]) <= BAR
    assert data["litert_accuracy"] >= data["float_accuracy"] - 0.005
    assert out.read_bytes()[4:8] == b"TFL3"
