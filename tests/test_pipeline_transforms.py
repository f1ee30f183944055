"""Transforms wired into quantize: defaults per scheme, explicit choice, and where they cannot apply."""

import numpy as np
import pytest

import edgequant
from edgequant.cli import main
from edgequant.evaluate import fidelity
from edgequant.runtime import Runner


def _sqnr(q, float_tflite, x) -> float:
    return fidelity(Runner(q.tflite).predict_output(x), Runner(float_tflite.read_bytes()).predict_output(x)).sqnr_db


def test_w4a8_default_applies_adaround_and_it_helps(seed_cnn_path, float_tflite, digits, test_arrays) -> None:
    x, _ = test_arrays
    # Every conv and dense layer 4-bit (no w4a8 plan, which would keep costly layers int8): AdaRound's case.
    default = edgequant.quantize(seed_cnn_path, "w4a8", calibration=digits["calibration"], samples=100,
                                 w4a8_plan=False)
    plain = edgequant.quantize(seed_cnn_path, "w4a8", calibration=digits["calibration"], samples=100,
                               transforms="none", w4a8_plan=False)
    assert any(n.startswith("adaround:") for n in default.notes)
    # The pipeline checked the engine stored exactly the learned integers.
    assert any(n.startswith("checked: the engine stored exactly the learned weights") for n in default.notes)
    assert not any(n.startswith("adaround:") for n in plain.notes)
    # Measured on this model: about 32.5 -> 42 dB held-out SQNR; assert a clear gain, not the exact figure.
    assert _sqnr(default, float_tflite, x) > _sqnr(plain, float_tflite, x) + 3.0


def test_transforms_run_in_the_fixed_order(seed_cnn_path, digits) -> None:
    q = edgequant.quantize(seed_cnn_path, "int8", calibration=digits["calibration"], samples=50,
                           transforms="bias-correction,adaround,cle")
    names = [n.split(":")[0] for n in q.notes if n.startswith(("cle:", "bias-correction:", "adaround:"))]
    assert names == ["cle", "adaround", "bias-correction"]
    assert any(n == "transforms run in edgequant's fixed order: cle, adaround, bias-correction" for n in q.notes)
    q8 = edgequant.quantize(seed_cnn_path, "int8", calibration=digits["calibration"], samples=50)
    assert [n.split(":")[0] for n in q8.notes if n.startswith(("cle:", "bias-correction:", "adaround:"))] \
        == ["adaround"]
    f16 = edgequant.quantize(seed_cnn_path, "fp16", calibration=digits["calibration"], samples=50)
    assert not any(n.startswith(("cle:", "bias-correction:", "adaround:")) for n in f16.notes)


def test_weight_only_int8_defaults_to_adaround_in_the_tournament(seed_cnn_path, digits) -> None:
    """Float activations leave the weights as the only error: AdaRound is weight-only int8's default too, and
    the tournament decides whether it stays (its gain is measured in test_adaround.py)."""
    default = edgequant.quantize(seed_cnn_path, "weight-only-int8", calibration=digits["calibration"], samples=100)
    assert any(n.startswith("default transforms (adaround) ") for n in default.notes), default.notes
    plain = edgequant.quantize(seed_cnn_path, "weight-only-int8")
    # Weight-only weights reach their ops through DEQUANTIZE: the check counts the stored bytes.
    assert any(n.startswith("checked: ") and "bytes of weights stored as int8" in n for n in plain.notes), \
        plain.notes


def test_transforms_need_the_litert_engine_and_calibration(seed_cnn_path, digits) -> None:
    with pytest.raises(edgequant.UnsupportedError, match="use --engine litert"):
        edgequant.quantize(seed_cnn_path, "int8", "tflite-converter", calibration=digits["calibration"],
                           samples=20, transforms="cle")
    with pytest.raises(edgequant.InputError, match="expected --calibration DATA"):
        edgequant.quantize(seed_cnn_path, "dynamic", transforms="bias-correction")
    with pytest.raises(edgequant.UnsupportedError, match="cle, bias-correction, adaround"):
        edgequant.quantize(seed_cnn_path, "dynamic", transforms="adarround")
    # A default transform without data is skipped, and said so.
    q = edgequant.quantize(seed_cnn_path, "weight-only-int4")
    assert any("skipped: they need --calibration data" in n for n in q.notes)


def test_cli_transforms_option(seed_cnn_path, digits, tmp_path, capsys) -> None:
    out = tmp_path / "w4.tflite"
    assert main(["quantize", str(seed_cnn_path), "--scheme", "weight-only-int4", "--calibration",
                 str(digits["calibration"]), "--samples", "50", "--transforms", "bias-correction",
                 "-o", str(out)]) == 0
    assert "note: bias-correction:" in capsys.readouterr().out and out.exists()


def test_saved_stats_skip_the_default_transforms(seed_cnn_path, digits, tmp_path) -> None:
    stats = edgequant.calibrate(seed_cnn_path, digits["calibration"], samples=30, output=tmp_path / "s.json")
    q = edgequant.quantize(seed_cnn_path, "w4a8", calibration=digits["calibration"], samples=30, stats=stats)
    assert any("default transforms (adaround) skipped: --stats" in n for n in q.notes)
    # The w4a8 plan measures on calibration data too; saved stats alone leave every conv and dense 4-bit.
    planned = edgequant.quantize(seed_cnn_path, "w4a8", stats=stats)
    assert any(n.startswith("w4a8 plan skipped") for n in planned.notes), planned.notes
    with pytest.raises(edgequant.InputError, match="different model"):
        edgequant.quantize(seed_cnn_path, "w4a8", calibration=digits["calibration"], samples=30, stats=stats,
                           transforms="bias-correction")


class _Damaging:
    """Stands in for a default transform that hurts this model: it halves the first conv's weights."""

    name = edgequant.transforms.TransformName.ADAROUND

    def apply_for(self, tflite, calibration, scheme, precisions, progress=None):
        from edgequant.graph.edit import GraphEditor
        from edgequant.transforms import TransformResult

        ed = GraphEditor(tflite)
        op = ed.find_ops("CONV_2D")[0]
        ed.write_constant(op.inputs[1], ed.read_constant(op.inputs[1]) * 0.5)
        return TransformResult(ed.to_bytes(), "adaround", ("halved the first conv's weights",), {})


def test_a_default_transform_that_hurts_is_dropped(seed_cnn_path, digits, monkeypatch) -> None:
    """The default transforms must pay on the model: the plan without them is built and the better one kept."""
    from edgequant import transforms

    monkeypatch.setitem(transforms.TRANSFORMS, transforms.TransformName.ADAROUND, _Damaging())
    q = edgequant.quantize(seed_cnn_path, "int8", calibration=digits["calibration"], samples=50, observer="minmax")
    plain = edgequant.quantize(seed_cnn_path, "int8", calibration=digits["calibration"], samples=50,
                               observer="minmax", transforms="none")
    assert any(n.startswith("default transforms (adaround) dropped") for n in q.notes), q.notes
    assert q.tflite == plain.tflite and q.recipe.transforms == ()
    # Asked for by name, a transform is applied as asked, even when it hurts.
    asked = edgequant.quantize(seed_cnn_path, "int8", calibration=digits["calibration"], samples=50,
                               observer="minmax", transforms="adaround")
    assert asked.tflite != plain.tflite and not any("dropped" in n for n in asked.notes)


def test_a_default_transform_that_helps_is_kept(seed_cnn_path, digits) -> None:
    q = edgequant.quantize(seed_cnn_path, "w4a8", calibration=digits["calibration"], samples=100, w4a8_plan=False)
    assert any(n.startswith("default transforms (adaround) kept") for n in q.notes), q.notes
