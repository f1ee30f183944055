"""The ``tflite-converter`` engine: TensorFlow's TFLiteConverter, configured as the seeds do.

It converts from the Keras or SavedModel source (the converter quantizes while
it lowers the TensorFlow graph), so a .tflite source cannot use it. Google
marks converter-time quantization as deprecated, but it is what most users
know and the only route here to float16 weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from edgequant._util import Progress
from edgequant.errors import UnsupportedError
from edgequant.frontends.keras import run_converter
from edgequant.runtime import as_inputs, rows
from edgequant.types import CalibrationInput, EngineName, FloatModel, IOType, Precision, Scheme

__all__ = ["TFLiteConverterEngine"]


class TFLiteConverterEngine:
    name = EngineName.TFLITE_CONVERTER
    schemes = frozenset({Scheme.FP16, Scheme.DYNAMIC, Scheme.INT8, Scheme.INT16X8})
    io_types = frozenset({IOType.FLOAT, IOType.INT8, IOType.UINT8})
    calibrates_itself = True
    # The converter quantizes whole-model from the Keras graph: it has no per-op setting.
    layer_precisions: frozenset[Precision] = frozenset()

    def check_precisions(self, model: FloatModel, scheme: Scheme, precisions: Mapping[str, Precision],
                         label: Callable[[str], str]) -> None:
        for name in precisions:
            raise UnsupportedError(f"{label(name)}: engine tflite-converter cannot set per-layer precision "
                                   "(TFLiteConverter quantizes the whole model with one scheme): use engine litert")

    def rewrite(self, model: FloatModel, scheme: Scheme, io: IOType,
                calib: CalibrationInput | None, progress: Progress,
                precisions: Mapping[str, Precision] | None = None) -> tuple[bytes, tuple[str, ...]]:
        # Per-layer precision was refused by check_precisions before any work; nothing reaches here.
        if not model.kind.has_tensorflow_graph:
            raise UnsupportedError(
                f"engine tflite-converter needs the Keras or SavedModel source, found a {model.kind.value} model "
                f"({model.source.name}): use --engine litert")
        notes: list[str] = []
        calibration = as_inputs(calib.x) if calib is not None and calib.x is not None else None
        total = rows(calibration) if calibration is not None else 0
        # The converter takes a list for a one-input model and a dict by signature input name otherwise.
        single = calibration is not None and len(calibration) == 1

        def representative() -> Iterator[list[np.ndarray] | dict[str, np.ndarray]]:
            assert calibration is not None
            for i in range(total):
                # The converter calls this generator once per sample; report as it goes.
                if i % max(1, total // 10) == 0:
                    progress("calibrate", i, total)
                sample = {n: v[i:i + 1] for n, v in calibration.items()}
                yield list(sample.values()) if single else sample
            progress("calibrate", total, total)

        def setup(conv: Any) -> None:
            import tensorflow as tf

            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if scheme is Scheme.FP16:
                conv.target_spec.supported_types = [tf.float16]
                notes.append("weights stored as float16, dequantized to float32 at load on CPU")
            elif scheme is Scheme.DYNAMIC:
                notes.append("converter default: weight tensors under 1024 elements stay float32")
            elif scheme is Scheme.INT8:
                conv.representative_dataset = representative
                notes.append("weights int8 per-channel for Conv, DepthwiseConv and Dense; activations from "
                             f"min-max over {total} representative samples")
                if io is IOType.FLOAT:
                    notes.append("model I/O float (converter default); ops without an int8 kernel may stay float")
                else:
                    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                    dtype = tf.int8 if io is IOType.INT8 else tf.uint8
                    conv.inference_input_type = dtype
                    conv.inference_output_type = dtype
                    notes.append(f"model I/O {io.value}; every op must have an int8 kernel")
            elif scheme is Scheme.INT16X8:
                conv.representative_dataset = representative
                conv.target_spec.supported_ops = [
                    tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
                notes.append(f"16-bit activations from {total} representative samples, int8 weights; model I/O float")
            else:  # guarded by check_supported; kept so a new scheme fails loudly
                raise UnsupportedError(f"engine tflite-converter cannot produce scheme {scheme.value}")

        tflite = run_converter(model.source, model.kind, model.unsafe, setup)
        return tflite, tuple(notes)
