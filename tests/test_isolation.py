"""LiteRT runs in worker processes: a crash or hang there is a one-line error, and everything else goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgequant.errors import EdgequantError, ModelCrashError
from edgequant.evaluate.latency import measure_interleaved
from edgequant.runtime import Runner, isolation, one_worker, open_session
from edgequant.runtime.worker import POOL


def _kill_worker(runner: Runner, signum: int = signal.SIGSEGV) -> None:
    """What a kernel crash does to a runner's worker, without needing a kernel that crashes."""
    os.kill(runner._session._worker.proc.pid, signum)
    runner._session._worker.proc.join(10)


def test_isolated_and_in_process_runs_agree(float_tflite: Path, test_arrays) -> None:
    x, _ = test_arrays
    isolated = Runner(float_tflite.read_bytes()).predict_output(x[:20])
    with isolation(False):
        local = Runner(float_tflite.read_bytes())
        assert not hasattr(local._session, "_worker")
        assert np.array_equal(local.predict_output(x[:20]), isolated)


def test_a_killed_worker_is_a_one_line_error_and_the_others_go_on(float_tflite: Path, test_arrays) -> None:
    x, _ = test_arrays
    keep, victim = Runner(float_tflite.read_bytes(), what="float"), Runner(float_tflite.read_bytes(), what="victim")
    _kill_worker(victim)
    with pytest.raises(ModelCrashError, match=r"^victim crashed LiteRT \(SIGSEGV\) at invoke") as info:
        victim.predict(x[:2])
    assert info.value.exit_code == 1 and "\n" not in str(info.value)
    with pytest.raises(ModelCrashError, match="crashed earlier"):
        victim.invoke()
    assert keep.predict_output(x[:2]).shape[0] == 2
    assert Runner(float_tflite.read_bytes()).predict_output(x[:2]).shape[0] == 2  # a new worker replaces it


def test_a_crash_mid_timing_leaves_the_other_latencies(float_tflite: Path, test_arrays) -> None:
    x, _ = test_arrays
    runners = [Runner(float_tflite.read_bytes(), what=w) for w in ("float", "victim", "other")]
    runners[1].prepare_single(x)
    _kill_worker(runners[1], signal.SIGABRT)
    errors: dict[int, str] = {}
    lat = measure_interleaved(runners, x, runs=3, warmup=1, errors=errors)
    assert lat[1] is None and "victim crashed LiteRT (SIGABRT)" in errors[1]
    assert lat[0] is not None and lat[2] is not None and set(errors) == {1}


def test_a_hang_is_ended_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEQUANT_WORKER_TIMEOUT", "1")
    probe = open_session("probe", "sleepy model", isolate=True)
    with pytest.raises(ModelCrashError, match=r"^sleepy model hung LiteRT at sleep: no answer within 1 s"):
        probe.call("sleep", 30)


def test_a_worker_serves_one_model(float_tflite: Path) -> None:
    """A model can corrupt LiteRT's heap without an error: its worker ends with it, never serving the next."""
    data = float_tflite.read_bytes()
    first = Runner(data)
    proc = first._session._worker.proc
    del first
    second = Runner(data)
    assert second._session._worker.proc.pid != proc.pid
    proc.join(10)
    assert not proc.is_alive()


def test_one_step_shares_one_worker_until_it_ends(float_tflite: Path, test_arrays) -> None:
    """Inside one_worker the models of a step share a process that outlives each of them; it ends with the block."""
    x, _ = test_arrays
    data = float_tflite.read_bytes()
    with one_worker("step"):
        first = Runner(data)
        proc = first._session._worker.proc
        del first
        second = Runner(data, what="second")
        assert second._session._worker.proc.pid == proc.pid
        assert second.predict_output(x[:2]).shape[0] == 2
    del second
    outside = Runner(data)
    assert outside._session._worker.proc.pid != proc.pid
    proc.join(10)
    assert not proc.is_alive()


def test_a_crash_inside_a_step_fails_that_model_and_the_step_goes_on(float_tflite: Path, test_arrays) -> None:
    x, _ = test_arrays
    data = float_tflite.read_bytes()
    with one_worker("step"):
        victim = Runner(data, what="victim")
        _kill_worker(victim)
        with pytest.raises(ModelCrashError, match=r"^victim crashed LiteRT"):
            victim.predict(x[:2])
        after = Runner(data, what="after")  # a fresh worker takes the step's place
        assert after._session._worker.alive and after.predict_output(x[:2]).shape[0] == 2
    assert not POOL._pinned


def test_crashing_model_through_the_cli_in_process(float_tflite: Path, digits, tmp_path: Path, capsys) -> None:
    import edgequant
    from edgequant.cli import main
    from mutants import find_crasher

    w4a8 = edgequant.quantize(float_tflite, "w4a8", "litert", calibration=digits["calibration"], samples=16,
                              transforms="none").tflite
    found = find_crasher(w4a8)
    assert found is not None
    path = tmp_path / "crasher.tflite"
    path.write_bytes(found[1])
    for argv in (["eval", path, "--data", digits["test"], "--runs", "2"],
                 ["analyze", path, "--reference", float_tflite, "--data", digits["test"], "--runs", "2"]):
        capsys.readouterr()
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert code == 1, (argv[0], code, err)
        assert len(err.splitlines()) == 1 and "crashed LiteRT (SIGSEGV)" in err, err


def test_compare_turns_a_crashing_variant_into_an_error_row(float_tflite: Path, digits, monkeypatch) -> None:
    """A variant whose worker dies while compare measures it is an error row; float and the rest are measured."""
    import edgequant
    import importlib

    compare_module = importlib.import_module("edgequant.compare")

    real = compare_module.Runner

    def flaky(tflite: bytes, threads: int = 1, what: str = "model", **kw):
        runner = real(tflite, threads, what, **kw)
        if what.startswith("int8/"):
            _kill_worker(runner)
        return runner

    monkeypatch.setattr(compare_module, "Runner", flaky)
    result = edgequant.compare(float_tflite, data=digits["test"], calibration=digits["calibration"],
                               schemes=["int8", "dynamic"], runs=3)
    rows = {v.scheme: v for v in result.variants}
    assert rows["int8"].error and "crashed LiteRT (SIGSEGV)" in rows["int8"].error
    assert rows["dynamic"].error is None and result.float.latency_ms_median is not None


def test_a_script_without_main_guard_runs_once(float_tflite: Path, tmp_path: Path) -> None:
    """Workers must not import the caller's __main__ again (multiprocessing's default would run it twice)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        from edgequant.runtime import Runner
        print("ran", Runner(open({str(float_tflite)!r}, "rb").read()).output_names[0] != "")
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["ran True"], proc.stdout


def teardown_module() -> None:
    POOL.shutdown()
