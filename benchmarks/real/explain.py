"""What ``edgequant analyze`` says about a real model's edgequant cells (the issue's last goal).

For edgequant's int8 model: analyze's ``layer-error`` finding (the worst layer by local error, with its
cause in plain words). For every edgequant model measured at least 1.10x float's latency (compare's
tolerance): analyze's ``slow`` finding (the op that costs the most, and why). analyze runs on the dev
split (a few samples), times the model itself (so its slow verdict can differ from the benchmark's),
and skips the sensitivity runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.real.models import Split

SLOW = 1.10  # compare's tolerance for "slower than float"
SAMPLES = 8
RUNS = 10


def explain(cells: dict, built: dict[str, bytes], float_path: Path, dev: Split) -> dict:
    """{cell key: {"kinds": [...], "findings": [message, ...]}} for the cells analyzed, or an error."""
    import edgequant as eq

    data = {k: np.asarray(v[:SAMPLES]) for k, v in dev.inputs.items()}
    wanted = [k for k, r in cells.items() if not r.get("peer") and r.get("method") != "float" and k in built
              and (k == "edgequant int8" or (r.get("latency_ratio") or 0) >= SLOW)]
    out: dict = {}
    for key in wanted:
        try:
            analysis = eq.analyze(built[key], float_path, data, top_k=0, samples=SAMPLES, runs=RUNS)
        except Exception as exc:  # an analyze failure is a finding of its own
            out[key] = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"}
            continue
        keep = [f for f in analysis.findings if f.kind in ("layer-error", "slow", "speed", "slow-op")]
        out[key] = {"kinds": [f.kind for f in keep], "findings": [f.message for f in keep],
                    "latency_ratio": analysis.runtime.latency_ratio if analysis.runtime else None}
    return out
