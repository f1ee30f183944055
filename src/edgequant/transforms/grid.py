"""The litert engine's weight grid and conv geometry, defined once for every transform (and QAT).

Transforms that pre-compensate or choose weight rounding (bias correction,
AdaRound) and QAT's fake quantization must all reproduce exactly what
litert-quantizer 0.11 stores: symmetric per output channel, scale =
max|w_c| / qmax (floored at 1e-9), numpy rint (round half to even), the
narrow range [-qmax, qmax] from 8 bits up and the full one below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from edgequant._util import Progress, no_progress
from edgequant.errors import InputError
from edgequant.graph.edit import GraphEditor, OpRef
from edgequant.types import Precision, Scheme

__all__ = ["MIN_BOUND", "weight_range", "weight_grid", "fake_quantize", "litert_op_bits", "litert_layer_bits",
           "layer_weight_bits", "op_grid", "same_padding", "OnEngineGrid", "grouped_conv"]

# litert-quantizer's floor on a symmetric bound (it avoids a zero scale for an all-zero channel).
MIN_BOUND = 1e-9


def weight_range(bits: int) -> tuple[int, int]:
    """(qmin, qmax): narrow from 8 bits up, full below."""
    if not 2 <= bits <= 16:
        raise InputError(f"weight bits: expected 2 to 16, found {bits}")
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if bits >= 8 else -qmax - 1), qmax


def weight_grid(w: np.ndarray, bits: int, reduce_axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(w / scale, scale, qmin, qmax); ``reduce_axes`` are every axis but the channel axis."""
    qmin, qmax = weight_range(bits)
    w = np.asarray(w, np.float32)
    bound = np.maximum(np.abs(w).max(axis=reduce_axes, keepdims=True), np.float32(MIN_BOUND))
    scale = (bound / np.float32(qmax)).astype(np.float32)
    return w / scale, scale, qmin, qmax


def op_grid(w: np.ndarray, op: str, bits: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """:func:`weight_grid` for a LiteRT weight tensor (channel axis last for DEPTHWISE_CONV_2D, else first)."""
    axis = w.ndim - 1 if op == "DEPTHWISE_CONV_2D" else 0
    return weight_grid(w, bits, tuple(i for i in range(w.ndim) if i != axis))


def fake_quantize(w: np.ndarray, op: str, bits: int) -> np.ndarray:
    """W_q as float: what the litert engine stores, dequantized."""
    ratio, scale, qmin, qmax = op_grid(w, op, bits)
    return (np.clip(np.rint(ratio), qmin, qmax) * scale).astype(np.float32)


def litert_op_bits(scheme: Scheme | str) -> tuple[int, dict[str, int | None]]:
    """Weight bits the litert engine gives each op type for ``scheme`` (None = left in float).

    litert-quantizer 0.11 keeps DEPTHWISE_CONV_2D in float under weight-only
    int4 and at int8 under w4a8 (4-bit weights only for CONV_2D and
    FULLY_CONNECTED there); the litert engine keeps it float under dynamic
    (engines/litert.py); every other scheme quantizes weights to 8 bits.
    """
    scheme = Scheme(scheme)
    if scheme is Scheme.WEIGHT_ONLY_INT4:
        return 4, {"DEPTHWISE_CONV_2D": None}
    if scheme is Scheme.DYNAMIC:
        return 8, {"DEPTHWISE_CONV_2D": None}
    if scheme is Scheme.W4A8:
        return 4, {"DEPTHWISE_CONV_2D": 8}
    return 8, {}


def litert_layer_bits(precisions: Mapping[str, Precision] | None) -> dict[str, int | None]:
    """Weight bits per layer, by the op's output tensor name, from a recipe's per-layer precisions.

    The litert engine stores int4 for w4a8, int8 for int8 and int16x8, and
    leaves a float layer's weights float (None); these override
    :func:`litert_op_bits` for those layers.
    """
    return {name: p.weight_bits for name, p in (precisions or {}).items()}


def layer_weight_bits(ed: GraphEditor, op: OpRef, weight_bits: int, op_bits: Mapping[str, int | None],
                      layer_bits: Mapping[str, int | None]) -> int | None:
    """The bits one op's weights get: its layer rule, else its op type's, else the scheme's."""
    out = ed.tensor_name(op.outputs[0])
    return layer_bits[out] if out in layer_bits else op_bits.get(op.op, weight_bits)


def same_padding(size: int, kernel: int, stride: int, dilation: int, same: bool) -> tuple[int, int, int]:
    """(pad before, pad after, output size) by TFLite's rules: SAME puts total // 2 before."""
    span = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride) if same else math.ceil((size - span + 1) / stride)
    total = max((out - 1) * stride + span - size, 0) if same else 0
    return total // 2, total - total // 2, out


class OnEngineGrid:
    """``apply_for`` of the transforms that round or correct weights for the litert engine's grid
    (AdaRound, bias correction): the scheme and per-layer precisions become the bit widths the
    engine will store, so the transform works on exactly that grid. Subclasses define ``apply``."""

    # Transforms that take many seconds per layer report progress from apply (AdaRound); the rest are one pass.
    reports_progress = False
    # Transforms that skip layers where they cannot pay take the scheme's activation bits (AdaRound).
    gates = False

    def apply_for(self, tflite: bytes, calibration: np.ndarray | None, scheme: Scheme,
                  precisions: Mapping[str, Precision] | None = None,
                  progress: Progress = no_progress):  # -> TransformResult
        bits, op_bits = litert_op_bits(scheme)
        extra = {"progress": progress} if self.reports_progress else {}
        if self.gates:
            # Integer activations set the noise floor learned rounding has to beat (AdaRound's GATE).
            act = {Scheme.INT8: 8, Scheme.W4A8: 8, Scheme.INT16X8: 16}.get(Scheme(scheme))
            extra["activation_bits"] = act
            # A layer rule at the scheme's activation bits (w4a8's int8 layers) is judged like any other layer.
            extra["gate_exempt"] = {name for name, p in (precisions or {}).items() if p.activation_bits != act}
        return self.apply(tflite, calibration, bits, op_bits=op_bits,  # type: ignore[attr-defined]
                          layer_bits=litert_layer_bits(precisions), **extra)


def grouped_conv(ed: GraphEditor, op: OpRef) -> bool:
    """A CONV_2D whose kernel reads fewer input channels than its input has (groups > 1, as in SVTRv2's
    mixers): the transforms' patches span every input channel, so they skip it."""
    return op.op == "CONV_2D" and ed.tensor_shape(op.inputs[1])[-1] != ed.tensor_shape(op.inputs[0])[-1]
