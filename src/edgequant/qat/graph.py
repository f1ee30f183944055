"""The folded float graph: a trained Keras 3 model rebuilt the way the deployed LiteRT graph computes it.

    original model -> walk its nodes in order -> FoldedGraph (nodes keyed by tensor) -> Keras model

- A BatchNormalization whose only input is a Conv2D, DepthwiseConv2D or Dense output
  (used by nothing else) is folded into that layer as TensorFlow's converter folds it:
  w' = w * gamma / sqrt(var + eps) per output channel, b' = beta + (b - mean) * gamma / sqrt(var + eps).
  The statistics are frozen from then on; the folded kernel and bias are what fine-tuning trains.
- A weighted layer's activation becomes a layer of its own, so every tensor the converter
  can produce (the pre-softmax logits, the ReLU output fused into a conv) has a Keras twin.
- Every other layer is reused as it is (same object, same weights). Only exact classes
  in SIMULATED are simulated; any other layer or op runs in float and stays float in
  the exported model, and is listed.

Nodes are keyed by the id of the original tensor they produce (negative keys for the
new pre-activation tensors), so the quantizer plan, the simulation and the export all
refer to one tensor by one key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from edgequant.errors import UnsupportedError

__all__ = ["GNode", "FoldedGraph", "fold_graph", "WEIGHTED", "SIMULATED"]

WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")
# Activation functions the simulation models (fused into CONV/FC, or their own LiteRT op).
ACTIVATIONS = frozenset({"linear", "relu", "relu6", "softmax", "sigmoid", "tanh"})
# Layers whose LiteRT ops are simulated; everything else runs in float.
SIMULATED = frozenset({"InputLayer", *WEIGHTED, "BatchNormalization", "ReLU", "Activation", "Softmax",
                       "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                       "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten",
                       "Reshape", "Dropout", "SpatialDropout2D", "Add", "ZeroPadding2D", "Identity"})

Fill = Callable[[dict[int, Any]], tuple[tuple[Any, ...], dict[str, Any]]]


@dataclasses.dataclass(eq=False)
class GNode:
    """One call in the folded graph: ``op(*args, **kwargs)`` with args filled from tensors by key."""

    op: Any
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    fill: Fill
    source: str                    # the original layer name(s), for messages
    simulated: bool
    weighted: str | None = None    # "Conv2D" | "DepthwiseConv2D" | "Dense" for a layer with a kernel
    why_float: str = ""


@dataclasses.dataclass(eq=False)
class FoldedGraph:
    """The folded graph, its Keras model, and what was folded or left float."""

    nodes: list[GNode]
    input_key: int
    output_key: int
    model: Any                     # keras.Model: input -> output, standard layers only
    folded: tuple[str, ...]        # "batch_normalization into conv2d"
    float_layers: tuple[str, ...]  # "layer_norm (LayerNormalization): not simulated"

    def run(self, x: Any, call: Callable[[GNode, tuple, dict], Any] | None = None) -> dict[int, Any]:
        """Every tensor of the graph for input ``x`` (symbolic or eager), by key."""
        values: dict[int, Any] = {self.input_key: x}
        for node in self.nodes:
            args, kwargs = node.fill(values)
            out = call(node, args, kwargs) if call is not None else node.op(*args, **kwargs)
            for key, value in zip(node.outputs, _flatten(out)):
                values[key] = value
        return values

    def probe(self) -> Any:
        """A Keras model from the input to every tensor, for matching with the .tflite."""
        import keras

        values = self.run(self.model.inputs[0])
        keys = [k for k in values if k != self.input_key]
        return keras.Model(self.model.inputs[0], [values[k] for k in keys]), keys

    def weighted_nodes(self) -> list[GNode]:
        return [n for n in self.nodes if n.weighted is not None]

    @property
    def output_activation(self) -> str:
        """"softmax" or "sigmoid" when the output is probabilities made that way, else "" (the loss needs it)."""
        from edgequant.qat.finetune import output_activation

        last = next((n for n in reversed(self.nodes) if self.output_key in n.outputs), None)
        return output_activation(last.op) if last is not None else ""


def _flatten(out: Any) -> list[Any]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _activation_name(fn: Any) -> str:
    import keras

    name = keras.activations.serialize(fn)
    return name if isinstance(name, str) else str(getattr(fn, "__name__", name))


def _simulable(layer: Any) -> str:
    """Why ``layer`` cannot be simulated, or "" when it can."""
    kind = type(layer).__name__
    if kind not in SIMULATED or not type(layer).__module__.startswith("keras."):
        return f"{kind} is not simulated"
    if kind in ("Conv2D", "DepthwiseConv2D") and (layer.data_format != "channels_last"
                                                 or getattr(layer, "groups", 1) != 1):
        return f"{kind} with channels_first or groups is not simulated"
    if kind == "Dense" and getattr(layer, "lora_enabled", False):
        return "Dense with LoRA is not simulated"
    if kind == "Activation" and _activation_name(layer.activation) not in ACTIVATIONS:
        return f"activation {_activation_name(layer.activation)} is not simulated"
    if kind == "ReLU" and (layer.negative_slope or layer.threshold or layer.max_value not in (None, 6.0)):
        return "ReLU with a slope, threshold or max other than 6 is not simulated"
    if kind == "BatchNormalization":
        return "BatchNormalization not after a conv or dense layer is not simulated"
    return ""


def _fold_bn(layer: Any, bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """The weighted layer's kernel and bias with ``bn`` folded in, as the converter folds it."""
    kernel = np.asarray(layer.kernel.numpy(), np.float32)
    # Output channels: the kernel's last axis, or in * multiplier for a depthwise kernel.
    channels = kernel.shape[2] * kernel.shape[3] if type(layer).__name__ == "DepthwiseConv2D" else kernel.shape[-1]
    bias = np.asarray(layer.bias.numpy(), np.float32) if layer.use_bias else np.zeros(channels, np.float32)
    if bn is None:
        return kernel, bias
    gamma = bn.gamma.numpy() if bn.scale else np.ones(bias.shape, np.float32)
    beta = bn.beta.numpy() if bn.center else np.zeros(bias.shape, np.float32)
    factor = (gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)).astype(np.float32)
    if type(layer).__name__ == "DepthwiseConv2D":
        folded = kernel * factor.reshape(kernel.shape[2], kernel.shape[3])
    else:
        folded = kernel * factor
    return folded.astype(np.float32), (beta + (bias - bn.moving_mean.numpy()) * factor).astype(np.float32)


def _linear_copy(layer: Any, kernel: np.ndarray, bias: np.ndarray, input_shape: tuple) -> Any:
    """A fresh layer like ``layer`` with a bias, no activation, and the given weights."""
    config = dict(layer.get_config(), use_bias=True, activation="linear", name=layer.name)
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                "bias_constraint", "depthwise_regularizer", "depthwise_constraint"):
        config.pop(key, None)
    copy = type(layer).from_config(config)
    copy.build(input_shape)
    copy.set_weights([kernel, bias])
    return copy


def _nodes_in_order(functional: Any) -> list[Any]:
    by_depth = functional._nodes_by_depth
    return [n for depth in sorted(by_depth, reverse=True) for n in by_depth[depth]]


def fold_graph(model: Any) -> FoldedGraph:
    """Rebuild ``model`` (Sequential or Functional, one input, one output) as a FoldedGraph."""
    import keras

    functional = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if functional is None or not hasattr(functional, "_nodes_by_depth"):
        raise UnsupportedError(f"model {model.name}: expected a built Sequential or Functional Keras model, found "
                               f"{type(model).__name__} (subclassed models have no graph to simulate)")
    if len(functional.inputs) != 1 or len(functional.outputs) != 1:
        raise UnsupportedError(f"model {model.name}: expected one input and one output, found "
                               f"{len(functional.inputs)} and {len(functional.outputs)}")
    order = [n for n in _nodes_in_order(functional) if n.operation is not None and not n.is_input]
    consumers: dict[int, int] = {}
    for node in order:
        for t in node.input_tensors:
            consumers[id(t)] = consumers.get(id(t), 0) + 1
    output_id = id(functional.outputs[0])
    consumers[output_id] = consumers.get(output_id, 0) + 1
    producer = {id(t): node for node in order for t in node.outputs}

    # Decide the folds first: a BN eats the single output of the weighted layer before it.
    fold_into: dict[int, Any] = {}   # id(weighted node) -> BN node
    folded_bn: set[int] = set()
    for node in order:
        op = node.operation
        if type(op).__name__ != "BatchNormalization" or len(node.input_tensors) != 1:
            continue
        src = producer.get(id(node.input_tensors[0]))
        if (src is not None and type(src.operation).__name__ in WEIGHTED and not _simulable(src.operation)
                and consumers.get(id(node.input_tensors[0])) == 1 and op.axis in (-1, len(op.input.shape) - 1)
                and _activation_name(src.operation.activation) == "linear"):
            fold_into[id(src)] = node
            folded_bn.add(id(node))

    nodes: list[GNode] = []
    folded: list[str] = []
    floats: list[str] = []
    fresh = iter(range(-1, -1_000_000, -1))
    seen_layers: set[int] = set()
    for node in order:
        op = node.operation
        if id(node) in folded_bn:
            continue
        if id(op) in seen_layers and isinstance(op, keras.layers.Layer) and op.weights:
            raise UnsupportedError(f"layer {op.name} is called more than once (shared weights): the simulation "
                                   "needs one call per weighted layer")
        seen_layers.add(id(op))
        inputs = tuple(id(t) for t in node.input_tensors)
        why = _simulable(op) if isinstance(op, keras.layers.Layer) else f"op {type(op).__name__} is not simulated"
        kind = type(op).__name__
        if kind in WEIGHTED and not why:
            bn = fold_into.get(id(node))
            out = id(bn.outputs[0]) if bn is not None else id(node.outputs[0])
            kernel, bias = _fold_bn(op, bn.operation if bn is not None else None)
            if bn is not None:
                folded.append(f"{bn.operation.name} into {op.name}")
            act = _activation_name(op.activation)
            linear_key = out if act == "linear" else next(fresh)
            nodes.append(GNode(_linear_copy(op, kernel, bias, node.input_tensors[0].shape), inputs, (linear_key,), _single(inputs[0]), op.name,
                               True, kind))
            if act != "linear":
                # An activation the simulation does not model runs (and is exported) in float after the
                # simulated layer; its own LiteRT op is kept float.
                act_why = "" if act in ACTIVATIONS else f"activation {act} is not simulated"
                if act_why:
                    floats.append(f"{op.name} activation ({act}): {act_why}")
                nodes.append(GNode(keras.layers.Activation(op.activation, name=f"{op.name}_{act}"), (linear_key,),
                                   (out,), _single(linear_key), op.name, not act_why, why_float=act_why))
            continue
        if why:
            floats.append(f"{getattr(op, 'name', kind)} ({kind}): {why}")
        nodes.append(GNode(op, inputs, tuple(id(t) for t in node.outputs), _symbolic(node.arguments),
                           getattr(op, "name", kind), not why, why_float=why))
    graph = FoldedGraph(nodes, id(functional.inputs[0]), output_id, None, tuple(folded), tuple(floats))
    inp = keras.Input(batch_shape=functional.inputs[0].shape, dtype=functional.inputs[0].dtype)
    graph.model = keras.Model(inp, graph.run(inp)[output_id], name=f"{model.name}_folded")
    # A BN kept float must not update its statistics while the rest fine-tunes.
    for node in nodes:
        if type(node.op).__name__ == "BatchNormalization":
            node.op.trainable = False
    return graph


def _single(key: int) -> Fill:
    return lambda values: ((values[key],), {})


def _symbolic(arguments: Any) -> Fill:
    def fill(values: dict[int, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = arguments.fill_in(values)
        return tuple(args), dict(kwargs)
    return fill
