"""The peers on paraphrase-MiniLM-L3-v2: TFLiteConverter and LiteRT Quantizer with their own defaults.

    python -m benchmarks.real.minilm [--cache .model-cache]     # first: the model and data
    python -m benchmarks.real.minilm_peers [--model minilm.keras] [--runs 30] [--name minilm_peers]

Every peer starts from the same model: TFLiteConverter from the .keras file,
LiteRT Quantizer (litert-quantizer) from minilm_float.tflite made by the same
converter unoptimized. For each peer: file size, the word-embedding table's
stored dtype, cosine of the sentence embedding against the float .tflite on the
48 test sentences (mean and minimum), whether paraphrases still rank above
unrelated pairs, and latency relative to float measured interleaved in one run
(batch 1, ai_edge_litert Interpreter, 1 thread, XNNPACK as LiteRT's default).
A peer that fails to build or run is a row with its one-line reason.

LiteRT Quantizer's default recipes are used as they are (its static recipes make
float model I/O int8: the harness dequantizes an int8 output with its own scale).
Rows named "edgequant ..." are edgequant's defaults for each scheme. Rows named "+gather" add one rule that stores GATHER's constant tables (the word
embeddings) as int8 (GATHER_RULE); rows named "mask clamped" clamp the calibrated
range of the attention mask's SELECT_V2 output (clamp_mask_ranges): diagnostics, not defaults.
Writes benchmarks/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.real import write_results

from benchmarks.real import sentences
from benchmarks.real.fetch import DEFAULT_CACHE
from benchmarks.real.minilm import INPUTS, RESULTS

VOCAB = 30522
OUTPUT = "embedding"

# One recipe rule that makes LiteRT Quantizer store GATHER's constant tables (word, position and
# token-type embeddings) as int8: GATHER with the static a8w8 op_config. GATHER is a same-scale op
# for it, so the table is quantized as GATHER's input with the *activation* config (per-tensor,
# asymmetric; the weight config is not used), GATHER runs int8 -> int8 and a DEQUANTIZE follows.
# It needs calibration (quantize(None) refuses it). A weight-only rule (compute_precision FLOAT,
# explicit_dequantize, skip_checks) fails: "_materialize_standard_op_with_same_as_input_scale only
# supports UniformQuantParams"; without skip_checks GATHER is outside the dynamic/weight-only policy.
GATHER_RULE = {
    "regex": ".*",
    "operation": "GATHER",
    "algorithm_key": "min_max_uniform_quantize",
    "op_config": {
        "activation_tensor_config": {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT"},
        "weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"},
        "compute_precision": "INTEGER",
        "explicit_dequantize": False,
        "skip_checks": False,
        "min_weight_elements": 0,
    },
}

# Keras' attention writes -1e9-like values (float32 min after the mask select) into masked scores: the
# SELECT_V2 before each SOFTMAX calibrates to min -2.4e38, so a per-tensor int8/int16 scale erases the
# real scores. The "mask clamped" rows clamp that tensor's calibrated min to MASK_FLOOR (exp(-30) ~ 1e-13).
MASK_TENSOR_SUFFIX = "attention_1/SelectV2"
MASK_FLOOR = -30.0


def clamp_mask_ranges(qsvs: dict) -> dict:
    out = copy.deepcopy(qsvs)
    for name, qsv in out.items():
        if name.endswith(MASK_TENSOR_SUFFIX):
            qsv["min"] = np.maximum(qsv["min"], MASK_FLOOR).astype(np.float32)
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # TensorFlow's converter errors end with the useful line; most others begin with it.
    useful = [ln for ln in lines if "error:" in ln.lower()]
    return (useful[-1] if useful else lines[0] if lines else type(exc).__name__)[:300]


# ---------------------------------------------------------------- TFLiteConverter

def converter_peers(keras_path: Path, calib: list[dict[str, np.ndarray]]) -> dict[str, Callable[[], bytes]]:
    def build(kind: str) -> bytes:
        import keras
        import tensorflow as tf

        conv = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(keras_path, safe_mode=True))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if kind == "fp16":
            conv.target_spec.supported_types = [tf.float16]
        elif kind in ("int8", "int16x8"):
            # Keys are the signature's input names: the Keras 3 path converts through a SavedModel.
            conv.representative_dataset = lambda: iter([dict(s) for s in calib])
            if kind == "int16x8":
                conv.target_spec.supported_ops = [
                    tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                    tf.lite.OpsSet.TFLITE_BUILTINS]  # float fallback where an op has no 16x8 kernel
        return bytes(conv.convert())

    return {f"converter {k}": (lambda k=k: build(k)) for k in ("dynamic", "int8", "int16x8", "fp16")}


# ---------------------------------------------------------------- LiteRT Quantizer

def _w4a8() -> list[dict]:
    """static_wi8_ai8, then 4-bit weights on FULLY_CONNECTED (the policy's static_wi4_ai8 ops)."""
    from litert_quantizer import recipe

    rules = list(recipe.static_wi8_ai8())
    rule = copy.deepcopy(rules[0])
    rule["operation"] = "FULLY_CONNECTED"
    rule["op_config"]["weight_tensor_config"]["num_bits"] = 4
    return rules + [rule]


def quantizer_recipes() -> dict[str, tuple[Callable[[], list[dict]], bool]]:
    """Peer name -> (recipe builder, clamp the attention mask's calibrated ranges)."""
    from litert_quantizer import recipe

    return {
        "litert dynamic_wi8_afp32": (recipe.dynamic_wi8_afp32, False),
        "litert dynamic_wi8 +gather": (lambda: list(recipe.dynamic_wi8_afp32()) + [GATHER_RULE], False),
        "litert weight_only_wi8_afp32": (recipe.weight_only_wi8_afp32, False),
        "litert static_wi8_ai8 (a8w8)": (recipe.static_wi8_ai8, False),
        "litert a8w8, mask clamped": (recipe.static_wi8_ai8, True),
        "litert static_wi8_ai16 (a16w8)": (recipe.static_wi8_ai16, False),
        "litert a16w8, mask clamped": (recipe.static_wi8_ai16, True),
        "litert a8w4 (FC int4)": (_w4a8, False),
        "litert a8w4, mask clamped": (_w4a8, True),
        "litert dynamic_wi4_afp32": (recipe.dynamic_wi4_afp32, False),
    }


def quantize_with(float_tflite: bytes, rules: list[dict], calib: list[dict[str, np.ndarray]],
                  signature: str, clamp_mask: bool = False) -> bytes:
    from litert_quantizer import quantizer

    qt = quantizer.Quantizer(bytearray(float_tflite), rules)
    qsvs = None
    if qt.need_calibration:
        qsvs = qt.calibrate({signature: calib}, num_threads=1)
        if clamp_mask:
            qsvs = clamp_mask_ranges(qsvs)
    return bytes(qt.quantize(qsvs, enable_progress_report=False).quantized_model)


# ---------------------------------------------------------------- measuring

class Runner:
    """One model at batch 1, 1 thread; its output as float32 whatever the stored dtype."""

    def __init__(self, model: bytes) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_content=model, num_threads=1)
        self.key = next(iter(self.interp.get_signature_list()))
        self.run = self.interp.get_signature_runner(self.key)
        out = self.run.get_output_details()[OUTPUT]
        self.scale, self.zero = (out["quantization"] if out["dtype"] != np.float32 else (0.0, 0))

    def __call__(self, sample: dict[str, np.ndarray]) -> np.ndarray:
        y = self.run(**sample)[OUTPUT]
        return (y.astype(np.float32) - self.zero) * self.scale if self.scale else y


def table_dtype(model: bytes) -> str:
    """Stored dtype of the (VOCAB, hidden) word-embedding table, e.g. float32, int8 (+DEQUANTIZE)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    found = [t for t in interp.get_tensor_details() if len(t["shape"]) == 2 and t["shape"][0] == VOCAB]
    if not found:
        return "?"
    by_dtype = sorted({np.dtype(t["dtype"]).name for t in found})
    return "+".join(by_dtype)


def cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    return np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))


def interleaved_latency(runners: dict[str, Runner], samples: list[dict[str, np.ndarray]], runs: int,
                        warmup: int = 3) -> dict[str, float]:
    """Median ms per model; each round runs every model once on the same sample, in rotating order."""
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + runs):
        sample = samples[r % len(samples)]
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t = time.perf_counter()
            runners[n](sample)
            if r >= warmup:
                times[n].append((time.perf_counter() - t) * 1e3)
    return {n: float(np.median(v)) for n, v in times.items()}


# edgequant's rows: its defaults (engine auto, auto observer, default transforms), calibrated on the same
# calibration sentences as the peers, never on the test ones.
EDGEQUANT_SCHEMES = ("dynamic", "int8", "int16x8", "w4a8", "fp16")


def edgequant_rows(keras_path: Path, calibration: Path) -> dict[str, Callable[[], bytes]]:
    import edgequant

    def build(scheme: str) -> bytes:
        return edgequant.quantize(keras_path, scheme, calibration=calibration).tflite

    return {f"edgequant {scheme}": (lambda scheme=scheme: build(scheme)) for scheme in EDGEQUANT_SCHEMES}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.minilm_peers", description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--model", default="minilm.keras", help="a .keras file in <cache>/minilm")
    p.add_argument("--runs", type=int, default=30, help="interleaved latency rounds")
    p.add_argument("--only", help="comma-separated substrings: build only peers whose name matches")
    p.add_argument("--name", default="minilm_peers")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from benchmarks.real.minilm import convert_float, rebuilt
    import keras

    t0 = time.time()
    keras_path = rebuilt(args.cache, args.model, "minilm_peers")
    if keras_path is None:
        return 2
    folder = keras_path.parent
    calib_npz, test_npz = np.load(folder / "calibration.npz"), np.load(folder / "test.npz")
    calib = [{n: calib_npz[n][i:i + 1] for n in INPUTS} for i in range(len(calib_npz[INPUTS[0]]))]
    test = [{n: test_npz[n][i:i + 1] for n in INPUTS} for i in range(len(test_npz[INPUTS[0]]))]

    float_tflite = convert_float(keras.models.load_model(keras_path, safe_mode=True))
    signature = next(iter(Runner(float_tflite).interp.get_signature_list()))
    builders: dict[str, Callable[[], bytes]] = {"float": lambda: float_tflite}
    builders.update(converter_peers(keras_path, calib))
    for name, (rules, clamp) in quantizer_recipes().items():
        builders[name] = lambda rules=rules, clamp=clamp: quantize_with(float_tflite, rules(), calib, signature, clamp)
    builders.update(edgequant_rows(keras_path, folder / "calibration.npz"))
    if args.only:
        keys = [k.strip() for k in args.only.split(",")]
        builders = {n: b for n, b in builders.items() if n == "float" or any(k in n for k in keys)}

    rows: dict[str, dict] = {}
    runners: dict[str, Runner] = {}
    for name, build in builders.items():
        print(f"building {name} ...", file=sys.stderr, flush=True)
        t = time.time()
        try:
            model = build()
            runner = Runner(model)
            emb = np.concatenate([runner(s) for s in test])
        except Exception as exc:  # a failing peer is a row with its reason, not the end of the run
            rows[name] = {"error": _one_line(exc), "build_seconds": round(time.time() - t, 1)}
            continue
        (folder / "peers").mkdir(exist_ok=True)
        (folder / "peers" / (name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "") + ".tflite")
         ).write_bytes(model)
        rows[name] = {"bytes": len(model), "table_dtype": table_dtype(model), "emb": emb,
                      "build_seconds": round(time.time() - t, 1), "pairs": sentences.pair_scores(emb)}
        runners[name] = runner

    ref = rows["float"]["emb"]
    for row in rows.values():
        if "emb" in row:
            c = cosines(ref, row.pop("emb"))
            row.update(cosine_mean=float(c.mean()), cosine_min=float(c.min()))
    latency = interleaved_latency(runners, test, args.runs)
    for name, ms in latency.items():
        rows[name].update(latency_ms=round(ms, 3), latency_ratio=round(ms / latency["float"], 3))

    result = {"model": args.model, "float_bytes": len(float_tflite), "test_sentences": len(test),
              "calibration_sentences": len(calib), "latency_runs": args.runs, "threads": 1, "batch": 1,
              "gather_rule": GATHER_RULE, "peers": rows, "seconds": round(time.time() - t0, 1)}
    write_results(args.out, args.name, result, markdown)
    return 0


def markdown(result: dict) -> str:
    lines = [f"# paraphrase-MiniLM-L3-v2 peers ({result['model']})", "",
             f"{result['test_sentences']} test sentences, {result['calibration_sentences']} calibration sentences; "
             f"latency: median of {result['latency_runs']} interleaved rounds, batch 1, 1 thread. "
             f"cosine: sentence embedding against the float .tflite. ranked: share of test pairs whose "
             f"paraphrase scores above an unrelated sentence (easy: 1.00 even when broken); gap: mean paraphrase "
             f"cosine minus mean unrelated cosine (float: the first row).", "",
             "| peer | MB | table | cos mean | cos min | ranked | gap | latency ms | x float |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in result["peers"].items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'].replace('|', '/')} | | | | | | | |")
            continue
        lines.append(f"| {name} | {r['bytes'] / 1e6:.1f} | {r['table_dtype']} | {r['cosine_mean']:.5f} | "
                     f"{r['cosine_min']:.5f} | {r['pairs']['ranked']:.2f} | "
                     f"{r['pairs']['paraphrase_cosine_mean'] - r['pairs']['unrelated_cosine_mean']:.3f} | {r.get('latency_ms', float('nan')):.2f} | "
                     f"{r.get('latency_ratio', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
