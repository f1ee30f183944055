"""The benchmark model zoo (benchmarks/zoo.py): registry, unknown names, caching, and the
two models whose conversion needs care (LSTM, Transformer).

Every model trains into a pytest tmp cache, never into .bench-cache. Training
here takes about 3 s (seed_mlp), 8 s (lstm) and 13 s (transformer) on 2 idle cores,
the whole file about 40 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not installed; plain `pytest` does not put the root on the path
    sys.path.insert(0, str(ROOT))

from benchmarks import zoo  # noqa: E402

NAMES = ["seed_cnn", "seed_mlp", "lenet", "mobilenet_like", "resnet_like", "lstm", "transformer", "outlier_mlp"]
FILES = {"model.keras", "test.npz", "calibration.npz", "meta.json"}


def test_registry_lists_exactly_the_eight_models() -> None:
    assert sorted(zoo.ZOO) == sorted(NAMES)
    for name, spec in zoo.ZOO.items():
        assert spec.name == name and spec.description and callable(spec.builder)
        assert spec.epochs > 0 and spec.batch_size in (32, 64) and spec.version
        assert spec.input_kind == (zoo.ROWS if name == "lstm" else zoo.IMAGE)


def test_unknown_name_raises_a_key_error_listing_the_names(tmp_path: Path) -> None:
    with pytest.raises(KeyError) as info:
        zoo.load("vgg16", cache_dir=tmp_path)
    assert isinstance(info.value, zoo.UnknownModelError)
    message = str(info.value)
    assert message.startswith("unknown zoo model 'vgg16'")
    assert all(name in message for name in NAMES)
    assert not any(tmp_path.iterdir()), "an unknown name must not create a cache entry"


def test_seed_mlp_trains_once_then_loads_from_cache(tmp_path: Path) -> None:
    steps: list[tuple[str, int, int]] = []
    first = zoo.load("seed_mlp", cache_dir=tmp_path, progress=lambda *step: steps.append(step))
    spec = zoo.ZOO["seed_mlp"]
    folder = tmp_path / "seed_mlp"
    assert not first.cached and first.train_seconds > 0
    assert first.keras_path == folder / "model.keras" and first.description == spec.description
    assert {p.name for p in folder.iterdir()} == FILES, "no temporary files may be left behind"
    assert steps[-1] == ("train seed_mlp", spec.epochs, spec.epochs) and len(steps) == spec.epochs

    meta = json.loads((folder / "meta.json").read_text())
    assert meta["version"] == spec.version and meta["train_seconds"] == first.train_seconds
    assert meta["keras_test_accuracy"] > 0.9
    with np.load(first.test_path) as z:
        assert z["x"].dtype == np.float32 and z["x"].shape == (450, 28, 28, 1)
        assert z["y"].dtype == np.int64 and z["y"].shape == (450,)
    with np.load(first.calibration_path) as z:
        assert z["x"].dtype == np.float32 and z["x"].shape == (zoo.CALIBRATION_SAMPLES, 28, 28, 1)

    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    second = zoo.load("seed_mlp", cache_dir=tmp_path)
    assert second.cached and second.train_seconds == first.train_seconds
    assert (second.keras_path, second.test_path, second.calibration_path) == (
        first.keras_path, first.test_path, first.calibration_path)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    # A cache hit imports neither TensorFlow nor Keras (checked in a fresh interpreter).
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from benchmarks import zoo; "
            "m = zoo.load('seed_mlp', cache_dir=sys.argv[2]); assert m.cached; "
            "print(sorted(k for k in ('tensorflow', 'keras') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(tmp_path)], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_sequence_models_convert_and_run_in_litert(name: str, tmp_path: Path) -> None:
    import edgequant
    from edgequant.graph import read_graph

    model = zoo.load(name, cache_dir=tmp_path)
    converted = edgequant.convert(model.keras_path)
    assert converted.input_shape[0] == -1, "the batch stays dynamic (no fixed batch size was needed)"
    ops = read_graph(converted.tflite).op_histogram()
    assert "WHILE" not in ops and not any(op.startswith("FLEX") or op == "CUSTOM" for op in ops)
    with np.load(model.test_path) as z:
        x, y = z["x"], z["y"]
    assert edgequant.run(converted.tflite, x[:8]).output.shape == (8, 10)
    tflite_accuracy = float((edgequant.run(converted.tflite, x).output.argmax(axis=1) == y).mean())
    keras_accuracy = json.loads((tmp_path / name / "meta.json").read_text())["keras_test_accuracy"]
    assert keras_accuracy > 0.9
    assert abs(tflite_accuracy - keras_accuracy) <= 0.01
