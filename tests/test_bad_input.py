"""Bad input through the CLI: one line on stderr, exit code 2, no output file left behind.

The contract (see edgequant.errors and the CLI docstring): every bad input the
user can fix gets ONE line on stderr, starting "edgequant: error:", that says
what was expected and what was found; the command exits 2; and nothing is
written to the output path (not even a partial or ``.part`` temp file in the
output directory).

Every case runs ``edgequant.cli.main`` in-process and reuses the session
fixtures from conftest.py (the trained seed CNN and its float .tflite); the
data files are tiny arrays written per test.
"""

from __future__ import annotations

import io
import re
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgequant.cli import main
from edgequant.types import EngineName, Scheme

SCHEME_NAMES = [s.value for s in Scheme]
ENGINE_NAMES = [e.value for e in EngineName]

GOOD_X = np.zeros((4, 28, 28, 1), np.float32)


# --------------------------------------------------------------------------- helpers


class Ctx:
    """Per-test workspace: an (initially empty) output directory and lazy session fixtures."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request = request
        self.tmp = tmp_path
        self.inputs = tmp_path / "inputs"
        self.inputs.mkdir()
        self.out_dir = tmp_path / "out"
        self.out_dir.mkdir()
        self.outputs: list[Path] = []

    # Session fixtures, requested only by the cases that need them.
    @property
    def float_tflite(self) -> str:
        return str(self.request.getfixturevalue("float_tflite"))

    @property
    def keras_model(self) -> str:
        return str(self.request.getfixturevalue("seed_cnn_path"))

    @property
    def lambda_model(self) -> str:
        return str(self.request.getfixturevalue("lambda_keras_path"))

    @property
    def quantized_tflite(self) -> str:
        return str(self.request.getfixturevalue("seed_dynamic_tflite"))

    @property
    def other_quantized_tflite(self) -> str:
        return str(self.request.getfixturevalue("small_quantized_tflite"))

    # Inputs.
    def file(self, name: str, data: bytes) -> str:
        path = self.inputs / name
        path.write_bytes(data)
        return str(path)

    def npz(self, name: str, **arrays: np.ndarray) -> str:
        path = self.inputs / name
        np.savez(path, **arrays)
        return str(path)

    def npy(self, name: str, array: np.ndarray) -> str:
        path = self.inputs / name
        np.save(path, array)
        return str(path)

    def folder(self, name: str, files: dict[str, bytes] | None = None) -> str:
        path = self.inputs / name
        path.mkdir()
        for fname, data in (files or {}).items():
            (path / fname).write_bytes(data)
        return str(path)

    def missing(self, name: str) -> str:
        return str(self.inputs / name)

    def truncated_tflite(self) -> str:
        return self.file("truncated.tflite", Path(self.float_tflite).read_bytes()[:1000])

    def random_tflite(self) -> str:
        return self.file("random.tflite", np.random.default_rng(0).bytes(4096))

    # Outputs: every path handed to -o / --out / --json must not exist afterwards.
    def out(self, name: str) -> str:
        path = self.out_dir / name
        self.outputs.append(path)
        return str(path)


@pytest.fixture(scope="module")
def lambda_keras_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Keras model holding Python code (a Lambda layer), saved as .keras."""
    import keras

    inp = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(3)(x)
    path = tmp_path_factory.mktemp("lambda") / "lambda_model.keras"
    keras.Model(inp, out).save(path)
    return path


@pytest.fixture(scope="module")
def seed_dynamic_tflite(tmp_path_factory: pytest.TempPathFactory, float_tflite: Path) -> Path:
    """The seed CNN quantized (dynamic range, litert): a valid model for analyze's bad-input cases."""
    import edgequant

    path = tmp_path_factory.mktemp("quantized") / "seed_dynamic.tflite"
    edgequant.quantize(float_tflite, "dynamic", output=path)
    return path


@pytest.fixture(scope="module")
def small_quantized_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quantized model of another network (8x8x1 input): it does not correspond to the seed CNN."""
    import keras

    import edgequant

    inp = keras.Input((8, 8, 1))
    out = keras.layers.Dense(3)(keras.layers.Flatten()(inp))
    folder = tmp_path_factory.mktemp("small")
    keras.Model(inp, out).save(folder / "small.keras")
    path = folder / "small_quantized.tflite"
    edgequant.quantize(folder / "small.keras", "weight-only-int8", output=path)
    return path


@pytest.fixture
def ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Ctx:
    return Ctx(request, tmp_path)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the CLI in-process; an escaping exception (a traceback for the user) fails the test."""
    capsys.readouterr()  # drop anything fixtures printed
    try:
        code = main(argv)
    except BaseException as exc:  # noqa: BLE001 - SystemExit included: main must return, not exit
        pytest.fail(f"main({argv}) raised {type(exc).__name__} instead of returning 2:\n"
                    + "".join(traceback.format_exception(exc)), pytrace=False)
    return code, capsys.readouterr().err


def assert_bad_input(code: int, err: str, ctx: Ctx, patterns: tuple[str, ...]) -> None:
    lines = err.splitlines()
    assert code == 2, f"expected exit code 2, got {code}; stderr:\n{err}"
    assert len(lines) == 1 and lines[0].strip(), f"expected exactly one non-empty stderr line, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("edgequant: error:"), line
    assert "Traceback" not in err
    for pattern in patterns:
        assert re.search(pattern, line, re.IGNORECASE), f"{pattern!r} not in: {line}"
    for path in ctx.outputs:
        assert not path.exists(), f"output {path} was left behind"
    leftovers = sorted(p.name for p in ctx.out_dir.rglob("*"))
    assert not leftovers, f"files left in the output directory: {leftovers}"


# --------------------------------------------------------------------------- the cases

Case = tuple[str, Callable[[Ctx], list[str]], tuple[str, ...]]

CASES: list[Case] = [
    # Missing model file.
    ("missing-model-convert",
     lambda c: ["convert", c.missing("nope.keras"), "-o", c.out("m.tflite")], ("not found",)),
    ("missing-model-quantize",
     lambda c: ["quantize", c.missing("nope.tflite"), "--scheme", "dynamic", "-o", c.out("m.tflite")],
     ("not found",)),
    ("missing-model-eval",
     lambda c: ["eval", c.missing("nope.tflite"), "--json", c.out("eval.json")], ("not found",)),
    ("missing-model-run",
     lambda c: ["run", c.missing("nope.tflite"), "--input", c.npy("x.npy", GOOD_X), "-o", c.out("y.npy")],
     ("not found",)),
    # Truncated .tflite (first 1000 bytes of a real one).
    ("truncated-tflite-convert",
     lambda c: ["convert", c.truncated_tflite(), "-o", c.out("m.tflite")], (r"tflite", r"corrupt|not a loadable")),
    ("truncated-tflite-eval",
     lambda c: ["eval", c.truncated_tflite(), "--json", c.out("eval.json")], (r"tflite", r"corrupt|not a loadable")),
    ("truncated-tflite-run",
     lambda c: ["run", c.truncated_tflite(), "--input", c.npy("x.npy", GOOD_X), "-o", c.out("y.npy")],
     (r"tflite", r"corrupt|not a loadable")),
    # Random bytes named .tflite.
    ("random-tflite-convert",
     lambda c: ["convert", c.random_tflite(), "-o", c.out("m.tflite")], ("expected identifier 'TFL3'",)),
    ("random-tflite-eval",
     lambda c: ["eval", c.random_tflite(), "--json", c.out("eval.json")], ("expected identifier 'TFL3'",)),
    ("random-tflite-run",
     lambda c: ["run", c.random_tflite(), "--input", c.npy("x.npy", GOOD_X), "-o", c.out("y.npy")],
     ("expected identifier 'TFL3'",)),
    # Empty file with a .tflite suffix.
    ("empty-tflite-convert",
     lambda c: ["convert", c.file("empty.tflite", b""), "-o", c.out("m.tflite")], ("empty file",)),
    ("empty-tflite-eval",
     lambda c: ["eval", c.file("empty.tflite", b""), "--json", c.out("eval.json")], ("empty file",)),
    ("empty-tflite-run",
     lambda c: ["run", c.file("empty.tflite", b""), "--input", c.npy("x.npy", GOOD_X), "-o", c.out("y.npy")],
     ("empty file",)),
    # Unsupported extension.
    ("onnx-convert",
     lambda c: ["convert", c.file("model.onnx", b"junk"), "-o", c.out("m.tflite")],
     ("cannot load model\\.onnx", r"expected an ONNX model")),
    ("pt-quantize",
     lambda c: ["quantize", c.file("model.pt", b"junk"), "--scheme", "dynamic", "-o", c.out("m.tflite")],
     (r"model\.pt holds PyTorch weights", r"net\.py:build")),
    ("unknown-suffix-convert",
     lambda c: ["convert", c.file("model.caffemodel", b"junk"), "-o", c.out("m.tflite")],
     ("unsupported model format", r"\.caffemodel", r"expected one of")),
    ("onnx-eval",
     lambda c: ["eval", c.file("model.onnx", b"junk"), "--json", c.out("eval.json")],
     (r"expected a \.tflite file", r"model\.onnx")),
    # Unsafe Keras model without --unsafe.
    ("lambda-keras-without-unsafe",
     lambda c: ["convert", c.lambda_model, "-o", c.out("m.tflite")], ("--unsafe", "lambda")),
    # NaN / Inf in calibration data.
    ("nan-calibration",
     lambda c: ["quantize", c.float_tflite, "--scheme", "int8", "--calibration",
                c.npz("bad.npz", x=_with(GOOD_X, np.nan)), "-o", c.out("m.tflite")],
     ("finite", r"\b1 NaN\b")),
    ("inf-calibration",
     lambda c: ["quantize", c.float_tflite, "--scheme", "int8", "--calibration",
                c.npz("bad.npz", x=_with(GOOD_X, np.inf)), "-o", c.out("m.tflite")],
     ("finite", r"\b1 Inf\b")),
    # Wrong input shape.
    ("wrong-shape-calibration",
     lambda c: ["quantize", c.float_tflite, "--scheme", "int8", "--calibration",
                c.npz("small.npz", x=np.zeros((10, 8, 8, 1), np.float32)), "-o", c.out("m.tflite")],
     ("shape", r"28, 28, 1", r"\(10, 8, 8, 1\)")),
    ("wrong-shape-eval-data",
     lambda c: ["eval", c.float_tflite, "--data", c.npz("small.npz", x=np.zeros((10, 8, 8, 1), np.float32)),
                "--json", c.out("eval.json")],
     ("shape", r"28, 28, 1", r"\(10, 8, 8, 1\)")),
    ("wrong-shape-run-input",
     lambda c: ["run", c.float_tflite, "--input", c.npy("small.npy", np.zeros((10, 8, 8, 1), np.float32)),
                "-o", c.out("y.npy")],
     ("shape", r"28, 28, 1", r"\(10, 8, 8, 1\)")),
    # Integer image data for a float model.
    ("uint8-eval-data",
     lambda c: ["eval", c.float_tflite, "--data", c.npz("u8.npz", x=np.zeros((4, 28, 28, 1), np.uint8)),
                "--json", c.out("eval.json")],
     ("expected float32", "uint8")),
    # Empty data set.
    ("empty-data-eval",
     lambda c: ["eval", c.float_tflite, "--data", c.npz("empty.npz", x=np.zeros((0, 28, 28, 1), np.float32)),
                "--json", c.out("eval.json")],
     ("empty", r"\(0, 28, 28, 1\)")),
    ("empty-data-calibration",
     lambda c: ["quantize", c.float_tflite, "--scheme", "int8", "--calibration",
                c.npz("empty.npz", x=np.zeros((0, 28, 28, 1), np.float32)), "-o", c.out("m.tflite")],
     ("empty", r"\(0, 28, 28, 1\)")),
    ("empty-data-run",
     lambda c: ["run", c.float_tflite, "--input", c.npy("empty.npy", np.zeros((0, 28, 28, 1), np.float32)),
                "-o", c.out("y.npy")],
     ("empty", r"\(0, 28, 28, 1\)")),
    # npz without x; corrupt npz.
    ("npz-without-x",
     lambda c: ["eval", c.float_tflite, "--data", c.npz("nox.npz", images=GOOD_X), "--json", c.out("eval.json")],
     ("no array 'x'", "images")),
    ("corrupt-npz-eval",
     lambda c: ["eval", c.float_tflite, "--data", c.file("corrupt.npz", np.random.default_rng(1).bytes(2048)),
                "--json", c.out("eval.json")],
     ("cannot read", r"corrupt\.npz", r"expected a NumPy")),
    ("truncated-npz-eval",
     lambda c: ["eval", c.float_tflite, "--data", c.file("truncated.npz", _npz_bytes(x=GOOD_X)[:200]),
                "--json", c.out("eval.json")],
     ("cannot read", r"truncated\.npz", r"expected a NumPy")),
    ("corrupt-npz-calibration",
     lambda c: ["quantize", c.float_tflite, "--scheme", "int8", "--calibration",
                c.file("corrupt.npz", np.random.default_rng(1).bytes(2048)), "-o", c.out("m.tflite")],
     ("cannot read", r"corrupt\.npz", r"expected a NumPy")),
    # Bad labels.
    ("labels-float",
     lambda c: ["eval", c.float_tflite, "--data", c.npz("d.npz", x=GOOD_X, y=np.zeros(4, np.float32)),
                "--json", c.out("eval.json")],
     ("labels", "1-D integer", "float32")),
    ("labels-2d",
     lambda c: ["eval", c.float_tflite, "--data", c.npz("d.npz", x=GOOD_X, y=np.zeros((4, 10), np.int64)),
                "--json", c.out("eval.json")],
     ("labels", "1-D integer", r"\(4, 10\)")),
    ("labels-wrong-length",
     lambda c: ["eval", c.float_tflite, "--data", c.npz("d.npz", x=GOOD_X, y=np.zeros(3, np.int64)),
                "--json", c.out("eval.json")],
     ("labels", "expected 4 labels", "found 3")),
    # Unknown scheme / engine: the message lists the supported names.
    ("unknown-scheme",
     lambda c: ["quantize", c.float_tflite, "--scheme", "int3", "-o", c.out("m.tflite")],
     ("unknown scheme", "int3", *(re.escape(s) for s in SCHEME_NAMES))),
    ("unknown-engine",
     lambda c: ["quantize", c.float_tflite, "--scheme", "dynamic", "--engine", "onnx", "-o", c.out("m.tflite")],
     ("unknown engine", "onnx", *(re.escape(e) for e in ENGINE_NAMES))),
    # A scheme the engine cannot produce: the message names the engine that can.
    ("fp16-converter-on-tflite",
     lambda c: ["quantize", c.float_tflite, "--scheme", "fp16", "--engine", "tflite-converter", "-o",
                c.out("m.tflite")],
     ("tflite-converter needs the Keras or SavedModel source", "--engine litert")),
    ("weight-only-int8-tflite-converter",
     lambda c: ["quantize", c.keras_model, "--scheme", "weight-only-int8", "--engine", "tflite-converter",
                "-o", c.out("m.tflite")],
     ("cannot produce scheme weight-only-int8", "--engine litert")),
    ("tflite-converter-on-tflite",
     lambda c: ["quantize", c.float_tflite, "--scheme", "dynamic", "--engine", "tflite-converter",
                "-o", c.out("m.tflite")],
     ("Keras or SavedModel", "--engine litert")),
    # --io int8 with a scheme that is not full integer.
    ("io-int8-dynamic",
     lambda c: ["quantize", c.float_tflite, "--scheme", "dynamic", "--io", "int8", "-o", c.out("m.tflite")],
     ("--io int8", r"full-integer scheme \(int8 or w4a8\)", "found --scheme dynamic")),
    # int8 without calibration data.
    ("int8-without-calibration",
     lambda c: ["quantize", c.float_tflite, "--scheme", "int8", "-o", c.out("m.tflite")],
     ("--calibration", "--stats", "found neither")),
    # A folder that is not a SavedModel.
    ("folder-not-savedmodel-convert",
     lambda c: ["convert", c.folder("notamodel", {"readme.txt": b"hi"}), "-o", c.out("m.tflite")],
     ("not a SavedModel", "saved_model.pb")),
    ("folder-not-savedmodel-quantize",
     lambda c: ["quantize", c.folder("notamodel"), "--scheme", "dynamic", "-o", c.out("m.tflite")],
     ("not a SavedModel", "saved_model.pb")),
    # A data folder with no images.
    ("empty-image-folder",
     lambda c: ["eval", c.float_tflite, "--data", c.folder("noimages", {"notes.txt": b"x"}),
                "--json", c.out("eval.json")],
     ("image folder", "empty", r"\.png")),
    # --reference needs --data.
    ("reference-without-data",
     lambda c: ["eval", c.float_tflite, "--reference", c.float_tflite, "--json", c.out("eval.json")],
     ("--reference", "--data", "found none")),
    # analyze: missing or corrupt models, a pair that does not belong together, bad data.
    ("missing-model-analyze",
     lambda c: ["analyze", c.missing("nope.tflite"), "--reference", c.float_tflite, "--data",
                c.npz("d.npz", x=GOOD_X), "--json", c.out("a.json")], ("not found",)),
    ("missing-reference-analyze",
     lambda c: ["analyze", c.quantized_tflite, "--reference", c.missing("nope.keras"), "--data",
                c.npz("d.npz", x=GOOD_X), "--json", c.out("a.json")], ("not found",)),
    ("truncated-tflite-analyze",
     lambda c: ["analyze", c.truncated_tflite(), "--reference", c.float_tflite, "--data", c.npz("d.npz", x=GOOD_X),
                "--json", c.out("a.json")], (r"tflite", r"corrupt|not a loadable")),
    ("random-tflite-analyze",
     lambda c: ["analyze", c.random_tflite(), "--reference", c.float_tflite, "--data", c.npz("d.npz", x=GOOD_X),
                "--json", c.out("a.json")], ("expected identifier 'TFL3'",)),
    ("float-model-analyzed",
     lambda c: ["analyze", c.float_tflite, "--reference", c.float_tflite, "--data", c.npz("d.npz", x=GOOD_X),
                "--json", c.out("a.json")], ("no quantized tensor", "expected a quantized")),
    ("quantized-reference-analyze",
     lambda c: ["analyze", c.quantized_tflite, "--reference", c.quantized_tflite, "--data",
                c.npz("d.npz", x=GOOD_X), "--json", c.out("a.json")], ("expected a float model",)),
    ("mismatched-reference-analyze",
     lambda c: ["analyze", c.other_quantized_tflite, "--reference", c.float_tflite, "--data",
                c.npz("d.npz", x=GOOD_X), "--json", c.out("a.json")], ("does not correspond", "shape", "8, 8, 1")),
    ("wrong-shape-analyze-data",
     lambda c: ["analyze", c.quantized_tflite, "--reference", c.float_tflite, "--data",
                c.npz("small.npz", x=np.zeros((10, 8, 8, 1), np.float32)), "--json", c.out("a.json")],
     ("shape", r"28, 28, 1", r"\(10, 8, 8, 1\)")),
    ("nan-analyze-data",
     lambda c: ["analyze", c.quantized_tflite, "--reference", c.float_tflite, "--data",
                c.npz("bad.npz", x=_with(GOOD_X, np.nan)), "--json", c.out("a.json")], ("finite", r"\b1 NaN\b")),
    ("negative-top-k-analyze",
     lambda c: ["analyze", c.quantized_tflite, "--reference", c.float_tflite, "--data", c.npz("d.npz", x=GOOD_X),
                "--top-k", "-1", "--json", c.out("a.json")], ("--top-k", "found -1")),
    # Recipes: validated before any model work; the message names the file and the field path.
    ("recipe-missing",
     lambda c: ["quantize", c.float_tflite, "--recipe", c.missing("r.json"), "-o", c.out("m.tflite"),
                "--save-recipe", c.out("saved.json")],
     ("recipe not found", r"r\.json")),
    ("recipe-not-json",
     lambda c: ["quantize", c.float_tflite, "--recipe", c.file("r.json", b"{scheme: int8"), "-o", c.out("m.tflite")],
     (r"cannot read r\.json", "expected a JSON recipe")),
    ("recipe-not-object",
     lambda c: ["quantize", c.float_tflite, "--recipe", c.file("r.json", b'["int8"]'), "-o", c.out("m.tflite")],
     (r"r\.json: expected a JSON object", "found a list")),
    ("recipe-unknown-field",
     lambda c: ["quantize", c.float_tflite, "--recipe", _recipe(c, scheme="int8", oberver="mse"),
                "-o", c.out("m.tflite")],
     (r'r\.json: field "oberver": unknown field', "expected one of version, scheme")),
    ("recipe-bad-tensor-observer",
     lambda c: ["quantize", c.float_tflite, "--recipe",
                _recipe(c, scheme="int8", tensors={"dense_1/Relu": {"observer": "foo"}}), "-o", c.out("m.tflite")],
     (r'r\.json: field "tensors\.dense_1/Relu\.observer": expected an observer \(minmax, ema-minmax, '
      r'percentile:P, mse, entropy or auto\), found "foo"',)),
    ("recipe-wrong-type",
     lambda c: ["quantize", c.float_tflite, "--recipe", _recipe(c, scheme="int8", samples="many"),
                "-o", c.out("m.tflite")],
     (r'r\.json: field "samples": expected a positive integer, found "many"',)),
    ("recipe-unknown-scheme",
     lambda c: ["quantize", c.float_tflite, "--recipe", _recipe(c, scheme="int3"), "-o", c.out("m.tflite")],
     (r'field "scheme": expected one of', "int8", 'found "int3"')),
    ("recipe-unknown-transform",
     lambda c: ["quantize", c.float_tflite, "--recipe", _recipe(c, scheme="int8", transforms=["cle", "nope"]),
                "-o", c.out("m.tflite")],
     (r'field "transforms\[1\]": expected a transform \(cle, bias-correction, adaround', 'found "nope"')),
    ("recipe-future-version",
     lambda c: ["quantize", c.float_tflite, "--recipe", c.file("r.json", b'{"version": 3, "scheme": "int8"}'),
                "-o", c.out("m.tflite")],
     (r'r\.json: field "version": expected 1 or 2', "found 3")),
    ("recipe-precision-in-version-1",
     lambda c: ["quantize", c.float_tflite, "--recipe",
                _recipe(c, scheme="int8", tensors={"dense_1/Relu": {"precision": "float"}}), "-o", c.out("m.tflite")],
     (r'r\.json: field "tensors\.dense_1/Relu\.precision": unknown field', r'needs "version": 2')),
    ("recipe-without-scheme",
     lambda c: ["quantize", c.float_tflite, "--recipe", _recipe(c, observer="mse"), "-o", c.out("m.tflite")],
     ("no scheme", "--scheme SCHEME", r'"scheme" field in r\.json')),
    ("no-scheme-no-recipe",
     lambda c: ["quantize", c.float_tflite, "-o", c.out("m.tflite")], ("no scheme", "--scheme SCHEME", "--recipe")),
    # Only known once calibration statistics exist; still exit 2 and nothing written.
    ("recipe-unknown-tensor",
     lambda c: ["quantize", c.float_tflite, "--recipe", _recipe(c, scheme="int8", tensors={"nope": {}}),
                "--calibration", c.npz("calib.npz", x=GOOD_X), "-o", c.out("m.tflite"),
                "--save-recipe", c.out("saved.json")],
     (r'r\.json: field "tensors\.nope": no activation tensor', r"serving_default_input", r"\(and \d+ more\)")),
]


def _tune(c: Ctx, *extra: str, data: str | None = None, out: str | None = None) -> list[str]:
    """``edgequant tune`` on the seed CNN with unlabeled zeros as data, plus ``extra`` options."""
    return ["tune", c.float_tflite, "--data", data or c.npz("x.npz", x=GOOD_X), "--max-drop", "0.5",
            "--runs", "0", "--objective", "size", "--out", out or c.out("tune"), *extra]


def _history(c: Ctx) -> str:
    """A run folder holding another model's history (trials.json); nothing may be added to it."""
    import json

    other = {"version": 1, "run": {"model_sha256": "0" * 64, "data_sha256": "0" * 64,
                                   "calibration_sha256": "0" * 64}, "trials": []}
    folder = c.folder("earlier-run", {"trials.json": json.dumps(other).encode()})
    c.outputs += [Path(folder) / "best.tflite", Path(folder) / "best.json", Path(folder) / "best-recipe.json"]
    return folder


TUNE_CASES: list[Case] = [
    ("tune-missing-model",
     lambda c: ["tune", c.missing("nope.tflite"), "--data", c.npz("x.npz", x=GOOD_X), "--max-drop", "0.5",
                "--out", c.out("tune")], ("not found",)),
    ("tune-missing-data", lambda c: _tune(c, data=c.missing("nope.npz")), ("data not found", r"nope\.npz")),
    ("tune-negative-max-drop", lambda c: _tune(c, "--max-drop", "-1"),
     (r"--max-drop: expected a number of 0 or more", "found -1")),
    ("tune-max-drop-not-a-number", lambda c: _tune(c, "--max-drop", "half"),
     (r"--max-drop: expected a number", "'half'")),
    ("tune-unknown-metric", lambda c: _tune(c, "--metric", "f1"),
     (r"unknown metric 'f1'", "top1, sqnr, cosine")),
    ("tune-unknown-objective", lambda c: _tune(c, "--objective", "speed"),
     (r"unknown objective 'speed'", "size, latency, balanced")),
    ("tune-top1-without-labels", lambda c: _tune(c, "--metric", "top1"),
     (r"--metric top1 needs labels", "found none", "--metric sqnr")),
    ("tune-bad-time-budget", lambda c: _tune(c, "--time-budget", "10 minutes"),
     (r"--time-budget: expected a duration such as 90s, 10m", "'10 minutes'")),
    ("tune-unknown-scheme", lambda c: _tune(c, "--schemes", "int8,int3"), (r"unknown scheme 'int3'",)),
    ("tune-latency-without-runs", lambda c: _tune(c, "--objective", "latency"),
     (r"--runs 0 measures no latency", "--objective size")),
    ("tune-history-without-resume", lambda c: _tune(c, out=_history(c)),
     (r"holds an earlier run \(trials\.json\)", "--resume")),
    ("tune-resume-other-model", lambda c: _tune(c, "--resume", out=_history(c)),
     (r"--resume: .* holds the history of a run with another model", "model_sha256")),
]
CASES += TUNE_CASES

# qat and prune: options are checked before any model work, and both train, so they need a Keras model.
_TRAIN = GOOD_X, np.array([0, 1, 2, 3], np.int64)
TRAIN_CASES: list[Case] = [
    ("qat-missing-model",
     lambda c: ["qat", c.missing("nope.keras"), "--data", _train(c), "-o", c.out("q.tflite")],
     ("model not found", r"nope\.keras")),
    ("prune-missing-model",
     lambda c: ["prune", c.missing("nope.keras"), "--data", _train(c), "--sparsity", "0.5", "-o", c.out("p.keras")],
     ("model not found", r"nope\.keras")),
    ("qat-missing-data",
     lambda c: ["qat", c.keras_model, "--data", c.missing("train.npz"), "-o", c.out("q.tflite")],
     ("data not found", r"train\.npz")),
    ("qat-missing-val",
     lambda c: ["qat", c.keras_model, "--data", _train(c), "--val", c.missing("val.npz"), "-o", c.out("q.tflite")],
     ("data not found", r"val\.npz")),
    ("qat-on-tflite",
     lambda c: ["qat", c.float_tflite, "--data", _train(c), "-o", c.out("q.tflite")],
     ("needs the Keras model", r"\.tflite", "edgequant quantize")),
    ("prune-on-tflite",
     lambda c: ["prune", c.float_tflite, "--data", _train(c), "--sparsity", "0.5", "-o", c.out("p.keras")],
     ("needs the Keras model", r"\.tflite")),
    ("qat-scheme-dynamic",
     lambda c: ["qat", c.keras_model, "--data", _train(c), "--scheme", "dynamic", "-o", c.out("q.tflite")],
     ("expected --scheme int8 or w4a8", "found dynamic")),
    ("qat-unknown-scheme",
     lambda c: ["qat", c.keras_model, "--data", _train(c), "--scheme", "int3", "-o", c.out("q.tflite")],
     ("unknown scheme", "int3", "w4a8")),
    ("qat-epochs-zero",
     lambda c: ["qat", c.keras_model, "--data", _train(c), "--epochs", "0", "-o", c.out("q.tflite")],
     ("--epochs", "at least 1", "found 0")),
    ("prune-epochs-negative",
     lambda c: ["prune", c.keras_model, "--data", _train(c), "--sparsity", "0.5", "--epochs", "-2",
                "-o", c.out("p.keras")], ("--epochs", "at least 1", "found -2")),
    ("prune-sparsity-above-1",
     lambda c: ["prune", c.keras_model, "--data", _train(c), "--sparsity", "1.5", "-o", c.out("p.keras")],
     ("--sparsity", "strictly between 0 and 1", "found 1.5")),
    ("prune-sparsity-zero",
     lambda c: ["prune", c.keras_model, "--data", _train(c), "--sparsity", "0", "-o", c.out("p.keras")],
     ("--sparsity", "strictly between 0 and 1", "found 0")),
    ("prune-unknown-schedule",
     lambda c: ["prune", c.keras_model, "--data", _train(c), "--sparsity", "0.5", "--schedule", "cosine",
                "-o", c.out("p.keras")], ("unknown schedule", "cosine", "polynomial", "constant")),
    ("prune-output-not-keras",
     lambda c: ["prune", c.keras_model, "--data", _train(c), "--sparsity", "0.5", "-o", c.out("p.h5")],
     ("ending in .keras", r"p\.h5")),
    ("qat-labels-without-labels",
     lambda c: ["qat", c.keras_model, "--data", c.npz("x.npz", x=GOOD_X), "--loss", "labels", "-o", c.out("q.tflite")],
     ("--loss labels", "expected labels", "found none", "distill")),
    ("prune-labels-without-labels",
     lambda c: ["prune", c.keras_model, "--data", c.npz("x.npz", x=GOOD_X), "--loss", "labels", "--sparsity", "0.5",
                "-o", c.out("p.keras")], ("--loss labels", "expected labels", "found none")),
    ("qat-unknown-loss",
     lambda c: ["qat", c.keras_model, "--data", _train(c), "--loss", "hinge", "-o", c.out("q.tflite")],
     ("unknown loss", "hinge", "distill")),
    ("qat-labels-out-of-range",
     lambda c: ["qat", c.keras_model, "--data", c.npz("d.npz", x=GOOD_X, y=np.array([0, 3, 12, 1])),
                "-o", c.out("q.tflite")], ("expected class ids 0..9", "found 0..12")),
    ("qat-wrong-shape-data",
     lambda c: ["qat", c.keras_model, "--data", c.npz("small.npz", x=np.zeros((10, 8, 8, 1), np.float32)),
                "-o", c.out("q.tflite")], ("shape", r"28, 28, 1", r"\(10, 8, 8, 1\)")),
    ("qat-lambda-without-unsafe",
     lambda c: ["qat", c.lambda_model, "--data", _train(c), "-o", c.out("q.tflite")], ("--unsafe", "lambda")),
    ("prune-lambda-without-unsafe",
     lambda c: ["prune", c.lambda_model, "--data", _train(c), "--sparsity", "0.5", "-o", c.out("p.keras")],
     ("--unsafe", "lambda")),
]
CASES += TRAIN_CASES


def _junk_registry(c: Ctx) -> str:
    return c.file("registry.sqlite3", b"not a database, just text\n" * 40)


def _foreign_sqlite(c: Ctx) -> str:
    """An SQLite database of some other application."""
    import sqlite3

    path = c.inputs / "theirs.sqlite3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE contacts (name TEXT)")
    con.commit()
    con.close()
    return str(path)


# --registry names a file that is not a run registry: refused before any work (docs/registry.md).
REGISTRY_CASES: list[Case] = [
    ("registry-corrupt-convert",
     lambda c: ["convert", c.float_tflite, "-o", c.out("m.tflite"), "--registry", _junk_registry(c)],
     ("expected an edgequant run registry", r"SQLite, schema \d+", "not an SQLite database", "registry.sqlite3")),
    ("registry-corrupt-quantize",
     lambda c: ["quantize", c.float_tflite, "--scheme", "dynamic", "-o", c.out("m.tflite"), "--registry",
                _junk_registry(c)], ("expected an edgequant run registry", "not an SQLite database")),
    ("registry-corrupt-compare",
     lambda c: ["compare", c.float_tflite, "--data", c.npz("d.npz", x=GOOD_X), "--schemes", "dynamic", "--engines",
                "litert", "--runs", "0", "--out", c.out("cmp"), "--registry", _junk_registry(c)],
     ("expected an edgequant run registry", "not an SQLite database")),
    ("registry-foreign-sqlite",
     lambda c: ["convert", c.float_tflite, "-o", c.out("m.tflite"), "--registry", _foreign_sqlite(c)],
     ("expected an edgequant run registry", "another application")),
    ("registry-is-a-directory",
     lambda c: ["convert", c.float_tflite, "-o", c.out("m.tflite"), "--registry", c.folder("regdir")],
     ("expected an edgequant run registry", "directory")),
]
CASES += REGISTRY_CASES


def _train(c: Ctx) -> str:
    """A tiny labelled training set for the seed CNN's input."""
    return c.npz("train.npz", x=_TRAIN[0], y=_TRAIN[1])


def _recipe(c: Ctx, **fields: object) -> str:
    """A version 1 recipe file with ``fields``."""
    import json

    return c.file("r.json", json.dumps({"version": 1, **fields}).encode())


def _with(x: np.ndarray, value: float) -> np.ndarray:
    """A copy of ``x`` with one bad value in sample 1."""
    bad = x.copy()
    bad[1, 3, 4, 0] = value
    return bad


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


# Cases that do not (yet) meet the contract: id -> reason (actual behaviour).
XFAIL: dict[str, str] = {}


def _params() -> list:
    out = []
    for case_id, build, patterns in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[case_id])] if case_id in XFAIL else []
        out.append(pytest.param(build, patterns, id=case_id, marks=marks))
    return out


@pytest.mark.parametrize(("build", "patterns"), _params())
def test_bad_input(build: Callable[[Ctx], list[str]], patterns: tuple[str, ...], ctx: Ctx,
                   capsys: pytest.CaptureFixture[str]) -> None:
    argv = build(ctx)
    assert ctx.outputs, "every case passes an output path"
    code, err = run_cli(argv, capsys)
    assert_bad_input(code, err, ctx, patterns)


def test_unsafe_keras_converts_with_unsafe(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    """The same Lambda model that is refused without --unsafe converts with it."""
    out = ctx.out("lambda.tflite")
    code, err = run_cli(["convert", ctx.lambda_model, "--unsafe", "-o", out], capsys)
    assert code == 0, err
    assert not err.strip(), err
    data = Path(out).read_bytes()
    assert data[4:8] == b"TFL3"
    assert sorted(p.name for p in ctx.out_dir.iterdir()) == ["lambda.tflite"]  # no .part left over


def test_compare_nan_data(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    """compare on data with a NaN: exit 2, one line, and --out is absent or empty."""
    out_dir = ctx.tmp / "compare-out"
    code, err = run_cli(["compare", ctx.float_tflite, "--data", ctx.npz("nan.npz", x=_with(GOOD_X, np.nan)),
                         "--schemes", "dynamic", "--engines", "litert", "--runs", "0", "--out", str(out_dir)],
                        capsys)
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("edgequant: error:"), err
    assert re.search(r"\b1 NaN\b", lines[0]) and "finite" in lines[0], lines[0]
    assert not out_dir.exists() or not any(out_dir.iterdir()), sorted(p.name for p in out_dir.rglob("*"))


def test_registry_corrupt_file_left_untouched(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    """A --registry that is not a registry is refused before SQLite opens it: not one byte written, no
    -wal/-shm files and no artifacts folder beside it, no model."""
    junk = Path(_junk_registry(ctx))
    before = junk.read_bytes()
    code, err = run_cli(["quantize", ctx.float_tflite, "--scheme", "dynamic", "-o", ctx.out("m.tflite"),
                         "--registry", str(junk)], capsys)
    assert_bad_input(code, err, ctx, ("expected an edgequant run registry",))
    assert junk.read_bytes() == before
    assert sorted(p.name for p in junk.parent.iterdir()) == ["registry.sqlite3"]


def test_runs_unknown_id(ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> None:
    """runs show/compare with an id the registry does not hold: exit 2, one line naming the id."""
    registry = str(ctx.tmp / "registry.sqlite3")
    code, err = run_cli(["convert", ctx.float_tflite, "-o", ctx.out("m.tflite"), "--registry", registry], capsys)
    assert code == 0, err
    for argv, bad in ((["runs", "show", "99"], "99"), (["runs", "compare", "1", "42"], "42"),
                      (["runs", "show", "7"], "7")):
        where = registry if bad != "7" else str(ctx.tmp / "no-registry-here.sqlite3")  # a missing file too
        code, err = run_cli([*argv, "--registry", where], capsys)
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith(f"edgequant: error: run {bad}: expected an id listed by 'edgequant runs list', "
                                   "found none"), lines[0]
    assert not (ctx.tmp / "no-registry-here.sqlite3").exists()  # reading creates nothing


def test_runs_registry_off(ctx: Ctx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEQUANT_REGISTRY", "off")
    code, err = run_cli(["runs", "list"], capsys)
    assert code == 2 and err.count("\n") == 1 and "EDGEQUANT_REGISTRY is 'off'" in err and "--registry" in err
