"""Scale: edgequant's int8 defaults against TFLiteConverter on real-size models, and how cost grows.

    python -m benchmarks.scale [--quick] [--out DIR]

Every measurement is a whole process run under ``/usr/bin/time`` (wall seconds, peak RSS), the two
tools in turn on the same model and the same samples, so ratios hold when the shared machine's speed
drifts. Models are Keras ``MobileNetV2(weights=None)`` (random init: fine for time and memory, not for
accuracy); samples are seeded noise. Quality is measured where it means something: the digit zoo's
held-out SQNR of int8 and w4a8 with no AdaRound, full AdaRound (``rows=None``: every row, one pass pair
per layer, all steps) and the fast default. Writes results/scale.md and scale.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# (name, alpha, input size, classes): about 0.4 M, 1.4 M and 3.5 M parameters.
MODELS = (("mnv2-0.35-96", 0.35, 96, 10), ("mnv2-0.75-160", 0.75, 160, 100), ("mnv2-1.0-224", 1.0, 224, 1000))

_BUILD = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
keras.utils.set_random_seed(0)
alpha, size, classes = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
m = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None, classes=classes)
m.save(sys.argv[1])
print(m.count_params())
"""

_CONVERTER = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras, tensorflow as tf
m = keras.models.load_model(sys.argv[1])
x = np.load(sys.argv[2])
conv = tf.lite.TFLiteConverter.from_keras_model(m)
conv.optimizations = [tf.lite.Optimize.DEFAULT]
conv.representative_dataset = lambda: ([x[i:i + 1].astype(np.float32)] for i in range(len(x)))
conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
open(sys.argv[3], "wb").write(conv.convert())
"""


def _timed(cmd: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS (MB) of one whole process, from GNU time."""
    out = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M"] + cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {out.stderr[-2000:]}")
    line = [ln for ln in out.stderr.splitlines() if ln.startswith("TIME ")][-1]
    seconds, kb = line.split()[1:]
    return {"seconds": round(float(seconds), 1), "peak_rss_mb": round(int(kb) / 1024)}


def _model(tmp: Path, name: str, alpha: float, size: int, classes: int) -> tuple[Path, int]:
    path = tmp / f"{name}.keras"
    out = subprocess.run([sys.executable, "-c", _BUILD, str(path), str(alpha), str(size), str(classes)],
                         capture_output=True, text=True, check=True)
    return path, int(out.stdout.strip().splitlines()[-1])


def _samples(tmp: Path, size: int, n: int) -> Path:
    path = tmp / f"x{size}_{n}.npy"
    if not path.exists():
        x = np.lib.format.open_memmap(path, "w+", np.float32, (n, size, size, 3))
        rng = np.random.default_rng(0)
        for i in range(0, n, 50):  # written in chunks: 1,000 samples of 224x224 are 600 MB
            x[i:i + 50] = rng.uniform(-1, 1, (min(50, n - i), size, size, 3)).astype(np.float32)
        x.flush()
        del x
    return path


def _edgequant(model: Path, x: Path, out: Path, n: int) -> dict[str, float]:
    return _timed([str(BIN / "edgequant"), "quantize", str(model), "--scheme", "int8", "--calibration", str(x),
                   "--samples", str(n), "--no-registry", "-o", str(out)])


def _converter(model: Path, x: Path, out: Path) -> dict[str, float]:
    return _timed([sys.executable, "-c", _CONVERTER, str(model), str(x), str(out)])


def zoo_quality(models: list[str], schemes: list[str]) -> list[dict[str, Any]]:
    """Held-out SQNR (dB) of no AdaRound, full AdaRound and the fast default, same observer (mse)."""
    import time

    import edgequant
    from benchmarks import zoo
    from edgequant.evaluate import fidelity
    from edgequant.frontends import inspect_float_tflite
    from edgequant.runtime import Runner
    from edgequant.transforms.adaround import ROWS, AdaRound
    from edgequant.transforms.grid import litert_op_bits
    from edgequant.types import SourceKind

    rows = []
    for name in models:
        zm = zoo.load(name)
        with np.load(zm.test_path) as t, np.load(zm.calibration_path) as c:
            cal, test = c["x"][:200], t["x"]
        tflite = edgequant.convert(zm.keras_path).tflite
        reference = Runner(tflite).predict_output(test)
        for scheme in schemes:
            row: dict[str, Any] = {"model": name, "scheme": scheme}
            for variant, setting in (("none", 0), ("full", None), ("fast", ROWS)):
                start = time.perf_counter()
                model = tflite
                if variant != "none":
                    bits, op_bits = litert_op_bits(scheme)
                    model = AdaRound().apply(tflite, {"x": cal}, bits, op_bits=op_bits, rows=setting).tflite
                row[f"{variant}_s"] = round(time.perf_counter() - start, 1)
                fm = inspect_float_tflite(model, Path("m.tflite"), SourceKind.TFLITE)
                q = edgequant.quantize(fm, scheme, engine="litert", calibration=cal, transforms="none",
                                       observer="mse").tflite
                row[f"{variant}_db"] = round(fidelity(Runner(q).predict_output(test), reference).sqnr_db, 2)
            row["fast_minus_full_db"] = round(row["fast_db"] - row["full_db"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Scale: int8 defaults against TFLiteConverter", "",
             f"Command: `{result['command']}`. Whole processes under /usr/bin/time on a shared 2-core machine: "
             "read the ratios, not the absolute times. Models: Keras MobileNetV2(weights=None), random init; "
             "samples: seeded noise.", "",
             "## MobileNetV2-224, 200 samples", "",
             "| tool | wall s | peak RSS MB |", "|---|---|---|"]
    h = result["headline"]
    lines += [f"| edgequant quantize --scheme int8 (defaults) | {h['edgequant']['seconds']} | "
              f"{h['edgequant']['peak_rss_mb']} |",
              f"| TFLiteConverter int8 | {h['converter']['seconds']} | {h['converter']['peak_rss_mb']} |",
              f"| ratio edgequant / converter | {h['time_ratio']} | {h['rss_ratio']} |", "",
              "Before this change (issue 17, same machine): edgequant 15 min 44 s and 9.5 GB; converter 1 min 05 s, "
              "1.2 GB.", ""]
    if result.get("growth"):
        lines += ["## Cost growth (edgequant quantize int8 defaults)", "",
                  "| model | params | samples | wall s | peak RSS MB |", "|---|---|---|---|---|"]
        lines += [f"| {g['model']} | {g['params']:,} | {g['samples']} | {g['seconds']} | {g['peak_rss_mb']} |"
                  for g in result["growth"]]
        lines.append("")
    if result.get("zoo"):
        lines += ["## Quality: held-out SQNR (dB) on the digit zoo, observer mse", "",
                  "| model | scheme | no AdaRound | full AdaRound | fast default | fast - full | full s | fast s |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {z['model']} | {z['scheme']} | {z['none_db']} | {z['full_db']} | {z['fast_db']} | "
                  f"{z['fast_minus_full_db']:+} | {z['full_s']} | {z['fast_s']} |" for z in result["zoo"]]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    p.add_argument("--quick", action="store_true", help="headline only, zoo quality on three models")
    p.add_argument("--skip-zoo", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    result: dict[str, Any] = {"command": "python -m benchmarks.scale " + " ".join(argv or sys.argv[1:])}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        built = {name: _model(tmp, name, a, s, c) + (s,) for name, a, s, c in MODELS}
        big, _, size = built["mnv2-1.0-224"]
        x200 = _samples(tmp, size, 200)
        eq = _edgequant(big, x200, tmp / "eq.tflite", 200)
        cv = _converter(big, x200, tmp / "cv.tflite")
        result["headline"] = {"edgequant": eq, "converter": cv,
                              "time_ratio": round(eq["seconds"] / cv["seconds"], 2),
                              "rss_ratio": round(eq["peak_rss_mb"] / cv["peak_rss_mb"], 2)}
        print(json.dumps(result["headline"]), flush=True)
        growth = []
        if not args.quick:
            for name, (path, params, s) in built.items():
                for n in ((50, 200, 1000) if name == "mnv2-0.35-96" else (200,)):
                    row = eq if (name == "mnv2-1.0-224" and n == 200) else \
                        _edgequant(path, _samples(tmp, s, n), tmp / "g.tflite", n)
                    growth.append({"model": name, "params": params, "samples": n, **row})
                    print(json.dumps(growth[-1]), flush=True)
        result["growth"] = growth
    if not args.skip_zoo:
        models = ["seed_cnn", "mobilenet_like", "resnet_like"] if args.quick else \
            ["seed_cnn", "seed_mlp", "lenet", "mobilenet_like", "resnet_like", "lstm", "transformer", "outlier_mlp"]
        result["zoo"] = zoo_quality(models, ["int8", "w4a8"])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "scale-quick" if args.quick else "scale"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
