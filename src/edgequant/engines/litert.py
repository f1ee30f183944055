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
from edgequant.types import CalibrationInput, EngineName, FloatModel, IOType, Scheme

__all__ = ["LiteRTEngine", "quantizable_ops", "keep_float_rule", "rewrite_keeping_float"]

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


def _qsvs(model: FloatModel, ranges: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """edgequant's ranges in litert-quantizer's calibration-result format.

    It keys QSVs by tensor name with min/max arrays of the tensor's rank (all
    ones: per-tensor); tensors edgequant does not track (integer shape
    tensors) get their values from one tiny litert calibration step.
    """
    from edgequant.runtime import open_interpreter

    interp = open_interpreter(model.tflite, "float model")
    ranks = {d["name"]: len(d["shape"]) for d in interp.get_tensor_details()}
    return {name: {"min": np.full((1,) * ranks.get(name, 1), lo, np.float32),
                   "max": np.full((1,) * ranks.get(name, 1), hi, np.float32)}
            for name, (lo, hi) in ranges.items()}


class LiteRTEngine:
    name = EngineName.LITERT
    schemes = frozenset({Scheme.DYNAMIC, Scheme.INT8, Scheme.INT16X8, Scheme.W4A8,
                         Scheme.WEIGHT_ONLY_INT8, Scheme.WEIGHT_ONLY_INT4})
    io_types = frozenset({IOType.FLOAT, IOType.INT8, IOType.UINT8})
    calibrates_itself = False

    def rewrite(self, model: FloatModel, scheme: Scheme, io: IOType,
                calib: CalibrationInput | None, progress: Progress) -> tuple[bytes, tuple[str, ...]]:
        from litert_quantizer import quantizer

        bits = "int4 for " + " and ".join(W4A8_OPS) + ", int8 elsewhere" if scheme is Scheme.W4A8 else \
            f"int{4 if scheme is Scheme.WEIGHT_ONLY_INT4 else 8}"
        notes = [f"litert-quantizer {_version()}: weights symmetric per-channel {bits}"]
        try:
            with quiet() as captured:
                qt = quantizer.Quantizer(bytearray(model.tflite), _recipe(scheme, io))
                qsvs = None
                if qt.need_calibration:
                    assert calib is not None and calib.ranges is not None, "pipeline passes ranges for static schemes"
                    qsvs = _qsvs(model, calib.ranges)
                    sym = "symmetric" if scheme is Scheme.INT16X8 else "asymmetric"
                    notes.append(f"activations {sym} per-tensor; {calib.description}")
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


# ---------------------------------------------------------------------------- analysis support
# analyze/ asks two things of this engine, through the small public functions below so
# that no litert-quantizer internals leak out of engines/: which ops its policy
# can quantize (to say why an op stayed float), and a model quantized with some
# ops kept in float (layer sensitivity).

_POLICY_KEYS = {
    Scheme.INT8: "static_wi8_ai8", Scheme.W4A8: "static_wi8_ai8", Scheme.INT16X8: "static_wi8_ai16",
    Scheme.DYNAMIC: "dynamic_wi8_afp32", Scheme.WEIGHT_ONLY_INT8: "weightonly_wi8_afp32",
    Scheme.WEIGHT_ONLY_INT4: "weightonly_wi4_afp32",
}


def quantizable_ops(scheme: Scheme) -> frozenset[str]:
    """TFLite builtin op names (e.g. "CONV_2D") litert-quantizer's default policy quantizes under ``scheme``.

    Empty for a scheme the engine does not produce (fp16).
    """
    import json

    from litert_quantizer import default_policy
    from litert_quantizer.utils import tfl_flatbuffer_utils

    from edgequant.graph.flatbuffer import enum_names

    key = _POLICY_KEYS.get(scheme)
    if key is None:
        return frozenset()
    policy = json.loads(default_policy.DEFAULT_JSON_POLICY)["ops_per_config"].get(key, [])
    builtin = enum_names("BuiltinOperator")
    names = set()
    for op in policy:
        code = next((c for n, c in tfl_flatbuffer_utils.TFL_OP_NAME_TO_CODE.items() if str(n.value) == op), None)
        # INPUT/OUTPUT are the quantizer's virtual ops for the graph boundary, not builtins.
        if code is not None:
            names.add(builtin.get(int(code), op))
    return frozenset(names)


def keep_float_rule(tensor: str) -> dict[str, Any]:
    """A litert-quantizer recipe rule that leaves the op writing ``tensor`` in float.

    litert-quantizer matches a rule's regex against the op's scope: its output
    tensor names joined by ";" with a trailing ";" (tfl_flatbuffer_utils.get_op_scope);
    later rules win, so this one is appended after the scheme's rules.
    """
    import re

    return {"regex": "^" + re.escape(tensor) + ";", "operation": "*", "algorithm_key": "no_quantize",
            "op_config": {"compute_precision": "FLOAT"}}


def rewrite_keeping_float(model: FloatModel, scheme: Scheme, calibration: CalibrationInput | None,
                          keep_float: tuple[str, ...] = ()) -> bytes:
    """``scheme`` with float model I/O, except the ops writing the ``keep_float`` tensors, which stay float.

    Static schemes need ``calibration.ranges`` for every float activation, as for
    :meth:`LiteRTEngine.rewrite`. The engine inserts DEQUANTIZE before and
    QUANTIZE after each kept op.
    """
    from litert_quantizer import quantizer

    rules = _recipe(scheme, IOType.FLOAT) + [keep_float_rule(t) for t in keep_float]
    try:
        with quiet() as captured:
            qt = quantizer.Quantizer(bytearray(model.tflite), rules)
            qsvs = None
            if qt.need_calibration:
                if calibration is None or calibration.ranges is None:
                    raise EngineError(f"scheme {scheme.value} needs activation ranges: expected calibration ranges, "
                                      "found none")
                qsvs = _qsvs(model, calibration.ranges)
            result = qt.quantize(qsvs, enable_progress_report=False)
    except EngineError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"litert-quantizer failed on scheme {scheme.value} keeping {len(keep_float)} op(s) in "
                          f"float: {last_error_line(captured, first)}") from None
    return bytes(result.quantized_model)
