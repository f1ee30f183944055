"""Where 8-bit AdaRound's activation ranges are read: the user's model or the rounded one (issue 17).

    python -m benchmarks.calibration_source [--models seed_cnn,...]

quantize reads the ranges of a model whose weights AdaRound moved only within their 8-bit rounding
from the user's float model, so one calibration pass serves the plan and the check without
AdaRound. This measures what that costs: int8 defaults through quantize, both ways, scored on
calibration samples quantize did not see (samples 200-399 of each zoo model's calibration split;
the test split is not used). Writes results/calibration-source.md and .json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ZOO = ("seed_cnn", "seed_mlp", "lenet", "mobilenet_like", "resnet_like", "lstm", "transformer", "outlier_mlp")


def _rounded_model_ranges() -> Any:
    """AdaRound as if it moved activations: quantize then calibrates the rounded model (the earlier behaviour)."""
    import dataclasses

    from edgequant.transforms.adaround import AdaRound

    apply = AdaRound.apply

    def patched(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return dataclasses.replace(apply(self, *args, **kwargs), activations_kept=False)

    return apply, patched


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.calibration_source", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(ZOO))
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    import edgequant
    from benchmarks import zoo
    from benchmarks.real import write_results
    from edgequant.evaluate import fidelity_by_output, worst_output
    from edgequant.runtime import Runner
    from edgequant.transforms.adaround import AdaRound

    rows = []
    apply, patched = _rounded_model_ranges()
    for name in args.models.split(","):
        zm = zoo.load(name)
        with np.load(zm.calibration_path) as c:
            cal, held = c["x"][:200], c["x"][200:400]
        floats = edgequant.convert(zm.keras_path)
        ref = Runner(floats.tflite).predict(held)
        row: dict[str, Any] = {"model": name, "held_out": len(held)}
        for label in ("user's model", "rounded model"):
            AdaRound.apply = patched if label == "rounded model" else apply  # type: ignore[method-assign]
            try:
                q = edgequant.quantize(floats, "int8", calibration=cal)
            finally:
                AdaRound.apply = apply  # type: ignore[method-assign]
            row[label] = round(worst_output(fidelity_by_output(Runner(q.tflite).predict(held), ref))[1].sqnr_db, 2)
            row[f"{label} transforms"] = [str(getattr(n, "value", n)) for n in q.recipe.transforms]
        row["difference_db"] = round(row["user's model"] - row["rounded model"], 2)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    result = {"command": "python -m benchmarks.calibration_source " + " ".join(argv or sys.argv[1:]), "rows": rows}
    write_results(args.out, "calibration-source", result, _markdown)
    return 0


def _markdown(result: dict[str, Any]) -> str:
    lines = ["# 8-bit AdaRound: activation ranges from the user's model or the rounded one", "",
             f"`{result['command'].strip()}`: int8 defaults through quantize (200 calibration samples), output SQNR "
             "(worst output) against float on 200 other calibration samples; the test split is not used.", "",
             "| model | ranges from the user's model dB | from the rounded model dB | difference dB | AdaRound kept |",
             "|---|---:|---:|---:|---|"]
    for r in result["rows"]:
        kept = "/".join("yes" if r[f"{k} transforms"] else "no" for k in ("user's model", "rounded model"))
        lines.append(f"| {r['model']} | {r['user' + chr(39) + 's model']} | {r['rounded model']} | "
                     f"{r['difference_db']:+.2f} | {kept} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
