"""How edgequant's int8 default chooses on real MobileNetV2, measured on development photos only.

    python -m benchmarks.real.int8_choices [--observers auto,minmax,...]

The decisions behind the int8 default (whether a default transform is kept, which observer,
the outputs' ranges) are checked here on DEV_PHOTOS: crops of photos that are neither
calibration photos nor the test photos the benchmarks report (benchmarks/real/pt2e.py).
For each observer int8 with no transform; with the auto observer also AdaRound, and the
default as it stands (which builds both and keeps the better on calibration samples);
figures against the float .tflite: top-1 agreement, top-5 overlap, output SQNR, and the share
of images whose top score is tied between classes (a coarse or clipped output range).
Writes benchmarks/results/int8-choices.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.real.pt2e import CALIBRATION_PHOTOS, DEV_PHOTOS, crops

RESULTS = Path(__file__).resolve().parents[1] / "results"
OBSERVERS = ("auto", "minmax", "mse", "percentile:99.99", "percentile:99.9", "ema-minmax")


def _scores(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    from edgequant.evaluate import fidelity

    top5, mine5 = np.argsort(-ref, 1)[:, :5], np.argsort(-out, 1)[:, :5]
    return {"top1_agreement": float((out.argmax(1) == ref.argmax(1)).mean()),
            "top5_overlap": float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(mine5, top5)])),
            "sqnr_db": float(fidelity(out, ref).sqnr_db),
            "tied_top": float(np.mean([(o == o.max()).sum() > 1 for o in out]))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.int8_choices", description=__doc__.split("\n")[0])
    p.add_argument("--observers", default=",".join(OBSERVERS))
    p.add_argument("--calibration-per-photo", type=int, default=16)
    p.add_argument("--dev-per-photo", type=int, default=8)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    import edgequant as eq
    from benchmarks.real.mobilenet_v2 import preprocess
    from edgequant.runtime import Runner

    started = time.time()
    floats = eq.convert(f"{Path(__file__).with_name('mobilenet_v2.py')}:build")
    calib = preprocess(crops(CALIBRATION_PHOTOS, args.calibration_per_photo, seed=1))
    dev = preprocess(crops(DEV_PHOTOS, args.dev_per_photo, seed=3))
    ref = Runner(floats.tflite, what="float").predict_output(dev)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "calib.npy", calib)
        for observer in args.observers.split(","):
            # AdaRound and the default (what a user gets without options) with the auto observer only: each
            # AdaRound run costs minutes on two cores.
            for transforms in ("none", "adaround", "default") if observer == "auto" else ("none",):
                t = time.time()
                q = eq.quantize(floats, "int8", calibration=Path(tmp) / "calib.npy", samples=len(calib),
                                observer=None if observer == "auto" else observer,
                                transforms=None if transforms == "default" else transforms)
                row = {"observer": observer, "transforms": transforms, "seconds": round(time.time() - t, 1),
                       "chose": q.recipe.observer and str(q.recipe.observer),
                       "kept_transforms": [str(getattr(n, "value", n)) for n in q.recipe.transforms],
                       **_scores(Runner(q.tflite, what="int8").predict_output(dev), ref)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    result = {"model": "MobileNetV2 (torchvision ImageNet weights)", "calibration_photos": CALIBRATION_PHOTOS,
              "dev_photos": DEV_PHOTOS, "calibration_images": len(calib), "dev_images": len(dev), "rows": rows,
              "seconds": round(time.time() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8-choices.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# int8 choices on real MobileNetV2, development photos", "",
             f"`python -m benchmarks.real.int8_choices`: {len(calib)} calibration crops of "
             f"{', '.join(CALIBRATION_PHOTOS)}; {len(dev)} development crops of {', '.join(DEV_PHOTOS)} (neither "
             "calibration nor reported test photos). Against the float .tflite.", "",
             "| observer | transforms | chose | kept | top-1 agreement | top-5 overlap | SQNR dB | tied top | s |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['observer']} | {r['transforms']} | {r['chose']} | {', '.join(r['kept_transforms']) or '-'}"
                     f" | {r['top1_agreement'] * 100:.1f}% | {r['top5_overlap'] * 100:.1f}% | {r['sqnr_db']:.1f} | "
                     f"{r['tied_top'] * 100:.1f}% | {r['seconds']:.0f} |")
    (args.out / "int8-choices.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
