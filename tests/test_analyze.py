"""edgequant analyze on tiny models built in code, where the answer is known.

The MLP below (16 -> 32 relu -> 64 relu -> 32 elu -> 4) is edited after
conversion so that one unit of its second layer fires only on the 3 samples
(of 2,000) where a unit of the first layer exceeds a threshold, and then
reaches ~1,000 while every other value of that layer stays below ~3: an
outlier that sets the layer's int8 range (min-max) and leaves its other values
a step of ~4 wide. The third layer's weights on that unit are scaled by 1e-3
so the outlier does not spread into its range too. The third layer's ELU is
an op litert-quantizer cannot quantize, so the int8 model keeps it float.

Tolerances: rankings and structure are asserted, not dB values, except that
the outlier layer's local SQNR must be below every other layer's by 5 dB
(measured: 20 dB against 34-44 dB). Timing is never asserted: the slow-variant
finding is tested by injecting the measured latencies through ``timer``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgequant
from edgequant.analyze import Analysis, analyze, findings, layer_sensitivity
from edgequant.analyze.layers import ErrorSums, central_range
from edgequant.analyze.match import match_graphs
from edgequant.analyze.records import MatchMethod
from edgequant.analyze.runtime import infer_scheme
from edgequant.calibrate import collect_stats, compute_ranges
from edgequant.calibrate.histogram import TensorStats
from edgequant.cli import main
from edgequant.engines.litert import rewrite_keeping_float
from edgequant.errors import InputError
from edgequant.evaluate.metrics import fidelity
from edgequant.frontends.tflite import inspect_float_tflite
from edgequant.graph.edit import GraphEditor
from edgequant.graph.submodel import GraphModel
from edgequant.runtime import stream_tensors
from edgequant.types import CalibrationInput, Latency, Scheme, SourceKind


@dataclasses.dataclass(frozen=True)
class Mlp:
    float_model: edgequant.FloatModel
    x: np.ndarray
    int8: bytes
    dynamic: bytes
    names: dict[str, str]  # d1, d2, d3 -> the float model's output tensor name of that Dense layer


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Mlp:
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16,))
    h = keras.layers.Dense(32, activation="relu", bias_initializer="random_normal", name="d1")(inp)
    h = keras.layers.Dense(64, activation="relu", bias_initializer="random_normal", name="d2")(h)
    h = keras.layers.Dense(32, activation="elu", bias_initializer="random_normal", name="d3")(h)
    out = keras.layers.Dense(4, name="d4")(h)
    path = tmp_path_factory.mktemp("mlp") / "mlp.keras"
    keras.Model(inp, out).save(path)
    tflite = edgequant.convert(path).tflite
    x = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32)

    ed = GraphEditor(tflite)
    d1, d2, d3 = ed.find_ops("FULLY_CONNECTED")[:3]
    first = np.concatenate([b[d1.outputs[0]] for b in stream_tensors(tflite, x, [d1.outputs[0]])])
    k = int(np.argmax(first.max(axis=0)))
    threshold = float(np.sort(first[:, k])[-4])  # exactly 3 samples exceed it
    w2, b2, w3 = (ed.read_constant(t) for t in (d2.inputs[1], d2.inputs[2], d3.inputs[1]))
    w2[0] = 0.0
    w2[0, k] = 1000.0
    b2[0] = -1000.0 * threshold
    w3[:, 0] *= 1e-3
    for t, v in ((d2.inputs[1], w2), (d2.inputs[2], b2), (d3.inputs[1], w3)):
        ed.write_constant(t, v)
    edited = ed.to_bytes()
    names = {n: ed.tensor_name(o.outputs[0]) for n, o in zip(("d1", "d2", "d3"), (d1, d2, d3))}
    floats = inspect_float_tflite(edited, path.with_suffix(".tflite"), SourceKind.TFLITE)
    int8 = edgequant.quantize(floats, "int8", "litert", calibration=x, samples=len(x), observer="minmax",
                              transforms="none").tflite
    dynamic = edgequant.quantize(floats, "dynamic", "litert", transforms="none").tflite
    return Mlp(floats, x, int8, dynamic, names)


def _layer(a: Analysis, tensor: str) -> Any:
    return next(e for e in a.layers if e.tensor == tensor)


# ---------------------------------------------------------------------------- the three cases of the issue

def test_outlier_layer_ranks_first(mlp: Mlp) -> None:
    a = analyze(mlp.int8, mlp.float_model, mlp.x, top_k=2, samples=None, runs=0)
    worst = a.ranked()[0]
    assert worst.tensor == mlp.names["d2"] and worst.local_rank == 1
    others = [e.local_sqnr_db for e in a.layers if e.tensor != mlp.names["d2"] and e.local_sqnr_db is not None]
    assert worst.local_sqnr_db < min(others) - 5
    # The range is set by the outliers: far wider than what 99.99% of the values need.
    assert worst.outlier_ratio is not None and worst.outlier_ratio > 50
    assert worst.float_max > 500 and worst.p9999_max < 10
    [f] = [f for f in a.findings if f.kind == "layer-error" and mlp.names["d2"].split(";")[0] in f.message]
    assert f.severity == "warning" and "set by 0.01% of values" in f.message and f.value == worst.local_sqnr_db
    # Its successor inherits the damage but adds little of its own.
    d3 = _layer(a, mlp.names["d3"])
    assert d3.inherited_sqnr_db == pytest.approx(worst.sqnr_db) and d3.local_sqnr_db > worst.local_sqnr_db
    # Sensitivity ran on the top 2 layers by local error, the outlier layer among them.
    assert a.sensitivity is not None and a.sensitivity.metric == "sqnr_db"
    assert {s.tensor for s in a.sensitivity.layers} == {e.tensor for e in a.ranked()[:2]}
    assert json.loads(json.dumps(a.to_dict(), allow_nan=False))["layers"][0]["match"] == "name"


def test_op_left_in_float_shows_the_inserted_pair(mlp: Mlp) -> None:
    x = mlp.x[:200]
    ranges, _ = compute_ranges(collect_stats(mlp.float_model.tflite, x), "minmax", 8)
    kept = rewrite_keeping_float(mlp.float_model, Scheme.INT8, CalibrationInput(x, ranges, len(x), "test"),
                                 (mlp.names["d2"],))
    a = analyze(kept, mlp.float_model, x, top_k=0, runs=0)
    ops = {o.tensor: o for o in a.runtime.ops}
    d2 = ops[mlp.names["d2"]]
    assert d2.compute == "float32" and d2.float_reason.startswith("excluded")
    label = f"FULLY_CONNECTED#{d2.index}"
    interior = [c for c in a.runtime.conversions if c.where == "interior"]
    dequant = [c for c in interior if c.op == "DEQUANTIZE" and label in c.consumers]
    quant = [c for c in interior if c.op == "QUANTIZE" and c.producer == label]
    assert len(dequant) == 1 and len(quant) == 1
    assert dequant[0].index < d2.index < quant[0].index
    # ELU has no int8 rule in litert-quantizer: float for a different reason.
    elu = next(o for o in a.runtime.ops if o.op == "ELU")
    assert elu.float_reason.startswith("unsupported")
    [f] = [f for f in a.findings if f.kind == "float-ops"]
    assert f.value == 2 and label in f.message and "ELU" in f.message


def _timer(model_ms: dict[str, float], op_ms: dict[str, float]) -> Any:
    """A fake timer: model latencies by Runner.what, op times by the model an op was cut from."""
    def fake(runners: Sequence[Any], sample: np.ndarray, runs: int, warmup: int, progress: Any) -> list[Latency]:
        out = []
        for r in runners:
            ms = model_ms.get(r.what)
            if ms is None:
                ms = op_ms["quantized" if r.what.startswith("quantized model") else "reference"]
            out.append(Latency(ms, ms, runs, warmup, 1))
        return out
    return fake


@pytest.mark.parametrize(("quantized_ms", "slow"), [(2.6, True), (1.05, False), (0.8, False)])
def test_dynamic_range_slow_finding_follows_the_measurement(mlp: Mlp, quantized_ms: float, slow: bool) -> None:
    timer = _timer({"reference": 1.0, "quantized": quantized_ms}, {"quantized": 0.05, "reference": 0.02})
    a = analyze(mlp.dynamic, mlp.float_model, mlp.x[:100], top_k=0, runs=3, timer=timer)
    assert a.scheme == "dynamic" and a.runtime.latency_ratio == pytest.approx(quantized_ms)
    found = [f for f in a.findings if f.kind == "slow"]
    if slow:
        [f] = found
        assert f.severity == "warning" and f.value == pytest.approx(2.6) and f.unit == "x float latency"
        assert f.message.startswith("dynamic runs 2.60x slower than float")
        assert "hybrid int8" in f.message and "quantized on the fly" in f.message and "0.050 ms alone" in f.message
    else:
        assert not found and [f.kind for f in a.findings].count("speed") == 1
    # The same conclusion from the findings function alone, given the measured ratio.
    lat = dataclasses.replace(a.runtime.latency, median_ms=2.0)
    flipped = dataclasses.replace(a, runtime=dataclasses.replace(a.runtime, latency=lat))
    assert any(f.kind == "slow" for f in findings(flipped))


def test_an_fp16_model_timed_slower_is_called_noise_not_a_slower_kernel(mlp: Mlp) -> None:
    # fp16 weights are expanded to float32 at load and every op runs float's own XNNPACK kernel: a slower
    # measurement (faked here, as machine noise would make it) has no op to blame.
    fp16 = edgequant.quantize(mlp.float_model, "fp16").tflite
    timer = _timer({"reference": 1.0, "quantized": 1.3}, {"quantized": 0.05, "reference": 0.02})
    a = analyze(fp16, mlp.float_model, mlp.x[:100], top_k=0, runs=3, timer=timer)
    assert all(o.compute == "float32" and o.xnnpack for o in a.runtime.ops if o.role == "compute")
    [f] = [f for f in a.findings if f.kind == "slow"]
    assert f.message.startswith("fp16 runs 1.30x slower than float")
    assert "float model's own XNNPACK kernel" in f.message and "timing noise" in f.message
    assert "kernel is slower" not in f.message


# ---------------------------------------------------------------------------- units

def test_streamed_sums_equal_the_one_shot_metrics() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(96, 7, 5))
    out = ref + rng.normal(scale=0.05, size=ref.shape)
    sums = ErrorSums()
    for start in range(0, 96, 32):  # three batches, merged as the layer pass merges them
        sums.update(ref[start:start + 32], out[start:start + 32])
    whole = fidelity(out, ref)
    assert sums.sqnr_db == pytest.approx(whole.sqnr_db, rel=1e-9)
    assert sums.cosine == pytest.approx(whole.cosine, rel=1e-9)
    assert sums.max_abs == pytest.approx(whole.max_abs_error)
    assert sums.mean_abs == pytest.approx(np.abs(out - ref).mean())
    assert ErrorSums.merged([sums, sums]).sqnr_db == pytest.approx(sums.sqnr_db)


def test_central_range_ignores_rare_outliers() -> None:
    values = np.random.default_rng(2).uniform(-1, 1, size=(200_000, 1)).astype(np.float32)
    values[:3] = 500.0  # 0.0015% of the values
    stats = TensorStats("t", 2)
    for start in range(0, len(values), 50_000):
        stats.update(values[start:start + 50_000])
    lo, hi = central_range(stats)
    bin_width = (stats.hi - stats.lo) / 2048
    assert stats.max == 500.0 and -1 - bin_width <= lo <= -0.99 and 0.99 <= hi <= 1 + bin_width


def test_scheme_is_read_from_the_graph(mlp: Mlp) -> None:
    assert infer_scheme(GraphModel(mlp.int8)) is Scheme.INT8
    assert infer_scheme(GraphModel(mlp.dynamic)) is Scheme.DYNAMIC
    assert infer_scheme(GraphModel(mlp.float_model.tflite)) is None


# ---------------------------------------------------------------------------- matching, sensitivity, size

def test_renamed_tensor_is_matched_by_position(mlp: Mlp) -> None:
    ed = GraphEditor(mlp.int8)
    target = next(t for t in ed.model.subgraphs[0].tensors if t.name.decode() == mlp.names["d3"])
    target.name = b"renamed_by_some_engine"
    renamed = ed.to_bytes()
    fg, qg = GraphModel(mlp.float_model.tflite), GraphModel(renamed)
    m = match_graphs(fg, qg)
    by_name = {fg.tensor_name(p.f_tensor): p.method for p in m.layers}
    assert by_name[mlp.names["d3"]] is MatchMethod.POSITION
    assert by_name[mlp.names["d2"]] is MatchMethod.NAME and not m.unmatched


def test_a_model_of_another_network_is_refused(mlp: Mlp, float_tflite: Path) -> None:
    with pytest.raises(InputError, match="does not correspond"):
        analyze(mlp.int8, float_tflite, np.zeros((2, 28, 28, 1), np.float32), runs=0, top_k=0)


def test_layer_sensitivity_is_reusable(mlp: Mlp) -> None:
    # From a scheme: it quantizes, ranks by local error, then keeps each of the top layers float.
    s = layer_sensitivity(mlp.float_model, "int8", mlp.x[:300], top_k=2)
    assert s.scheme == "int8" and len(s.layers) == 2 and s.reproduction_sqnr_db is None
    assert all(x.gain == pytest.approx(x.sqnr_db - s.baseline_sqnr_db) for x in s.layers)
    # Named layers, from the analysed model: the baseline reproduces it (its own ranges).
    s = layer_sensitivity(mlp.float_model, mlp.int8, mlp.x[:300], layers=[mlp.names["d1"]])
    assert [x.tensor for x in s.layers] == [mlp.names["d1"]]
    assert s.reproduction_sqnr_db is None or s.reproduction_sqnr_db > 40
    with pytest.raises(InputError, match="tensor names"):
        layer_sensitivity(mlp.float_model, mlp.int8, mlp.x[:10], layers=["no_such_tensor"])


def test_size_lists_every_weight_tensor(mlp: Mlp) -> None:
    a = analyze(mlp.int8, mlp.float_model, mlp.x[:50], top_k=0, runs=0)
    z = a.size
    assert z.total_bytes == len(mlp.int8) and z.float_total_bytes == len(mlp.float_model.tflite)
    assert sum(t.bytes for t in z.tensors) == z.weight_bytes == sum(z.weight_bytes_by_dtype.values())
    assert {t.dtype for t in z.tensors} == {"int8", "int32"}
    assert all(t.consumers for t in z.tensors)


# ---------------------------------------------------------------------------- the seed CNN, through the CLI

def test_cli_analyze_on_the_seed_cnn(seed_cnn_path: Path, float_tflite: Path, digits: dict[str, Path],
                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = tmp_path / "int8.tflite"
    edgequant.quantize(float_tflite, "int8", calibration=digits["calibration"], samples=50, output=q)
    js = tmp_path / "analysis.json"
    code = main(["analyze", str(q), "--reference", str(seed_cnn_path), "--data", str(digits["test"]),
                 "--samples", "100", "--top-k", "1", "--runs", "3", "--json", str(js)])
    out = capsys.readouterr().out
    assert code == 0
    assert "findings:" in out and "layers, by the error" in out and "run time" in out and "size:" in out
    data = json.loads(js.read_text())
    assert data["scheme"] == "int8" and data["samples"] == 100 and len(data["layers"]) == 6
    assert data["sensitivity"]["metric"] == "accuracy" and len(data["sensitivity"]["layers"]) == 1
    ops = data["runtime"]["ops"]
    assert [o["op"] for o in ops][0] == "QUANTIZE" and any(o["xnnpack"] for o in ops)
    assert all(o["time_ms"] is not None for o in ops if o["role"] == "compute")
    assert {f["kind"] for f in data["findings"]} >= {"fidelity", "layer-error", "size"}


def test_compare_analyze_attaches_findings(float_tflite: Path, digits: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "cmp"
    code = main(["compare", str(float_tflite), "--data", str(digits["test"]), "--calibration",
                 str(digits["calibration"]), "--samples", "50", "--schemes", "dynamic,int8", "--engines", "litert",
                 "--runs", "3", "--analyze", "--out", str(out_dir)])
    assert code == 0
    assert "findings (compare --analyze" in capsys.readouterr().out
    data = json.loads((out_dir / "compare.json").read_text())
    assert data["float"]["findings"] == []
    for v in data["variants"]:
        assert 0 < len(v["findings"]) <= 5
        assert all({"kind", "severity", "message", "value", "unit", "source"} == set(f) for f in v["findings"])


def test_analyze_is_silent(mlp: Mlp, capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    analyze(mlp.dynamic, mlp.float_model, mlp.x[:20], top_k=1, runs=2)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", "the library must not print (fd level included)"


def test_a_layer_negligible_next_to_what_it_feeds_does_not_rank_first(tmp_path: Path) -> None:
    """A branch whose values are far below one int8 step of anything is stored as zeros (local SQNR about
    0 dB) yet cannot hurt the sum it joins; analyze must not call it the model's worst layer (an int16x8
    SVTRv2 had such a MUL inside its Erf polynomial) and names it in a note instead."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16,))
    big = keras.layers.Dense(32, activation="relu", name="big")(inp)
    tiny = keras.layers.Dense(32, name="tiny")(inp)
    out = keras.layers.Dense(4, name="head")(keras.layers.Add(name="join")([big, tiny]))
    path = tmp_path / "tiny.keras"
    keras.Model(inp, out).save(path)
    tflite = edgequant.convert(path).tflite
    ed = GraphEditor(tflite)
    op = next(o for o in ed.find_ops("FULLY_CONNECTED") if "tiny" in ed.tensor_name(o.outputs[0]))
    ed.write_constant(op.inputs[1], ed.read_constant(op.inputs[1]) * 1e-9)
    tiny_name = ed.tensor_name(op.outputs[0])
    floats = inspect_float_tflite(ed.to_bytes(), path.with_suffix(".tflite"), SourceKind.TFLITE)
    x = np.random.default_rng(0).normal(size=(256, 16)).astype(np.float32)
    int8 = edgequant.quantize(floats, "int8", "litert", calibration=x, observer="minmax", transforms="none").tflite
    a = analyze(int8, floats, x, top_k=0, samples=None, runs=0)
    layer = _layer(a, tiny_name)
    others = [e.local_sqnr_db for e in a.layers if e.tensor != tiny_name and e.local_sqnr_db is not None]
    assert layer.local_sqnr_db < min(others) - 10  # it is the lowest local SQNR by far ...
    assert a.ranked()[0].tensor != tiny_name and layer.local_rank == len(others) + 1  # ... and still ranks last
    assert any("ranked last whatever their local SQNR" in n for n in a.notes)
