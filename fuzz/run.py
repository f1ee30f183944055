"""make fuzz MINUTES=30: a coverage-guided campaign (atheris, libFuzzer) on .tflite files through eval and quantize.

Each input is written as a model file and run through `edgequant eval` and `edgequant quantize`
(in this process, edgequant's Python instrumented for coverage; LiteRT runs in its worker processes
as always). An input is a crasher when a run ends other than with exit 0, 1 or 2 and at most one
stderr line, raises out of the CLI, or kills this process: libFuzzer saves it under fuzz/crashers/
and this script starts the campaign again until the minutes are used. The seed corpus is the fuzz
test's mutants (tests/mutants.py) of small float, int8 and w4a8 models, built once into
fuzz/corpus/. Prints the counts at the end (runs, new coverage, crashers).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS, CRASHERS, WORK = HERE / "corpus", HERE / "crashers", HERE / ".work"


class Finding(Exception):
    """A run broke the CLI's contract: libFuzzer records the input as a crasher."""


def seed_corpus(count: int = 120) -> None:
    """Small float, int8 and w4a8 models and their seeded mutants (tests/mutants.py) as the starting corpus."""
    import numpy as np

    import edgequant
    from edgequant.train import split_digits, train_seed_cnn

    sys.path.insert(0, str(ROOT / "tests"))
    from mutants import mutants

    WORK.mkdir(parents=True, exist_ok=True)
    CORPUS.mkdir(parents=True, exist_ok=True)
    train, test = split_digits()
    np.savez(WORK / "test.npz", x=test.x[:8], y=test.y[:8])
    np.savez(WORK / "calib.npz", x=train.x[:8])
    if any(CORPUS.iterdir()):
        return
    keras = train_seed_cnn(train, WORK / "cnn.keras", epochs=1)
    models = {"float": edgequant.convert(keras, WORK / "float.tflite").tflite}
    for scheme in ("int8", "w4a8"):
        models[scheme] = edgequant.quantize(WORK / "float.tflite", scheme, "litert", calibration=WORK / "calib.npz",
                                            transforms="none").tflite
    for name, data in models.items():
        (CORPUS / f"{name}.tflite").write_bytes(data)
    for k, (name, kind, data) in enumerate(mutants(models, count, seed=30)):
        (CORPUS / f"m{k:03d}-{name}-{kind}.tflite").write_bytes(data)


def _child() -> None:
    import atheris

    with atheris.instrument_imports(include=["edgequant"]):
        from edgequant.cli import main as cli

    model = Path(tempfile.mkdtemp(prefix="edgequant-fuzz-")) / "input.tflite"
    commands = [["eval", str(model), "--data", str(WORK / "test.npz"), "--runs", "1"],
                ["quantize", str(model), "--scheme", "int8", "--calibration", str(WORK / "calib.npz"), "--samples",
                 "8", "--transforms", "none", "-o", str(model.with_name("q.tflite")), "--no-registry"]]

    def one_input(data: bytes) -> None:
        model.write_bytes(data)
        for argv in commands:
            err, saved = io.StringIO(), sys.stderr
            sys.stderr = err
            try:
                code = cli(argv)
            except SystemExit as exc:
                code = exc.code
            finally:
                sys.stderr = saved
            lines = err.getvalue().splitlines()
            if code not in (0, 1, 2) or len(lines) > 1:
                raise Finding(f"{argv[0]}: exit {code}, {len(lines)} stderr lines: {' | '.join(lines[:4])[:500]}")

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


def main() -> int:
    p = argparse.ArgumentParser(prog="python fuzz/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    args = p.parse_args()
    seed_corpus()
    CRASHERS.mkdir(parents=True, exist_ok=True)
    end = time.time() + args.minutes * 60
    env = {**os.environ, "EDGEQUANT_REGISTRY": str(WORK / "registry.sqlite3")}
    runs = rounds = 0
    coverage = "?"
    while (left := int(end - time.time())) > 5:
        rounds += 1
        # libFuzzer stops at the first crasher; each round goes on from the corpus it grew.
        proc = subprocess.run([sys.executable, __file__, "--child", str(CORPUS), f"-max_total_time={left}",
                               "-timeout=120", "-rss_limit_mb=6144", f"-artifact_prefix={CRASHERS}/",
                               "-print_final_stats=1"], env=env, capture_output=True, text=True, cwd=ROOT)
        out = proc.stderr
        done = re.findall(r"stat::number_of_executed_units:\s*(\d+)", out)
        runs += int(done[-1]) if done else 0
        cov = re.findall(r"cov: (\d+)", out)
        coverage = cov[-1] if cov else coverage
        (WORK / f"round{rounds}.log").write_text(out[-200000:])
        if proc.returncode != 0:
            print(f"round {rounds}: libFuzzer ended with {proc.returncode}: "
                  f"{next((ln for ln in out.splitlines() if 'Finding' in ln or 'ERROR' in ln), '')[:300]}")
    crashers = sorted(CRASHERS.glob("crash-*")) + sorted(CRASHERS.glob("timeout-*")) + sorted(CRASHERS.glob("oom-*"))
    print(f"fuzz: {args.minutes:g} min, {runs} inputs run, coverage {coverage} edges, {rounds} round(s), "
          f"{len(list(CORPUS.iterdir()))} corpus files, {len(crashers)} crasher(s) in {CRASHERS}")
    return 1 if crashers else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child()
    else:
        sys.exit(main())
