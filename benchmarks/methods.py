"""The quantization methods the benchmark compares, one registry, one Protocol.

The two peers are called directly, the way their own documentation shows, and
never through edgequant's engines: when edgequant's defaults change (its own
calibration, its algorithms), the peer columns must not move with them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgequant._util import quiet, quiet_tensorflow

__all__ = ["Method", "METHODS", "NotApplicable", "SCHEMES", "get_method"]

# Benchmark schemes: edgequant's names; w4a8 is 4-bit weights with 8-bit activations.
SCHEMES = ("dynamic", "int8", "int16x8", "fp16", "w4a8")


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


_TRANSFORM_COLUMNS = (EdgequantTransform("none", "eq-no-transform"), EdgequantTransform("cle", "eq-cle"),
                      EdgequantTransform("bias-correction", "eq-bias-correction"),
                      EdgequantTransform("adaround", "eq-adaround"))
_OBSERVER_COLUMNS = tuple(EdgequantObserver(o, f"eq-{o.replace('percentile:', 'p')}")
                          for o in ("minmax", "ema-minmax", "percentile:99.99", "percentile:99.9", "mse", "entropy"))
METHODS: dict[str, Method] = {m.name: m for m in (TFConverter(), LiteRTQuantizer(), Edgequant(), *_OBSERVER_COLUMNS,
                                                  *_TRANSFORM_COLUMNS)}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]
