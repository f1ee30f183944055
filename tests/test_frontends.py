"""frontends: every source kind yields the same float graph; unsafe models are refused."""

import numpy as np
import pytest

import edgequant
from edgequant.frontends import detect_kind
from edgequant.types import SourceKind


@pytest.fixture(scope="module")
def exported(seed_cnn_path, tmp_path_factory):
    import keras

    out = tmp_path_factory.mktemp("frontends")
    model = keras.models.load_model(seed_cnn_path)
    model.save(out / "seed.h5")
    model.export(str(out / "saved"), verbose=False)
    lam = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Dense(2)])
    lam.save(out / "lambda.h5")
    return out


def test_kinds_are_detected(exported, seed_cnn_path, float_tflite) -> None:
    assert detect_kind(seed_cnn_path) is SourceKind.KERAS
    assert detect_kind(exported / "seed.h5") is SourceKind.H5
    assert detect_kind(exported / "saved") is SourceKind.SAVED_MODEL
    assert detect_kind(float_tflite) is SourceKind.TFLITE


@pytest.mark.parametrize("name", ["seed.h5", "saved"])
def test_h5_and_saved_model_match_keras_outputs(name, exported, float_tflite, test_arrays) -> None:
    x, _ = test_arrays
    m = edgequant.convert(exported / name)
    reference = edgequant.run(float_tflite, x[:20]).output
    assert np.allclose(edgequant.run(m.tflite, x[:20]).output, reference, atol=1e-5)
    assert m.input_shape[1:] == (28, 28, 1)


def test_saved_model_quantizes_with_the_converter(exported, digits) -> None:
    q = edgequant.quantize(exported / "saved", "int8", "tflite-converter", calibration=digits["calibration"],
                           samples=20)
    assert q.tflite[4:8] == b"TFL3"


def test_lambda_in_h5_needs_unsafe(exported) -> None:
    with pytest.raises(edgequant.UnsafeModelError, match="--unsafe"):
        edgequant.convert(exported / "lambda.h5")
    assert edgequant.convert(exported / "lambda.h5", unsafe=True).unsafe


def test_quantized_tflite_is_not_a_float_source(seed_cnn_path, tmp_path) -> None:
    q = edgequant.quantize(seed_cnn_path, "dynamic", "litert", output=tmp_path / "dyn.tflite")
    with pytest.raises(edgequant.InputError, match="expected a float model"):
        edgequant.convert(q.path)
