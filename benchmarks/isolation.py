"""python -m benchmarks.isolation [--repeats N] [--runs N]: what running LiteRT in worker processes costs.

Times the demo's compare (the seed CNN trained as `edgequant demo` does, every scheme and engine,
100 latency runs) with LiteRT in worker processes (the default) and in this process
(EDGEQUANT_ISOLATE=0), side by side in one run, and prints the ratio. The order alternates
(in-process, isolated, isolated, in-process, ...) after one untimed warm-up compare, so import
caches and load bursts on a shared machine hit both alike. The goal is at most 1.15x.
Writes benchmarks/results/isolation.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from edgequant._util import atomic_dir_file

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(".bench-cache") / "isolation"
GOAL = 1.15


def _demo_inputs(cache: Path) -> tuple[Path, Path, Path]:
    """The demo's trained seed CNN and its data, trained once and kept in ``cache``."""
    from edgequant.train import split_digits, train_seed_cnn

    cache.mkdir(parents=True, exist_ok=True)
    model, data, calib = cache / "seed_cnn.keras", cache / "test.npz", cache / "calibration.npz"
    if not (model.exists() and data.exists() and calib.exists()):
        train, test = split_digits()
        train_seed_cnn(train, model, epochs=5)
        np.savez(data, x=test.x, y=test.y)
        np.savez(calib, x=train.x)
    return model, data, calib


def _compare_seconds(isolate: bool, model: Path, data: Path, calib: Path, runs: int) -> tuple[float, int]:
    import edgequant
    from edgequant.runtime import isolation
    from edgequant.runtime.worker import POOL

    POOL.shutdown()  # each timed compare starts without idle workers, as a fresh command would
    start = time.perf_counter()
    with isolation(isolate):
        result = edgequant.compare(model, data=data, calibration=calib, schemes="all", engines="all", runs=runs)
    return time.perf_counter() - start, len(result.variants)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.isolation", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=4, help="timed compares per mode (default 4)")
    p.add_argument("--runs", type=int, default=100, help="latency runs per variant, as the demo (default 100)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--cache", type=Path, default=CACHE)
    args = p.parse_args(argv)
    model, data, calib = _demo_inputs(args.cache)
    _compare_seconds(False, model, data, calib, args.runs)  # warm-up: imports, TensorFlow's first conversion
    times: dict[str, list[float]] = {"in-process": [], "isolated": []}
    variants = 0
    for k in range(args.repeats):
        order = (False, True) if k % 2 == 0 else (True, False)
        for isolate in order:
            seconds, variants = _compare_seconds(isolate, model, data, calib, args.runs)
            times["isolated" if isolate else "in-process"].append(seconds)
            print(f"  compare {'isolated' if isolate else 'in-process'}: {seconds:.2f} s", file=sys.stderr,
                  flush=True)
    median = {mode: statistics.median(t) for mode, t in times.items()}
    ratio = median["isolated"] / median["in-process"]
    result = {"what": "demo compare (seed CNN, all schemes and engines) with LiteRT isolated vs in-process",
              "runs": args.runs, "repeats": args.repeats, "variants": variants, "seconds": times,
              "median_seconds": median, "ratio": ratio, "goal": GOAL}
    lines = ["# LiteRT isolation: what worker processes cost", "",
             f"`python -m benchmarks.isolation --repeats {args.repeats} --runs {args.runs}`: the demo's compare "
             f"({variants} variants, {args.runs} latency runs each), wall time.", "",
             "| mode | median s | each run s |", "| --- | --- | --- |"]
    lines += [f"| {mode} | {median[mode]:.2f} | {', '.join(f'{t:.2f}' for t in times[mode])} |" for mode in times]
    lines += ["", f"Ratio isolated / in-process: **{ratio:.3f}x** (goal at most {GOAL}x).", ""]
    atomic_dir_file(args.out / "isolation.json", json.dumps(result, indent=1) + "\n")
    atomic_dir_file(args.out / "isolation.md", "\n".join(lines))
    print(f"demo compare wall time: in-process {median['in-process']:.2f} s, isolated {median['isolated']:.2f} s, "
          f"ratio {ratio:.3f}x (goal <= {GOAL}x); wrote {args.out / 'isolation.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
