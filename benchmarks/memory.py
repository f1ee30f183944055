"""Peak memory of edgequant's calibration pass, per zoo model, in a fresh process.

tracemalloc cannot see LiteRT's C++ allocations, so each measurement runs in
its own subprocess that imports no TensorFlow, reads the float .tflite and the
samples from disk, calibrates, and reports its own peak resident set size
(VmHWM). The baseline (same process, same imports, no calibration) is
measured the same way, so the difference is what calibration itself costs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["calibration_memory", "SAMPLES"]

SAMPLES = 1000

_CHILD = r"""
import json, sys, time
import numpy as np
from edgequant.calibrate import collect_stats
tflite = open(sys.argv[1], "rb").read()
x = np.load(sys.argv[2])
start = time.perf_counter()
n = 0
if sys.argv[3] == "run":
    stats = collect_stats(tflite, x)
    n = len(stats.tensors)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child of a
# 1 GB benchmark process would report 1 GB whatever it did; VmHWM starts anew at exec.
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": hwm_kb / 1024,
                  "seconds": time.perf_counter() - start, "tensors": n}))
"""


def _child(tflite: Path, x: Path, mode: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tflite), str(x), mode], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def calibration_memory(models: list[str], cache: Path) -> list[dict[str, Any]]:
    """For each model: peak RSS of calibrating on SAMPLES samples, and of the same process without it."""
    import edgequant
    from benchmarks import zoo

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            zm = zoo.load(name, cache)
            with np.load(zm.calibration_path) as c, np.load(zm.test_path) as t:
                pool = np.concatenate([c["x"], t["x"]]).astype(np.float32)
            # The zoo keeps at most 500 calibration samples; repeat the pool to reach SAMPLES.
            x = np.resize(pool, (SAMPLES,) + pool.shape[1:])
            tfl, xs = Path(tmp) / f"{name}.tflite", Path(tmp) / f"{name}.npy"
            tfl.write_bytes(edgequant.convert(zm.keras_path).tflite)
            np.save(xs, x)
            base, run = _child(tfl, xs, "baseline"), _child(tfl, xs, "run")
            rows.append({"model": name, "samples": SAMPLES, "tensors": run["tensors"],
                         "peak_rss_mb": round(run["peak_rss_mb"], 1),
                         "baseline_rss_mb": round(base["peak_rss_mb"], 1),
                         "calibration_mb": round(run["peak_rss_mb"] - base["peak_rss_mb"], 1),
                         "seconds": round(run["seconds"], 2)})
    return rows
