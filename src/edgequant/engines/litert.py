"""The ``litert`` engine: LiteRT Quantizer (litert-quantizer) on the float .tflite.

It needs no TensorFlow. Its static recipes make model I/O integer; we add
recipe rules for the graph's INPUT and OUTPUT so the default is float I/O (a
QUANTIZE op after the input, a DEQUANTIZE before the output), matching the
converter's default and what an app developer expects.

Per-layer precision (a recipe's ``tensors.NAME.precision``) becomes one more
recipe rule per op, scoped to the op by its output tensor name and its op type
(see :func:`layer_rule`). litert-quantizer 0.11 allows any mix of int8,
int16x8, w4a8 and float ops: where a tensor's producer and consumer disagree it
inserts a QUANTIZE (requantize) or DEQUANTIZE op between them. What it does not
allow is an op type outside its policy for a precision (4-bit weights with
8-bit activations only on FULLY_CONNECTED and CONV_2D, for example);
:meth:`LiteRTEngine.check_precisions` refuses those before any work.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edgequant._util import Progress, last_error_line, quiet
from edgequant.errors import EngineError, UnsupportedError
from edgequant.graph.signature import narrow_tables_int8, restore_signature_outputs
from edgequant.types import CalibrationInput, EngineName, FloatModel, IOType, Precision, Scheme

__all__ = ["LiteRTEngine", "quantizable_ops", "keep_float_rule", "rewrite_keeping_float", "layer_rule", "layer_rules",
           "precision_ops", "layer_ops"]

# Ops that take int4 weights with int8 activations in litert-quantizer 0.11.
W4A8_OPS = ("FULLY_CONNECTED", "CONV_2D")


# The ops LiteRT Quantizer's float casting stores as float16 (its FLOAT_CASTING registrations).
FP16_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "EMBEDDING_LOOKUP")


def _float_rule(regex: str, operation: str) -> dict[str, Any]:
    """A litert-quantizer rule that leaves the ops ``regex`` scopes (of type ``operation``, or "*") float."""
    return {"regex": regex, "operation": operation, "algorithm_key": "no_quantize",
            "op_config": {"compute_precision": "FLOAT"}}


def _recipe(scheme: Scheme, io: IOType) -> list[dict[str, Any]]:
    from litert_quantizer import recipe

    if scheme is Scheme.FP16:
        # Float casting: float16 weights, DEQUANTIZE widens them at load, compute stays float32.
        cfg = {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT", "symmetric": False,
                                        "granularity": "TENSORWISE"},
               "compute_precision": "FLOAT", "explicit_dequantize": True}
        return [{"regex": ".*", "operation": op, "algorithm_key": "float_casting", "op_config": copy.deepcopy(cfg)}
                for op in FP16_OPS]

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
    if scheme is Scheme.DYNAMIC:
        # XNNPACK has no dynamic-range (hybrid) depthwise kernel: LiteRT's builtin one quantizes the input
        # at every call and ran slower than float, and the per-tensor input step cost accuracy, for weights
        # that are a small share of a model (benchmarks/results/dynamic-choices.md).
        rules.append(_float_rule(".*", "DEPTHWISE_CONV_2D"))
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


# Schemes whose weights are 8-bit: an embedding table (GATHER on a constant) is stored int8 in each, with a
# scale per row or per column (graph.signature.narrow_tables_int8) behind a DEQUANTIZE, the lookup left float. The
# quantizer's own choices were worse or none: its dynamic and weight-only recipes leave the table float32, its
# int16x8 recipe stores it int16, and a quantized GATHER takes one scale for the whole table, set by its largest
# row (MiniLM's position table came out at 20 dB; per row, 39 dB).
TABLE_SCHEMES = frozenset({Scheme.DYNAMIC, Scheme.WEIGHT_ONLY_INT8, Scheme.INT16X8, Scheme.INT8, Scheme.W4A8})


# The lookups whose constant table is stored int8: Keras' Embedding becomes GATHER, litert-torch's GATHER_ND.
LOOKUP_OPS = ("GATHER", "GATHER_ND")


def table_lookups(tflite: bytes) -> list[str]:
    """Output names of the lookups (LOOKUP_OPS) whose table is a float constant."""
    from edgequant.graph.edit import GraphEditor

    ed = GraphEditor(tflite, "float model")
    return [ed.tensor_name(op.outputs[0]) for op in ed.find_ops(*LOOKUP_OPS)
            if ed.is_constant(op.inputs[0]) and ed.tensor_dtype(op.inputs[0]) == "float32"]


def _lookup_rules(outputs: Sequence[str]) -> list[dict[str, Any]]:
    """Rules that leave those lookups float (their tables become int8 per row or column after quantization);
    lookups on activations keep the scheme's rule."""
    scope = _scope_regex(outputs)
    return [_float_rule(scope, op) for op in LOOKUP_OPS]


def _prepared(model: FloatModel, scheme: Scheme, io: IOType, ranges: dict[str, tuple[float, float]] | None,
              precisions: Mapping[str, Precision] | None = None
              ) -> tuple[bytes, dict[str, tuple[float, float]] | None, dict[str, Precision]]:
    """The float graph the quantizer gets, with its ranges and layer precisions: float model outputs that other
    ops also read get a copy for those ops (graph.signature.split_consumed_outputs), with the output's range and
    the precision of the op that writes the output (a float island's output stays float in its copy too)."""
    precisions = dict(precisions or {})
    if not (scheme.needs_calibration and io is IOType.FLOAT):
        return model.tflite, ranges, precisions
    from edgequant.graph.signature import split_consumed_outputs

    tflite, copies = split_consumed_outputs(model.tflite, "float model")
    if ranges is not None and copies:
        ranges = {**ranges, **{c: ranges[o] for c, o in copies.items() if o in ranges}}
    precisions.update({c: precisions[o] for c, o in copies.items() if o in precisions})
    return tflite, ranges, precisions


def _qsvs(tflite: bytes, ranges: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """edgequant's ranges in litert-quantizer's calibration-result format.

    It keys QSVs by tensor name with min/max arrays of the tensor's rank (all
    ones: per-tensor); tensors edgequant does not track (integer shape
    tensors) get their values from one tiny litert calibration step.
    """
    from edgequant.graph.submodel import GraphModel

    # Read from the flatbuffer: the names and ranks need no interpreter.
    g = GraphModel(tflite, "float model")
    ranks = {g.tensor_name(i): len(g.tensor_shape(i)) for i in range(len(g.sg.tensors or []))}
    return {name: {"min": np.full((1,) * ranks.get(name, 1), lo, np.float32),
                   "max": np.full((1,) * ranks.get(name, 1), hi, np.float32)}
            for name, (lo, hi) in ranges.items()}


class LiteRTEngine:
    name = EngineName.LITERT
    schemes = frozenset({Scheme.DYNAMIC, Scheme.INT8, Scheme.INT16X8, Scheme.W4A8,
                         Scheme.WEIGHT_ONLY_INT8, Scheme.WEIGHT_ONLY_INT4, Scheme.FP16})
    io_types = frozenset({IOType.FLOAT, IOType.INT8, IOType.UINT8})
    calibrates_itself = False
    layer_precisions = frozenset(Precision)

    def check_precisions(self, model: FloatModel, scheme: Scheme, precisions: Mapping[str, Precision],
                         label: Callable[[str], str]) -> None:
        """Refuse a rule whose tensor no op writes, or whose op litert-quantizer cannot give that precision.

        ``label(name)`` begins the error (a recipe passes its file and field path).
        """
        ops = layer_ops(model.tflite)
        for name, precision in precisions.items():
            op = ops.get(name)
            if op is None:
                shown = ", ".join(f'"{n}"' for n in list(ops)[:3])
                raise UnsupportedError(f"{label(name)}: no op of this model writes a tensor of that name; expected "
                                       f"an op's output tensor, such as {shown}")
            able = precision_ops(precision)
            if able is not None and op not in able:
                raise UnsupportedError(f"{label(name)}: precision {precision.value} is not available for {op} in "
                                       f"litert-quantizer {_version()} (its policy allows it for "
                                       f"{_listing(able)}); found {op}")

    def rewrite(self, model: FloatModel, scheme: Scheme, io: IOType,
                calib: CalibrationInput | None, progress: Progress,
                precisions: Mapping[str, Precision] | None = None) -> tuple[bytes, tuple[str, ...]]:
        from litert_quantizer import quantizer

        bits = "int4 for " + " and ".join(W4A8_OPS) + ", int8 elsewhere" if scheme is Scheme.W4A8 else \
            "int8; depthwise convolutions stay float (no fast dynamic-range kernel for them)" \
            if scheme is Scheme.DYNAMIC else f"int{4 if scheme is Scheme.WEIGHT_ONLY_INT4 else 8}"
        notes = [f"litert-quantizer {_version()}: weights symmetric per-channel {bits}" if scheme is not Scheme.FP16
                 else f"litert-quantizer {_version()} float casting: weights of {', '.join(FP16_OPS[:3])} and "
                      "transposed convolutions stored as float16, dequantized to float32 at load on CPU"]
        rules = _recipe(scheme, io)
        lookups = table_lookups(model.tflite) if scheme in TABLE_SCHEMES else []
        if lookups:
            rules += _lookup_rules(lookups)
        source, ranges, layer = _prepared(model, scheme, io, calib.ranges if calib is not None else None,
                                          precisions)
        if precisions:
            # Appended last: litert-quantizer gives the later scope regex priority over the scheme's ".*".
            rules += layer_rules(layer, layer_ops(source))
            counts: dict[str, int] = {}
            for p in precisions.values():
                counts[p.value] = counts.get(p.value, 0) + 1
            notes.append("per-layer precision: " + ", ".join(f"{n} op(s) {p}" for p, n in sorted(counts.items()))
                         + "; QUANTIZE/DEQUANTIZE ops join layers of different precision")
        lhs = [n for n in lhs_constant_matmuls(source) if (layer or {}).get(n) is not Precision.FLOAT]
        if lhs and scheme is not Scheme.FP16:
            rules.append(_lhs_constant_rule(lhs, scheme, rules[0]))
            notes.append(f"{len(lhs)} BATCH_MATMUL(s) with a constant first operand: "
                         + ("kept float (LiteRT's int16 kernel takes no int8 constant beside an int16 activation)"
                            if scheme is Scheme.INT16X8 else
                            "its weights per-tensor (litert-quantizer would quantize them per-channel along the "
                            "reduced axis, which LiteRT's kernel does not read)" if scheme.needs_calibration else
                            "kept float (LiteRT's hybrid kernel takes no int8 first operand)"))

        def int16(name: str) -> bool:
            precision = (layer or {}).get(name)
            return precision is Precision.INT16X8 or (precision is None and scheme is Scheme.INT16X8)

        wide = {n: c for n, c in wide_softmaxes(source).items() if int16(n)}
        if wide:
            rules.append(_wide_softmax_rule(sorted(wide)))
            most = max(wide.values())
            notes.append(f"{len(wide)} SOFTMAX(es) over {min(wide.values())} or more classes kept float: LiteRT's int16 "
                         f"kernel floors exp() at e^-10, so over {most} classes up to {(most - 1) * SOFTMAX_INT16_FLOOR:.0%} "
                         "of the probability would go to classes far below the top")
        try:
            with quiet() as captured:
                qt = quantizer.Quantizer(bytearray(source), rules)
                qsvs = None
                if qt.need_calibration:
                    assert ranges is not None, "pipeline passes ranges for static schemes; no other rule calibrates"
                    qsvs = _qsvs(source, ranges)
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
        quantized = bytes(result.quantized_model)
        if lookups:
            quantized, count = narrow_tables_int8(quantized, f"{scheme.value} output")
            if count:
                notes.append(f"embedding tables ({count} lookups on a constant) stored int8 with a scale per row or "
                             "per column behind a DEQUANTIZE (float in memory at run time); the lookups stay float")
        quantized, restored = restore_signature_outputs(quantized, f"{scheme.value} output")
        if restored:
            notes.append(f"{restored} model output(s) kept float and also read by integer ops: the float tensor made "
                         "the graph output again (litert-quantizer had put its QUANTIZE's output in its place)")
        if scheme is Scheme.INT16X8 or any(p is Precision.INT16X8 for p in (precisions or {}).values()):
            quantized, count = general_int16_scaling(quantized)
            if count:
                notes.append(f"{count} int16 ADD/SUB op(s) use LiteRT's general int16 scaling (pot_scale_int16 "
                             "off: the power-of-two path refuses some scales)")
        if scheme is Scheme.FP16:
            from edgequant.graph.signature import narrow_tables_fp16

            quantized, count = narrow_tables_fp16(quantized, f"{scheme.value} output")
            if count:
                notes.append(f"embedding tables ({count} GATHER on a constant) stored float16 behind DEQUANTIZE, "
                             "which float casting leaves float32")
        return quantized, tuple(notes)


def general_int16_scaling(tflite: bytes) -> tuple[bytes, int]:
    """The model with every ADD and SUB on int16 activations set to ``pot_scale_int16 = false``, and how many.

    The schema's default (true) sends an op whose scales all happen to be powers of two down LiteRT's
    power-of-two path, which refuses it at prepare unless one input keeps the output's scale; litert-quantizer
    leaves the default. The general path handles any scales, powers of two included.
    """
    from edgequant.graph.edit import GraphEditor

    ed = GraphEditor(tflite, "int16x8 output")
    count = 0
    for op in ed.find_ops("ADD", "SUB"):
        opts = ed.options(op)
        if ed.tensor_dtype(op.outputs[0]) == "int16" and (opts is None or opts.potScaleInt16):
            ed.set_option(op, "potScaleInt16", False)
            count += 1
    return (ed.to_bytes(), count) if count else (tflite, 0)


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
    key = _POLICY_KEYS.get(scheme)
    return frozenset() if key is None else _policy_ops(key)


# The policy entry that holds the op types each per-layer precision is allowed for (float: every op).
_PRECISION_POLICY = {Precision.INT8: "static_wi8_ai8", Precision.INT16X8: "static_wi8_ai16",
                     Precision.W4A8: "static_wi4_ai8"}


def precision_ops(precision: Precision) -> frozenset[str] | None:
    """Builtin op names litert-quantizer can give ``precision``; None for float (any op can stay float)."""
    key = _PRECISION_POLICY.get(precision)
    return None if key is None else _policy_ops(key)


@functools.lru_cache(maxsize=None)
def _policy_ops(key: str) -> frozenset[str]:
    import json

    from litert_quantizer import default_policy

    policy = json.loads(default_policy.DEFAULT_JSON_POLICY)["ops_per_config"].get(key, [])
    to_builtin = {tfl: builtin for builtin, tfl in _tfl_names().items()}
    # INPUT/OUTPUT are the quantizer's virtual ops for the graph boundary, not builtins.
    return frozenset(to_builtin[op] for op in policy if op in to_builtin)


@functools.lru_cache(maxsize=1)
def _tfl_names() -> dict[str, str]:
    """Builtin op name (e.g. "TRANSPOSE_CONV") -> litert-quantizer's op name (e.g. "CONV_2D_TRANSPOSE")."""
    from litert_quantizer.utils import tfl_flatbuffer_utils

    from edgequant.graph.flatbuffer import enum_names

    builtin = enum_names("BuiltinOperator")
    return {builtin.get(int(code), str(name.value)): str(name.value)
            for name, code in tfl_flatbuffer_utils.TFL_OP_NAME_TO_CODE.items()}


def _listing(ops: frozenset[str]) -> str:
    names = sorted(ops)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if len(names) <= 6 else \
        ", ".join(names[:6]) + f" and {len(names) - 6} more"


def layer_ops(tflite: bytes) -> dict[str, str]:
    """Every op output tensor of the model's main subgraph, by name -> the builtin op type that writes it."""
    from edgequant.graph.submodel import GraphModel

    g = GraphModel(tflite, "float model")
    return {g.tensor_name(t): g.op_names[i] for t, i in g.producers().items()}


def lhs_constant_matmuls(tflite: bytes) -> list[str]:
    """Output names of the BATCH_MATMULs whose first operand (left-hand side) is a constant."""
    from edgequant.graph.submodel import GraphModel

    g = GraphModel(tflite, "float model")
    return [g.tensor_name(g.op_outputs(i)[0]) for i, op in enumerate(g.op_names)
            if op == "BATCH_MATMUL" and g.op_inputs(i) and g.is_constant(g.op_inputs(i)[0])]


# LiteRT's int16 SOFTMAX reads exp(x - max) from a table over [-10, 0], so a class more than 10 below the
# largest still adds e^-10 to the sum: over N classes the probabilities shrink by up to (N - 1) e^-10. Where
# that can pass 1% (N >= 222: a recognizer's character classes, a long attention row), the op stays float.
SOFTMAX_INT16_FLOOR = math.exp(-10.0)
SOFTMAX_INT16_MASS = 0.01


def wide_softmaxes(tflite: bytes) -> dict[str, int]:
    """Output name -> class count of the SOFTMAXes whose int16 kernel can lose over 1% of the probability."""
    from edgequant.graph.submodel import GraphModel

    g = GraphModel(tflite, "float model")
    out = {}
    for i, op in enumerate(g.op_names):
        if op != "SOFTMAX" or not g.op_outputs(i):
            continue
        shape = g.tensor_shape(g.op_outputs(i)[0])
        classes = int(shape[-1]) if shape else 0
        if (classes - 1) * SOFTMAX_INT16_FLOOR > SOFTMAX_INT16_MASS:
            out[g.tensor_name(g.op_outputs(i)[0])] = classes
    return out


def _wide_softmax_rule(tensors: Sequence[str]) -> dict[str, Any]:
    return _float_rule(_scope_regex(list(tensors)), "SOFTMAX")


def _lhs_constant_rule(tensors: list[str], scheme: Scheme, base: dict[str, Any]) -> dict[str, Any]:
    """The rule for BATCH_MATMULs with a constant left operand (a learned query, say).

    litert-quantizer takes a BATCH_MATMUL's constant for its right operand and quantizes it per-channel along
    its last axis; on the left operand that axis is the one summed over, whose per-channel scales LiteRT's
    kernel does not apply (the op's int8 output came out all one value). int8 and w4a8 get the weight
    per-tensor. Dynamic range keeps the op float (the hybrid kernel wants a float left operand), and so does
    int16x8: LiteRT's kernel refuses an int8 constant beside an int16 activation.
    """
    scope = _scope_regex(tensors)
    if not scheme.needs_calibration or scheme is Scheme.INT16X8:
        return _float_rule(scope, "BATCH_MATMUL")
    cfg = copy.deepcopy(base["op_config"])
    cfg["weight_tensor_config"].update(granularity="TENSORWISE", num_bits=8)
    return {"regex": scope, "operation": "BATCH_MATMUL", "algorithm_key": base["algorithm_key"], "op_config": cfg}


def layer_rule(tensor: str, op: str, precision: Precision) -> dict[str, Any]:
    """The litert-quantizer recipe rule that gives the op writing ``tensor`` (a builtin ``op``) ``precision``.

    Scoped by the op's output name (litert-quantizer matches the regex against
    "out1;out2;", see :func:`keep_float_rule`) and by its op type, not "*": with
    "*" the rule would also catch the quantizer's virtual OUTPUT op of a model
    output tensor and change the model's I/O type.
    """
    from litert_quantizer import recipe

    operation = _tfl_names().get(op, op)
    scope = "^" + re.escape(tensor) + ";"
    if precision is Precision.FLOAT:
        return _float_rule(scope, operation)
    base = recipe.static_wi8_ai8()[0]
    cfg = copy.deepcopy(base["op_config"])
    bits = precision.activation_bits
    # LiteRT's 16-bit activation kernels take symmetric ranges (zero point 0), as the int16x8 scheme does.
    cfg["activation_tensor_config"].update(num_bits=bits, symmetric=bits == 16)
    cfg["weight_tensor_config"]["num_bits"] = precision.weight_bits
    return {"regex": scope, "operation": operation, "algorithm_key": base["algorithm_key"], "op_config": cfg}


def layer_rules(precisions: Mapping[str, Precision], ops: Mapping[str, str]) -> list[dict[str, Any]]:
    """One rule per (op type, precision) for many layers: :func:`layer_rule` with its scopes joined.

    litert-quantizer tests every rule's regex against every op with re.search,
    whose compiled-pattern cache holds 512 patterns: one rule per layer (a float-island
    plan sets hundreds) recompiled every pattern on every test, and took minutes.
    """
    groups: dict[tuple[str, Precision], list[str]] = {}
    for name, precision in precisions.items():
        groups.setdefault((ops[name], precision), []).append(name)
    out = []
    for (op, precision), names in groups.items():
        rule = layer_rule(names[0], op, precision)
        rule["regex"] = _scope_regex(names)
        out.append(rule)
    return out


def _scope_regex(tensors: Sequence[str]) -> str:
    """One litert-quantizer scope regex for the ops writing ``tensors`` (a scope is the op's output names, each
    followed by ";"): one pattern for many ops keeps re's compiled-pattern cache from thrashing."""
    return "^(?:" + "|".join(re.escape(t) for t in tensors) + ");"


def keep_float_rule(tensor: str) -> dict[str, Any]:
    """A litert-quantizer recipe rule that leaves the op writing ``tensor`` in float.

    litert-quantizer matches a rule's regex against the op's scope: its output
    tensor names joined by ";" with a trailing ";" (tfl_flatbuffer_utils.get_op_scope);
    later rules win, so this one is appended after the scheme's rules.
    """
    return _float_rule("^" + re.escape(tensor) + ";", "*")


def rewrite_keeping_float(model: FloatModel, scheme: Scheme, calibration: CalibrationInput | None,
                          keep_float: tuple[str, ...] = ()) -> bytes:
    """``scheme`` with float model I/O, except the ops writing the ``keep_float`` tensors, which stay float.

    Static schemes need ``calibration.ranges`` for every float activation, as for
    :meth:`LiteRTEngine.rewrite`. The engine inserts DEQUANTIZE before and
    QUANTIZE after each kept op.
    """
    from litert_quantizer import quantizer

    rules = _recipe(scheme, IOType.FLOAT) + [keep_float_rule(t) for t in keep_float]
    source, ranges, _ = _prepared(model, scheme, IOType.FLOAT,
                                  calibration.ranges if calibration is not None else None)
    try:
        with quiet() as captured:
            qt = quantizer.Quantizer(bytearray(source), rules)
            qsvs = None
            if qt.need_calibration:
                if ranges is None:
                    raise EngineError(f"scheme {scheme.value} needs activation ranges: expected calibration ranges, "
                                      "found none")
                qsvs = _qsvs(source, ranges)
            result = qt.quantize(qsvs, enable_progress_report=False)
    except EngineError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"litert-quantizer failed on scheme {scheme.value} keeping {len(keep_float)} op(s) in "
                          f"float: {last_error_line(captured, first)}") from None
    return bytes(result.quantized_model)
