"""graph reader and the slow-variant explainer on real converter outputs."""

import pytest

import edgequant
from edgequant.evaluate.explain import slow_reasons
from edgequant.graph import read_graph
from edgequant.errors import InputError


def test_float_graph_has_only_float_weights(float_tflite) -> None:
    g = read_graph(float_tflite.read_bytes())
    assert g.quantized_tensors == 0 and g.count("CONV_2D") == 1 and g.count("FULLY_CONNECTED") == 2
    assert set(g.weight_bytes_by_dtype) <= {"float32", "int32"}
    assert g.weight_bytes > 0.95 * float_tflite.stat().st_size  # a CNN's file is almost all weights


def test_dynamic_graph_is_explained_as_hybrid(seed_cnn_path) -> None:
    q = edgequant.quantize(seed_cnn_path, "dynamic", "tflite-converter")
    g = read_graph(q.tflite)
    assert g.hybrid_ops(), "dynamic range must leave float-activation, int8-weight ops"
    assert "dynamic-range" in slow_reasons(g)[0]


def test_int16_graph_is_explained(seed_cnn_path, digits) -> None:
    q = edgequant.quantize(seed_cnn_path, "int16x8", "litert", calibration=digits["calibration"], samples=20)
    assert any("int16" in r for r in slow_reasons(read_graph(q.tflite)))


def test_corrupt_flatbuffer() -> None:
    with pytest.raises(InputError):
        read_graph(b"1234TFL3" + b"\xff" * 10)
