"""Float islands on an ONNX vision transformer (SVTRv2, DINOv2): int8 with and without, side by side with float.

    python -m benchmarks.real.islands_onnx MODEL.onnx --input-shape NAME=1,3,H,W --calibration C.npz
        --dev D.npz --test T.npz --name svtrv2_islands [--runs 30]

The .npz files hold the model's input by name, batch first (the real benchmark's data splits,
benchmarks/real/data.py: rendered text lines for SVTRv2, photo crops for DINOv2). The ONNX model
goes through edgequant's frontend once (the float .tflite is kept next to the results as
<name>_float.tflite under --work); then edgequant int8 (litert engine, auto observer, no
transforms) with float islands off and on, and with the default transforms (AdaRound) when
--adaround is given. cosine: each output against the float .tflite, per sample (flattened), mean
and minimum; dev is where the plan and observer could be chosen, test is reported. Latency:
median of interleaved rounds, batch 1, 1 thread. Writes benchmarks/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.real import write_results

from benchmarks.real.minilm import RESULTS
from benchmarks.real.minilm_peers import interleaved_latency


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.islands_onnx", description=__doc__.split("\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--input-shape", action="append", required=True)
    p.add_argument("--calibration", type=Path, required=True)
    p.add_argument("--dev", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--adaround", action="store_true", help="also build int8 with the default transforms")
    p.add_argument("--int8-bmm", action="store_true",
                   help="also build the islands with the BATCH_MATMULs between activations int8 (the plan before "
                        "they were kept float; older results name the default row 'islands + float BATCH_MATMUL')")
    p.add_argument("--no-off", action="store_true", help="skip the row with islands off")
    p.add_argument("--work", type=Path, default=Path(".model-cache") / "islands")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import edgequant
    from edgequant.frontends import load_model
    from edgequant.recipe.islands import is_attention_model
    from edgequant.runtime import Runner

    t0 = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    float_path = args.work / f"{args.name}_float.tflite"
    if not float_path.exists():
        print("converting ...", file=sys.stderr, flush=True)
        edgequant.convert(args.model, float_path, input_shapes=args.input_shape)
    floats = load_model(float_path)
    dev, test = dict(np.load(args.dev)), dict(np.load(args.test))

    def outputs(model: bytes, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        run = Runner(model)
        n = len(next(iter(data.values())))
        per = [run.predict({k: v[i:i + 1] for k, v in data.items()}) for i in range(n)]
        return {k: np.concatenate([o[k] for o in per]) for k in per[0]}

    def cosines(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for k, r in ref.items():
            a, b = r.reshape(len(r), -1).astype(np.float64), got[k].reshape(len(r), -1).astype(np.float64)
            out[k] = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        return out

    ref_dev, ref_test = outputs(floats.tflite, dev), outputs(floats.tflite, test)
    rows: dict[str, dict] = {"float": {"bytes": len(floats.tflite)}}
    models = {"float": floats.tflite}
    builds: list[tuple[str, bool | None, str, dict | None]] = [] if args.no_off else [
        ("int8, islands off", False, "none", None)]
    builds.append(("int8, islands (default)", None, "none", None))
    if args.adaround:
        builds.append(("int8, islands + default transforms", None, "default", None))
    if args.int8_bmm:
        from benchmarks.real.minilm_islands import attention_matmuls_int8

        names = attention_matmuls_int8(floats.tflite, dict(np.load(args.calibration)))
        builds.append(("int8, islands, attention matmuls int8", False, "none",
                       {"version": 2, "tensors": {n: {"precision": str(getattr(v, "value", v))}
                                                  for n, v in names.items()}}))
    for row, islands, transforms, recipe in builds:
        print(f"building {row} ...", file=sys.stderr, flush=True)
        t = time.time()
        try:
            q = edgequant.quantize(floats, "int8", calibration=args.calibration, transforms=transforms,
                                   float_islands=islands, recipe=recipe)
        except edgequant.EdgequantError as exc:
            rows[row] = {"error": str(exc)[:300], "build_seconds": round(time.time() - t, 1)}
            continue
        c_dev, c_test = cosines(ref_dev, outputs(q.tflite, dev)), cosines(ref_test, outputs(q.tflite, test))
        models[row] = q.tflite
        rows[row] = {"bytes": len(q.tflite), "observer": str(q.recipe.observer),
                     "dev_cosine_mean": min(float(c.mean()) for c in c_dev.values()),
                     "cosine_mean": min(float(c.mean()) for c in c_test.values()),
                     "cosine_min": min(float(c.min()) for c in c_test.values()),
                     "notes": [n for n in q.notes if n.startswith("float islands")],
                     "build_seconds": round(time.time() - t, 1)}
    samples = [{k: v[i:i + 1] for k, v in test.items()} for i in range(len(next(iter(test.values()))))]
    runners = {k: Runner(m) for k, m in models.items()}
    latency = interleaved_latency({k: (lambda s, r=r: r.predict(s)) for k, r in runners.items()}, samples, args.runs)
    for row, ms in latency.items():
        rows[row].update(latency_ms=round(ms, 3), latency_ratio=round(ms / latency["float"], 3),
                         size_ratio=round(rows[row]["bytes"] / len(floats.tflite), 3))
    result = {"model": args.model.name, "attention_model": is_attention_model(floats.tflite),
              "float_bytes": len(floats.tflite), "test_samples": len(samples), "latency_runs": args.runs,
              "threads": 1, "batch": 1, "rows": rows, "seconds": round(time.time() - t0, 1)}
    write_results(args.out, args.name, result, markdown)
    return 0


def markdown(result: dict) -> str:
    lines = [f"# {result['model']} int8: float islands", "",
             f"edgequant int8 (litert engine, auto observer); cosine of every output against float per sample "
             f"(the worst output's mean; dev for choices, test reported: {result['test_samples']} samples). "
             f"Latency: median of {result['latency_runs']} interleaved rounds, batch 1, 1 thread. Goal (issue 18): "
             "cosine >= 0.995 at <= 0.30x float size and <= 0.5x float latency.", "",
             "| variant | MB | x float size | dev cos mean | test cos mean | test cos min | observer | latency ms | "
             "x float |", "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for row, r in result["rows"].items():
        if "error" in r:
            lines.append(f"| {row} | failed: {r['error'].replace('|', '/')} | | | | | | | |")
        elif row == "float":
            lines.append(f"| float | {r['bytes'] / 1e6:.1f} | 1.00 | 1.00000 | 1.00000 | 1.00000 | | "
                         f"{r['latency_ms']:.2f} | 1.00 |")
        else:
            lines.append(f"| {row} | {r['bytes'] / 1e6:.1f} | {r['size_ratio']:.2f} | {r['dev_cosine_mean']:.5f} | "
                         f"{r['cosine_mean']:.5f} | {r['cosine_min']:.5f} | {r['observer']} | {r['latency_ms']:.2f} | "
                         f"{r['latency_ratio']:.2f} |")
    notes = [n for r in result["rows"].values() for n in r.get("notes", [])]
    if notes:
        lines += ["", "Plan notes (from the islands row):", ""] + [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
