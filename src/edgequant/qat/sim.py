"""The training graph: the folded graph with fake quantization where the deployed graph quantizes.

Weighted layers run through QuantConv2D / QuantDepthwiseConv2D / QuantDense (kernels on the
engine's grid for their op and scheme); every planned tensor passes its quantizer. A layer
the simulation does not model runs in float and reads float inputs, as the exported graph
(which keeps its ops float) does: litert dequantizes into it, and quantizes its output
with that tensor's range only where an integer op reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from edgequant.qat.graph import FoldedGraph, GNode
from edgequant.qat.match import QuantPoint
from edgequant.types import Scheme

__all__ = ["Simulation", "build_simulation", "weight_bits"]


def weight_bits(scheme: Scheme, kind: str) -> int:
    """Bits of a layer's weights under ``scheme``: w4a8 gives 4 bits to CONV_2D and FULLY_CONNECTED only
    (the ops litert-quantizer allows int4 weights with int8 activations; engines/litert.W4A8_OPS)."""
    if scheme is Scheme.W4A8 and kind in ("Conv2D", "Dense"):
        return 4
    return 8


@dataclasses.dataclass(eq=False)
class Simulation:
    """The fake-quantized Keras model and its quantizer layers by key."""

    model: Any
    quantizers: dict[int, Any]
    wrappers: dict[int, Any]   # id(GNode) -> QuantConv2D/... (holds the trained float kernel)


def build_simulation(graph: FoldedGraph, points: Mapping[int, QuantPoint], ranges: Mapping[int, tuple[float, float]],
                     scheme: Scheme, learn_ranges: bool = True) -> Simulation:
    """The QAT model for ``graph``: ``points`` say where and how, ``ranges`` give learned quantizers' start."""
    import keras

    from edgequant.qat.fakequant import ActQuant, FixedQuant, QuantConv2D, QuantDense, QuantDepthwiseConv2D

    quantizers: dict[int, Any] = {}
    for key, point in points.items():
        if point.kind == "learned":
            lo, hi = ranges[key]
            quantizers[key] = ActQuant(lo, hi, learn=learn_ranges, name=f"eq_fq_{len(quantizers)}")
        elif point.kind == "fixed":
            quantizers[key] = FixedQuant(point.scale, point.zero_point, name=f"eq_fq_fixed_{len(quantizers)}")
    for key, point in points.items():
        if point.kind == "shared":
            quantizers[key] = quantizers[point.shared_with]  # type: ignore[index]
    kinds = {"Conv2D": QuantConv2D, "DepthwiseConv2D": QuantDepthwiseConv2D, "Dense": QuantDense}
    wrappers = {id(n): kinds[n.weighted](n.op, weight_bits(scheme, n.weighted)) for n in graph.weighted_nodes()}
    simulated_key = {graph.input_key: True}
    for node in graph.nodes:
        for k in node.outputs:
            simulated_key[k] = node.simulated

    inp = keras.Input(batch_shape=graph.model.inputs[0].shape, dtype=graph.model.inputs[0].dtype)
    raw: dict[int, Any] = {graph.input_key: inp}
    quant: dict[int, Any] = {}
    if graph.input_key in quantizers:
        # Integer ops read the QUANTIZEd input; a float op reading the model input sees the float input itself.
        quant[graph.input_key] = quantizers[graph.input_key](inp)
    for node in graph.nodes:
        values = {k: _read(k, node, raw, quant, simulated_key) for k in node.inputs}
        args, kwargs = node.fill(values)
        op = wrappers.get(id(node), node.op)
        out = op(*args, **kwargs)
        for key, value in zip(node.outputs, out if isinstance(out, (list, tuple)) else [out]):
            raw[key] = value
            if key in quantizers:
                quant[key] = quantizers[key](value)
                if node.simulated:
                    raw[key] = quant[key]  # an integer op's output is the quantized value, for every reader
    out_key = graph.output_key
    output = quant[out_key] if out_key in quant and simulated_key.get(out_key, False) else raw[out_key]
    model = keras.Model(inp, output, name=f"{graph.model.name}_qat")
    return Simulation(model, quantizers, wrappers)


def _read(key: int, node: GNode, raw: dict[int, Any], quant: dict[int, Any], simulated: dict[int, bool]) -> Any:
    """What ``node`` reads for tensor ``key``: integer ops read the quantized tensor, float ops the float one
    unless an integer op produced it (then the DEQUANTIZEd value, which is the quantized one)."""
    if node.simulated:
        return quant.get(key, raw[key])
    return raw[key]
