"""runtime: integer I/O is converted with the model's own scale and zero point."""

import numpy as np
import pytest

from edgequant.errors import InputError
from edgequant.runtime import IOConversion, Runner, open_interpreter


def test_random_bytes_are_refused_with_the_identifier() -> None:
    with pytest.raises(InputError, match="TFL3"):
        open_interpreter(b"\x00" * 64, "junk")


def test_conversion_describes_itself() -> None:
    c = IOConversion("x", "uint8", 0.5, 3)
    assert "scale 0.5" in c.describe("input") and "zero point 3" in c.describe("input")


def test_quantize_and_dequantize_follow_the_spec(float_tflite, seed_cnn_path, digits) -> None:
    import edgequant

    q = edgequant.quantize(seed_cnn_path, "int8", "litert", calibration=digits["calibration"], samples=50, io="uint8")
    r = Runner(q.tflite)
    (name_in, conv), = r.input_conversions.items()
    assert conv is not None and conv.dtype == "uint8"
    x = np.array([0.0, 0.5, 1.0, 100.0], np.float32)
    expected = np.clip(np.round(x / conv.scale) + conv.zero_point, 0, 255).astype(np.uint8)
    assert np.array_equal(conv.quantize(x), expected)  # 100.0 saturates at 255, never wraps
    (name_out, out), = r.output_conversions.items()
    assert out is not None
    raw = np.array([out.zero_point, out.zero_point + 10], np.uint8)
    assert np.allclose(out.dequantize(raw), [0.0, 10 * out.scale])


def test_batch_prediction_equals_one_by_one(float_tflite, test_arrays) -> None:
    x, _ = test_arrays
    r = Runner(float_tflite.read_bytes())
    batched = r.predict_output(x[:37], batch_size=16)
    single = np.concatenate([r.predict_output(x[i:i + 1]) for i in range(37)])
    assert np.allclose(batched, single, atol=1e-5)
