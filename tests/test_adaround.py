"""AdaRound (transforms/adaround.py) on the zoo's mobilenet_like and the seed CNN.

What is checked, and why:
- im2col reproduces LiteRT's CONV_2D and DEPTHWISE_CONV_2D exactly (padding,
  stride, multiplier): the learned rounding is only as good as the rows it
  reconstructs. Tolerance 1e-4 absolute on float32 outputs of magnitude ~10.
- The engine stores exactly the learned integers, for int4 and int8 weights:
  AdaRound's whole point is lost if the engine re-rounds differently.
- Learned rounding never reconstructs a layer worse than nearest rounding on
  the calibration data, and improves most layers at 4 bits.
- End to end on mobilenet_like w4a8, where nearest rounding loses ~31 points:
  the benchmark (1,000 steps) measured 97.6% top-1 with AdaRound against 67.1%
  nearest (float 98.2%); this test runs 300 steps. The assertion asks for half
  the loss recovered, the issue's bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgequant
from edgequant.errors import InputError
from edgequant.evaluate import fidelity, top1
from edgequant.frontends import inspect_float_tflite
from edgequant.graph.edit import GraphEditor
from edgequant.runtime import Runner
from edgequant.transforms import TransformName, get_transform, stream_tensors
from edgequant.transforms import adaround
from edgequant.transforms.adaround import CLIP_FRACTIONS, _Layer
from edgequant.transforms.grid import op_grid as grid
from edgequant.transforms.bias_correction import litert_op_bits
from edgequant.types import SourceKind

_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@pytest.fixture(scope="module")
def mobilenet() -> dict:
    from benchmarks import zoo

    zm = zoo.load("mobilenet_like")
    with np.load(zm.test_path) as t, np.load(zm.calibration_path) as c:
        return {"tflite": edgequant.convert(zm.keras_path).tflite, "cal": c["x"][:200], "x": t["x"], "y": t["y"]}


@pytest.fixture(scope="module")
def learned(mobilenet: dict) -> object:
    bits, op_bits = litert_op_bits("w4a8")
    # Fewer steps than the default keep the test quick; the result is still well above nearest.
    return get_transform("adaround").apply(mobilenet["tflite"], mobilenet["cal"], bits, op_bits=op_bits,
                                           iterations=300)


def _quantize(tflite: bytes, scheme: str, calibration: np.ndarray) -> bytes:
    model = inspect_float_tflite(tflite, Path("adarounded.tflite"), SourceKind.TFLITE)
    # Every CONV_2D and FULLY_CONNECTED at 4 bits (no w4a8 plan): the case AdaRound is measured on here.
    return edgequant.quantize(model, scheme, engine="litert", calibration=calibration, transforms="none",
                              observer="mse", w4a8_plan=False).tflite


@pytest.mark.parametrize("index", [0, 1, 2, 4], ids=["conv-s2-same", "dw-same", "conv-1x1-valid", "dw-s2-same"])
def test_rows_reproduce_the_layer(index: int, mobilenet: dict) -> None:
    ed = GraphEditor(mobilenet["tflite"])
    op = ed.ops[index]
    ed.options(op).fusedActivationFunction = 0  # linear output, so rows @ W + b must equal it
    linear = ed.to_bytes()
    layer = _Layer(GraphEditor(linear), [op], 4)
    bias = GraphEditor(linear).read_constant(op.inputs[2])
    batch = next(stream_tensors(linear, mobilenet["cal"][:16], [op.inputs[0], op.outputs[0]]))
    rows = layer.rows(batch[op.inputs[0]])                  # (groups, n, k)
    out = rows @ np.swapaxes(layer.mat, 1, 2)               # (groups, n, out)
    expected = batch[op.outputs[0]].reshape(-1, batch[op.outputs[0]].shape[-1])
    got = np.moveaxis(out, 0, -1).reshape(len(expected), -1) if out.shape[0] > 1 else out[0]
    np.testing.assert_allclose(got + bias, expected, atol=1e-4)


def test_engine_stores_exactly_the_learned_weights(mobilenet: dict, learned: object) -> None:
    quantized = GraphEditor(_quantize(learned.tflite, "w4a8", mobilenet["cal"]))
    seen = {}
    for op in quantized.find_ops(*_WEIGHTED):
        name = quantized.tensor_name(op.inputs[1])
        seen[quantized.tensor_dtype(op.inputs[1])] = seen.get(quantized.tensor_dtype(op.inputs[1]), 0) + 1
        np.testing.assert_array_equal(quantized.read_integers(op.inputs[1]), learned.grid_values[name], err_msg=name)
    assert seen == {"int4": 7, "int8": 3}  # w4a8: CONV_2D and FC at 4 bits, depthwise at 8
    assert len(learned.grid_values) == 10


def test_weights_sit_on_the_grid_and_keep_the_scale(mobilenet: dict, learned: object) -> None:
    before, after = GraphEditor(mobilenet["tflite"]), GraphEditor(learned.tflite)
    clipped = 0
    for op in after.find_ops(*_WEIGHTED):
        bits = 8 if op.op == "DEPTHWISE_CONV_2D" else 4
        w_before, w_after = before.read_constant(op.inputs[1]), after.read_constant(op.inputs[1])
        ratio, scale, _, qmax = grid(w_after, op.op, bits)
        _, scale_before, _, _ = grid(w_before, op.op, bits)
        if bits == 8:
            np.testing.assert_allclose(scale, scale_before, rtol=1e-6)   # max|w| per channel kept
        else:
            # 4 bits: each channel's bound is max|w| times one of the clipping fractions (1.0 among them).
            fraction = (scale / scale_before).ravel()
            near = np.abs(fraction[:, None] - np.asarray(CLIP_FRACTIONS)[None]).min(axis=1)
            assert np.all(near < 1e-5), fraction
            clipped += int(np.sum(fraction < 1 - 1e-6))
        np.testing.assert_allclose(ratio, np.rint(ratio), atol=1e-3)  # integers, not near-ties
        # Every weight moved to floor or ceil of its original position on its grid, never further (clipped
        # weights store +-qmax), and the grid is symmetric (never -qmax - 1, which would change the scale).
        original = w_before / scale
        q = np.rint(ratio)
        assert np.all(np.abs(q) <= qmax)
        assert np.all((q == np.clip(np.floor(original), -qmax, qmax)) | (q == np.clip(np.ceil(original), -qmax, qmax))
                      | np.isclose(original, q, atol=1e-4))
    assert clipped > 0  # clipping is chosen somewhere on this model at 4 bits


def test_learned_rounding_never_reconstructs_worse(learned: object) -> None:
    m = learned.metrics
    layers = [k[: -len(".sqnr_nearest_db")] for k in m if k.endswith(".sqnr_nearest_db")]
    assert len(layers) == 10
    gains = [m[f"{name}.sqnr_adaround_db"] - m[f"{name}.sqnr_nearest_db"] for name in layers]
    assert min(gains) >= 0.0
    assert sum(g > 0.1 for g in gains) >= 6, gains
    assert any("rounded the other way" in c for c in learned.changes)


def test_adaround_recovers_most_of_the_4bit_loss(mobilenet: dict, learned: object) -> None:
    reference = Runner(mobilenet["tflite"]).predict_output(mobilenet["x"])
    float_acc = top1(reference, mobilenet["y"])
    nearest = Runner(_quantize(mobilenet["tflite"], "w4a8", mobilenet["cal"])).predict_output(mobilenet["x"])
    adaround = Runner(_quantize(learned.tflite, "w4a8", mobilenet["cal"])).predict_output(mobilenet["x"])
    loss_nearest = float_acc - top1(nearest, mobilenet["y"])
    loss_adaround = float_acc - top1(adaround, mobilenet["y"])
    assert loss_nearest > 0.02  # the case the bar is about
    assert loss_adaround <= loss_nearest / 2, (loss_nearest, loss_adaround)
    assert fidelity(adaround, reference).sqnr_db > fidelity(nearest, reference).sqnr_db + 6


def test_adaround_is_registered_and_needs_data(mobilenet: dict) -> None:
    assert get_transform("adaround").name is TransformName.ADAROUND
    with pytest.raises(InputError, match="calibration"):
        get_transform("adaround").apply(mobilenet["tflite"], np.zeros((0, 28, 28, 1), np.float32))
    # Weight-only int4 leaves depthwise weights float: AdaRound skips them and says so.
    bits, op_bits = litert_op_bits("weight-only-int4")
    result = get_transform("adaround").apply(mobilenet["tflite"], mobilenet["cal"][:32], bits, op_bits=op_bits,
                                             iterations=20)
    [skipped] = [c for c in result.changes if "weights stay float" in c]
    assert skipped.startswith("skipped 3 DEPTHWISE_CONV_2D layers (")
    assert len(result.grid_values) == 7


# --- Sampled statistics (issue 17): rows picked at random positions, seeded, bounded per layer.

def test_patches_at_picked_positions_equal_im2col_rows(mobilenet: dict) -> None:
    from edgequant.transforms.adaround import _patches_at, im2col

    ed = GraphEditor(mobilenet["tflite"])
    rng = np.random.default_rng(1)
    for index in (0, 1, 4):  # strided and same-padded conv and depthwise
        op = ed.ops[index]
        x = rng.normal(size=(3,) + tuple(ed.tensor_shape(op.inputs[0])[1:])).astype(np.float32)
        kh, kw = ed.read_constant(op.inputs[1]).shape[1:3]
        full = im2col(x, kh, kw, ed.options(op))
        pick = np.sort(rng.choice(len(full), 40, replace=False))
        np.testing.assert_array_equal(_patches_at(x, kh, kw, ed.options(op), pick), full[pick])


def _sampled(mobilenet: dict, rows: int) -> object:
    bits, op_bits = litert_op_bits("w4a8")
    return get_transform("adaround").apply(mobilenet["tflite"], mobilenet["cal"][:64], bits, op_bits=op_bits,
                                           iterations=60, rows=rows, full_rows=0)


def test_sampled_rows_are_seeded_and_deterministic(mobilenet: dict) -> None:
    a, b = _sampled(mobilenet, 512), _sampled(mobilenet, 512)
    assert a.tflite == b.tflite
    assert a.grid_values.keys() == b.grid_values.keys()
    assert any(c.startswith("statistics on sampled rows") for c in a.changes)


def test_sampling_bounds_the_rows_each_layer_sums(mobilenet: dict) -> None:
    from edgequant.transforms.adaround import ROWS_PER_WEIGHT, _Layer as Layer, _Problem, _Sampling

    ed = GraphEditor(mobilenet["tflite"])
    layers = [Layer(ed, [op], 4) for op in ed.find_ops(*_WEIGHTED)]
    x = {"x": mobilenet["cal"][:64]}
    sampling = _Sampling(mobilenet["tflite"], x, layers, ed, 256)
    full = _Sampling(mobilenet["tflite"], x, layers, ed, None)
    assert len(full.waves) == len(layers) and sum(len(w) for w in sampling.waves) == len(layers)
    for la in layers[:3]:
        problem = _Problem(la)
        for batch in stream_tensors(mobilenet["tflite"], x, [la.op.inputs[0]], batch_size=16):
            value = batch[la.op.inputs[0]]
            problem.add(value, value, la.op, sampling.pick(la, value, la.op))
        target = max(256, ROWS_PER_WEIGHT * la.mat.shape[-1])
        each = -(-target // 64)
        # Every sample gives the same number of rows (spread over samples), never the full image.
        assert problem.n == 64 * min(each, la.positions(value)) == sampling.rows(la)
        assert problem.n < 64 * la.positions(value) or each >= la.positions(value)


def test_sampled_path_goes_layer_by_layer_only_where_passes_are_cheap(mobilenet: dict,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgequant.transforms.adaround import _Sampling

    ed = GraphEditor(mobilenet["tflite"])
    x = {"x": mobilenet["cal"][:64]}
    for bits, waves in ((8, 1), (4, adaround.WAVES)):
        layers = [_Layer(ed, [op], bits) for op in ed.find_ops(*_WEIGHTED)]
        cheap = _Sampling(mobilenet["tflite"], x, layers, ed, 256)
        assert cheap.sequential and len(cheap.waves) == len(layers)
        with monkeypatch.context() as m:
            m.setattr(adaround, "PASS_BUDGET", 2 * 64 * len(layers) * adaround._pass_macs(ed) * 0.99)
            costly = _Sampling(mobilenet["tflite"], x, layers, ed, 256)
        assert not costly.sequential and len(costly.waves) == waves


def test_sampled_adaround_stays_close_to_full_on_int8(mobilenet: dict) -> None:
    """Both quantized with the same observer; the issue's bar is 0.5 dB of output SQNR (here on held-out digits)."""
    reference = Runner(mobilenet["tflite"]).predict_output(mobilenet["x"])
    bits, op_bits = litert_op_bits("int8")
    sqnr = {}
    for rows in (None, 4096):
        model = get_transform("adaround").apply(mobilenet["tflite"], mobilenet["cal"], bits, op_bits=op_bits,
                                                iterations=300, rows=rows, full_rows=0).tflite
        sqnr[rows] = fidelity(Runner(_quantize(model, "int8", mobilenet["cal"])).predict_output(mobilenet["x"]),
                              reference).sqnr_db
    assert sqnr[4096] >= sqnr[None] - 0.5, sqnr


def test_moments_folded_in_the_worker_match_the_parent(mobilenet: dict) -> None:
    """Runner.reduce folds tensors where LiteRT runs; the sums must equal the ones computed from shipped tensors."""
    from edgequant.runtime import Runner, batch_for
    from edgequant.transforms.adaround import _Moments

    ed = GraphEditor(mobilenet["tflite"])
    op = ed.find_ops("CONV_2D")[1]
    wanted = [op.inputs[0], op.outputs[0]]
    x = {"x": mobilenet["cal"][:40]}
    runner = Runner(mobilenet["tflite"], preserve=True)
    folded = None
    for done, result in runner.reduce(x, _Moments(wanted), 16):
        folded = result if result is not None else folded
    assert done == 40 and folded is not None
    local = _Moments(wanted)
    for batch in stream_tensors(mobilenet["tflite"], x, wanted, batch_size=16):
        local.update(16, batch)
    for i in wanted:
        np.testing.assert_allclose(folded.squares[i], local.squares[i], rtol=1e-12)
        assert (folded.count[i], folded.lo[i], folded.hi[i]) == (local.count[i], local.lo[i], local.hi[i])
    assert batch_for(runner) >= 1


def test_gate_skips_only_8bit_layers_and_keeps_their_nearest_rounding(mobilenet: dict) -> None:
    """With integer activations the gate may keep nearest rounding on 8-bit layers (their weights placed on the
    grid as the engine rounds them, so later layers learn against that rounding); 4-bit layers always learn."""
    from edgequant.transforms.grid import fake_quantize

    ed = GraphEditor(mobilenet["tflite"])
    for scheme in ("int8", "w4a8"):
        bits, op_bits = litert_op_bits(scheme)
        result = get_transform("adaround").apply(mobilenet["tflite"], mobilenet["cal"][:64], bits, op_bits=op_bits,
                                                 iterations=60, activation_bits=8)
        gated = int(result.metrics["gated_layers"])
        out = GraphEditor(result.tflite)
        nearest = 0
        for op in ed.find_ops(*_WEIGHTED):
            w = ed.read_constant(op.inputs[1])
            name = ed.tensor_name(op.inputs[1])
            b = op_bits.get(op.op, bits)
            ratio, _, qmin, qmax = grid(w, op.op, b)
            if np.array_equal(out.read_constant(op.inputs[1]), fake_quantize(w, op.op, b)):
                nearest += 1
                np.testing.assert_array_equal(result.grid_values[name], np.clip(np.rint(ratio), qmin, qmax))
        assert nearest >= gated
        if scheme == "int8":
            assert gated > 0 and any(c.startswith(f"{gated} of ") for c in result.changes)
        else:  # with 4-bit layers in the model every layer learns (8-bit ones repair the 4-bit ones' error)
            assert gated == 0


def test_int8_default_with_the_gate_stores_what_it_placed(mobilenet: dict) -> None:
    """The pipeline's grid check (quantize raises if the engine stored other integers) covers gated layers.

    AdaRound is asked for by name: as a default it may be dropped where it does not pay on this random model."""
    q = edgequant.quantize(inspect_float_tflite(mobilenet["tflite"], Path("m.tflite"), SourceKind.TFLITE), "int8",
                           engine="litert", calibration=mobilenet["cal"][:64], observer="mse", transforms="adaround")
    assert any("checked: the engine stored exactly the learned weights" in n for n in q.notes)


def test_grouped_convolution_is_skipped_not_fatal(tmp_path: Path) -> None:
    """SVTRv2's mixers are grouped CONV_2Ds (kernel in-channels = input channels / groups): AdaRound's and bias
    correction's patches span every input channel, so they skip such a layer (with a note) and do the rest."""
    import keras

    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(8, 3, groups=2, padding="same", name="grouped")(inputs)
    x = keras.layers.Conv2D(4, 1, name="plain")(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    model.save(tmp_path / "g.keras")
    tflite = edgequant.convert(tmp_path / "g.keras").tflite
    ed = GraphEditor(tflite)
    assert any(ed.tensor_shape(op.inputs[1])[-1] == 2 for op in ed.find_ops("CONV_2D"))  # stays grouped
    cal = np.random.default_rng(0).normal(size=(16, 6, 6, 4)).astype(np.float32)
    for name in ("adaround", "bias-correction"):
        result = get_transform(name).apply(tflite, cal, 8)
        assert any("grouped convolution" in c for c in result.changes), (name, result.changes)
    edgequant.quantize(tmp_path / "g.keras", "int8", calibration=cal)  # default transforms, no crash


def test_dynamic_keeps_depthwise_float_and_adaround_leaves_it(mobilenet: dict) -> None:
    """XNNPACK has no dynamic-range depthwise kernel: the dynamic scheme keeps those convolutions float,
    quantizes the other weighted ops to int8, and AdaRound rounds only what the engine stores as int8."""
    from edgequant.graph import read_graph

    from edgequant.frontends import inspect_float_tflite
    from edgequant.types import SourceKind

    floats = inspect_float_tflite(mobilenet["tflite"], Path("mobilenet_like.tflite"), SourceKind.TFLITE)
    q = edgequant.quantize(floats, "dynamic", engine="litert", calibration=mobilenet["cal"][:64])
    ops = read_graph(q.tflite).ops
    depthwise = [o for o in ops if o.op == "DEPTHWISE_CONV_2D"]
    others = [o for o in ops if o.op in ("CONV_2D", "FULLY_CONNECTED")]
    assert depthwise and all(o.weight_dtype == "float32" for o in depthwise)
    assert others and all(o.weight_dtype == "int8" for o in others)
    assert any("depthwise convolutions stay float" in n for n in q.notes)
    # The transform check passes either way; when AdaRound is kept, its integers are what was stored.
    if q.recipe.transforms:
        assert any(n.startswith("checked: the engine stored exactly the learned weights") for n in q.notes)


def test_every_wave_of_4bit_layers_gets_the_shared_steps(mobilenet: dict, monkeypatch) -> None:
    """On the sampled path in waves (forced with full_rows=1 and no pass budget) 4-bit layers learn in WAVES
    groups; each must get the steps its budget share allows, not MIN_STEPS after the first wave (a flag once
    overwrote the share)."""
    seen: list[tuple[int, int]] = []
    real = adaround._learn
    monkeypatch.setattr(adaround, "PASS_BUDGET", 0.0)

    def spy(problem, ratio, qmin, qmax, fixed, iterations, early_stop=True):
        seen.append((problem.layer.bits, iterations))
        return real(problem, ratio, qmin, qmax, fixed, iterations, early_stop)

    monkeypatch.setattr(adaround, "_learn", spy)
    bits, op_bits = litert_op_bits("w4a8")
    result = get_transform("adaround").apply(mobilenet["tflite"], mobilenet["cal"][:64], bits, op_bits=op_bits,
                                             iterations=120, full_rows=1)
    assert result.metrics["passes"] > 1
    four = [steps for b, steps in seen if b == 4]
    assert len(four) >= 4 and set(four) == {120}, seen  # the zoo model's cost is far under W4_BUDGET


def test_sampled_8bit_layers_learn_the_same_beside_a_4bit_layer(mobilenet: dict,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """On the sampled path in waves an 8-bit layer learns from float inputs, with or without a 4-bit layer
    upstream.

    Learning from the rounded model's inputs, with the few steps the 8-bit layers get there, lost AdaRound's
    gain: real EfficientNet-Lite0 with one 4-bit layer (1% of its weights) came out 15.5 dB on its calibration
    data against 21.5 dB for int8, and 19.5 dB once its 8-bit layers learned as at int8. So every 8-bit layer
    must store the same integers as in the all-8-bit run. A pass budget of zero makes the digit model take
    waves, as a real-size model does (its passes are otherwise cheap enough to go one layer at a time).
    """
    monkeypatch.setattr(adaround, "PASS_BUDGET", 0.0)
    ed = GraphEditor(mobilenet["tflite"])
    convs = ed.find_ops("CONV_2D")
    four = ed.tensor_name(convs[len(convs) // 2].outputs[0])
    runs = {}
    for name, layer_bits in (("int8", {}), ("one 4-bit", {four: 4})):
        runs[name] = get_transform("adaround").apply(mobilenet["tflite"], mobilenet["cal"][:64], 8,
                                                     layer_bits=layer_bits, iterations=60, activation_bits=8,
                                                     full_rows=1)
    assert runs["one 4-bit"].metrics["passes"] > 1  # the 4-bit layer made it learn in rounded passes
    four_weights = ed.tensor_name(convs[len(convs) // 2].inputs[1])
    same = [n for n, q in runs["int8"].grid_values.items() if n != four_weights]
    assert len(same) >= 5
    for n in same:
        np.testing.assert_array_equal(runs["one 4-bit"].grid_values[n], runs["int8"].grid_values[n], err_msg=n)


def test_weight_only_int8_gains_from_adaround_on_held_out_digits(mobilenet: dict) -> None:
    """With float activations the rounded weights are the only error, so learning their rounding pays:
    about 48.6 -> 60 dB on this model's held-out samples (benchmarks: pipeline.DEFAULT_TRANSFORMS)."""
    model = inspect_float_tflite(mobilenet["tflite"], Path("mobilenet_like.tflite"), SourceKind.TFLITE)
    ref = Runner(mobilenet["tflite"]).predict_output(mobilenet["x"])
    sqnr = {}
    for transforms in ("none", "adaround"):
        q = edgequant.quantize(model, "weight-only-int8", engine="litert", calibration=mobilenet["cal"],
                               transforms=transforms)
        sqnr[transforms] = fidelity(Runner(q.tflite).predict_output(mobilenet["x"]), ref).sqnr_db
    assert sqnr["adaround"] > sqnr["none"] + 3.0, sqnr
