"""A seeded mutation fuzzer: broken .tflite files through `edgequant eval` and `edgequant quantize`.

At least 200 mutants of small float, int8 and w4a8 models (tests/mutants.py: byte and bit flips,
truncation, header-kept random chunks, flatbuffer offset corruption, object-API edits of indices,
shapes, types and quantization parameters), each through both commands. Every run must end with exit
0, 1 or 2 and at most one stderr line, never a traceback, and the edgequant process is never killed by
a signal (LiteRT crashes stay in its worker processes). The CLI runs in two child processes that each
take many runs (tests/fuzz_driver.py; a fresh Python per run would cost a second each), plus a few
real `python -m edgequant` processes. Time-bounded: runs stop starting after FUZZ_SECONDS.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mutants import KINDS, find_crashers, mutants

MUTANTS = 360
MIN_MUTANTS = 200
FUZZ_SECONDS = float(os.environ.get("EDGEQUANT_FUZZ_SECONDS", 80))
DRIVERS = 2
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def fuzz_models(float_tflite: Path, digits: dict[str, Path]) -> dict[str, bytes]:
    import edgequant

    models = {"float": float_tflite.read_bytes()}
    for scheme in ("int8", "w4a8"):
        models[scheme] = edgequant.quantize(float_tflite, scheme, "litert", calibration=digits["calibration"],
                                            samples=16, transforms="none").tflite
    return models


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory, digits: dict[str, Path]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzzdata")
    with np.load(digits["test"]) as z:
        np.savez(root / "test.npz", x=z["x"][:16], y=z["y"][:16])
    with np.load(digits["calibration"]) as z:
        np.savez(root / "calib.npz", x=z["x"][:8])
    return {"test": root / "test.npz", "calibration": root / "calib.npz"}


def _argv(command: str, model: Path, k: int, data: dict[str, Path], out: Path) -> list[str]:
    if command == "eval":
        return ["eval", str(model), "--data", str(data["test"]), "--runs", "2"]
    scheme = ["--scheme", "int8", "--calibration", str(data["calibration"]), "--samples", "8"] if k % 2 else \
        ["--scheme", "dynamic"]
    return ["quantize", str(model), *scheme, "--transforms", "none", "-o", str(out / f"q{k}.tflite"),
            "--no-registry"]


def _problem(run: dict) -> str | None:
    """What is wrong with one run's ending (a short signature, for grouping), or None."""
    err = run["stderr"]
    lines = err.splitlines()
    if "Traceback" in err or run["code"] not in (0, 1, 2):
        frames = [ln.strip() for ln in lines if ln.strip().startswith("File ")]
        return f"exit {run['code']}: {lines[-1] if lines else ''} at {frames[-1] if frames else '?'}"
    if len(lines) > 1:
        return f"{len(lines)} stderr lines: {' | '.join(lines[:3])[:300]}"
    return None


def test_mutants_never_crash_edgequant(fuzz_models, small_data, tmp_path: Path) -> None:
    runs: list[tuple[str, list[str]]] = []
    kinds: dict[str, str] = {}
    for k, (name, kind, data) in enumerate(mutants(fuzz_models, MUTANTS, seed=15)):
        path = tmp_path / f"m{k:03d}-{name}-{kind}.tflite"
        path.write_bytes(data)
        kinds[str(k)] = f"{path.name}"
        for command in ("eval", "quantize"):
            runs.append((f"{k}:{command}", _argv(command, path, k, small_data, tmp_path)))
    deadline = time.time() + FUZZ_SECONDS
    procs = []
    for d in range(DRIVERS):
        # Both runs of a mutant go to the same driver, so a crash points at one mutant.
        mine = [r for i, r in enumerate(runs) if (i // 2) % DRIVERS == d]
        manifest = tmp_path / f"manifest{d}.json"
        manifest.write_text(json.dumps({"deadline": deadline, "runs": mine}))
        results = tmp_path / f"results{d}.jsonl"
        procs.append((subprocess.Popen([sys.executable, str(HERE / "fuzz_driver.py"), str(manifest), str(results)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path),
                      results, mine))
    done: dict[str, dict] = {}
    for proc, results, mine in procs:
        _, err = proc.communicate(timeout=FUZZ_SECONDS + 240)
        got = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
        done.update({r["id"]: r for r in got})
        if proc.returncode != 0:
            missing = next((rid for rid, _ in mine if rid not in done), "?")
            pytest.fail(f"the edgequant process ended with {proc.returncode} at run {missing} "
                        f"({kinds.get(missing.split(':')[0])}): {err.decode()[-2000:]}")
    problems: dict[str, list[str]] = {}
    for rid, run in sorted(done.items()):
        problem = _problem(run)
        if problem is not None:
            problems.setdefault(problem, []).append(f"{rid} ({kinds[rid.split(':')[0]]})")
    assert not problems, "\n".join(f"{len(ids)}x {p}\n    e.g. {', '.join(ids[:3])}" for p, ids in problems.items())
    complete = {rid.split(":")[0] for rid in done if rid.endswith(":eval")} & \
        {rid.split(":")[0] for rid in done if rid.endswith(":quantize")}
    codes = {c: sum(1 for r in done.values() if r["code"] == c) for c in (0, 1, 2)}
    crashes = sum(1 for r in done.values() if "crashed LiteRT" in r["stderr"] or "hung LiteRT" in r["stderr"])
    print(f"fuzz: {len(complete)} mutants, {len(done)} runs, exit codes {codes}, LiteRT crashes survived {crashes}")
    assert len(complete) >= MIN_MUTANTS, f"only {len(complete)} mutants ran within {FUZZ_SECONDS:g} s"


def test_real_processes_survive_a_crashing_model(fuzz_models, small_data, tmp_path: Path) -> None:
    """The known crasher (one uint32 of a w4a8 model set to 0xFFFFFFFF) through the real CLI: exit 1, one line.

    A wild offset reads whatever memory it meets, so a mutant that always crashes in this process's workers
    may fail cleanly at prepare (exit 2) in the CLI's: the first few such mutants are tried, each must end in
    exit 1 or 2 with one line, and at least one must crash LiteRT through the CLI and be reported so."""
    crashed = 0
    for k, (_, data) in enumerate(itertools.islice(find_crashers(fuzz_models["w4a8"]), 4)):
        path = tmp_path / f"crasher{k}.tflite"
        path.write_bytes(data)
        for argv in (["eval", str(path), "--data", str(small_data["test"])],
                     ["run", str(path), "--input", str(small_data["test"]), "-o", str(tmp_path / f"out{k}.npz")]):
            proc = subprocess.run([sys.executable, "-m", "edgequant", *argv], capture_output=True, text=True,
                                  timeout=120, cwd=tmp_path)
            lines = proc.stderr.splitlines()
            assert proc.returncode in (1, 2) and len(lines) == 1, (argv[0], proc.returncode, proc.stderr)
            if proc.returncode == 1:
                assert "crashed LiteRT (SIGSEGV)" in lines[0], proc.stderr
                crashed += 1
        if crashed:
            break
    assert crashed, "expected a 0xFFFFFFFF word in the w4a8 model that crashes LiteRT through the CLI"
