"""The w4a8 plan (recipe/w4.py): which layers get 4-bit weights, and AdaRound's clipped 4-bit grids.

What is checked, and why:
- clipped_weights never has more weight error per channel than the engine's max|w| bound (the bound is one of
  its candidates), and clips a channel whose largest weight is an outlier.
- plan_w4 honours its noise target: every layer 4-bit for a target far below any layer's cost, none far above,
  and in between the 4-bit layers' measured noises sum to at most the budget.
- quantize's w4a8 default plans, notes it, saves the plan in the recipe that ran, and the engine stores int4
  weights exactly for the layers the plan chose and int8 for the others.
"""

from __future__ import annotations

import numpy as np
import pytest

import edgequant
from edgequant.graph.edit import GraphEditor
from edgequant.recipe.w4 import W4_OPS, clipped_weights, plan_w4
from edgequant.transforms.grid import fake_quantize
from edgequant.types import Precision


def _calib(digits) -> np.ndarray:
    with np.load(digits["calibration"]) as z:
        return z["x"][:32]


def test_clipped_weights_never_worse_than_the_max_bound_and_clip_outliers() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 3, 3, 16)).astype(np.float32)
    w[0, 0, 0, 0] = 12.0  # one outlier: the max bound wastes 4-bit steps on it
    clipped, plain = clipped_weights(w, "CONV_2D", 4), fake_quantize(w, "CONV_2D", 4)
    err_c = ((clipped - w) ** 2).reshape(8, -1).sum(1)
    err_p = ((plain - w) ** 2).reshape(8, -1).sum(1)
    assert np.all(err_c <= err_p + 1e-9)
    assert err_c[0] < 0.9 * err_p[0]  # 0.81 here: the outlier clipped, the other weights finer
    assert np.abs(clipped[0]).max() < 12.0 * 0.9
    # Each channel uses at most 15 levels: symmetric, +-7 steps of its own scale.
    for c in range(8):
        levels = np.unique(np.round(clipped[c] / (np.abs(clipped[c]).max() / 7), 4))
        assert len(levels) <= 15 and np.allclose(levels, np.rint(levels))


@pytest.fixture(scope="module")
def plans(float_tflite, digits) -> dict:
    fl, x = float_tflite.read_bytes(), _calib(digits)
    return {t: plan_w4(fl, x, target_db=t) for t in (-300.0, 300.0)} | {"fl": fl, "x": x}


def test_plan_extremes(plans) -> None:
    ed = GraphEditor(plans["fl"])
    ops = ed.find_ops(*W4_OPS)
    last = {ed.tensor_name(op.outputs[0]) for op in ops if ed.is_graph_output(op.outputs[0])}
    layers = {ed.tensor_name(op.outputs[0]) for op in ops} - last
    every, none = plans[-300.0], plans[300.0]
    assert len(every.four_bit) == len(layers) > 0 and not every.eight_bit
    # The layer writing a model output stays int8 whatever the target.
    assert len(every.output_layers) == len(last)
    assert every.precisions == {**{name: Precision.W4A8 for name in layers}, **{name: Precision.INT8 for name in last}}
    assert 0 < every.weight_share <= 1.0
    assert not none.four_bit and len(none.eight_bit) == len(layers)
    assert none.precisions == {name: Precision.INT8 for name in layers | last}


def test_plan_keeps_the_summed_noise_under_its_target(plans) -> None:
    costs = sorted(plans[300.0].eight_bit.values())  # each layer's own output SQNR at 4 bits
    target = costs[len(costs) // 2] + 3.0  # room for some layers, not all
    plan = plan_w4(plans["fl"], plans["x"], target_db=target)
    assert 0 < len(plan.four_bit) < len(costs)
    assert sum(10 ** (-db / 10) for db in plan.four_bit.values()) <= 10 ** (-target / 10) * (1 + 1e-9)
    assert plan.estimated_db >= target
    total = len(costs) + len(plan.output_layers)
    assert plan.notes()[0].startswith(f"w4a8 plan: {len(plan.four_bit)} of {total} ")


def test_w4a8_default_stores_what_the_plan_chose(seed_cnn_path, digits) -> None:
    q = edgequant.quantize(seed_cnn_path, "w4a8", calibration=digits["calibration"], samples=32)
    assert any(n.startswith("w4a8 plan: ") for n in q.notes), q.notes
    kept = {name for name, rule in q.recipe.tensors.items() if rule.precision is Precision.INT8}
    ed = GraphEditor(q.tflite)
    dtypes = {}
    for op in ed.find_ops(*W4_OPS):
        dtypes[ed.tensor_name(op.outputs[0])] = ed.tensor_dtype(op.inputs[1])
    # Output names are the float model's (float I/O: the last op's output is requantized, so match by prefix).
    for name, dtype in dtypes.items():
        assert dtype == ("int8" if name in kept else "int4"), (name, dtype, kept)
    # A recipe that names the precisions (as the saved one does) gives the same model without planning again.
    again = edgequant.quantize(seed_cnn_path, "w4a8", calibration=digits["calibration"], samples=32,
                               recipe=q.recipe)
    assert not any(n.startswith("w4a8 plan: ") for n in again.notes)
    assert again.tflite == q.tflite
    # Without the plan every CONV_2D and FULLY_CONNECTED stores 4-bit weights.
    every = edgequant.quantize(seed_cnn_path, "w4a8", calibration=digits["calibration"], samples=32,
                               transforms="none", w4a8_plan=False)
    assert not any(n.startswith("w4a8 plan: ") for n in every.notes)
    ed = GraphEditor(every.tflite)
    assert {ed.tensor_dtype(op.inputs[1]) for op in ed.find_ops(*W4_OPS)} == {"int4"}
