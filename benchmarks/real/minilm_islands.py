"""Where MiniLM's int8 loses accuracy, and what float islands (recipe/islands.py) win back, side by side with float.

    python -m benchmarks.real.minilm                  # first: the model and data
    python -m benchmarks.real.minilm_islands [--model minilm_seq32.keras] [--runs 60]

Every row is edgequant int8 (litert engine, auto observer) from the same float
.tflite, with a different per-layer precision plan; only the last row also runs
the default transforms (AdaRound). The plans are subsets of the float-island
plan, so each row shows what one part of it is worth:

- islands off: every op int8 (edgequant's int8 before the plan);
- outlier ops only: only the weighted ops with an outlier output channel float;
- no outlier test: the plan's ops between the matmuls float, every matmul int8;
- GELU and softmax int8: the plan, but GELU, SOFTMAX and the masked-score SELECT_V2 int8;
- islands: the plan (edgequant's default for attention models, attention matmuls float);
- islands, outlier op int16x8: the plan, with 16-bit activations instead of float for the outlier ops;
- islands, attention matmuls int8: the plan with the BATCH_MATMULs between activations int8 (the
  plan before they were kept float; results before that change name this row "islands" and the
  default plan's row "islands + float BATCH_MATMUL").

cosine: the sentence embedding against the float .tflite, on the calibration
sentences (dev: the plan and the observer were chosen on these) and on the
test sentences (reported). Latency: median of interleaved rounds, batch 1,
1 thread, ai_edge_litert's Interpreter with XNNPACK, every model on the same
sentence in each round. Writes benchmarks/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.real import write_results

from benchmarks.real.fetch import DEFAULT_CACHE
from benchmarks.real.minilm import INPUTS, RESULTS
from benchmarks.real.minilm_peers import Runner, cosines, interleaved_latency

SCORE_OPS = ("GELU", "SOFTMAX", "SELECT_V2")


def plans(floats, calibration: dict[str, np.ndarray]) -> dict[str, dict | None]:
    """Row name -> per-layer precisions for quantize's recipe (None: islands off, "auto": the plan itself)."""
    from edgequant.recipe.islands import plan_islands
    from edgequant.engines.litert import layer_ops

    full = plan_islands(floats.tflite, calibration)
    ops = layer_ops(floats.tflite)
    structural = {n: p for n, p in full.precisions.items() if n not in full.outliers}
    return {
        "islands off": None,
        "outlier ops only": {n: full.precisions[n] for n in full.outliers},
        "no outlier test": structural,
        "GELU and softmax int8": {n: p for n, p in full.precisions.items() if ops[n] not in SCORE_OPS},
        "islands": full.precisions,
        "islands, outlier op int16x8": {**full.precisions, **{n: "int16x8" for n in full.outliers}},
        "islands, attention matmuls int8": attention_matmuls_int8(floats.tflite, calibration),
    }, full


def attention_matmuls_int8(tflite: bytes, calibration: dict[str, np.ndarray]) -> dict:
    """The island plan with every BATCH_MATMUL between two activations int8 (and the layout ops after them)."""
    from edgequant.graph.submodel import GraphModel
    from edgequant.recipe.islands import plan_islands
    from edgequant.types import Precision

    g = GraphModel(tflite)
    bmm = {g.tensor_name(g.op_outputs(i)[0]): Precision.INT8 for i, op in enumerate(g.op_names)
           if op == "BATCH_MATMUL" and not any(g.is_constant(t) for t in g.op_inputs(i))}
    return plan_islands(tflite, calibration, keep=bmm).precisions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.minilm_islands", description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--model", default="minilm_seq32.keras", help="a .keras file in <cache>/minilm")
    p.add_argument("--runs", type=int, default=60, help="interleaved latency rounds")
    p.add_argument("--name", default=None, help="results file name (default minilm_islands[_seq32])")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    import edgequant
    from benchmarks.real.minilm import convert_float, rebuilt
    from edgequant.frontends import load_model
    from edgequant.types import Precision

    t0 = time.time()
    keras_path = rebuilt(args.cache, args.model, "minilm_islands")
    if keras_path is None:
        return 2
    folder = keras_path.parent
    name = args.name or ("minilm_islands" + ("_seq32" if "seq32" in args.model else ""))
    calib_npz = folder / "calibration.npz"
    calib = {n: np.load(calib_npz)[n] for n in INPUTS}
    test = {n: np.load(folder / "test.npz")[n] for n in INPUTS}
    float_tflite = convert_float(keras.models.load_model(keras_path, safe_mode=True))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "float.tflite").write_bytes(float_tflite)
        floats = load_model(Path(tmp) / "float.tflite")

    def embed(model: bytes, data: dict[str, np.ndarray]) -> np.ndarray:
        run = Runner(model)
        return np.concatenate([run({k: v[i:i + 1] for k, v in data.items()}) for i in range(len(data[INPUTS[0]]))])

    ref_dev, ref_test = embed(float_tflite, calib), embed(float_tflite, test)
    rows: dict[str, dict] = {"float": {"bytes": len(float_tflite)}}
    models: dict[str, bytes] = {"float": float_tflite}
    variants, full = plans(floats, calib)
    builds = [(row, precisions, "none") for row, precisions in variants.items()]
    builds.append(("islands + default transforms (edgequant int8 default)", "auto", "default"))
    for row, precisions, transforms in builds:
        print(f"building {row} ...", file=sys.stderr, flush=True)
        t = time.time()
        recipe = None
        if isinstance(precisions, dict):
            recipe = {"version": 2, "tensors": {n: {"precision": Precision(v).value} for n, v in precisions.items()}}
        q = edgequant.quantize(floats, "int8", calibration=calib_npz, transforms=transforms, recipe=recipe,
                               float_islands=None if precisions == "auto" else False)
        dev, tst = cosines(ref_dev, embed(q.tflite, calib)), cosines(ref_test, embed(q.tflite, test))
        models[row] = q.tflite
        rows[row] = {"bytes": len(q.tflite), "float_ops": len(precisions) if isinstance(precisions, dict) else None,
                     "dev_cosine_mean": float(dev.mean()), "dev_cosine_min": float(dev.min()),
                     "cosine_mean": float(tst.mean()), "cosine_min": float(tst.min()),
                     "observer": str(q.recipe.observer), "build_seconds": round(time.time() - t, 1)}
    samples = [{k: v[i:i + 1] for k, v in test.items()} for i in range(len(test[INPUTS[0]]))]
    latency = interleaved_latency({k: Runner(m) for k, m in models.items()}, samples, args.runs)
    for row, ms in latency.items():
        rows[row].update(latency_ms=round(ms, 3), latency_ratio=round(ms / latency["float"], 3),
                         size_ratio=round(rows[row]["bytes"] / len(float_tflite), 3))
    result = {"model": args.model, "float_bytes": len(float_tflite), "test_sentences": len(samples),
              "calibration_sentences": len(calib[INPUTS[0]]), "latency_runs": args.runs, "threads": 1, "batch": 1,
              "plan": {"float_ops": full.float_ops, "outliers": full.outliers,
                       "largest_kept_ratio": full.largest_kept_ratio},
              "rows": rows, "seconds": round(time.time() - t0, 1)}
    write_results(args.out, name, result, markdown)
    return 0


def markdown(result: dict) -> str:
    plan = result["plan"]
    outliers = "; ".join(f"{n.split('/', 1)[-1]} {r:.0f}x" for n, r in plan["outliers"].items()) or "none"
    lines = [f"# paraphrase-MiniLM-L3-v2 int8: float islands ({result['model']})", "",
             f"edgequant int8 (litert engine, auto observer) with per-layer precision plans; dev: the "
             f"{result['calibration_sentences']} calibration sentences (plan and observer chosen on these), test: "
             f"{result['test_sentences']} test sentences. Latency: median of {result['latency_runs']} interleaved "
             "rounds, batch 1, 1 thread. Goal (issue 18): cosine >= 0.995 at <= 0.30x float size and <= 0.5x float "
             "latency.", "",
             f"Outlier ops (largest output channel peak over the median channel's): {outliers}; the largest ratio "
             f"among the weighted ops left int8: {plan['largest_kept_ratio']:.1f}x.", "",
             "| plan | float ops | MB | x float size | dev cos mean | test cos mean | test cos min | observer | "
             "latency ms | x float |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for row, r in result["rows"].items():
        if row == "float":
            lines.append(f"| float | | {r['bytes'] / 1e6:.1f} | 1.00 | 1.00000 | 1.00000 | 1.00000 | | "
                         f"{r['latency_ms']:.2f} | 1.00 |")
            continue
        lines.append(f"| {row} | {r['float_ops'] if r['float_ops'] is not None else ''} | {r['bytes'] / 1e6:.1f} | "
                     f"{r['size_ratio']:.2f} | {r['dev_cosine_mean']:.5f} | {r['cosine_mean']:.5f} | "
                     f"{r['cosine_min']:.5f} | {r['observer']} | {r['latency_ms']:.2f} | {r['latency_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
