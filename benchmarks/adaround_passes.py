"""AdaRound's sampled path: one pass pair per layer against one float pass (PASS_BUDGET in transforms/adaround.py).

    python -m benchmarks.adaround_passes [--models seed_cnn,...] [--iterations 300]

The sampled path (a model too large for the full setting) learns its 8-bit layers from one pass of the float
model, which saves passes on real-size models. Where the passes are cheap it goes one layer at a time from
the rounded model's inputs instead. This measures that choice on the digit zoo, where both are cheap: int8
AdaRound at the transform (every weighted layer, no gate), sampled rows forced (``full_rows=0``), quantized
with the litert engine and the mse observer. Output SQNR against float on calibration samples 200-499 of each
zoo model (AdaRound and the observer see samples 0-199; the test split is not used), next to full AdaRound
(every row). Writes results/adaround-passes.md and .json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ZOO = ("seed_cnn", "lenet", "mobilenet_like", "resnet_like", "lstm", "transformer")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.adaround_passes", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(ZOO))
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    import edgequant
    from benchmarks import zoo
    from benchmarks.real import write_results
    from edgequant.evaluate import fidelity
    from edgequant.frontends import inspect_float_tflite
    from edgequant.runtime import Runner
    from edgequant.transforms import adaround, get_transform
    from edgequant.transforms.grid import litert_op_bits
    from edgequant.types import SourceKind

    bits, op_bits = litert_op_bits("int8")
    budget = adaround.PASS_BUDGET
    rows = []
    for name in args.models.split(","):
        zm = zoo.load(name)
        with np.load(zm.calibration_path) as c:
            cal, held = c["x"][:200], c["x"][200:500]
        tflite = edgequant.convert(zm.keras_path).tflite
        reference = Runner(tflite).predict_output(held)
        row: dict[str, Any] = {"model": name, "held_out": len(held)}
        # (label, rows, pass budget): None rows is full AdaRound; budget 0 forces the one float pass.
        for label, sampled_rows, pass_budget in (("full", None, budget), ("layer by layer", adaround.ROWS, budget),
                                                 ("one float pass", adaround.ROWS, 0.0)):
            adaround.PASS_BUDGET = pass_budget
            try:
                result = get_transform("adaround").apply(tflite, cal, bits, op_bits=op_bits,
                                                         iterations=args.iterations, rows=sampled_rows, full_rows=0)
            finally:
                adaround.PASS_BUDGET = budget
            fm = inspect_float_tflite(result.tflite, Path("m.tflite"), SourceKind.TFLITE)
            q = edgequant.quantize(fm, "int8", engine="litert", calibration=cal, transforms="none", observer="mse")
            row[label] = round(fidelity(Runner(q.tflite).predict_output(held), reference).sqnr_db, 2)
            row[f"{label} passes"] = int(result.metrics["passes"])
        row["gain_db"] = round(row["layer by layer"] - row["one float pass"], 2)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    result = {"command": "python -m benchmarks.adaround_passes " + " ".join(argv or sys.argv[1:]),
              "iterations": args.iterations, "rows": rows}
    write_results(args.out, "adaround-passes", result, _markdown)
    return 0


def _markdown(result: dict[str, Any]) -> str:
    lines = ["# AdaRound's sampled path: layer by layer or one float pass", "",
             f"`{result['command'].strip()}`: int8 AdaRound ({result['iterations']} steps, no gate) with sampled "
             "rows, then litert with the mse observer (200 calibration samples); output SQNR in dB against float on "
             "calibration samples 200-499, which neither step saw. The test split is not used.", "",
             "| model | full AdaRound | sampled, layer by layer | sampled, one float pass | layer by layer gains |",
             "|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['full']} | {r['layer by layer']} ({r['layer by layer passes']} passes) | "
                     f"{r['one float pass']} ({r['one float pass passes']} pass) | {r['gain_db']:+.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
