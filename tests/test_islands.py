"""Float islands (recipe/islands.py): the plan for attention models, and what it wins at int8.

The model is a post-norm attention block built in code (BERT's layout:
residual add, then LayerNorm), untrained, seeded, with one outlier channel
planted in the feed-forward output the way trained BERTs carry them (MiniLM's
was 186x its median channel): that output column's weights and bias are
scaled so that channel peaks ~200x above the median channel.

Tolerances, and why: at int8 (min-max ranges, no transforms) with every op
quantized this block's output cosine against float measured 0.970, with the
plan 0.998: the cosine error (1 - cosine) fell 15x. The test asks for a cosine
of at least 0.99 with islands and an error at most a quarter of the one without.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgequant
from edgequant.errors import InputError, UnsupportedError
from edgequant.recipe.islands import (INTEGER_OPS, OUTLIER_RATIO, channel_peaks, is_attention_model, plan_islands)
from edgequant.runtime import Runner
from edgequant.types import Precision

TOKENS, DIM, HEADS, FFN = 16, 32, 4, 64
OUTLIER_CHANNEL, OUTLIER_SCALE = 5, 200.0


def _block(path: Path) -> Path:
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    x = keras.Input((TOKENS, DIM), name="tokens")
    h = layers.MultiHeadAttention(HEADS, DIM // HEADS, name="attention")(x, x)
    y = layers.LayerNormalization(epsilon=1e-6, name="ln1")(layers.Add(name="res1")([x, h]))
    f = layers.Dense(FFN, activation="gelu", name="ffn1")(y)
    f = layers.Dense(DIM, name="ffn2")(f)
    z = layers.LayerNormalization(epsilon=1e-6, name="ln2")(layers.Add(name="res2")([y, f]))
    out = layers.Dense(8, name="head")(z)
    model = keras.Model(x, out)
    kernel, bias = model.get_layer("ffn2").get_weights()
    kernel[:, OUTLIER_CHANNEL] *= OUTLIER_SCALE
    bias[OUTLIER_CHANNEL] = OUTLIER_SCALE
    model.get_layer("ffn2").set_weights([kernel, bias])
    model.save(path / "block.keras")
    return path / "block.keras"


@pytest.fixture(scope="module")
def block(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, np.ndarray, np.ndarray, Path]:
    folder = tmp_path_factory.mktemp("islands")
    floats = edgequant.convert(_block(folder))
    rng = np.random.default_rng(0)
    calib = rng.normal(size=(48, TOKENS, DIM)).astype(np.float32)
    test = rng.normal(size=(32, TOKENS, DIM)).astype(np.float32)
    np.save(folder / "calib.npy", calib)
    (folder / "float.tflite").write_bytes(floats.tflite)
    return floats.tflite, calib, test, folder


def _cosine(model: bytes, reference: bytes, x: np.ndarray) -> float:
    a = Runner(model).predict(x)
    b = Runner(reference).predict(x)
    (a,), (b,) = a.values(), b.values()
    a, b = a.reshape(len(x), -1), b.reshape(len(x), -1)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def test_attention_is_detected(block, float_tflite: Path) -> None:
    assert is_attention_model(block[0])
    assert not is_attention_model(float_tflite.read_bytes())  # the session's seed CNN


def test_plan_keeps_matmuls_integer_and_the_rest_float(block) -> None:
    from edgequant.engines.litert import layer_ops
    from edgequant.graph.submodel import GraphModel

    tflite, calib, _, _ = block
    plan = plan_islands(tflite, None)
    ops = layer_ops(tflite)
    planned = {ops[n] for n in plan.precisions}
    assert {"MEAN", "RSQRT", "SOFTMAX", "GELU"} <= planned  # LayerNorm, softmax, GELU
    assert all(p is Precision.FLOAT for p in plan.precisions.values())
    assert not planned & (INTEGER_OPS - {"BATCH_MATMUL"})  # without data, no outlier test
    # BATCH_MATMUL: float between two activations (attention's scores and their use), int8 with a weight.
    g = GraphModel(tflite)
    bmm = {g.tensor_name(g.op_outputs(i)[0]): any(g.is_constant(t) for t in g.op_inputs(i))
           for i, op in enumerate(g.op_names) if op == "BATCH_MATMUL"}
    assert sum(not weighted for weighted in bmm.values()) == 2  # Q.K^T and scores.V
    assert all((name in plan.precisions) != weighted for name, weighted in bmm.items())
    assert all(name in plan.precisions for name, op in ops.items() if op in {"SOFTMAX", "GELU", "MEAN"})
    assert not any(name in plan.precisions for name, op in ops.items() if op in INTEGER_OPS - {"BATCH_MATMUL"})
    assert plan.outliers == {} and plan.float_ops == {op: sum(1 for n in plan.precisions if ops[n] == op)
                                                      for op in planned}


def test_outlier_channel_is_found_and_kept_float(block) -> None:
    from edgequant.graph.submodel import GraphModel

    tflite, calib, _, _ = block
    plan = plan_islands(tflite, calib)
    assert len(plan.outliers) == 1
    (name, ratio), = plan.outliers.items()
    assert "ffn2" in name and ratio > OUTLIER_RATIO and plan.largest_kept_ratio <= OUTLIER_RATIO
    assert plan.precisions[name] is Precision.FLOAT
    g = GraphModel(tflite)
    t = next(t for t in g.producers() if g.tensor_name(t) == name)
    peak = channel_peaks(tflite, calib, [t])[t]
    assert int(np.argmax(peak)) == OUTLIER_CHANNEL


def test_depthwise_convolutions_stay_float(tmp_path: Path) -> None:
    """A convolution token mixer (SVTR's and PP-OCR's): the depthwise conv joins the islands with float weights,
    the convolutions and matmuls beside it stay int8."""
    import keras
    from keras import layers

    from edgequant.engines.litert import layer_ops
    from edgequant.graph.submodel import GraphModel

    keras.utils.set_random_seed(4)
    x = keras.Input((TOKENS, DIM), name="tokens")
    m = layers.Reshape((1, TOKENS, DIM))(x)
    m = layers.DepthwiseConv2D((1, 3), padding="same", name="mixer")(m)
    m = layers.Conv2D(DIM, 1, activation="hard_silu", name="pointwise")(m)
    h = layers.Reshape((TOKENS, DIM))(m)
    h = layers.MultiHeadAttention(HEADS, DIM // HEADS, name="attention")(h, h)
    out = layers.Dense(8, name="head")(layers.LayerNormalization(name="ln")(h))
    keras.Model(x, out).save(tmp_path / "mixer.keras")
    tflite = edgequant.convert(tmp_path / "mixer.keras").tflite
    (tmp_path / "mixer.tflite").write_bytes(tflite)
    calib = np.random.default_rng(2).normal(size=(24, TOKENS, DIM)).astype(np.float32)
    np.save(tmp_path / "calib.npy", calib)

    plan = plan_islands(tflite, calib)
    depthwise = [name for name, op in layer_ops(tflite).items() if op == "DEPTHWISE_CONV_2D"]
    assert len(depthwise) == 1 and plan.precisions[depthwise[0]] is Precision.FLOAT
    assert plan.float_ops["DEPTHWISE_CONV_2D"] == 1 and not plan.outliers
    assert any("depthwise convolutions stay float" in n for n in plan.notes())

    q = edgequant.quantize(tmp_path / "mixer.tflite", "int8", calibration=tmp_path / "calib.npy",
                           transforms="none", observer="minmax")
    built = GraphModel(q.tflite)
    weights = {op: [built.tensor_dtype(t) for t in built.op_inputs(i)[1:2]]
               for i, op in enumerate(built.op_names) if op in {"DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"}}
    assert weights["DEPTHWISE_CONV_2D"] == ["float32"]
    assert weights["CONV_2D"] == ["int8"] and weights["FULLY_CONNECTED"] == ["int8"]
    assert any("depthwise convolutions stay float" in n for n in q.notes)


def test_islands_raise_int8_cosine(block) -> None:
    tflite, _, test, folder = block
    calib = folder / "calib.npy"
    off = edgequant.quantize(folder / "float.tflite", "int8", calibration=calib, transforms="none",
                             observer="minmax", float_islands=False)
    on = edgequant.quantize(folder / "float.tflite", "int8", calibration=calib, transforms="none",
                            observer="minmax")
    assert any(n.startswith("float islands (attention model)") for n in on.notes)
    assert not any(n.startswith("float islands") for n in off.notes)
    c_off, c_on = _cosine(off.tflite, tflite, test), _cosine(on.tflite, tflite, test)
    assert c_on >= 0.99 and 1 - c_on <= 0.25 * (1 - c_off), (c_off, c_on)
    # The float attention matmuls read DEQUANTIZE outputs: XNNPACK once got every row past the first 16 wrong
    # after the interpreter, allocated at batch 1, was resized to 32. The batch must equal row by row.
    batch = Runner(on.tflite).predict(test)
    single = [Runner(on.tflite).predict(test[i:i + 1]) for i in (0, 20, 31)]
    for k, i in enumerate((0, 20, 31)):
        np.testing.assert_allclose(batch["output_0"][i], single[k]["output_0"][0], atol=1e-5)
    # The recipe that ran names every island: quantizing with it again plans nothing and gives the same model.
    again = edgequant.quantize(folder / "float.tflite", recipe=on.recipe, calibration=calib)
    assert not any(n.startswith("float islands") for n in again.notes)
    assert again.tflite == on.tflite


def test_w4a8_gets_islands_too(block) -> None:
    _, _, _, folder = block
    q = edgequant.quantize(folder / "float.tflite", "w4a8", calibration=folder / "calib.npy", transforms="none",
                           observer="minmax")
    assert any(n.startswith("float islands (attention model)") for n in q.notes)
    # The w4a8 plan then chooses 4 or 8 bits for the integer layers the islands left (recipe/w4.py).
    assert any(n.startswith("w4a8 plan: ") for n in q.notes)
    kinds = set(q.recipe.precisions().values())
    assert Precision.FLOAT in kinds and kinds <= {Precision.FLOAT, Precision.W4A8, Precision.INT8}


def test_islands_refused_where_they_cannot_apply(block) -> None:
    _, _, _, folder = block
    with pytest.raises(UnsupportedError, match="float islands need scheme"):
        edgequant.quantize(folder / "float.tflite", "dynamic", float_islands=True)


def test_a_float_islands_value_that_is_not_a_bool_is_refused(block) -> None:
    """The CLI's words are not the API's: "off" is a truthy string, and taken as given it turned islands on."""
    _, _, _, folder = block
    with pytest.raises(InputError, match="float_islands: expected True, False or None, found 'off'"):
        edgequant.quantize(folder / "float.tflite", "int8", float_islands="off")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="w4a8_plan: expected True or False, found 0"):
        edgequant.quantize(folder / "float.tflite", "w4a8", w4a8_plan=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["int8", "int16x8"])
def test_matmul_with_a_constant_first_operand_stays_right(tmp_path: Path, scheme: str) -> None:
    """A learned query against the tokens (SVTRv2's decoder pools this way): BATCH_MATMUL(constant, activation).

    litert-quantizer quantizes a BATCH_MATMUL's constant per-channel along its last axis, right for a right-hand
    weight; on the left-hand side that is the summed axis, which LiteRT's kernel does not scale per channel, and
    on SVTRv2 the op's int8 output was one value for every position. The engine gives that constant one scale.
    Tolerance: each output's cosine against float; the pooled tokens measured 0.998-0.99997 with one scale,
    -0.01-0.45 with per-channel scales.

    At int16x8 LiteRT refuses an int8 constant beside an int16 activation, so the op stays float; its output
    is a model output that the softmax also reads, and litert-quantizer put the QUANTIZE it adds for the
    softmax in the graph's output list, leaving the signature on a reused internal buffer (the scores came out
    as garbage). The engine puts the float tensor back.
    """
    import tensorflow as tf

    from edgequant.graph.submodel import GraphModel

    rng = np.random.default_rng(1)
    query = tf.constant(rng.normal(size=(1, 1, DIM)).astype(np.float32))

    # Tokens arrive (dim, tokens), so the scores are matmul(query, x) with no adjoint: the case that broke.
    @tf.function(input_signature=[tf.TensorSpec((1, DIM, TOKENS), tf.float32, name="tokens")])
    def pool(x):
        scores = tf.matmul(query, x)
        return {"scores": scores, "pooled": tf.matmul(x, tf.nn.softmax(scores), transpose_b=True)}

    tflite = tf.lite.TFLiteConverter.from_concrete_functions([pool.get_concrete_function()], pool).convert()
    g = GraphModel(tflite)
    assert [g.is_constant(t) for t in g.op_inputs(g.op_names.index("BATCH_MATMUL"))] == [True, False]
    (tmp_path / "pool.tflite").write_bytes(tflite)
    np.save(tmp_path / "calib.npy", rng.normal(size=(32, DIM, TOKENS)).astype(np.float32))
    q = edgequant.quantize(tmp_path / "pool.tflite", scheme, calibration=tmp_path / "calib.npy", transforms="none",
                           observer="minmax")
    assert any("constant first operand" in n for n in q.notes)
    assert any("made the graph output again" in n for n in q.notes) == (scheme == "int16x8")
    x = rng.normal(size=(8, DIM, TOKENS)).astype(np.float32)
    a, b = Runner(tflite).predict(x), Runner(q.tflite).predict(x)
    for name in a:  # the scores and the pooled tokens
        fa, fb = a[name].reshape(len(x), -1), b[name].reshape(len(x), -1)
        cos = np.sum(fa * fb, 1) / (np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1) + 1e-12)
        assert cos.min() >= 0.99, (name, cos)
