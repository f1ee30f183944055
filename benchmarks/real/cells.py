"""The methods the real-model benchmark runs on each model, one ``Cell`` per (method, scheme).

Peers are called the way their own documentation shows, never through edgequant's engines (as in
benchmarks/methods.py): TFLiteConverter where a Keras source exists (minilm_peers.converter_peers),
LiteRT Quantizer's default recipes and its own algorithms (GPTQ, OCTAV, OSCAR on its static int8 recipe;
DECOMPOSED_HADAMARD_ROTATION from its shipped dynamic Hadamard recipe), litert-torch's PT2E for torch
sources (pt2e.pt2e_int8). edgequant's rows are its defaults per scheme and ``edgequant tune``.
A builder returns the .tflite bytes and a note; raising is an error cell.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.real.models import RealModel, Split

SCHEMES = ("dynamic", "int8", "int16x8", "w4a8", "fp16")
TUNED = "tuned"
# tune's budget: classifiers keep top-1 agreement with float on the dev split within 1 point; text
# recognizers keep reading the dev lines as float reads them within 1 point (a task score: the OCR goal's
# measure, where cosine over 6,625 character probabilities stood in for it badly); other models keep the
# dev outputs' cosine within 0.005 of float (cosine >= 0.995, the transformer goal's bar).
TUNE_TOP1_DROP_PT = 1.0
TUNE_TEXT_DROP = 0.01
TUNE_COSINE_DROP = 0.005


@dataclasses.dataclass(frozen=True)
class SameText:
    """tune's task score for a text recognizer: 1 where a dev line reads as float reads it (CTC greedy,
    stripped: benchmarks.real.score.decode_text)."""

    charset: tuple[str, ...]

    def __call__(self, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> np.ndarray:
        from benchmarks.real.score import decode_text

        name = next(iter(reference))
        mine, theirs = decode_text(outputs[name], list(self.charset)), decode_text(reference[name], list(self.charset))
        return np.array([a == b for a, b in zip(mine, theirs)], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Cell:
    method: str
    scheme: str
    peer: bool
    build: Callable[[], tuple[bytes, str]]

    @property
    def key(self) -> str:
        return f"{self.method} {self.scheme}"


@dataclasses.dataclass(frozen=True)
class Context:
    """What every builder of one model may use."""

    model: RealModel
    float_tflite: bytes
    signature: str  # the float .tflite's signature key
    input_names: tuple[str, ...]
    calibration: Split
    dev: Split
    dev_float: dict[str, np.ndarray]  # the float model's outputs on dev (tune's labels for classifiers)
    tune_budget: str

    def calib_list(self) -> list[dict[str, np.ndarray]]:
        n = len(self.calibration)
        return [{k: v[i:i + 1] for k, v in self.calibration.inputs.items()} for i in range(n)]


# ------------------------------------------------------------------ LiteRT Quantizer

def _with_rules(base: list[dict], ops: tuple[str, ...], algorithm: str | None = None,
                weight_bits: int | None = None) -> list[dict]:
    """``base`` (a static recipe) plus one rule per op: the base's op_config with another algorithm key
    and/or weight bit width (its documented recipe format; later rules win)."""
    rules = list(copy.deepcopy(base))
    for op in ops:
        rule = copy.deepcopy(base[0])
        rule["operation"] = op
        if algorithm:
            rule["algorithm_key"] = algorithm
        if weight_bits:
            rule["op_config"]["weight_tensor_config"]["num_bits"] = weight_bits
        rules.append(rule)
    return rules


FP16_RULE = {"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
             "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                           "compute_precision": "FLOAT", "explicit_dequantize": True}}


def litert_recipes() -> dict[tuple[str, str], Callable[[], list[dict]]]:
    """(method, scheme) -> the LiteRT Quantizer recipe."""
    import litert_quantizer
    from litert_quantizer import recipe

    shipped = Path(litert_quantizer.__file__).parent / "recipes"
    static8 = recipe.static_wi8_ai8
    return {
        ("litert-quantizer", "dynamic"): recipe.dynamic_wi8_afp32,
        ("litert-quantizer", "int8"): static8,
        ("litert-quantizer", "int16x8"): recipe.static_wi8_ai16,
        # No ready-made a8w4 recipe: 4-bit weights on the ops its static_wi4_ai8 policy allows.
        ("litert-quantizer", "w4a8"): lambda: _with_rules(static8(), ("FULLY_CONNECTED", "CONV_2D"), weight_bits=4),
        ("litert-quantizer", "fp16"): lambda: [FP16_RULE],
        ("litert GPTQ", "int8"): lambda: _with_rules(static8(), ("FULLY_CONNECTED",), "GPTQ"),
        ("litert OCTAV", "int8"): lambda: _with_rules(
            static8(), ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL"), "OCTAV"),
        ("litert OSCAR", "int8"): lambda: _with_rules(static8(), ("FULLY_CONNECTED",), "OSCAR"),
        ("litert Hadamard", "dynamic"): lambda: json.loads(
            (shipped / "dynamic_wi8_afp32_hadamard_recipe.json").read_text()),
    }


def litert_quantize(ctx: Context, rules: list[dict]) -> bytes:
    from benchmarks.real.minilm_peers import quantize_with

    return quantize_with(ctx.float_tflite, rules, ctx.calib_list(), ctx.signature)


# ------------------------------------------------------------------ the cells

def cells(ctx: Context, only: set[str] | None = None) -> list[Cell]:
    """Every cell for the model, peers first; ``only`` keeps the methods (or cell keys, "edgequant int8") named in it."""
    import edgequant as eq

    out: list[Cell] = []
    if ctx.model.keras is not None:
        from benchmarks.real.minilm_peers import converter_peers

        for name, fn in converter_peers(ctx.model.keras(), ctx.calib_list()).items():
            out.append(Cell("tf-converter", name.split()[-1], True, lambda fn=fn: (fn(), "")))
    for (method, scheme), rules in litert_recipes().items():
        out.append(Cell(method, scheme, True, lambda r=rules: (litert_quantize(ctx, r()), "")))
    if ctx.model.torch_build is not None:
        def pt2e() -> tuple[bytes, str]:
            from benchmarks.real.pt2e import pt2e_int8

            module, example = importlib.import_module(ctx.model.torch_build).build()
            return pt2e_int8(module, example, next(iter(ctx.calibration.inputs.values()))), ""
        out.append(Cell("litert-torch PT2E", "int8", True, pt2e))

    def edgequant(scheme: str) -> tuple[bytes, str]:
        q = eq.quantize(_float_file(ctx), scheme, calibration=dict(ctx.calibration.inputs),
                        samples=len(ctx.calibration))
        return q.tflite, q.recipe.summary()

    for scheme in SCHEMES:
        out.append(Cell("edgequant", scheme, False, lambda s=scheme: edgequant(s)))
    out.append(Cell("edgequant tune", TUNED, False, lambda: tune(ctx)))
    if only:
        out = [c for c in out if c.method in only or c.key in only]
    return out


def _float_file(ctx: Context) -> Path:
    from benchmarks.real.models import DEFAULT_CACHE

    target = DEFAULT_CACHE / "real" / ctx.model.name / "float.tflite"
    if not target.exists() or target.read_bytes() != ctx.float_tflite:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(ctx.float_tflite)
    return target


def tune(ctx: Context) -> tuple[bytes, str]:
    """``edgequant tune`` with the latency objective on the dev split (never the test split)."""
    import edgequant as eq
    from benchmarks.methods import tune_outcome

    if ctx.model.kind == "classifier":
        y = next(iter(ctx.dev_float.values())).reshape(len(ctx.dev), -1).argmax(1)
        data, metric, drop = eq.Dataset(dict(ctx.dev.inputs), y, "dev split, float top-1 as labels"), "top1", \
            TUNE_TOP1_DROP_PT
    elif ctx.model.kind == "ocr" and ctx.model.charset is not None:
        data, metric, drop = eq.Dataset(dict(ctx.dev.inputs), None, "dev split"), "task", TUNE_TEXT_DROP
    else:
        data, metric, drop = eq.Dataset(dict(ctx.dev.inputs), None, "dev split"), "cosine", TUNE_COSINE_DROP
    score = SameText(tuple(ctx.model.charset())) if metric == "task" and ctx.model.charset is not None else None
    with tempfile.TemporaryDirectory(prefix="real-tune-") as out:
        result = eq.tune(_float_file(ctx), data, drop, out, calibration=dict(ctx.calibration.inputs),
                         metric=metric, objective="latency", time_budget=ctx.tune_budget,
                         samples=len(ctx.calibration), score=score)
        tflite, note = tune_outcome(result, Path(out), metric)
    what = "same text as float (task score)" if metric == "task" else metric
    return tflite, f"{what} within {drop} on dev, latency objective, {ctx.tune_budget}: {note}"
