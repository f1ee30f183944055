"""Every supported scheme x engine pair on the demo CNN: builds, loads, runs, meets its size and accuracy bar.

Pairs come from the engine registry, so a new engine or scheme is tested
without editing this file. Tolerances: size ratios as in the issue (fp16
0.45-0.55 of float, 8-bit schemes at most 0.30); int8 top-1 within 2 points of
float on the 450 held-out digits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgequant
from edgequant.engines import ENGINES
from edgequant.errors import InputError
from edgequant.evaluate import top1
from edgequant.types import EngineName, IOType, Scheme

PAIRS = [(s, e) for e, eng in ENGINES.items() for s in Scheme if s in eng.schemes]
SIZE_BOUNDS = {Scheme.FP16: (0.45, 0.55), Scheme.DYNAMIC: (0.0, 0.30), Scheme.INT8: (0.0, 0.30),
               Scheme.INT16X8: (0.0, 0.30), Scheme.WEIGHT_ONLY_INT8: (0.0, 0.30),
               Scheme.WEIGHT_ONLY_INT4: (0.0, 0.16), Scheme.W4A8: (0.0, 0.16)}


@pytest.fixture(scope="session")
def float_top1(float_tflite: Path, test_arrays: tuple[np.ndarray, np.ndarray]) -> float:
    x, y = test_arrays
    return top1(edgequant.run(float_tflite, x).output, y)


@pytest.fixture(scope="session")
def variants(seed_cnn_path: Path, digits: dict[str, Path], workdir: Path) -> dict:
    built = {}
    for scheme, engine in PAIRS:
        out = workdir / f"{scheme.value}-{engine.value}.tflite"
        built[(scheme, engine)] = edgequant.quantize(seed_cnn_path, scheme, engine, calibration=digits["calibration"],
                                                     samples=100, output=out)
    return built


def test_every_scheme_has_an_engine() -> None:
    assert {s for s, _ in PAIRS} == set(Scheme)


@pytest.mark.parametrize("scheme,engine", PAIRS, ids=[f"{s.value}-{e.value}" for s, e in PAIRS])
def test_pair_loads_runs_and_meets_size_and_accuracy(scheme: Scheme, engine: EngineName, variants: dict,
                                                     float_tflite: Path, float_top1: float,
                                                     test_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    q = variants[(scheme, engine)]
    assert q.path is not None and q.path.exists()
    assert q.scheme is scheme and q.engine is engine and q.notes, "engines must state their defaults"
    x, y = test_arrays
    out = edgequant.run(q.path, x).output
    assert out.shape == (len(x), 10) and np.isfinite(out).all()
    ratio = q.path.stat().st_size / float_tflite.stat().st_size
    lo, hi = SIZE_BOUNDS[scheme]
    assert lo <= ratio <= hi, f"size ratio {ratio:.3f} outside [{lo}, {hi}]"
    acc = top1(out, y)
    if scheme in (Scheme.INT8, Scheme.W4A8):
        assert abs(acc - float_top1) <= 0.02, f"int8 top-1 {acc:.4f} vs float {float_top1:.4f}"
    else:
        # Not a stated bar for the other schemes; a collapse would still be a bug.
        assert acc >= float_top1 - 0.05


@pytest.mark.parametrize("engine", [e for e, eng in ENGINES.items() if Scheme.INT8 in eng.schemes])
@pytest.mark.parametrize("io", [IOType.INT8, IOType.UINT8])
def test_integer_io_gives_same_top1_as_float_io(engine: EngineName, io: IOType, seed_cnn_path: Path,
                                                digits: dict[str, Path], workdir: Path, variants: dict,
                                                test_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = test_arrays
    q = edgequant.quantize(seed_cnn_path, Scheme.INT8, engine, calibration=digits["calibration"], samples=100,
                           io=io, output=workdir / f"int8-{io.value}-{engine.value}.tflite")
    result = edgequant.run(q.path, x)
    assert result.input_dtype == io.value and result.output_dtype == io.value
    assert any("quantized from float" in n for n in result.notes)
    assert any("dequantized to float" in n for n in result.notes)
    float_io = edgequant.run(variants[(Scheme.INT8, engine)].path, x).output
    # Same quantized graph, different edges: the predicted classes must agree
    # on (almost) every sample; the top-1 must be equal within one sample.
    assert abs(top1(result.output, y) - top1(float_io, y)) <= 1 / len(y) + 1e-9
    assert (result.output.argmax(1) == float_io.argmax(1)).mean() >= 0.99


def test_static_schemes_report_calibration_samples(variants: dict) -> None:
    for (scheme, _), q in variants.items():
        assert q.calibration_samples == (100 if scheme.needs_calibration else 0)


@pytest.mark.slow
def test_int16_adds_take_the_general_scaling_path(tmp_path) -> None:
    """An int16 ADD whose three scales are powers of two went down LiteRT's power-of-two path, which refused it at
    prepare (SVTRv2's int16x8 model): the engine sets pot_scale_int16 off, and such a model loads."""
    import keras
    from keras import layers

    from edgequant.engines.litert import general_int16_scaling
    from edgequant.graph.edit import GraphEditor
    from edgequant.runtime import Runner

    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    keras.Model([a, b], layers.Add()([layers.Dense(8)(a), layers.Dense(8)(b)])).save(tmp_path / "add.keras")
    rng = np.random.default_rng(0)
    cal = {"a": rng.normal(size=(32, 8)).astype(np.float32), "b": rng.normal(size=(32, 8)).astype(np.float32)}
    q = edgequant.quantize(tmp_path / "add.keras", "int16x8", calibration=cal, transforms="none", observer="minmax")
    assert any("1 int16 ADD/SUB op(s) use LiteRT's general int16 scaling" in n for n in q.notes)
    ed = GraphEditor(q.tflite)
    [add] = ed.find_ops("ADD")
    assert ed.options(add).potScaleInt16 is False
    # The schema's default again, with power-of-two scales on both inputs and the output.
    ed.set_option(add, "potScaleInt16", True)
    for tensor, scale in zip((*add.inputs, *add.outputs), (2.0**-12, 2.0**-13, 2.0**-11)):
        ed._sg.tensors[tensor].quantization.scale = np.array([scale], dtype=np.float32)
    refused = ed.to_bytes()
    one = {k: v[:1] for k, v in cal.items()}
    with pytest.raises(InputError, match="input1_shift == 0"):
        Runner(refused).predict(one)
    fixed, count = general_int16_scaling(refused)
    assert count == 1 and np.isfinite(Runner(fixed).predict(one)["output_0"]).all()


@pytest.mark.slow
@pytest.mark.parametrize("classes,kept", [(2000, True), (64, False)])
def test_int16_softmax_over_many_classes_stays_float(tmp_path, classes: int, kept: bool) -> None:
    """LiteRT's int16 SOFTMAX floors exp() at e^-10, so every class far below the top still takes a share: over
    2000 classes its outputs summed to as little as 0.973 (PP-OCRv4's 6625 characters: a top probability of 0.71
    where float has 1.00). Over that many classes the op stays float, and its outputs sum to 1 within 0.01; over
    64 the floors cannot reach 1% and it stays int16."""
    import keras
    from keras import layers

    from edgequant.graph.submodel import GraphModel
    from edgequant.runtime import Runner

    keras.utils.set_random_seed(0)
    x = keras.Input((16,), name="features")
    keras.Model(x, layers.Dense(classes, activation="softmax", name="head")(x)).save(tmp_path / "head.keras")
    model = keras.models.load_model(tmp_path / "head.keras")
    kernel, bias = model.get_layer("head").get_weights()
    model.get_layer("head").set_weights([kernel * 100.0, bias])  # logits spread far wider than 10
    model.save(tmp_path / "head.keras")
    rng = np.random.default_rng(0)
    cal, test = (rng.normal(size=(n, 16)).astype(np.float32) for n in (32, 16))
    floats = edgequant.convert(tmp_path / "head.keras")
    q = edgequant.quantize(floats, "int16x8", calibration={"features": cal}, transforms="none", observer="minmax")
    g = GraphModel(q.tflite)
    softmax_dtypes = {g.tensor_dtype(g.op_outputs(i)[0]) for i, op in enumerate(g.op_names) if op == "SOFTMAX"}
    assert softmax_dtypes == ({"float32"} if kept else {"int16"})
    assert any("SOFTMAX(es) over 2000 or more classes kept float" in n for n in q.notes) == kept
    [ref] = Runner(floats.tflite).predict({"features": test}).values()
    [out] = Runner(q.tflite).predict({"features": test}).values()
    if kept:  # the floors' signature: probabilities that no longer sum to 1
        assert abs(out.sum(-1) - 1.0).max() < 0.01
        assert (out.argmax(-1) == ref.argmax(-1)).all()


def test_a_signature_output_that_is_no_graph_output_fails_the_step(seed_cnn_path, monkeypatch) -> None:
    """LiteRT reads signature outputs by tensor index; one naming an internal tensor returns a reused buffer.
    An engine output like that is a failed step (EngineError), never a model."""
    from ai_edge_litert.tools import flatbuffer_utils

    from edgequant.errors import EngineError
    from edgequant.graph.signature import stray_signature_outputs

    good = edgequant.quantize(seed_cnn_path, "fp16", "litert").tflite
    assert stray_signature_outputs(good) == []
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(good))
    sg = model.subgraphs[0]
    inner = next(i for i in range(len(sg.tensors)) if i not in set(sg.outputs) and i not in set(sg.inputs))
    model.signatureDefs[0].outputs[0].tensorIndex = inner
    bad = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    assert len(stray_signature_outputs(bad)) == 1
    engine = ENGINES[EngineName.LITERT]
    monkeypatch.setattr(engine, "rewrite", lambda *args, **kwargs: (bad, ()))
    with pytest.raises(EngineError, match="is not a graph output"):
        edgequant.quantize(seed_cnn_path, "fp16", "litert")
