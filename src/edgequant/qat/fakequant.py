"""Fake quantization as Keras 3 layers: the arithmetic of the deployed LiteRT integer graph, in float.

Every formula here is litert-quantizer's (algorithms/uniform_quantize/uniform_quantize_tensor.py),
because the exported model is quantized by it with our ranges and weights:

- Weights: symmetric, per output channel, scale = max|w| / qmax, round half to even. 8 bits use
  the narrow range [-127, 127]; 4 bits the full range [-8, 7] (litert narrows only from 8 bits up).
- Activations: asymmetric, per tensor, 8 bits. The range is widened to contain 0, then
  scale = (hi - lo) / 255 and zero point = rint(-128 - lo / scale), so zero is exact;
  q = clip(rint(x / scale) + zp, -128, 127).
- SOFTMAX and LOGISTIC outputs have the kernels' fixed scale 1/256 and zero point -128, TANH 1/128 and 0.

Gradients use the straight-through estimator: ``x + stop_gradient(q(x) - x)`` inside the
range. Outside it the output is the clipped value, so a learned range gets the gradient of
the values it clips: lo of those below, hi of those above (as TensorFlow's
FakeQuantWithMinMaxVars gives its min and max).
This module imports Keras at import time; only qat/ imports it, inside functions.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from edgequant.transforms.grid import MIN_BOUND, weight_range
from edgequant.transforms.grid import weight_grid as engine_grid

__all__ = ["weight_grid", "fake_quantize_weight", "ActQuant", "FixedQuant", "QuantConv2D", "QuantDepthwiseConv2D",
           "QuantDense", "ACT_BITS"]

ACT_BITS = 8


def weight_grid(kernel: np.ndarray, bits: int, reduce_axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(integers, scale) of a Keras kernel on the engine's grid; ``reduce_axes`` are all but the channel axes."""
    ratio, scale, qmin, qmax = engine_grid(kernel, bits, reduce_axes)
    return np.clip(np.rint(ratio), qmin, qmax).astype(np.int32), scale


def fake_quantize_weight(kernel: Any, bits: int, reduce_axes: tuple[int, ...]) -> Any:
    """The kernel as the deployed model stores it (dequantized), with a straight-through gradient."""
    # The same grid as transforms.grid.weight_grid, in Keras ops so it trains.
    qmin, qmax = weight_range(bits)
    bound = ops.maximum(ops.max(ops.abs(kernel), axis=reduce_axes, keepdims=True), MIN_BOUND)
    scale = bound / float(qmax)
    snapped = ops.clip(ops.round(kernel / scale), float(qmin), float(qmax)) * scale
    return kernel + ops.stop_gradient(snapped - kernel)


class ActQuant(keras.layers.Layer):
    """Per-tensor asymmetric 8-bit fake quantization with a learned (or frozen) range.

    ``lo``/``hi`` start at the calibrated range; with ``learn`` they are trained with
    the model. The exported model gets exactly these two numbers as the tensor's
    calibration result, so the engine derives the same scale and zero point.
    """

    def __init__(self, lo: float, hi: float, learn: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.init = (float(lo), float(hi))
        self.learn = learn

    def build(self, input_shape: Any) -> None:
        self.lo = self.add_weight(name="lo", shape=(), initializer=keras.initializers.Constant(self.init[0]),
                                  trainable=self.learn)
        self.hi = self.add_weight(name="hi", shape=(), initializer=keras.initializers.Constant(self.init[1]),
                                  trainable=self.learn)

    def call(self, x: Any) -> Any:
        lo, hi = ops.minimum(self.lo, 0.0), ops.maximum(self.hi, 0.0)
        scale = ops.maximum(hi - lo, MIN_BOUND) / 255.0
        zp = ops.stop_gradient(ops.round(-128.0 - lo / scale))
        q = ops.clip(ops.round(x / scale) + zp, -128.0, 127.0)
        y = (q - zp) * scale
        # The clipped input carries the gradient: to x inside the range, to lo for values below it and to hi
        # for values above it (TensorFlow's FakeQuantWithMinMaxVars gradient). The bounds' values are the
        # representable ones, (-128 - zp) * scale and (127 - zp) * scale, which zero-point rounding nudges.
        lo_bound = self.lo + ops.stop_gradient((-128.0 - zp) * scale - self.lo)
        hi_bound = self.hi + ops.stop_gradient((127.0 - zp) * scale - self.hi)
        clipped = ops.minimum(ops.maximum(x, lo_bound), hi_bound)
        return clipped + ops.stop_gradient(y - clipped)

    def range(self) -> tuple[float, float]:
        return float(keras.ops.convert_to_numpy(self.lo)), float(keras.ops.convert_to_numpy(self.hi))


class FixedQuant(keras.layers.Layer):
    """Fake quantization with a fixed scale and zero point (SOFTMAX, LOGISTIC, TANH outputs in LiteRT)."""

    def __init__(self, scale: float, zero_point: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale, self.zero_point = float(scale), float(zero_point)

    def call(self, x: Any) -> Any:
        q = ops.clip(ops.round(x / self.scale) + self.zero_point, -128.0, 127.0)
        return x + ops.stop_gradient((q - self.zero_point) * self.scale - x)


class _QuantWeights(keras.layers.Layer):
    """Runs a built Conv2D/DepthwiseConv2D/Dense layer with its kernel fake-quantized.

    The wrapped layer keeps the float ("shadow") weights that training updates;
    only the forward pass sees them on the grid, as in every QAT scheme.
    """

    reduce_axes: tuple[int, ...] = ()

    def __init__(self, inner: Any, bits: int, **kwargs: Any) -> None:
        super().__init__(name=f"{inner.name}_fq", **kwargs)
        self.inner = inner
        self.bits = bits

    def quantized_kernel(self) -> Any:
        return fake_quantize_weight(self.inner.kernel, self.bits, self.reduce_axes)

    def _bias(self, y: Any) -> Any:
        return y + self.inner.bias if self.inner.use_bias else y


class QuantConv2D(_QuantWeights):
    # Keras kernel (kh, kw, in, out); LiteRT CONV_2D quantizes per output channel.
    reduce_axes = (0, 1, 2)

    def call(self, x: Any) -> Any:
        c = self.inner
        return self._bias(ops.conv(x, self.quantized_kernel(), strides=c.strides, padding=c.padding,
                                   dilation_rate=c.dilation_rate, data_format=c.data_format))


class QuantDepthwiseConv2D(_QuantWeights):
    # Keras kernel (kh, kw, in, multiplier); output channel in*multiplier + m, as DEPTHWISE_CONV_2D's last axis.
    reduce_axes = (0, 1)

    def call(self, x: Any) -> Any:
        c = self.inner
        return self._bias(ops.depthwise_conv(x, self.quantized_kernel(), strides=c.strides, padding=c.padding,
                                             dilation_rate=c.dilation_rate, data_format=c.data_format))


class QuantDense(_QuantWeights):
    # Keras kernel (in, out); FULLY_CONNECTED stores (out, in) and quantizes per output row.
    reduce_axes = (0,)

    def call(self, x: Any) -> Any:
        return self._bias(ops.matmul(x, self.quantized_kernel()))
