"""recipe/: the plan as validated JSON; per-tensor observers; keyword overrides; saved recipes reproduce bytes.

The model tests use the session's seed CNN (conftest.py) and 50 calibration
samples. Scales are compared with rel=1e-5: litert-quantizer derives an
asymmetric int8 scale as (hi - lo) / 255 in float32.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import edgequant
from edgequant.graph import output_tensor_names
from edgequant.calibrate import AUTO_CANDIDATES, collect_stats, compute_ranges, parse_observer
from edgequant.calibrate.plan import calibration_candidates
from edgequant.cli import main
from edgequant.data import load_data, select_samples
from edgequant.errors import InputError, UnsupportedError
from edgequant.recipe import Recipe, TensorRule, load_recipe, plan
from edgequant.runtime import open_interpreter
from edgequant.types import EngineName, IOType, Scheme

SAMPLES = 50


@pytest.fixture(scope="module")
def calib_x(digits: dict[str, Path]) -> np.ndarray:
    """The samples quantize(samples=SAMPLES) calibrates on (the same seeded selection)."""
    return select_samples(load_data(digits["calibration"]), SAMPLES).x


@pytest.fixture(scope="module")
def stats(float_tflite: Path, calib_x: np.ndarray) -> edgequant.CalibrationStats:
    return collect_stats(float_tflite.read_bytes(), calib_x)


@pytest.fixture(scope="module")
def dense_relu(stats: edgequant.CalibrationStats) -> str:
    """The hidden Dense layer's ReLU output: an activation whose consumer (a Dense) takes its own output range."""
    [name] = [n for n in stats.tensors if "dense" in n and "Relu" in n]
    return name


def _activation_scales(tflite: bytes, names: list[str]) -> dict[str, float]:
    """The int8 scale of each named tensor the model quantized (float model I/O keeps the input float)."""
    details = {d["name"]: d for d in open_interpreter(tflite, "quantized model").get_tensor_details()}
    return {n: float(details[n]["quantization_parameters"]["scales"][0]) for n in names
            if n in details and len(details[n]["quantization_parameters"]["scales"])}


# --------------------------------------------------------------------------- the schema


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    data = {"version": 1, "scheme": "int8", "engine": "litert", "io": "uint8", "observer": "percentile:99.9",
            "transforms": ["cle", "bias-correction"], "samples": 64,
            "tensors": {"a/Relu": {"observer": "mse"}, "b;c": {"observer": "auto"}}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    recipe = load_recipe(path)
    assert recipe.scheme is Scheme.INT8 and recipe.io is IOType.UINT8 and recipe.samples == 64
    assert recipe.tensors["a/Relu"] == TensorRule(parse_observer("mse"))
    assert recipe.tensor_observers() == {"a/Relu": parse_observer("mse"), "b;c": None}  # None: the global one
    assert recipe.to_dict() == data
    saved = recipe.save(tmp_path / "sub" / "again.json")
    assert load_recipe(saved) == recipe and json.loads(saved.read_text()) == data
    assert not list(saved.parent.glob("*.part"))


def test_defaults_of_a_minimal_recipe() -> None:
    recipe = Recipe.from_dict({"version": 1})
    assert (recipe.scheme, recipe.engine, recipe.io, recipe.observer, recipe.transforms, recipe.samples) == \
        (None, EngineName.AUTO, IOType.FLOAT, None, None, None)
    assert recipe.to_dict() == {"version": 1, "engine": "auto", "io": "float", "observer": "auto",
                                "transforms": "default", "tensors": {}}
    # An odd percentile keeps every digit, so a saved recipe reproduces the same ranges.
    odd = Recipe.from_dict({"version": 1, "observer": "percentile:99.123456789"})
    assert Recipe.from_dict(odd.to_dict()) == odd


@pytest.mark.parametrize(("data", "message"), [
    ({"version": 1, "oberver": "mse"}, r'r\.json: field "oberver": unknown field; expected one of version, '),
    ({"version": 1, "tensors": {"dense_1/Relu": {"observer": "foo"}}},
     r'r\.json: field "tensors\.dense_1/Relu\.observer": expected an observer \(minmax, ema-minmax, '
     r'percentile:P, mse, entropy or auto\), found "foo"'),
    ({"version": 1, "tensors": {"x": {"keep_float": True}}}, r'field "tensors\.x\.keep_float": unknown field'),
    ({"version": 1, "tensors": {"x": "mse"}}, r'field "tensors\.x": expected an object with fields observer, '
                                              r'found "mse"'),
    ({"version": 1, "tensors": []}, r'field "tensors": expected an object .*found a list'),
    ({"version": 3}, r'field "version": expected 1 or 2 .*found 3'),
    ({"version": "1"}, r'field "version": expected 1 or 2 .*found "1"'),
    ({"version": 1, "tensors": {"x": {"precision": "float"}}},
     r'field "tensors\.x\.precision": unknown field; expected observer \(field "precision" needs "version": 2\)'),
    ({"version": 2, "tensors": {"x": {"precision": "int4"}}},
     r'field "tensors\.x\.precision": expected a precision \(float, int8, int16x8 or w4a8\), found "int4"'),
    ({"version": 2, "tensors": {"x": {"precision": 8}}}, r'field "tensors\.x\.precision": expected a precision'),
    ({"scheme": "int8"}, r'field "version" is missing'),
    ({"version": 1, "scheme": "int3"}, r'field "scheme": expected one of fp16, .*w4a8, found "int3"'),
    ({"version": 1, "engine": "onnx"}, r'field "engine": expected one of auto, litert, tflite-converter, found "onnx"'),
    ({"version": 1, "io": 8}, r'field "io": expected one of float, int8, uint8, found 8'),
    ({"version": 1, "observer": "percentile:20"}, r'field "observer": .*found "percentile:20" .*50 < P <= 100'),
    ({"version": 1, "observer": 3}, r'field "observer": expected an observer .*found 3'),
    ({"version": 1, "transforms": ["cle", "nope"]}, r'field "transforms\[1\]": expected a transform \(cle, '),
    ({"version": 1, "transforms": "cle"}, r'field "transforms": expected "default" or a list'),
    ({"version": 1, "samples": 0}, r'field "samples": expected a positive integer, found 0'),
    ({"version": 1, "samples": True}, r'field "samples": expected a positive integer, found true'),
    ([{"version": 1}], r"r\.json: expected a JSON object, found a list"),
])
def test_validation_names_the_file_and_field(data: object, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        Recipe.from_dict(data, "r.json")
    assert "\n" not in str(info.value)


def test_unknown_names_are_unsupported_errors() -> None:
    for data in ({"version": 1, "scheme": "int3"}, {"version": 1, "observer": "median"},
                 {"version": 1, "transforms": ["nope"]}):
        with pytest.raises(UnsupportedError):
            Recipe.from_dict(data, "r.json")


def test_unreadable_files_are_one_line_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="recipe not found"):
        load_recipe(tmp_path / "missing.json")
    with pytest.raises(InputError, match="recipe not found"):
        load_recipe(tmp_path)  # a folder
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(InputError, match=r"cannot read junk\.json: expected a JSON recipe"):
        load_recipe(tmp_path / "junk.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match=r"cannot read bin\.json"):
        load_recipe(tmp_path / "bin.json")


def test_keywords_override_the_recipe_with_a_note() -> None:
    recipe = Recipe.from_dict({"version": 1, "scheme": "int8", "observer": "mse", "transforms": ["cle"]}, "r.json")
    ran, notes = plan(recipe, observer="minmax", transforms="none", io="int8", samples=10)
    assert ran.observer == parse_observer("minmax") and ran.transforms == () and ran.io is IOType.INT8
    assert notes == ["recipe io float overridden by --io int8", "recipe observer mse overridden by --observer minmax",
                     "recipe transforms cle overridden by --transforms none"]  # samples: unset, so filled in
    same, quiet = plan(recipe, scheme="int8", observer="mse")
    assert same == recipe and quiet == []  # equal values are not overrides
    back, notes = plan(recipe, observer="auto", transforms="default")
    assert back.observer is None and back.transforms is None and len(notes) == 2
    assert plan(None, scheme="int8")[1] == []  # no recipe, nothing overridden


def test_scheme_comes_from_the_recipe_or_the_keyword(float_tflite: Path) -> None:
    with pytest.raises(InputError, match=r'no scheme: expected --scheme SCHEME \(or --recipe FILE'):
        edgequant.quantize(float_tflite)
    with pytest.raises(InputError, match=r'no scheme: .*"scheme" field in recipe'):
        edgequant.quantize(float_tflite, recipe={"version": 1, "observer": "mse"})
    q = edgequant.quantize(float_tflite, recipe={"version": 1, "scheme": "dynamic"})
    assert q.scheme is Scheme.DYNAMIC and q.recipe is not None and q.recipe.scheme is Scheme.DYNAMIC
    assert json.loads(json.dumps(q.to_dict()))["recipe"]["scheme"] == "dynamic"


# --------------------------------------------------------------------------- per-tensor observers


def test_a_tensor_observer_changes_that_tensor_only(float_tflite: Path, digits: dict[str, Path], stats,
                                                   dense_relu: str) -> None:
    common = dict(calibration=digits["calibration"], samples=SAMPLES, transforms="none")
    base = edgequant.quantize(float_tflite, "int8", observer="minmax", **common)
    recipe = {"version": 1, "scheme": "int8", "observer": "minmax",
              "tensors": {dense_relu: {"observer": "percentile:99"}}}
    tuned = edgequant.quantize(float_tflite, recipe=recipe, **common)
    names = list(stats.tensors)
    before, after = _activation_scales(base.tflite, names), _activation_scales(tuned.tflite, names)
    assert dense_relu in before and len(before) >= 5
    changed = {n for n in names if n in before and before[n] != pytest.approx(after[n], rel=1e-5)}
    assert changed == {dense_relu}
    lo, hi = compute_ranges(stats, "minmax", 8, {dense_relu: parse_observer("percentile:99")})[0][dense_relu]
    assert after[dense_relu] == pytest.approx((hi - lo) / 255, rel=1e-5)
    assert after[dense_relu] < before[dense_relu]  # the 99th percentile clips the ReLU's tail
    assert any("1 tensor with its own observer" in n for n in tuned.notes)
    assert tuned.recipe is not None
    assert tuned.recipe.tensor_observers() == {dense_relu: parse_observer("percentile:99")}


def test_every_auto_candidate_keeps_the_tensor_overrides(float_tflite: Path, calib_x: np.ndarray, stats,
                                                         dense_relu: str) -> None:
    override = {dense_relu: parse_observer("percentile:99")}
    candidates, _ = calibration_candidates("litert", False, Scheme.INT8, float_tflite.read_bytes(), calib_x, None,
                                           stats, lambda *a: None, override)
    assert [c.observer for c in candidates] == [str(o) for o in AUTO_CANDIDATES]
    want = compute_ranges(stats, "percentile:99", 8)[0][dense_relu]
    for c in candidates:
        assert c.ranges is not None and c.ranges[dense_relu] == want
        # The model's outputs keep their min-max range; the rest follow the candidate's own observer.
        outputs = set(output_tensor_names(float_tflite.read_bytes()))
        minmax, others = compute_ranges(stats, "minmax", 8)[0], compute_ranges(stats, c.observer or "", 8)[0]
        assert outputs and all(c.ranges[n] == minmax[n] for n in outputs)
        assert all(c.ranges[n] == others[n] for n in others if n != dense_relu and n not in outputs)


def test_an_unknown_tensor_lists_real_names(float_tflite: Path, digits: dict[str, Path], stats) -> None:
    recipe = Recipe.from_dict({"version": 1, "scheme": "int8", "tensors": {"dense_1/Relu": {"observer": "mse"}}},
                              "r.json")
    first = re.escape(json.dumps(next(iter(stats.tensors))))
    more = len(stats.tensors) - 5
    with pytest.raises(InputError, match=rf'r\.json: field "tensors\.dense_1/Relu": no activation tensor .*'
                                         rf'{first}.*\(and {more} more\)'):
        edgequant.quantize(float_tflite, recipe=recipe, stats=stats)


def test_tensor_rules_that_do_not_apply_say_so(float_tflite: Path, dense_relu: str) -> None:
    q = edgequant.quantize(float_tflite, recipe={"version": 1, "scheme": "dynamic",
                                                 "tensors": {dense_relu: {"observer": "mse"}}})
    assert any("per-tensor observers (1) not used: scheme dynamic" in n for n in q.notes)


# --------------------------------------------------------------------------- the recipe that ran


def test_saved_recipe_reproduces_the_same_bytes(float_tflite: Path, digits: dict[str, Path], dense_relu: str,
                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Global "auto" plus one tensor rule: the saved recipe names the chosen observer and quantizes identically."""
    start = tmp_path / "start.json"
    start.write_text(json.dumps({"version": 1, "scheme": "int8", "tensors": {dense_relu: {"observer": "mse"}}}))
    first, saved, again = tmp_path / "a.tflite", tmp_path / "saved.json", tmp_path / "b.tflite"
    calib = ["--calibration", str(digits["calibration"]), "--samples", str(SAMPLES)]
    assert main(["quantize", str(float_tflite), "--recipe", str(start), *calib, "-o", str(first),
                 "--save-recipe", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "recipe: scheme int8, engine litert" in out and f"recipe -> {saved}" in out
    data = json.loads(saved.read_text())
    chosen = [n for n in out.splitlines() if "observer auto-selected" in n][0].split(": ", 2)[2].split(" ")[0]
    assert data["observer"] == chosen and data["transforms"] == ["adaround"] and data["samples"] == SAMPLES
    assert data["tensors"] == {dense_relu: {"observer": "mse"}}
    assert main(["quantize", str(float_tflite), "--recipe", str(saved), "--calibration",
                 str(digits["calibration"]), "-o", str(again)]) == 0
    assert "auto-selected" not in capsys.readouterr().out  # one observer now, no search
    assert again.read_bytes() == first.read_bytes()


def test_saved_recipe_records_the_default_transforms(float_tflite: Path, digits: dict[str, Path]) -> None:
    q = edgequant.quantize(float_tflite, "weight-only-int4", calibration=digits["calibration"], samples=SAMPLES)
    assert q.recipe is not None and [t.value for t in q.recipe.transforms or ()] == ["adaround"]
    again = edgequant.quantize(float_tflite, calibration=digits["calibration"], recipe=q.recipe.to_dict())
    assert again.tflite == q.tflite
    skipped = edgequant.quantize(float_tflite, "weight-only-int4")  # default skipped without data
    assert skipped.recipe is not None and skipped.recipe.transforms == ()
    # Fewer samples than asked for: the recipe records how many were used, and reproduces the bytes.
    with np.load(digits["calibration"]) as z:
        few = z["x"][:40]
    small = edgequant.quantize(float_tflite, "int8", calibration=few, observer="minmax", transforms="none")
    assert small.recipe is not None and small.recipe.samples == 40
    assert edgequant.quantize(float_tflite, calibration=few, recipe=small.recipe.to_dict()).tflite == small.tflite


def test_cli_options_override_the_recipe(float_tflite: Path, digits: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"version": 1, "scheme": "int8", "observer": "mse"}))
    out = tmp_path / "m.tflite"
    assert main(["quantize", str(float_tflite), "--recipe", str(recipe), "--observer", "minmax", "--calibration",
                 str(digits["calibration"]), "--samples", "20", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "note: recipe observer mse overridden by --observer minmax" in text
    assert "observer minmax" in text.splitlines()[1]


# --------------------------------------------------------------------------- per-layer precision (version 2)


@pytest.fixture(scope="module")
def layers(float_tflite: Path) -> dict[str, str]:
    """The seed CNN's op output tensors -> op type (CONV_2D, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED x2, SOFTMAX)."""
    from edgequant.engines.litert import layer_ops

    return layer_ops(float_tflite.read_bytes())


def _first(layers: dict[str, str], op: str) -> str:
    return next(name for name, kind in layers.items() if kind == op)


def test_per_layer_precision_gives_each_op_its_own(float_tflite: Path, digits: dict[str, Path],
                                                  layers: dict[str, str]) -> None:
    """One int8 model with a 4-bit conv, a dense layer on 16-bit activations and a float softmax.

    AdaRound runs (asked for by name, so the default transforms' check cannot drop it) and must
    put the conv's weights on the 4-bit grid: the pipeline checks the stored integers.
    """
    from edgequant.graph.submodel import GraphModel

    conv, dense, softmax = _first(layers, "CONV_2D"), _first(layers, "FULLY_CONNECTED"), _first(layers, "SOFTMAX")
    other = [n for n, k in layers.items() if k == "FULLY_CONNECTED"][1]
    recipe = {"version": 2, "scheme": "int8", "observer": "minmax", "transforms": ["adaround"],
              "tensors": {conv: {"precision": "w4a8"}, dense: {"precision": "int16x8"}, softmax: {"precision": "float"}}}
    q = edgequant.quantize(float_tflite, calibration=digits["calibration"], samples=SAMPLES, recipe=recipe)
    assert any(n.startswith("checked: the engine stored exactly the learned weights") for n in q.notes)
    assert any(n.startswith("per-layer precision: 1 op(s) float, 1 op(s) int16x8, 1 op(s) w4a8") for n in q.notes)
    g = GraphModel(q.tflite, "quantized")
    written = {g.tensor_name(t): i for t, i in g.producers().items()}

    def op_dtypes(name: str) -> tuple[str, str]:
        op = g.sg.operators[written[name]]
        return g.tensor_dtype(op.outputs[0]), g.tensor_dtype(op.inputs[1]) if len(op.inputs) > 1 else ""

    assert op_dtypes(conv) == ("int8", "int4")
    assert op_dtypes(dense) == ("int16", "int8")
    assert op_dtypes(other) == ("int8", "int8"), "a layer without a rule keeps the scheme's precision"
    assert op_dtypes(softmax)[0] == "float32"
    assert g.op_names[written[softmax]] == "SOFTMAX"
    # The plan that ran says version 2 and keeps the rules, so it rebuilds the same model.
    assert q.recipe is not None and q.recipe.to_dict()["version"] == 2
    assert {n: r.precision.value for n, r in q.recipe.tensors.items() if r.precision} == {
        conv: "w4a8", dense: "int16x8", softmax: "float"}
    again = edgequant.quantize(float_tflite, calibration=digits["calibration"], recipe=q.recipe.to_dict())
    assert again.tflite == q.tflite


def test_float_precision_applies_to_float_activation_schemes(float_tflite: Path, layers: dict[str, str]) -> None:
    dense = _first(layers, "FULLY_CONNECTED")
    whole = edgequant.quantize(float_tflite, "dynamic")
    kept = edgequant.quantize(float_tflite, recipe={"version": 2, "scheme": "dynamic",
                                                    "tensors": {dense: {"precision": "float"}}})
    assert len(kept.tflite) > len(whole.tflite), "the kept layer's weights stay float32"


@pytest.mark.parametrize(("make", "message"), [
    (lambda ls: {"scheme": "int8", "tensors": {_first(ls, "MAX_POOL_2D"): {"precision": "w4a8"}}},
     r'field "tensors\..*MaxPool.*\.precision": precision w4a8 is not available for MAX_POOL_2D .*'
     r'allows it for CONV_2D and FULLY_CONNECTED'),
    (lambda ls: {"scheme": "int8", "engine": "tflite-converter",
                 "tensors": {_first(ls, "SOFTMAX"): {"precision": "float"}}},
     r'field "tensors\.StatefulPartitionedCall_1:0\.precision": engine tflite-converter cannot set per-layer '
     r'precision .*use engine litert'),
    (lambda ls: {"scheme": "dynamic", "tensors": {_first(ls, "FULLY_CONNECTED"): {"precision": "int8"}}},
     r'field "tensors\..*dense.*\.precision": precision int8 needs a scheme with integer activations '
     r'\(int8, int16x8, w4a8\), found scheme dynamic'),
    (lambda ls: {"scheme": "int8", "tensors": {"nope": {"precision": "float"}}},
     r'field "tensors\.nope\.precision": no op of this model writes a tensor of that name'),
])
def test_precision_rules_the_model_cannot_take_name_the_field(float_tflite: Path, digits: dict[str, Path],
                                                               layers: dict[str, str], make: object,
                                                               message: str) -> None:
    recipe = Recipe.from_dict({"version": 2, **make(layers)}, "r.json")  # type: ignore[operator]
    with pytest.raises(UnsupportedError, match=r"^r\.json: " + message):
        edgequant.quantize(float_tflite, calibration=digits["calibration"], samples=SAMPLES, recipe=recipe)
