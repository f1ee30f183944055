"""Stage: plan. Which layers of a w4a8 model get 4-bit weights.

    float .tflite + calibration inputs -> plan_w4 -> W4Plan (per-layer precision: int8 where 4 bits cost too much)

4-bit weights on every convolution and fully connected layer collapse a real
CNN: on ImageNet MobileNetV2 every layer but the classifier at 4 bits kept 0.7 dB
of output SQNR even after AdaRound, while one layer alone at 4 bits cost anywhere
from 7 dB (a bottleneck projection) to 29 dB (an expansion)
(benchmarks/results/w4a8-choices.md). The errors add up
layer after layer, and no rounding method recovers 36 layers of it from a few
calibration images. So the plan measures each layer's cost and gives 4 bits
where it is cheap, the way mixed-precision quantizers do:

- each CONV_2D / FULLY_CONNECTED layer alone is rounded to 4 bits (per output
  channel, symmetric, the bound clipped to the fraction of max|w| with the least
  weight error, each weight's error weighted by its input's mean square, the mean
  output shift folded into the bias) in the float model, and the noise it adds at the model's outputs,
  relative to their power, is measured on up to SAMPLES calibration inputs;
- layers are taken in order of that noise per weight saved, while the sum of
  their noises stays under 10^(-TARGET_DB / 10): noise from independent layers
  adds, so the 4-bit layers together cost about TARGET_DB of output SQNR
  before AdaRound (which learns them afterwards) and before int8 activations;
- the others stay int8 (Precision.INT8), which LiteRT Quantizer stores with
  8-bit weights in the same integer graph (no QUANTIZE between them: the
  activations are int8 on both sides).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from edgequant.graph.edit import GraphEditor, OpRef
from edgequant.runtime import Inputs, Runner, as_inputs, rows, stream_tensors
from edgequant.types import Precision, Record

__all__ = ["W4Plan", "plan_w4", "TARGET_DB", "SAMPLES", "W4_OPS", "clipped_weights", "input_moments"]

# The ops whose weights LiteRT Quantizer stores in 4 bits under w4a8 (engines/litert.py W4A8_OPS).
W4_OPS = ("CONV_2D", "FULLY_CONNECTED")
# Output SQNR the 4-bit layers together may cost (float activations, nearest rounding on clipped ranges).
# Chosen on MobileNetV2 development photos (benchmarks/results/w4a8-choices.md).
TARGET_DB = 30.0
SAMPLES = 16
# Fractions of max|w| tried as a channel's 4-bit bound.
FRACTIONS = tuple(np.linspace(0.4, 1.0, 25))


@dataclasses.dataclass(frozen=True)
class W4Plan(Record):
    """Per-layer precisions (w4a8 for the 4-bit layers, int8 for those kept at 8 bits) and the measurements."""

    precisions: dict[str, Precision]
    # Layers with 4-bit weights and kept at 8 bits, by op label (e.g. "conv_2d#4") -> output SQNR (dB) of that
    # layer alone at 4 bits.
    four_bit: dict[str, float]
    eight_bit: dict[str, float]
    # The weights' share stored in 4 bits, and the summed noise of the 4-bit layers as an output SQNR.
    weight_share: float
    estimated_db: float
    # Layers that write a model output: int8, not measured.
    output_layers: tuple[str, ...] = ()

    def notes(self) -> list[str]:
        total = len(self.four_bit) + len(self.eight_bit) + len(self.output_layers)
        out = [f"w4a8 plan: {len(self.four_bit)} of {total} convolution/fully connected layers get 4-bit weights "
               f"({100 * self.weight_share:.0f}% of their weights): those whose 4-bit rounding alone costs least, "
               f"until together they cost about {TARGET_DB:g} dB of output SQNR on calibration data "
               f"(estimate {self.estimated_db:.1f} dB); the rest keep int8 weights"]
        if self.output_layers:
            out.append(f"w4a8 plan: the layer(s) writing a model output keep int8 weights: {', '.join(self.output_layers)}")
        if self.eight_bit:
            worst = sorted(self.eight_bit.items(), key=lambda kv: kv[1])[:3]
            out.append("w4a8 plan: most sensitive layers kept int8: " + "; ".join(
                f"{name} ({db:.1f} dB alone at 4 bits)" for name, db in worst))
        return out


def clipped_weights(w: np.ndarray, op: str, bits: int, power: np.ndarray | None = None) -> np.ndarray:
    """``w`` rounded to ``bits`` per output channel, symmetric, each channel's bound the fraction of max|w| (of
    FRACTIONS) with the least squared error, each weight's error weighted by ``power`` (the mean square of the
    input it multiplies, in the weight's flattened per-channel order; None: 1); as float (what the engine would
    store, dequantized)."""
    axis = w.ndim - 1 if op == "DEPTHWISE_CONV_2D" else 0
    moved = np.moveaxis(np.asarray(w, np.float64), axis, 0)
    flat = moved.reshape(len(moved), -1)
    weight = np.ones(flat.shape[1]) if power is None else np.asarray(power, np.float64).reshape(-1)
    qmax = 2 ** (bits - 1) - 1
    top = np.maximum(np.abs(flat).max(axis=1, keepdims=True), 1e-9)
    best, out = None, None
    for f in FRACTIONS:
        scale = top * f / qmax
        q = np.clip(np.rint(flat / scale), -qmax, qmax) * scale
        err = ((q - flat) ** 2 * weight).sum(axis=1)
        if best is None:
            best, out = err, q
        else:
            better = err < best
            best, out = np.where(better, err, best), np.where(better[:, None], q, out)
    assert out is not None
    return np.moveaxis(out.reshape(moved.shape), 0, axis).astype(np.float32)


def input_moments(tflite: bytes, x: Mapping[str, np.ndarray], ops: list[OpRef]
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per op (CONV_2D or FULLY_CONNECTED), the mean and the mean square of the input each weight of an output
    channel multiplies, in the weight's flattened order (kh, kw, cin for a convolution), on inputs ``x``."""
    ed = GraphEditor(tflite, "float model")
    wanted = sorted({op.inputs[0] for op in ops})
    sums: dict[int, np.ndarray] = {}
    squares: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for batch in stream_tensors(tflite, x, wanted):
        for t, v in batch.items():
            flat = np.asarray(v, np.float64).reshape(-1, v.shape[-1])
            sums[t] = sums.get(t, 0.0) + flat.sum(axis=0)
            squares[t] = squares.get(t, 0.0) + (flat * flat).sum(axis=0)
            counts[t] = counts.get(t, 0) + len(flat)

    def spread(per_channel: np.ndarray, k: int) -> np.ndarray:
        return np.tile(per_channel, k // len(per_channel)) if k % len(per_channel) == 0 else \
            np.full(k, float(per_channel.mean()))

    out = []
    for op in ops:
        n = max(counts[op.inputs[0]], 1)
        k = int(np.prod(ed.tensor_shape(op.inputs[1])[1:]))
        out.append((spread(sums[op.inputs[0]] / n, k), spread(squares[op.inputs[0]] / n, k)))
    return out


def _outputs(tflite: bytes, x: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    runner = Runner(tflite, what="float model")
    return [np.asarray(v, np.float64) for v in runner.predict(x).values()]


def plan_w4(tflite: bytes, x: Inputs, keep: Mapping[str, Precision] | None = None,
            target_db: float = TARGET_DB) -> W4Plan:
    """The 4-bit layers of a w4a8 model of ``tflite``, measured on calibration inputs ``x``.

    ``keep`` are precisions already set (a recipe's, or float islands'): those layers are left as they are.
    """
    keep = dict(keep or {})
    data = as_inputs(x)
    n = rows(data)
    index = np.unique(np.linspace(0, n - 1, min(n, SAMPLES)).round().astype(int))
    data = {k: v[index] for k, v in data.items()}
    ed = GraphEditor(tflite, "float model")
    layers = []
    last: list[tuple[str, str]] = []
    outs: list[OpRef] = []
    for op in ed.find_ops(*W4_OPS):
        name = ed.tensor_name(op.outputs[0])
        w = op.inputs[1]
        if name in keep or not ed.is_constant(w) or ed.tensor_dtype(w) != "float32":
            continue
        if ed.is_graph_output(op.outputs[0]):
            # The layer that writes a model output (a classifier's logits) stays int8, as the literature keeps the
            # last layer at 8 bits: its error goes straight into the scores that rank classes.
            last.append((name, op.label))
            outs.append(op)
            continue
        layers.append((name, op, w))
    labels = {name: op.label for name, op, _ in layers}
    moments = dict(zip((name for name, _, _ in layers), input_moments(tflite, data, [op for _, op, _ in layers])))
    ref = _outputs(tflite, data)
    power = sum(float((r * r).sum()) for r in ref)
    noise: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for name, op, w in layers:
        values = ed.read_constant(w)
        sizes[name] = values.size
        one = GraphEditor(tflite, "float model")
        mean, square = moments[name]
        rounded = clipped_weights(values, op.op, 4, square)
        one.write_constant(w, rounded)
        bias = op.inputs[2] if len(op.inputs) > 2 else -1
        if bias >= 0 and one.is_constant(bias) and one.tensor_dtype(bias) == "float32":
            # The rounding's mean output shift, folded into the bias as AdaRound and bias correction do later.
            shift = (values - rounded).reshape(len(values), -1).astype(np.float64) @ mean
            one.write_constant(bias, (one.read_constant(bias) + shift).astype(np.float32))
        out = _outputs(one.to_bytes(), data)
        noise[name] = sum(float(((o - r) ** 2).sum()) for o, r in zip(out, ref)) / max(power, 1e-30)
    budget = 10 ** (-target_db / 10)
    chosen: list[str] = []
    spent = 0.0
    for name in sorted(noise, key=lambda k: noise[k] / sizes[k]):
        if spent + noise[name] <= budget:
            chosen.append(name)
            spent += noise[name]

    def db(v: float) -> float:
        return float("inf") if v <= 0 else -10 * float(np.log10(v))

    # Every planned layer is named (w4a8 or int8), so the recipe that ran rebuilds this model without planning.
    precisions = {**{name: Precision.W4A8 if name in chosen else Precision.INT8 for name in noise},
                  **{name: Precision.INT8 for name, _ in last}, **keep}
    total = sum(sizes.values()) + sum(int(np.prod(ed.tensor_shape(ed_op.inputs[1]))) for ed_op in outs)
    return W4Plan(precisions=precisions, four_bit={labels[k]: db(noise[k]) for k in chosen},
                  eight_bit={labels[k]: db(noise[k]) for k in noise if k not in chosen},
                  weight_share=sum(sizes[k] for k in chosen) / total if total else 0.0, estimated_db=db(spent),
                  output_layers=tuple(label for _, label in last))
