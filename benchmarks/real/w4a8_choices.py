"""How edgequant's w4a8 default chooses on real MobileNetV2, measured on the development split only.

    python -m benchmarks.real.w4a8_choices [--targets all,20,25,30] [--calibration 16 --dev 32]

The benchmark's calibration and dev splits (benchmarks/real/data.py; the test split is never read here).
First where 4-bit weights lose: each CONV_2D / FULLY_CONNECTED layer alone rounded to 4 bits in the float model
(float activations), nearest rounding with the bound at max|w| and with the clipped bound recipe/w4.py uses;
output SQNR and top-1 agreement against the float .tflite on dev. Then whole models: int8's default (the
reference the goal compares with) and w4a8 with the plan's noise target (recipe/w4.py TARGET_DB; "all" gives
every layer 4 bits, as LiteRT Quantizer's w4a8 recipe does), each with edgequant's default transforms and with
none. Writes benchmarks/results/w4a8-choices.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _scores(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    from edgequant.evaluate import fidelity

    return {"top1_agreement": float((out.argmax(1) == ref.argmax(1)).mean()),
            "sqnr_db": float(fidelity(out, ref).sqnr_db)}


def _layers(fl: bytes, dev: np.ndarray, ref: np.ndarray) -> list[dict]:
    from edgequant.graph.edit import GraphEditor
    from edgequant.recipe.w4 import W4_OPS, clipped_weights
    from edgequant.runtime import Runner
    from edgequant.transforms.grid import fake_quantize

    ed = GraphEditor(fl)
    rows = []
    for op in ed.find_ops(*W4_OPS):
        w = ed.read_constant(op.inputs[1])
        row: dict = {"layer": op.label, "weights": int(w.size), "shape": list(w.shape)}
        for kind, values in (("max", fake_quantize(w, op.op, 4)), ("clipped", clipped_weights(w, op.op, 4))):
            one = GraphEditor(fl)
            one.write_constant(op.inputs[1], values)
            s = _scores(Runner(one.to_bytes(), what="float model").predict_output(dev), ref)
            row[f"{kind}_sqnr_db"], row[f"{kind}_top1"] = s["sqnr_db"], s["top1_agreement"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.w4a8_choices", description=__doc__.split("\n")[0])
    p.add_argument("--targets", default="all,20,25,30", help="plan noise targets in dB; 'all' = every layer 4-bit")
    p.add_argument("--calibration", type=int, default=16)
    p.add_argument("--dev", type=int, default=32)
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    import edgequant as eq
    from benchmarks.real.data import crops
    from benchmarks.real.mobilenet_v2 import preprocess
    from benchmarks.real.fetch import DEFAULT_CACHE
    from edgequant.recipe.w4 import plan_w4
    from edgequant.runtime import Runner

    started = time.time()
    # The benchmark's float model (python -m benchmarks.real --models mobilenet_v2 converts and caches it).
    model = DEFAULT_CACHE / "real" / "mobilenet_v2" / "float.tflite"
    fl = model.read_bytes()
    calib = preprocess(crops("calibration", args.calibration))
    dev = preprocess(crops("dev", args.dev))
    ref = Runner(fl, what="float").predict_output(dev)
    layers = [] if args.no_layers else _layers(fl, dev, ref)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "calib.npy"
        np.save(data, calib)
        variants: list[tuple[str, str | None]] = [("int8", None)] + [("w4a8", t) for t in args.targets.split(",")]
        for scheme, target in variants:
            recipe = None
            plan_note = ""
            if target is not None:
                plan = plan_w4(fl, calib, target_db=-300.0 if target == "all" else float(target))
                recipe = {"version": 2, "scheme": "w4a8",
                          "tensors": {n: {"precision": pr.value} for n, pr in plan.precisions.items()}}
                total = len(plan.four_bit) + len(plan.eight_bit) + len(plan.output_layers)
                plan_note = f"{len(plan.four_bit)} of {total} layers 4-bit ({100 * plan.weight_share:.0f}% of weights)"
            for transforms in ("default", "none"):
                t = time.time()
                q = eq.quantize(model, scheme, calibration=data, samples=len(calib), recipe=recipe,
                                transforms=None if transforms == "default" else transforms)
                row = {"scheme": scheme, "target_db": target, "plan": plan_note, "transforms": transforms,
                       "kept_transforms": [str(getattr(n, "value", n)) for n in q.recipe.transforms],
                       "observer": q.recipe.observer and str(q.recipe.observer), "mb": len(q.tflite) / 1e6,
                       "seconds": round(time.time() - t, 1),
                       **_scores(Runner(q.tflite, what=scheme).predict_output(dev), ref)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    result = {"model": "MobileNetV2 (torchvision ImageNet weights)", "calibration_images": len(calib),
              "dev_images": len(dev), "layers": layers, "rows": rows, "seconds": round(time.time() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "w4a8-choices.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# w4a8 choices on real MobileNetV2, development split", "",
             f"`python -m benchmarks.real.w4a8_choices`: {len(calib)} calibration and {len(dev)} development crops "
             "(benchmarks/real/data.py; the test split is not read). Figures against the float .tflite on dev.", "",
             "## Whole models", "",
             "| scheme | plan target dB | 4-bit layers | transforms asked | kept | observer | MB | top-1 agreement "
             "| SQNR dB | s |", "|---|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['scheme']} | {r['target_db'] or '-'} | {r['plan'] or '-'} | {r['transforms']} | "
                     f"{', '.join(r['kept_transforms']) or '-'} | {r['observer']} | {r['mb']:.2f} | "
                     f"{r['top1_agreement']:.3f} | {r['sqnr_db']:.1f} | {r['seconds']:.0f} |")
    if layers:
        lines += ["", "## One layer at 4 bits, float activations", "",
                  "Nearest rounding per output channel, bound max|w| (the engine's default) or clipped "
                  "(recipe/w4.py clipped_weights: the fraction of max|w| with the least weight error).", "",
                  "| layer | weight shape | SQNR dB, max | SQNR dB, clipped | top-1, max | top-1, clipped |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in layers:
            lines.append(f"| {r['layer']} | {'x'.join(map(str, r['shape']))} | {r['max_sqnr_db']:.1f} | "
                         f"{r['clipped_sqnr_db']:.1f} | {r['max_top1']:.3f} | {r['clipped_top1']:.3f} |")
    (args.out / "w4a8-choices.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
