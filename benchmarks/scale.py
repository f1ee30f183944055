"""Scale (issue 17): edgequant on real-size models against TFLiteConverter, side by side, and how cost grows.

    python -m benchmarks.scale [--quick] [--skip-zoo] [--skip-real] [--skip-tune] [--real-full] [--out DIR]

Every timing is a whole process under ``/usr/bin/time`` (wall seconds, peak RSS of the process tree's
largest member), edgequant and the converter in turn (A B A B) on the same model and samples, so the
ratios hold when the shared machine's speed drifts. Speed models are Keras ``MobileNetV2(weights=None)``
(random init: fine for time and memory, not for accuracy); samples are seeded noise. Quality is measured
where it means something, each time next to the full-quality setting so any trade is visible: the digit
zoo's held-out SQNR of int8 and w4a8 with no AdaRound, full AdaRound (every row, one pass pair per layer,
all steps, every layer) and the default; and real MobileNetV2 (torchvision's ImageNet weights) on photo
crops, calibrated on crops of other photos (``--real-full`` adds full AdaRound there: about a quarter of
an hour). Every goal is printed as met or not met. Writes results/scale.md and scale.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent

# The goals, each checked below against a ratio or a limit measured in the same run.
GOALS = {"time_ratio": 1.5, "peak_rss_mb": 2048, "compare_ratio": 3.0, "tune_seconds": 630.0, "sqnr_loss_db": 0.5}

# (name, alpha, input size, classes): about 0.4 M, 1.5 M and 3.5 M parameters.
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
scheme = sys.argv[4] if len(sys.argv) > 4 else "int8"
conv = tf.lite.TFLiteConverter.from_keras_model(m)
conv.optimizations = [tf.lite.Optimize.DEFAULT]
if scheme == "fp16":
    conv.target_spec.supported_types = [tf.float16]
elif scheme in ("int8", "int16x8"):
    conv.representative_dataset = lambda: ([x[i:i + 1].astype(np.float32)] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if scheme == "int8" else
                                      tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
open(sys.argv[3], "wb").write(conv.convert())
"""


def _timed(cmd: list[str]) -> dict[str, Any]:
    """Wall seconds and peak RSS (MB) of one whole process, from GNU time."""
    out = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M"] + cmd, capture_output=True, text=True)
    line = [ln for ln in out.stderr.splitlines() if ln.startswith("TIME ")][-1]
    seconds, kb = line.split()[1:]
    result: dict[str, Any] = {"seconds": round(float(seconds), 1), "peak_rss_mb": round(int(kb) / 1024),
                              "exit": out.returncode}
    if out.returncode not in (0, 1):  # 1 is a failed check (tune short of its budget): still a timing
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {out.stderr[-2000:]}")
    return result


def _model(tmp: Path, name: str, alpha: float, size: int, classes: int) -> tuple[Path, int]:
    path = tmp / f"{name}.keras"
    out = subprocess.run([sys.executable, "-c", _BUILD, str(path), str(alpha), str(size), str(classes)],
                         capture_output=True, text=True, check=True)
    return path, int(out.stdout.strip().splitlines()[-1])


def _samples(tmp: Path, size: int, n: int, seed: int = 0) -> Path:
    path = tmp / f"x{size}_{n}_{seed}.npy"
    if not path.exists():
        x = np.lib.format.open_memmap(path, "w+", np.float32, (n, size, size, 3))
        rng = np.random.default_rng(seed)
        for i in range(0, n, 50):  # written in chunks: 1,000 samples of 224x224 are 600 MB
            x[i:i + 50] = rng.uniform(-1, 1, (min(50, n - i), size, size, 3)).astype(np.float32)
        x.flush()
        del x
    return path


def _edgequant(model: Path, x: Path, out: Path, n: int) -> dict[str, Any]:
    return _timed([str(BIN / "edgequant"), "quantize", str(model), "--scheme", "int8", "--calibration", str(x),
                   "--samples", str(n), "--no-registry", "-o", str(out)])


def _converter(model: Path, x: Path, out: Path, scheme: str = "int8") -> dict[str, Any]:
    return _timed([sys.executable, "-c", _CONVERTER, str(model), str(x), str(out), scheme])


# The schemes TensorFlow's converter builds (compare's tflite-converter engine): the compare goal is
# against the converter's time for these.
CONVERTER_SCHEMES = ("fp16", "dynamic", "int8", "int16x8")


def headline(model: Path, x: Path, tmp: Path, rounds: int) -> dict[str, Any]:
    """quantize int8 defaults and the converter in turn, ``rounds`` times; ratios per round and their mean."""
    runs = []
    for _ in range(rounds):
        eq = _edgequant(model, x, tmp / "eq.tflite", 200)
        cv = _converter(model, x, tmp / "cv.tflite")
        runs.append({"edgequant": eq, "converter": cv, "time_ratio": round(eq["seconds"] / cv["seconds"], 2)})
        print(json.dumps(runs[-1]), flush=True)
    ratio = round(float(np.mean([r["time_ratio"] for r in runs])), 2)
    rss = max(r["edgequant"]["peak_rss_mb"] for r in runs)
    return {"runs": runs, "time_ratio": ratio, "peak_rss_mb": rss,
            "converter_seconds": round(float(np.mean([r["converter"]["seconds"] for r in runs])), 1),
            "time_met": ratio <= GOALS["time_ratio"], "rss_met": rss <= GOALS["peak_rss_mb"]}


def compare_all(model: Path, x: Path, data: Path, tmp: Path, converter_seconds: float) -> dict[str, Any]:
    """``edgequant compare --schemes all`` against the converter building each of its own schemes, run next to
    it (the goal's denominator), and against one converter int8 run of the headline."""
    out = tmp / "compare"
    timing = _timed([str(BIN / "edgequant"), "compare", str(model), "--data", str(data), "--calibration", str(x),
                     "--samples", "200", "--schemes", "all", "--runs", "10", "--out", str(out), "--no-report",
                     "--no-registry"])
    print(json.dumps({"compare": timing}), flush=True)
    converter = {scheme: _converter(model, x, tmp / f"cv-{scheme}.tflite", scheme)["seconds"]
                 for scheme in CONVERTER_SCHEMES}
    print(json.dumps({"converter": converter}), flush=True)
    built, failed, seconds = [], [], {}
    report = out / "compare.json"
    if report.is_file():
        for row in json.loads(report.read_text()).get("variants", []):
            name = f"{row.get('scheme')}/{row.get('engine')}"
            (failed if row.get("error") else built).append(name)
            if row.get("quantize_seconds") is not None:
                seconds[name] = round(float(row["quantize_seconds"]), 1)
    converter_total = round(sum(converter.values()), 1)
    ratio = round(timing["seconds"] / converter_total, 2)
    return {**timing, "built": built, "failed": failed, "quantize_seconds": seconds, "ratio": ratio,
            "converter_seconds": converter, "converter_total": converter_total,
            "ratio_one_int8_run": round(timing["seconds"] / converter_seconds, 2),
            "met": ratio <= GOALS["compare_ratio"]}


def tune_budget(model: Path, x: Path, data: Path, tmp: Path) -> dict[str, Any]:
    """``tune --time-budget 10m``: wall time of the whole process, and whether a model within budget is on disk."""
    out = tmp / "tune"
    timing = _timed([str(BIN / "edgequant"), "tune", str(model), "--data", str(data), "--calibration", str(x),
                     "--metric", "sqnr", "--max-drop", "20", "--time-budget", "10m", "--runs", "10", "--out",
                     str(out), "--no-report", "--no-registry"])
    best = out / "best.json"
    within = False
    if best.is_file() and (out / "best.tflite").is_file():
        info = json.loads(best.read_text())
        within = bool(info.get("met"))
    return {**timing, "model_on_disk": (out / "best.tflite").is_file(), "within_budget": within,
            "met": timing["seconds"] <= GOALS["tune_seconds"] and within}


def growth(built: dict[str, tuple[Path, int, int]], tmp: Path, headline_run: dict[str, Any]) -> list[dict[str, Any]]:
    """quantize int8 defaults against samples (50, 200, 1000; smallest model) and model size (200 samples)."""
    rows = []
    for name, (path, params, size) in built.items():
        for n in ((50, 200, 1000) if name == "mnv2-0.35-96" else (200,)):
            row = headline_run if (name == "mnv2-1.0-224" and n == 200) else \
                _edgequant(path, _samples(tmp, size, n), tmp / "g.tflite", n)
            rows.append({"model": name, "params": params, "samples": n, "seconds": row["seconds"],
                         "peak_rss_mb": row["peak_rss_mb"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _default_adaround(tflite: bytes, cal: np.ndarray, scheme: str) -> bytes:
    from edgequant.transforms import get_transform
    from edgequant.types import Scheme

    return get_transform("adaround").apply_for(tflite, cal, Scheme(scheme)).tflite


def _full_adaround(tflite: bytes, cal: np.ndarray, scheme: str) -> bytes:
    from edgequant.transforms import get_transform
    from edgequant.transforms.grid import litert_op_bits

    bits, op_bits = litert_op_bits(scheme)
    return get_transform("adaround").apply(tflite, cal, bits, op_bits=op_bits, rows=None).tflite


def _quality(tflite: bytes, cal: np.ndarray, test: np.ndarray, scheme: str, variants: tuple[str, ...],
             row: dict[str, Any]) -> None:
    """Held-out SQNR (dB) and AdaRound seconds of each variant, quantized the same way (litert, observer mse)."""
    import edgequant
    from edgequant.evaluate import fidelity
    from edgequant.frontends import inspect_float_tflite
    from edgequant.runtime import Runner
    from edgequant.types import SourceKind

    reference = Runner(tflite).predict_output(test)
    make = {"none": lambda: tflite, "full": lambda: _full_adaround(tflite, cal, scheme),
            "default": lambda: _default_adaround(tflite, cal, scheme)}
    for variant in variants:
        start = time.perf_counter()
        model = make[variant]()
        row[f"{variant}_s"] = round(time.perf_counter() - start, 1)
        fm = inspect_float_tflite(model, Path("m.tflite"), SourceKind.TFLITE)
        q = edgequant.quantize(fm, scheme, engine="litert", calibration=cal, transforms="none", observer="mse").tflite
        out = Runner(q).predict_output(test)
        row[f"{variant}_db"] = round(fidelity(out, reference).sqnr_db, 2)
        row[f"{variant}_top1_agree"] = round(float((out.argmax(-1) == reference.argmax(-1)).mean()), 4)
    if "full_db" in row:
        row["default_minus_full_db"] = round(row["default_db"] - row["full_db"], 2)
        row["met"] = row["default_minus_full_db"] >= -GOALS["sqnr_loss_db"]
    print(json.dumps(row), flush=True)


def zoo_quality(models: list[str], schemes: list[str]) -> list[dict[str, Any]]:
    import edgequant
    from benchmarks import zoo

    rows = []
    for name in models:
        zm = zoo.load(name)
        with np.load(zm.test_path) as t, np.load(zm.calibration_path) as c:
            cal, test = c["x"][:200], t["x"]
        tflite = edgequant.convert(zm.keras_path).tflite
        for scheme in schemes:
            row: dict[str, Any] = {"model": name, "scheme": scheme}
            _quality(tflite, cal, test, scheme, ("none", "full", "default"), row)
            rows.append(row)
    return rows


def real_quality(full: bool) -> dict[str, Any]:
    """Real MobileNetV2 int8: the pt2e benchmark's photos (calibration and test crops of different photos)."""
    import edgequant
    from benchmarks.real.mobilenet_v2 import preprocess
    from benchmarks.real.pt2e import CALIBRATION_PHOTOS, TEST_PHOTOS, crops

    spec = f"{Path(__file__).resolve().parent / 'real' / 'mobilenet_v2.py'}:build"
    tflite = edgequant.convert(spec).tflite
    cal = preprocess(crops(CALIBRATION_PHOTOS, 16, seed=1))
    test = preprocess(crops(TEST_PHOTOS, 12, seed=2))
    row: dict[str, Any] = {"model": "MobileNetV2 (ImageNet weights)", "scheme": "int8", "calibration": len(cal),
                           "test": len(test)}
    _quality(tflite, cal, test, "int8", ("none", "full", "default") if full else ("none", "default"), row)
    return row


def _mark(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT met")


def markdown(result: dict[str, Any]) -> str:
    h = result.get("headline") or {"time_ratio": "not run", "time_met": None, "peak_rss_mb": "not run",
                                    "rss_met": None, "runs": []}
    lines = ["# Scale (issue 17): real-size models against TFLiteConverter", "",
             f"Command: `{result['command']}`. Whole processes under /usr/bin/time on a shared 2-core machine, "
             "edgequant and the converter in turn: read the ratios, not the absolute times. Speed models: Keras "
             "MobileNetV2(weights=None), random init; samples: seeded noise."
             + (f" Sections kept from earlier runs: {'; '.join(f'`{c}`' for c in result['merged'])}."
                if result.get("merged") else ""), "",
             "## Goals", "", "| goal | measured | |", "|---|---|---|",
             f"| quantize int8 defaults <= {GOALS['time_ratio']}x converter time (MobileNetV2-224, 200 samples) | "
             f"{h['time_ratio']}x | {_mark(h['time_met'])} |",
             f"| quantize peak RSS <= {GOALS['peak_rss_mb']} MB | {h['peak_rss_mb']} MB | {_mark(h['rss_met'])} |"]
    if result.get("compare"):
        c = result["compare"]
        against = (f"the converter's {c['converter_total']} s for its {len(c['converter_seconds'])} schemes"
                   if c.get("converter_seconds") else "one converter int8 run")
        lines.append(f"| compare --schemes all <= {GOALS['compare_ratio']}x the converter's time for the schemes it "
                     f"builds | {c['ratio']}x ({c['seconds']} s against {against}) | {_mark(c['met'])} |")
    if result.get("tune"):
        t = result["tune"]
        lines.append(f"| tune --time-budget 10m ends <= {GOALS['tune_seconds']:.0f} s with a within-budget model | "
                     f"{t['seconds']} s, model on disk: {t['model_on_disk']}, within budget: {t['within_budget']} | "
                     f"{_mark(t['met'])} |")
    quality = result.get("zoo", []) + ([result["real"]] if result.get("real") else [])
    judged = [q for q in quality if "met" in q]
    if judged:
        worst = min(judged, key=lambda q: q["default_minus_full_db"])
        lines.append(f"| default SQNR within {GOALS['sqnr_loss_db']} dB of full AdaRound (zoo + real) | worst "
                     f"{worst['default_minus_full_db']:+} dB ({worst['model']} {worst['scheme']}) | "
                     f"{_mark(all(q['met'] for q in judged))} |")
    if result.get("growth"):
        g50 = [g for g in result["growth"] if g["model"] == "mnv2-0.35-96"]
        flat = g50[-1]["peak_rss_mb"] <= 1.2 * g50[0]["peak_rss_mb"] if len(g50) > 1 else None
        lines.append(f"| peak RSS flat in samples (50 -> 1,000 within 20%) | {g50[0]['peak_rss_mb']} -> "
                     f"{g50[-1]['peak_rss_mb']} MB | {_mark(flat)} |")
    lines += ["", "## MobileNetV2-224, 200 samples, int8", "",
              "| round | edgequant s | edgequant MB | converter s | converter MB | time ratio |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(h["runs"], 1):
        lines.append(f"| {i} | {r['edgequant']['seconds']} | {r['edgequant']['peak_rss_mb']} | "
                     f"{r['converter']['seconds']} | {r['converter']['peak_rss_mb']} | {r['time_ratio']} |")
    lines += ["", "Issue 17 measured before this work: edgequant 15 min 44 s and 9.5 GB; converter 1 min 05 s, 1.2 GB.",
              ""]
    if result.get("compare"):
        c = result["compare"]
        lines += ["## compare --schemes all on MobileNetV2-224", "",
                  f"{c['seconds']} s, peak {c['peak_rss_mb']} MB; built: {', '.join(c['built']) or 'none'}; "
                  f"failed: {', '.join(c['failed']) or 'none'}."
                  + ("" if not c.get("converter_seconds") else " The converter, run right after it, per scheme: "
                     + ", ".join(f"{k} {v} s" for k, v in c["converter_seconds"].items())
                     + f" (one int8 run of the headline: {c['ratio_one_int8_run']}x).")
                  + ("" if not c.get("quantize_seconds") else " Quantize seconds per variant: "
                     + ", ".join(f"{k} {v}" for k, v in c["quantize_seconds"].items()) + "."), ""]
    if result.get("growth"):
        lines += ["## Cost growth (quantize int8 defaults)", "",
                  "| model | params | samples | wall s | peak RSS MB |", "|---|---|---|---|---|"]
        lines += [f"| {g['model']} | {g['params']:,} | {g['samples']} | {g['seconds']} | {g['peak_rss_mb']} |"
                  for g in result["growth"]]
        lines += [""] + [f"{g['model']}, {g['samples']} samples: {g['note']}" for g in result["growth"] if g.get("note")]
        lines.append("")
    if quality:
        lines += ["## Quality: held-out output SQNR (dB), litert engine, observer mse", "",
                  "Full AdaRound: every row, one pass pair per layer, all steps, every layer learned. Default: "
                  "what `quantize` runs (the gate keeps nearest rounding where learning cannot pay; sampled rows "
                  "only where a layer has more than 1,024 output positions a sample, or 2^20 rows). Seconds are AdaRound's "
                  "alone.", "",
                  "| model | scheme | none | full | default | default - full | full s | default s | |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for q in quality:
            lines.append(f"| {q['model']} | {q['scheme']} | {q['none_db']} | {q.get('full_db', 'not run')} | "
                         f"{q['default_db']} | {q.get('default_minus_full_db', '')} | {q.get('full_s', '')} | "
                         f"{q['default_s']} | {_mark(q.get('met'))} |")
        lines.append("")
    if result.get("notes"):
        lines += ["## Notes on this run", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    p.add_argument("--quick", action="store_true", help="one round; no growth, compare or tune; three zoo models")
    p.add_argument("--skip-zoo", action="store_true")
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--skip-tune", action="store_true", help="tune --time-budget 10m takes ten minutes")
    p.add_argument("--real-full", action="store_true", help="full AdaRound on real MobileNetV2 (~15 min)")
    p.add_argument("--skip-speed", action="store_true", help="quality only (zoo, real MobileNetV2)")
    p.add_argument("--merge", type=Path, nargs="*", default=[],
                   help="earlier scale.json files whose sections this run does not measure are kept")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    result: dict[str, Any] = {"command": "python -m benchmarks.scale " + " ".join(argv or sys.argv[1:])}
    for earlier in args.merge:
        result = {**json.loads(earlier.read_text()), **{k: v for k, v in result.items() if k != "command"},
                  "command": result["command"]}
        result.setdefault("merged", []).append(json.loads(earlier.read_text())["command"])
    if not args.skip_speed:
        _speed(args, result)
    if not args.skip_zoo:
        models = ["seed_cnn", "mobilenet_like", "resnet_like"] if args.quick else \
            ["seed_cnn", "seed_mlp", "lenet", "mobilenet_like", "resnet_like", "lstm", "transformer", "outlier_mlp"]
        result["zoo"] = zoo_quality(models, ["int8", "w4a8"])
    if not args.skip_real:
        result["real"] = real_quality(args.real_full)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "scale-quick" if args.quick else "scale"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def _speed(args: argparse.Namespace, result: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        names = MODELS[-1:] if args.quick else MODELS
        built = {name: _model(tmp, name, a, s, c) + (s,) for name, a, s, c in names}
        big, _, size = built["mnv2-1.0-224"]
        x200 = _samples(tmp, size, 200)
        result["headline"] = headline(big, x200, tmp, 1 if args.quick else 2)
        if not args.quick:
            data = _samples(tmp, size, 50, seed=1)
            result["compare"] = compare_all(big, x200, data, tmp, result["headline"]["converter_seconds"])
            print(json.dumps(result["compare"]), flush=True)
            if not args.skip_tune:
                result["tune"] = tune_budget(big, x200, data, tmp)
                print(json.dumps(result["tune"]), flush=True)
            result["growth"] = growth(built, tmp, result["headline"]["runs"][0]["edgequant"])


if __name__ == "__main__":
    raise SystemExit(main())
