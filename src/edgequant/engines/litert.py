"""The ``litert`` engine: LiteRT Quantizer (litert-quantizer) on the float .tflite.

It needs no TensorFlow. Its static recipes make model I/O integer; we add
recipe rules for the graph's INPUT and OUTPUT so the default is float I/O (a
QUANTIZE op after the input, a DEQUANTIZE before the output), matching the
converter's default and what an app developer expects.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgequant._util import Progress, last_error_line, quiet
from edgequant.errors import EngineError
from edgequant.types import EngineName, FloatModel, IOType, Scheme

__all__ = ["LiteRTEngine", "MIN_RANGE"]

# Calibration can return zero-width ranges (a constant or dead activation);
# the resulting scale ~1e-12 is refused by some kernels. Widen them to this.
MIN_RANGE = 1e-6

_CALIBRATION_CHUNKS = 10

# Ops that take int4 weights with int8 activations in litert-quantizer 0.11.
W4A8_OPS = ("FULLY_CONNECTED", "CONV_2D")


def _recipe(scheme: Scheme, io: IOType) -> list[dict[str, Any]]:
    from litert_quantizer import recipe

    builders = {
        Scheme.DYNAMIC: recipe.dynamic_wi8_afp32,
        Scheme.WEIGHT_ONLY_INT8: recipe.weight_only_wi8_afp32,
        Scheme.WEIGHT_ONLY_INT4: recipe.weight_only_wi4_afp32,
        Scheme.INT8: recipe.static_wi8_ai8,
        Scheme.INT16X8: recipe.static_wi8_ai16,
    }
    if scheme is Scheme.W4A8:
        # Everything int8, then 4-bit weights where litert-quantizer's policy
        # allows them with int8 activations (its static_wi4_ai8 op list).
        rules = list(recipe.static_wi8_ai8())
        for op in W4A8_OPS:
            rule = copy.deepcopy(rules[0])
            rule["operation"] = op
            rule["op_config"]["weight_tensor_config"]["num_bits"] = 4
            rules.append(rule)
    else:
        rules = list(builders[scheme]())
    if scheme.needs_calibration:
        if io is IOType.FLOAT:
            edge = {"algorithm_key": "no_quantize", "op_config": {"compute_precision": "FLOAT"}}
        elif io is IOType.UINT8:
            cfg = copy.deepcopy(rules[0]["op_config"])
            cfg["activation_tensor_config"].update(dtype="UINT", symmetric=False)
            edge = {"algorithm_key": rules[0]["algorithm_key"], "op_config": cfg}
        else:
            edge = None
        if edge is not None:
            rules += [{"regex": ".*", "operation": op, **edge} for op in ("INPUT", "OUTPUT")]
    return rules


def _repair_ranges(qsvs: dict[str, Any]) -> int:
    """Widen degenerate min/max ranges in place; returns how many were repaired."""
    repaired = 0
    for stats in qsvs.values():
        if not isinstance(stats, dict) or "min" not in stats or "max" not in stats:
            continue
        lo = np.asarray(stats["min"], dtype=np.float32)
        hi = np.asarray(stats["max"], dtype=np.float32)
        lo = np.where(np.isfinite(lo), lo, 0.0)
        hi = np.where(np.isfinite(hi), hi, 0.0)
        narrow = (hi - lo) < MIN_RANGE
        if narrow.any():
            repaired += 1
            mid = (hi + lo) / 2
            lo = np.where(narrow, mid - MIN_RANGE / 2, lo)
            hi = np.where(narrow, mid + MIN_RANGE / 2, hi)
        stats["min"], stats["max"] = lo, hi
    return repaired


class LiteRTEngine:
    name = EngineName.LITERT
    schemes = frozenset({Scheme.DYNAMIC, Scheme.INT8, Scheme.INT16X8, Scheme.W4A8,
                         Scheme.WEIGHT_ONLY_INT8, Scheme.WEIGHT_ONLY_INT4})
    io_types = frozenset({IOType.FLOAT, IOType.INT8, IOType.UINT8})

    def _calibrate(self, qt: Any, model: FloatModel, x: np.ndarray, progress: Progress) -> tuple[dict[str, Any], int]:
        from litert_quantizer.utils import tfl_interpreter_utils as tiu

        interp = tiu.create_tfl_interpreter(model.tflite)
        signatures = interp.get_signature_list()
        key = next(iter(signatures))
        input_name = signatures[key]["inputs"][0]
        result: dict[str, Any] | None = None
        # Fed in chunks so the caller sees progress; the quantizer merges each
        # chunk's ranges into the previous result.
        chunks = np.array_split(np.arange(len(x)), min(_CALIBRATION_CHUNKS, len(x)))
        for done, idx in enumerate(chunks, start=1):
            samples = [{input_name: x[i:i + 1]} for i in idx]
            result = qt.calibrate({key: samples}, previous_calibration_result=result, num_threads=1)
            progress("calibrate", done, len(chunks))
        assert result is not None
        return result, _repair_ranges(result)

    def rewrite(self, model: FloatModel, scheme: Scheme, io: IOType,
                calibration: np.ndarray | None, progress: Progress) -> tuple[bytes, tuple[str, ...]]:
        from litert_quantizer import quantizer

        bits = "int4 for " + " and ".join(W4A8_OPS) + ", int8 elsewhere" if scheme is Scheme.W4A8 else \
            f"int{4 if scheme is Scheme.WEIGHT_ONLY_INT4 else 8}"
        notes = [f"litert-quantizer {_version()}: weights symmetric per-channel {bits}"]
        try:
            with quiet() as captured:
                qt = quantizer.Quantizer(bytearray(model.tflite), _recipe(scheme, io))
                qsvs = None
                if qt.need_calibration:
                    assert calibration is not None, "pipeline passes calibration data for static schemes"
                    qsvs, repaired = self._calibrate(qt, model, calibration, progress)
                    # litert-quantizer merges per-sample ranges with a moving average
                    # (smoothing 0.95), not a global min/max: rare extremes get clipped.
                    sym = "symmetric" if scheme is Scheme.INT16X8 else "asymmetric"
                    notes.append(f"activations {sym} per-tensor; ranges are litert-quantizer's moving "
                                 f"average of per-sample min/max (smoothing 0.95) over {len(calibration)} samples")
                    if repaired:
                        notes.append(f"{repaired} degenerate activation ranges widened to {MIN_RANGE:g}")
                result = qt.quantize(qsvs, enable_progress_report=False)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"litert-quantizer failed on scheme {scheme.value}: {last_error_line(captured, first)}") from None
        if scheme.needs_calibration:
            notes.append(f"model I/O {io.value}" + (" (QUANTIZE after the input, DEQUANTIZE before the output)" if io is IOType.FLOAT else ""))
        if scheme is Scheme.WEIGHT_ONLY_INT4:
            notes.append("int4 weights are per-channel: litert-quantizer allows blockwise int4 only for dynamic recipes")
        return bytes(result.quantized_model), tuple(notes)


def _version() -> str:
    from importlib.metadata import version

    return version("litert-quantizer")
