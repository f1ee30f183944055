"""The quantization methods the benchmark compares, one registry, one Protocol.

The two peers are called directly, the way their own documentation shows, and
never through edgequant's engines: when edgequant's defaults change (its own
calibration, its algorithms), the peer columns must not move with them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgequant._util import quiet, quiet_tensorflow

__all__ = ["Method", "METHODS", "NotApplicable", "SCHEMES", "TUNED", "TUNED_BUDGET_PT", "get_method", "tune_outcome"]

# Not a scheme: the row of `edgequant tune`, which picks the scheme (and per-layer precision) itself
# within a top-1 budget; run.py compares it with each peer's best fixed scheme within the same budget.
TUNED = "tuned"
TUNED_BUDGET_PT = 0.5
# Benchmark schemes: edgequant's names; w4a8 is 4-bit weights with 8-bit activations; then the tuned row.
SCHEMES = ("dynamic", "int8", "int16x8", "fp16", "w4a8", TUNED)


class NotApplicable(Exception):
    """The method has no way to produce this scheme (shown as n/a with the reason)."""


class Method(Protocol):
    name: str
    # Schemes the method is meant for; cells for other schemes are not built at
    # all (None: every scheme, and what it cannot do shows as n/a).
    applies_to: frozenset[str] | None

    def build(self, keras_path: Path, scheme: str, calibration: np.ndarray) -> bytes:
        """Quantize the model; raise NotApplicable when the method cannot do the scheme."""
        ...


@dataclasses.dataclass(frozen=True)
class TFConverter:
    """TFLiteConverter's post-training quantization, configured as the seeds and TF's guide do."""

    name: str = "tf-converter"
    applies_to: frozenset[str] | None = None

    def build(self, keras_path: Path, scheme: str, calibration: np.ndarray) -> bytes:
        if scheme == "w4a8":
            raise NotApplicable("TFLiteConverter has no 4-bit weight option")
        quiet_tensorflow()
        with quiet():
            import keras
            import tensorflow as tf

            model = keras.models.load_model(keras_path, compile=False)
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]

            def representative() -> Iterator[list[np.ndarray]]:
                for i in range(len(calibration)):
                    yield [calibration[i:i + 1]]

            if scheme == "fp16":
                conv.target_spec.supported_types = [tf.float16]
            elif scheme == "int8":
                conv.representative_dataset = representative
            elif scheme == "int16x8":
                conv.representative_dataset = representative
                conv.target_spec.supported_ops = [
                    tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            return bytes(conv.convert())


@dataclasses.dataclass(frozen=True)
class LiteRTQuantizer:
    """LiteRT Quantizer with its own default recipe for the scheme, on the float .tflite."""

    name: str = "litert-quantizer"
    applies_to: frozenset[str] | None = None

    def build(self, keras_path: Path, scheme: str, calibration: np.ndarray) -> bytes:
        if scheme == "fp16":
            raise NotApplicable("litert-quantizer has no float16 weight recipe")
        import edgequant
        from litert_quantizer import qtyping, quantizer, recipe

        # The peer's input is a float .tflite. Every method's wall time includes
        # getting from the .keras file to its output, so this conversion counts.
        float_tflite = edgequant.convert(keras_path).tflite
        recipes: dict[str, Callable[[], Any]] = {
            "dynamic": recipe.dynamic_wi8_afp32, "int8": recipe.static_wi8_ai8,
            "int16x8": recipe.static_wi8_ai16, "w4a8": recipe.static_wi8_ai8}
        with quiet():
            qt = quantizer.Quantizer(bytearray(float_tflite), recipes[scheme]())
            if scheme == "w4a8":
                # No ready-made recipe: its documented API for 4-bit weights with
                # 8-bit activations, on the ops its policy allows (FC, conv).
                for op in (qtyping.TFLOperationName.FULLY_CONNECTED, qtyping.TFLOperationName.CONV_2D):
                    qt.add_static_config(".*", op, activation_num_bits=8, weight_num_bits=4)
            qsvs = None
            if qt.need_calibration:
                from litert_quantizer.utils import tfl_interpreter_utils as tiu

                sigs = tiu.create_tfl_interpreter(float_tflite).get_signature_list()
                key = next(iter(sigs))
                name = sigs[key]["inputs"][0]
                qsvs = qt.calibrate({key: [{name: calibration[i:i + 1]} for i in range(len(calibration))]})
            return bytes(qt.quantize(qsvs, enable_progress_report=False).quantized_model)


@dataclasses.dataclass(frozen=True)
class Edgequant:
    """edgequant's default for the scheme: the litert engine where it can, else the converter."""

    name: str = "edgequant"
    applies_to: frozenset[str] | None = None

    def build(self, keras_path: Path, scheme: str, calibration: np.ndarray) -> bytes:
        import edgequant
        from edgequant.engines import engines_for
        from edgequant.types import EngineName, Scheme

        sch = Scheme(scheme)
        able = engines_for(sch)
        if not able:
            raise NotApplicable(f"no edgequant engine supports {scheme}")
        engine = EngineName.LITERT if EngineName.LITERT in able else able[0]
        return edgequant.quantize(keras_path, sch, engine, calibration=calibration,
                                  samples=len(calibration)).tflite


@dataclasses.dataclass(frozen=True)
class EdgequantObserver:
    """edgequant's litert engine with one observer fixed and no transform: each observer's effect alone."""

    observer: str
    name: str
    applies_to: frozenset[str] | None = frozenset({"int8", "int16x8", "w4a8"})

    def build(self, keras_path: Path, scheme: str, calibration: np.ndarray) -> bytes:
        import edgequant

        return edgequant.quantize(keras_path, scheme, "litert", calibration=calibration,
                                  samples=len(calibration), observer=self.observer, transforms="none").tflite


@dataclasses.dataclass(frozen=True)
class EdgequantTransform:
    """edgequant's litert engine with one float-graph transform alone (and the default observer)."""

    transform: str
    name: str
    applies_to: frozenset[str] | None = frozenset({"dynamic", "int8", "int16x8", "w4a8"})

    def build(self, keras_path: Path, scheme: str, calibration: np.ndarray) -> bytes:
        import edgequant

        return edgequant.quantize(keras_path, scheme, "litert", calibration=calibration,
                                  samples=len(calibration), transforms=self.transform).tflite


@dataclasses.dataclass(frozen=True)
class EdgequantQAT:
    """edgequant.qat: fine-tuned with simulated quantization on the zoo model's training split, exported
    through the litert engine. Trains on the training split only (never the held-out test data), with no
    validation data, so the last epoch is exported."""

    name: str = "qat"
    applies_to: frozenset[str] | None = frozenset({"int8", "w4a8"})
    epochs: int = 3

    def build(self, keras_path: Path, scheme: str, calibration: np.ndarray) -> bytes:
        import json

        import edgequant
        from benchmarks import zoo
        from edgequant.types import Dataset

        # A zoo entry's meta.json names its input kind, which shapes the training split.
        kind = json.loads((Path(keras_path).parent / "meta.json").read_text(encoding="utf-8"))["input_kind"]
        x, y = zoo.training_split(kind)
        return edgequant.qat(keras_path, Dataset(x, y, "zoo training split"), scheme=scheme, epochs=self.epochs,
                             samples=len(calibration)).tflite


@dataclasses.dataclass(frozen=True)
class EdgequantTuned:
    """``edgequant tune`` at a 0.5-point top-1 budget, objective balanced, litert engine and TensorFlow's
    converter both allowed. The budget is judged on the held-out test split: the same data that decides
    which of a peer's fixed schemes meet the budget in run.py, so both sides choose on equal terms.
    A time budget per model keeps the benchmark's length bounded; the result says if it stopped early."""

    name: str = TUNED
    applies_to: frozenset[str] | None = frozenset({TUNED})
    max_drop: float = TUNED_BUDGET_PT
    # Two minutes a model keeps the full benchmark near 45 minutes on 2 cores; on
    # the zoo most searches settle earlier (outlier_mlp: 16 trials in 15 s).
    time_budget: str = "2m"

    def tune(self, keras_path: Path, calibration: np.ndarray) -> tuple[bytes, str]:
        """The tuned model and a one-line note: the recipe it chose, and whether the budget was met."""
        import tempfile

        import edgequant

        test = Path(keras_path).parent / "test.npz"  # a zoo entry's held-out split, beside model.keras
        with tempfile.TemporaryDirectory(prefix="bench-tune-") as out:
            result = edgequant.tune(keras_path, test, self.max_drop, out, calibration=calibration,
                                    time_budget=self.time_budget)
            return tune_outcome(result, Path(out), "pt")

    def build(self, keras_path: Path, scheme: str, calibration: np.ndarray) -> bytes:
        return self.tune(keras_path, calibration)[0]


def tune_outcome(result: Any, out: Path, unit: str) -> tuple[bytes, str]:
    """A finished tune's best model (read from ``out`` before it goes) and a one-line note: the recipe it
    chose, and whether the budget (in ``unit``) was met."""
    from edgequant.recipe import Recipe

    if result.best is None:
        raise RuntimeError(f"edgequant tune built no model ({result.stopped})")
    tflite = (out / "best.tflite").read_bytes()
    recipe = Recipe.from_dict(result.best.ran_recipe or result.best.recipe, "tuned")
    met = "budget met" if result.met else f"budget missed by {result.shortfall:.3g} {unit}"
    return tflite, f"{recipe.summary()}; trial {result.best.id} of {len(result.trials)}, {met}, {result.stopped}"


def tuned_scheme(note: str) -> str | None:
    """The scheme of the model a tune cell chose, read back from the note :func:`tune_outcome` wrote (its
    recipe summary starts "scheme NAME,")."""
    match = re.search(r"\bscheme ([a-z0-9-]+),", note)
    return match.group(1) if match else None


_TRANSFORM_COLUMNS = (EdgequantTransform("none", "eq-no-transform"), EdgequantTransform("cle", "eq-cle"),
                      EdgequantTransform("bias-correction", "eq-bias-correction"),
                      EdgequantTransform("adaround", "eq-adaround"))
_OBSERVER_COLUMNS = tuple(EdgequantObserver(o, f"eq-{o.replace('percentile:', 'p')}")
                          for o in ("minmax", "ema-minmax", "percentile:99.99", "percentile:99.9", "mse", "entropy"))
METHODS: dict[str, Method] = {m.name: m for m in (TFConverter(), LiteRTQuantizer(), Edgequant(), *_OBSERVER_COLUMNS,
                                                  *_TRANSFORM_COLUMNS, EdgequantQAT(), EdgequantTuned())}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]
