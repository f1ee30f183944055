"""The public API: __all__, frozen results, to_dict() is JSON, the library never prints."""

import dataclasses
import json

import pytest

import edgequant
from edgequant.types import Scheme


def test_all_is_exactly_the_public_api() -> None:
    expected = {"convert", "calibrate", "CalibrationStats", "analyze", "layer_sensitivity", "Analysis", "Finding", "Recipe", "load_recipe", "quantize", "run", "evaluate", "compare", "demo", "Scheme", "EngineName", "IOType",
                "FloatModel", "Dataset", "QuantizedModel", "RunResult", "Evaluation", "SizeInfo", "Fidelity",
                "Latency", "Variant", "CompareResult", "EdgequantError", "InputError", "UnsafeModelError",
                "UnsupportedError", "EngineError", "__version__", "qat", "prune", "QATResult", "PruneResult",
                "tune", "TuneResult", "Precision", "write_report", "ReportFile", "Provenance", "Signature",
                "TensorSpec", "ModelRunError", "ModelCrashError"}
    assert set(edgequant.__all__) == expected
    for name in edgequant.__all__:
        assert hasattr(edgequant, name)


def test_errors_form_one_tree_with_exit_codes() -> None:
    for name in ("InputError", "UnsafeModelError", "UnsupportedError", "EngineError", "ModelRunError",
                 "ModelCrashError"):
        assert issubclass(getattr(edgequant, name), edgequant.EdgequantError)
    assert edgequant.InputError.exit_code == 2 and edgequant.EngineError.exit_code == 1


def test_unknown_scheme_lists_supported() -> None:
    with pytest.raises(edgequant.UnsupportedError, match="int8"):
        edgequant.quantize("whatever.keras", "int3")


def test_quantize_and_evaluate_are_silent_and_serializable(seed_cnn_path, digits, float_tflite, capfd) -> None:
    capfd.readouterr()
    q = edgequant.quantize(seed_cnn_path, Scheme.INT8, "tflite-converter", calibration=digits["calibration"],
                           samples=20)
    ev = edgequant.evaluate(q.tflite, digits["test"], reference=float_tflite, runs=5)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", "the library must not print (fd level included)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.seconds = 0.0  # type: ignore[misc]
    data = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    assert data["size"]["total_bytes"] == len(q.tflite)
    assert 0.9 < data["accuracy"] <= 1.0 and data["fidelity"]["sqnr_db"] > 10
    assert json.dumps(q.to_dict())
