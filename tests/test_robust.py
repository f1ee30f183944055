"""Numbers, labels, broken model files, library warnings and Ctrl-C: nothing crashes edgequant.

Every number is refused before any work, in the API (so Python users get the same line) and on
the command line; labels must be class ids the model's output can predict; a broken .keras or
SavedModel is bad input (exit 2) saying what was found; no library warning reaches stderr without
-v; Ctrl-C ends with exit 130, one line, and the run registry says what happened.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import edgequant
from clitools import one_line, run_cli
from edgequant import checks
from edgequant.cli import main
from edgequant.errors import InputError
from edgequant.registry import Registry, RunStatus

X = np.zeros((4, 28, 28, 1), np.float32)




# --------------------------------------------------------------------------- numbers

BAD_NUMBERS = [
    (["eval", "M", "--threads", "0"], r"--threads: expected a whole number from 1 to \d+ .*found 0"),
    (["eval", "M", "--threads", "100000"], r"--threads: expected a whole number from 1 to \d+ .*found 100000"),
    (["eval", "M", "--runs", "-1"], r"--runs: expected a whole number from 0 to 100,000, found -1"),
    (["eval", "M", "--runs", "100001"], r"--runs: expected a whole number from 0 to 100,000, found 100001"),
    (["eval", "M", "--data", "D", "--resize", "0,28"], r"--resize: expected H,W \(two whole numbers of 1 or more\), "
                                                       r"found 0,28"),
    (["eval", "M", "--data", "D", "--resize", "28"], r"--resize: expected H,W \(two whole numbers\), found '28'"),
    (["eval", "M", "--data", "D", "--normalize", "0,0"], r"--normalize: expected MEAN,STD \(two finite numbers, STD "
                                                         r"above 0\), found 0,0"),
    (["eval", "M", "--data", "D", "--normalize", "0,-1"], r"--normalize: .*found 0,-1"),
    (["eval", "M", "--data", "D", "--normalize", "nan,1"], r"--normalize: .*found nan,1"),
    (["eval", "M", "--data", "D", "--normalize", "0,inf"], r"--normalize: .*found 0,inf"),
    (["analyze", "M", "--reference", "M", "--data", "D", "--top-k", "-1"], r"--top-k: expected a whole number of "
                                                                           r"0 or more, found -1"),
    (["analyze", "M", "--reference", "M", "--data", "D", "--samples", "0"], r"--samples: expected a whole number of "
                                                                            r"at least 1, found 0"),
    (["compare", "M", "--data", "D", "--samples", "-5", "--out", "O"], r"--samples: .*found -5"),
    (["compare", "M", "--data", "D", "--threads", "65", "--out", "O"], r"--threads: .*found 65"),
    (["calibrate", "M", "--data", "D", "--samples", "0", "-o", "O/s.json"], r"--samples: .*found 0"),
    (["quantize", "M", "--scheme", "int8", "--samples", "0", "-o", "O/q.tflite"], r"--samples: .*found 0"),
    (["tune", "M", "--data", "D", "--max-drop", "1", "--runs", "100001", "--out", "O"], r"--runs: .*found 100001"),
    (["qat", "M", "--data", "D", "--seed", "-1", "-o", "O/q.tflite"], r"--seed: expected a whole number from 0 to "
                                                                      r"4,294,967,295, found -1"),
    (["demo", "--epochs", "0", "--out", "O"], r"--epochs: expected a whole number of at least 1, found 0"),
    (["demo", "--runs", "-1", "--out", "O"], r"--runs: expected a whole number from 0 to 100,000, found -1"),
]


@pytest.mark.parametrize(("argv", "pattern"), BAD_NUMBERS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_NUMBERS])
def test_bad_numbers_are_refused_before_any_work(argv: list[str], pattern: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Real inputs exist, so only the number can be wrong.
    model, data = tmp_path / "m.tflite", tmp_path / "d.npz"
    model.write_bytes(b"x")
    np.savez(data, x=X)
    names = {"M": str(model), "D": str(data), "O": str(tmp_path / "out")}
    argv = [names.get(a, a.replace("O/", names["O"] + "/")) for a in argv]
    start = time.perf_counter()
    code, out, err = run_cli(argv, capsys)
    one_line(code, err, pattern)
    assert not out and not (tmp_path / "out").exists()
    assert time.perf_counter() - start < 5  # demo --runs -1 used to train for 29 s first


def test_thread_bound_follows_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert checks.max_threads() == 8
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert checks.max_threads() == 64
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert checks.max_threads() == 4
    checks.check_threads(4)
    with pytest.raises(InputError, match=r"--threads: expected a whole number from 1 to 4 .*found 5"):
        checks.check_threads(5)
    with pytest.raises(InputError, match="found True"):
        checks.check_runs(True)  # a bool is not a count


def test_the_api_checks_numbers_before_any_work(float_tflite: Path, tmp_path: Path) -> None:
    """Python users get the same line; none of these loads a model or trains."""
    cases = [
        (lambda: edgequant.evaluate(float_tflite, threads=0), r"--threads: .*found 0"),
        (lambda: edgequant.evaluate(float_tflite, runs=10**6), r"--runs: .*found 1000000"),
        (lambda: edgequant.evaluate(float_tflite, threads=2.5), r"--threads: .*found 2.5"),
        (lambda: edgequant.compare(tmp_path / "none.keras", X, samples=0), r"--samples: .*found 0"),
        (lambda: edgequant.calibrate(tmp_path / "none.keras", X, samples=-1), r"--samples: .*found -1"),
        (lambda: edgequant.analyze(tmp_path / "q.tflite", tmp_path / "none.keras", X, top_k=-2), r"--top-k"),
        (lambda: edgequant.analyze(tmp_path / "q.tflite", tmp_path / "none.keras", X, samples=0), r"--samples"),
        (lambda: edgequant.demo(tmp_path / "demo", runs=-1), r"--runs: .*found -1"),
        (lambda: edgequant.demo(tmp_path / "demo", epochs=0), r"--epochs: .*found 0"),
        (lambda: edgequant.run(float_tflite, tmp_path / "none"), r"data not found"),
        # Keras raised a bare ValueError (a traceback) for these.
        (lambda: edgequant.prune(tmp_path / "none.keras", X, sparsity=0.5, seed=2**32), r"--seed: .*found 4294967296"),
        (lambda: edgequant.qat(tmp_path / "none.keras", X, seed=-1), r"--seed: .*found -1"),
        # A model's bytes where a path belongs: pathlib raised a TypeError.
        (lambda: edgequant.quantize(float_tflite.read_bytes(), "int8"), r"model: expected a file path .*found bytes"),
    ]
    for call, pattern in cases:
        with pytest.raises(InputError, match=pattern):
            call()
    assert not (tmp_path / "demo").exists()


def test_image_options_are_checked_in_the_api(tmp_path: Path) -> None:
    from PIL import Image

    from edgequant.data import load_data

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    assert load_data(folder, resize=(4, 4), normalize=(0, 255), channels=1).x.shape == (1, 4, 4, 1)
    for kwargs, pattern in (({"resize": (0, 4)}, r"--resize: .*found 0,4"), ({"resize": (4, -1)}, "found 4,-1"),
                            ({"normalize": (0, 0)}, r"--normalize: .*STD above 0\), found 0,0"),
                            ({"normalize": (float("nan"), 1)}, "found nan,1"), ({"normalize": (0, -2)}, "found 0,-2")):
        with pytest.raises(InputError, match=pattern):
            load_data(folder, **kwargs)


# --------------------------------------------------------------------------- labels

@pytest.fixture(scope="module")
def dynamic_tflite(tmp_path_factory: pytest.TempPathFactory, float_tflite: Path) -> Path:
    path = tmp_path_factory.mktemp("dynamic") / "dynamic.tflite"
    edgequant.quantize(float_tflite, "dynamic", output=path)
    return path


@pytest.mark.parametrize("labels", [[0, 3, 57, 1], [0, -1, 2, 3]], ids=["57-for-10-classes", "negative"])
@pytest.mark.parametrize("command", ["eval", "compare", "analyze", "tune"])
def test_labels_the_output_cannot_predict(command: str, labels: list[int], float_tflite: Path, dynamic_tflite: Path,
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """eval, compare, analyze and tune refuse what qat refuses: a label the model's 10 outputs cannot be."""
    data = tmp_path / "d.npz"
    np.savez(data, x=X, y=np.array(labels))
    out = tmp_path / "out"
    argv = {"eval": ["eval", float_tflite, "--data", data, "--runs", "0", "--json", out / "e.json"],
            "compare": ["compare", float_tflite, "--data", data, "--schemes", "dynamic", "--engines", "litert",
                        "--runs", "0", "--out", out],
            "analyze": ["analyze", dynamic_tflite, "--reference", float_tflite, "--data", data, "--runs", "0",
                        "--top-k", "0", "--json", out / "a.json"],
            "tune": ["tune", float_tflite, "--data", data, "--max-drop", "1", "--runs", "0", "--objective", "size",
                     "--out", out]}[command]
    code, _, err = run_cli(argv, capsys)
    low, high = min(labels), max(labels)
    one_line(code, err, rf"labels y in .*d\.npz: expected class ids 0\.\.9 for the model's 10 outputs, "
                        rf"found {low}\.\.{high}")
    assert not out.exists() or not any(out.iterdir())


def test_labels_of_a_one_unit_output() -> None:
    """A one-value output is a binary classifier: labels 0 and 1 (top-1 thresholds it at 0.5)."""
    assert checks.classes_of((1, 1)) == 2
    assert checks.classes_of((-1, 10)) == 10 and checks.classes_of((1, -1)) is None
    assert checks.classes_of((1, 4, 5)) == 20
    checks.check_labels(np.array([0, 1]), 2, "d")
    with pytest.raises(InputError, match=r"expected class ids 0\.\.1 for the model's 2 outputs, found 0\.\.2"):
        checks.check_labels(np.array([0, 2]), 2, "d")


# --------------------------------------------------------------------------- broken model files

@pytest.mark.parametrize(("name", "make", "found"), [
    ("garbage.keras", lambda ok: b"hello world" * 10, r"found 110 bytes that are not a complete zip archive"),
    ("empty.keras", lambda ok: b"", r"found an empty file"),
    ("truncated.keras", lambda ok: ok[: len(ok) // 2], r"that are not a complete zip archive"),
    ("garbage.h5", lambda ok: b"not hdf5 at all", r"expected a Keras HDF5 model file .*found b'not '"),
])
def test_broken_keras_files(name: str, make, found: str, seed_cnn_path: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    path.write_bytes(make(seed_cnn_path.read_bytes()))
    code, _, err = run_cli(["convert", path, "-o", tmp_path / "m.tflite"], capsys)
    line = one_line(code, err, rf"cannot load {re.escape(name)}", found)
    assert "File not found" not in line
    if name.endswith(".keras"):
        assert "it is not a valid Keras archive" in line
    assert not (tmp_path / "m.tflite").exists()


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good SavedModel, and one whose serving function uses string ops."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("saved")

    dense = tf.Module()
    dense.w = tf.Variable(tf.ones((4, 2)))
    dense.serve = tf.function(lambda x: tf.matmul(x, dense.w), input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    strings = tf.Module()
    strings.serve = tf.function(lambda x: tf.strings.to_number(tf.strings.as_string(x)),
                                input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    tf.saved_model.save(dense, str(root / "good"), signatures=dense.serve)
    tf.saved_model.save(strings, str(root / "strings"), signatures=strings.serve)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(("case", "patterns"), [
    ("corrupt-pb", (r"SavedModel bad: expected saved_model.pb to be a SavedModel protocol buffer, found 70 bytes "
                    r"that do not parse",)),
    ("empty-pb", (r"SavedModel bad: expected saved_model.pb to hold a graph, found an empty file",)),
    ("no-variables", (r"SavedModel bad: expected its weights in variables/variables.index .*found no variables "
                      r"folder",)),
    ("string-ops", (r"bad uses string ops that LiteRT's builtin op set does not have \(AsString, StringToNumber\)",
                    r"expected a model of numeric LiteRT builtin ops")),
])
def test_broken_saved_models(case: str, patterns: tuple[str, ...], saved_models: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(saved_models / ("strings" if case == "string-ops" else "good"), bad)
    if case == "corrupt-pb":
        (bad / "saved_model.pb").write_bytes(b"garbage\xff" * 7 + b"\x00" * 14)
    elif case == "empty-pb":
        (bad / "saved_model.pb").write_bytes(b"")
    elif case == "no-variables":
        shutil.rmtree(bad / "variables")
    code, _, err = run_cli(["convert", bad, "-o", tmp_path / "m.tflite"], capsys)
    one_line(code, err, *patterns)
    assert not (tmp_path / "m.tflite").exists()


# --------------------------------------------------------------------------- subprocesses: warnings, Ctrl-C

def _edgequant() -> list[str]:
    script = Path(sys.executable).parent / "edgequant"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgequant"]


@pytest.mark.slow
def test_no_library_warning_reaches_stderr(tmp_path: Path) -> None:
    """A real complex-output model runs with nothing on stderr (its output stays complex), and a warning a
    library raises during a command is shown with -v only."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def complex_out(x):
        return tf.cast(x * 2.0, tf.complex64)

    model = tmp_path / "complex.tflite"
    model.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions(
        [complex_out.get_concrete_function()]).convert())
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    env = dict(os.environ, EDGEQUANT_REGISTRY="off")
    quiet = subprocess.run([*_edgequant(), "run", str(model), "--input", str(tmp_path / "x.npy")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and "shape (2, 4), complex64" in quiet.stdout
    assert quiet.stderr == ""
    # A warning raised inside a command (here by a wrapped edgequant.run), in a process of its own: pytest
    # records warnings in its own process, so an in-process check would not see what a user sees.
    code = ("import sys, warnings, edgequant\nreal = edgequant.run\n"
            "def run(*a, **k):\n    warnings.warn(\"a library's warning\", RuntimeWarning)\n    return real(*a, **k)\n"
            "edgequant.run = run\nfrom edgequant.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    argv = ["run", str(model), "--input", str(tmp_path / "x.npy")]
    hidden = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=300)
    assert hidden.returncode == 0 and "a library's warning" not in hidden.stderr
    shown = subprocess.run([sys.executable, "-c", code, "-v", *argv], capture_output=True, text=True, env=env,
                           timeout=300)
    assert shown.returncode == 0 and "a library's warning" in shown.stderr


def test_ctrl_c_in_process_marks_the_run_failed(float_tflite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "runs.sqlite3"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgequant, "quantize", interrupted)
    code, out, err = run_cli(["quantize", float_tflite, "--scheme", "dynamic", "-o", tmp_path / "q.tflite",
                              "--registry", registry], capsys)
    assert code == 130 and err == "edgequant: interrupted\n" and not (tmp_path / "q.tflite").exists()
    with Registry(registry) as reg:
        (run,) = reg.runs()
    assert (run.status, run.exit_code, run.error, run.variants) == (RunStatus.FAILED, 130, "interrupted", ())


def _start_quantize(float_tflite: Path, calibration: Path, out: Path, registry: Path,
                    *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*_edgequant(), "quantize", str(float_tflite), "--scheme", "int8", "--calibration",
                             str(calibration), "-o", str(out), "--save-recipe", str(out.with_suffix(".json")),
                             "--registry", str(registry), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), preexec_fn=_default_sigint)


def _default_sigint() -> None:
    # A test run started in the background by a shell inherits SIGINT ignored, and so would edgequant
    # (Python keeps an ignored SIGINT ignored): give the child the terminal's default, as a user has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_run(registry: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the run is recorded as running (its work has begun)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        if registry.exists():
            try:
                with Registry(registry, create=False) as reg:
                    if any(r.status is RunStatus.RUNNING for r in reg.runs()):
                        return
            except Exception:  # noqa: BLE001 - the file is being created
                pass
        time.sleep(0.05)
    raise AssertionError("the run was never recorded as running")


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 1.5, 4.0], ids=["as-work-begins", "calibrating", "later"])
def test_ctrl_c_during_quantize(delay: float, float_tflite: Path, digits: dict[str, Path], tmp_path: Path) -> None:
    registry, out = tmp_path / "runs.sqlite3", tmp_path / "q.tflite"
    # About 24,000 calibration samples: several seconds of work on 2 cores (calibration streams every sample),
    # to interrupt at several points.
    with np.load(digits["calibration"]) as z:
        x = z["x"]
    big = tmp_path / "big.npz"
    flips = [x, x[:, ::-1], x[:, :, ::-1], x[:, ::-1, ::-1]]
    np.savez(big, x=np.concatenate([f + np.float32(shift) for shift in (0.0, 0.01, 0.02, 0.03) for f in flips]))
    proc = _start_quantize(float_tflite, big, out, registry, "--samples", "100000")
    _wait_for_run(registry, proc)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert stderr == "edgequant: interrupted\n"
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".part", ".tflite", ".json")) == []
    assert not list(tmp_path.glob(".*.part"))
    with Registry(registry) as reg:
        (run,) = reg.runs()
    assert (run.status, run.exit_code, run.error, run.variants) == (RunStatus.FAILED, 130, "interrupted", ())


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.02, 0.04])
def test_ctrl_c_after_the_run_was_recorded(delay: float, float_tflite: Path, digits: dict[str, Path],
                                           tmp_path: Path) -> None:
    """Interrupted just after "recorded run" (still in the command, or already shutting down the interpreter,
    which with TensorFlow loaded takes a while): the work is done and recorded, so the run stays complete; the
    command ends with 130 and the one line (without the exit-time handler, Python died of the signal: -2)."""
    registry, out = tmp_path / "runs.sqlite3", tmp_path / "q.tflite"
    proc = _start_quantize(float_tflite, digits["calibration"], out, registry)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("recorded run"):
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            break
    rest, stderr = proc.communicate(timeout=120)
    assert any(line.startswith("recorded run") for line in lines), "".join(lines) + stderr
    # The process may also have exited before the signal arrived.
    assert (proc.returncode, stderr) in ((130, "edgequant: interrupted\n"), (0, "")), (proc.returncode, stderr)
    assert out.read_bytes()[4:8] == b"TFL3" and out.with_suffix(".json").exists()
    with Registry(registry) as reg:
        (run,) = reg.runs()
    assert run.status is RunStatus.COMPLETE and run.exit_code == 0 and len(run.variants) == 1
