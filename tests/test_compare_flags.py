"""The slow-variant flag follows the measurement, never the scheme's reputation."""

import edgequant
from edgequant.compare import _slow_warning
from edgequant.types import Evaluation, Latency, SizeInfo


def _ev(ms: float) -> Evaluation:
    return Evaluation(path=None, size=SizeInfo(1, 1, {}), input_dtype="float32", output_dtype="float32", samples=1,
                      accuracy=None, fidelity=None, latency=Latency(ms, ms, 10, 1, 1))


def test_flag_only_when_measured_slower(seed_cnn_path) -> None:
    q = edgequant.quantize(seed_cnn_path, "dynamic", "tflite-converter")
    assert _slow_warning(_ev(1.0), _ev(1.0), q) == []
    assert _slow_warning(_ev(1.05), _ev(1.0), q) == []  # within the 10% noise tolerance
    [warning] = _slow_warning(_ev(2.6), _ev(1.0), q)
    assert warning.startswith("slower than float: 2.60x") and "dynamic-range" in warning
