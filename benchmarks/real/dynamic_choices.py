"""Dynamic range on real CNNs: depthwise convolutions int8 (hybrid) or float, measured on development crops.

    python -m benchmarks.real.dynamic_choices [--models mobilenet_v2,efficientnet_lite0] [--rounds N]

The litert engine's dynamic scheme keeps DEPTHWISE_CONV_2D in float. This script shows why, on
the dev split only (benchmarks/real/data.py: crops of photos that are neither calibration nor
reported test photos): each model quantized to dynamic range with depthwise convolutions hybrid
int8 (what litert-quantizer's dynamic recipe does, and the engine did before) and float (the
engine now), each with and without AdaRound, calibrated on the calibration split. Figures
against the float .tflite: top-1 agreement, output SQNR, size, and batch-1 latency as a ratio to
float measured in interleaved rounds (1 thread). Writes benchmarks/results/dynamic-choices.json/.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks.real import write_results

RESULTS = Path(__file__).resolve().parents[1] / "results"


@contextlib.contextmanager
def hybrid_depthwise() -> Iterator[None]:
    """The engine as it was: litert-quantizer's dynamic recipe as is (depthwise int8), AdaRound rounding it."""
    from edgequant.engines import litert
    from edgequant.transforms import grid

    recipe, op_bits = litert._recipe, grid.litert_op_bits

    def all_int8(scheme, io):  # type: ignore[no-untyped-def]
        return [r for r in recipe(scheme, io) if not (r.get("operation") == "DEPTHWISE_CONV_2D"
                                                      and r.get("algorithm_key") == "no_quantize")]

    def bits(scheme):  # type: ignore[no-untyped-def]
        return (8, {}) if str(getattr(scheme, "value", scheme)) == "dynamic" else op_bits(scheme)

    litert._recipe, grid.litert_op_bits = all_int8, bits
    try:
        yield
    finally:
        litert._recipe, grid.litert_op_bits = recipe, op_bits


def _latency(runners: dict[str, object], x: dict[str, np.ndarray], rounds: int) -> dict[str, float]:
    """Median batch-1 milliseconds of each runner, every round running each once in turn."""
    one = {k: v[:1] for k, v in x.items()}
    times: dict[str, list[float]] = {k: [] for k in runners}
    for r in runners.values():
        r.predict(one)  # type: ignore[attr-defined]
    for _ in range(rounds):
        for name, r in runners.items():
            t = time.perf_counter()
            r.predict(one)  # type: ignore[attr-defined]
            times[name].append((time.perf_counter() - t) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def _markdown(doc: dict) -> str:
    lines = ["# Dynamic range on real CNNs: depthwise convolutions int8 or float (development crops)", "",
             f"`{doc['command'].strip()}`: {doc['calibration_images']} calibration crops, {doc['dev_images']} "
             "development crops (benchmarks/real/data.py splits; no reported test photo). Against the float .tflite; "
             f"latency: median of {doc['rounds']} interleaved batch-1 rounds, 1 thread, as a ratio to float in the "
             "same rounds.", "",
             "| model | variant | AdaRound kept | MB | top-1 agreement | SQNR dB | x float latency | build s |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        lines.append(f"| {r['model']} | {r['variant']} | {', '.join(r['kept_transforms']) or '-'} | {r['mb']} | "
                     f"{r['top1_agreement'] * 100:.1f}% | {r['sqnr_db']:.1f} | {r['x_latency']:.2f} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.dynamic_choices", description=__doc__.split("\n")[0])
    p.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    p.add_argument("--calibration", type=int, default=64)
    p.add_argument("--dev", type=int, default=48)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    import edgequant as eq
    from benchmarks.real.models import MODELS
    from edgequant.evaluate import fidelity
    from edgequant.runtime import Runner

    started = time.time()
    results = []
    for name in args.models.split(","):
        spec = MODELS[name]
        floats = eq.convert(spec.source())
        cal, dev = spec.make_split("calibration", args.calibration).inputs, spec.make_split("dev", args.dev).inputs
        ref = Runner(floats.tflite, what="float").predict(dev)
        out_name = next(iter(ref))
        built = {}
        for depthwise in ("int8 (hybrid)", "float"):
            for transforms in ("none", "default"):
                t = time.time()
                with hybrid_depthwise() if depthwise.startswith("int8") else contextlib.nullcontext():
                    q = eq.quantize(floats, "dynamic", engine="litert", calibration=cal,
                                    transforms="none" if transforms == "none" else None)
                out = Runner(q.tflite, what="dynamic").predict(dev)[out_name]
                label = f"depthwise {depthwise}, transforms {transforms}"
                built[label] = q.tflite
                results.append({"model": name, "variant": label, "seconds": round(time.time() - t, 1),
                                "kept_transforms": [str(getattr(n, "value", n)) for n in q.recipe.transforms],
                                "mb": round(len(q.tflite) / 1e6, 2),
                                "top1_agreement": float((out.argmax(1) == ref[out_name].argmax(1)).mean()),
                                "sqnr_db": round(float(fidelity(out, ref[out_name]).sqnr_db), 2)})
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        runners = {"float": Runner(floats.tflite, 1, "float"),
                   **{k: Runner(v, 1, k) for k, v in built.items()}}
        ms = _latency(runners, dev, args.rounds)
        for row in results:
            if row["model"] == name:
                row["x_latency"] = round(ms[row["variant"]] / ms["float"], 2)
        results.append({"model": name, "variant": "float", "mb": round(len(floats.tflite) / 1e6, 2),
                        "top1_agreement": 1.0, "sqnr_db": float("inf"), "x_latency": 1.0, "seconds": 0.0,
                        "kept_transforms": [], "float_ms": round(ms["float"], 3)})
    doc = {"command": "python -m benchmarks.real.dynamic_choices " + " ".join(argv or sys.argv[1:]),
           "calibration_images": args.calibration, "dev_images": args.dev, "rounds": args.rounds, "rows": results,
           "seconds": round(time.time() - started, 1)}
    write_results(args.out, "dynamic-choices", doc, _markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
