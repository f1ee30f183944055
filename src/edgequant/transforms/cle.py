"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization").

For two weighted ops W1 -> W2 where W1's output feeds only W2, scaling output
channel i of W1 (weights and bias) by 1/s_i and input channel i of W2 by s_i
leaves the network's function unchanged whenever what lies between them is
positively homogeneous per channel: nothing, ReLU, max or average pooling, or a
reshape that keeps channels fastest. With s_i = sqrt(r1_i * r2_i) / r2_i
(r = per-channel max |w|) both layers' per-channel ranges become
sqrt(r1_i * r2_i), so one quantization grid fits all channels better.

ReLU6 is not positively homogeneous: after scaling, channel i clips at 6 * s_i
in the original units instead of at 6. We keep the function unchanged on the
calibration data, channel by channel: a channel whose calibration maximum comes
within RELU6_MARGIN of 6 keeps s_i = 1 (its clipping is active, and moving the
clip would change outputs); any other channel may be scaled only while its new
clip stays at least RELU6_MARGIN times above its calibration maximum. The
margin covers held-out data that goes a little beyond the calibration maximum.
The other common choice, replacing ReLU6 by ReLU as the paper does, changes
the model's function, so we do not take it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from edgequant._util import Progress, no_progress
from edgequant.graph.edit import SHAPE_ONLY_OPS, GraphEditor, OpRef
from edgequant.runtime import rows as n_samples
from edgequant.transforms import TransformName, TransformResult, check_calibration, stream_tensors
from edgequant.types import Precision, Scheme

__all__ = ["CrossLayerEqualization", "RELU6_MARGIN", "MAX_ROUNDS"]

# Headroom between a ReLU6 channel's calibration maximum and its clip.
RELU6_MARGIN = 1.5
# Chains (conv -> depthwise -> conv) converge over rounds; stop earlier once
# no scale moves by more than CONVERGED (relative).
MAX_ROUNDS = 8
CONVERGED = 1e-3
# Per round, scales stay within [1/MAX_STEP, MAX_STEP]: a near-dead channel
# would otherwise be scaled by 1e6 and lose float precision.
MAX_STEP = 100.0
# Channels whose range is below this fraction of the layer's largest are dead;
# they are neither scaled nor counted in range spreads.
DEAD = 1e-6

_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_PAIRS = frozenset({("CONV_2D", "CONV_2D"), ("CONV_2D", "DEPTHWISE_CONV_2D"), ("DEPTHWISE_CONV_2D", "CONV_2D"),
                    ("FULLY_CONNECTED", "FULLY_CONNECTED"), ("CONV_2D", "FULLY_CONNECTED"),
                    ("DEPTHWISE_CONV_2D", "FULLY_CONNECTED")})
# Per-channel positive scaling commutes with these (no fused activation allowed).
_PASS_THROUGH = ("MAX_POOL_2D", "AVERAGE_POOL_2D")


@dataclasses.dataclass(frozen=True)
class _Pair:
    first: OpRef
    second: OpRef
    activation: str   # NONE, RELU or RELU6
    act_tensor: int   # the tensor right after the activation: where ReLU6 clipping is observed
    channels: int     # W1's output channels; W2's input channel k is channel k % channels

    @property
    def label(self) -> str:
        return f"{self.first.label} -> {self.second.label}"


def _out_ranges(op: OpRef, w: np.ndarray) -> np.ndarray:
    if op.op == "DEPTHWISE_CONV_2D":
        return np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)
    return np.abs(w).reshape(w.shape[0], -1).max(axis=1)


def _scale_out(op: OpRef, w: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """W1's output channels times ``inv`` (1/s)."""
    if op.op == "DEPTHWISE_CONV_2D":
        return w * inv
    return w * inv.reshape((-1,) + (1,) * (w.ndim - 1))


def _in_channels(op: OpRef, w: np.ndarray) -> int:
    return w.shape[1] if op.op == "FULLY_CONNECTED" else w.shape[-1]


def _in_ranges(op: OpRef, w: np.ndarray, channels: int) -> np.ndarray:
    """W2's per-input-channel ranges, folded onto W1's ``channels`` (k -> k % channels)."""
    a = np.abs(w)
    if op.op == "FULLY_CONNECTED":
        return a.max(axis=0).reshape(-1, channels).max(axis=0)
    per_k = a.reshape(-1, w.shape[-1]).max(axis=0)
    if op.op == "DEPTHWISE_CONV_2D":
        # Depthwise output j = i * multiplier + m reads input channel i.
        return per_k.reshape(channels, -1).max(axis=1)
    return per_k.reshape(-1, channels).max(axis=0)


def _scale_in(op: OpRef, w: np.ndarray, s: np.ndarray, channels: int) -> np.ndarray:
    if op.op == "FULLY_CONNECTED":
        return w * np.tile(s, w.shape[1] // channels)[None, :]
    if op.op == "DEPTHWISE_CONV_2D":
        return w * np.repeat(s, w.shape[-1] // channels)
    return w * np.tile(s, w.shape[-1] // channels)


def _spread(r: np.ndarray) -> float:
    live = r[r > DEAD * max(float(r.max()), 1e-30)]
    return float(live.max() / live.min()) if len(live) else 1.0


def _own_float_constants(ed: GraphEditor, op: OpRef) -> bool:
    """True if the op's weights (and bias, if any) are float32 constants that no other op reads.

    A shared constant would be rescaled for every op that reads it.
    """
    tensors = [t for t in op.inputs[1:3] if t >= 0]
    return (len(op.inputs) > 1 and op.inputs[1] >= 0 and all(
        ed.is_constant(t) and ed.tensor_dtype(t) == "float32" and len(ed.consumers(t)) == 1 for t in tensors))


def _find_pairs(ed: GraphEditor) -> tuple[list[_Pair], list[str]]:
    """Every equalizable W1 -> W2 pair, and a line for each near-miss saying why it was skipped."""
    pairs: list[_Pair] = []
    skipped: list[str] = []
    for w1 in ed.find_ops(*_WEIGHTED):
        if not _own_float_constants(ed, w1):
            continue
        channels = ed.tensor_shape(w1.inputs[1])[-1 if w1.op == "DEPTHWISE_CONV_2D" else 0]
        act, tensor = ed.fused_activation(w1), w1.outputs[0]
        act_tensor, passed, reshaped = tensor, False, False
        while True:
            users = [o for o in ed.consumers(tensor) if o.op not in SHAPE_ONLY_OPS]
            weighted = [o for o in users if o.op in _WEIGHTED]
            if ed.is_graph_output(tensor) or len(users) != 1:
                if weighted:
                    others = ", ".join(o.label for o in users if o not in weighted[:1])
                    skipped.append(f"skipped {w1.label} -> {weighted[0].label}: the tensor between them also "
                                   f"feeds {others or 'the graph output'}")
                break
            nxt = users[0]
            if nxt.op in ("RELU", "RELU6") and act == "NONE" and not passed:
                act, tensor = nxt.op, nxt.outputs[0]
                act_tensor = tensor
            elif nxt.op in _PASS_THROUGH and ed.fused_activation(nxt) == "NONE":
                tensor, passed = nxt.outputs[0], True
            elif nxt.op == "RESHAPE" and nxt.inputs[0] == tensor and ed.tensor_shape(nxt.outputs[0]) \
                    and ed.tensor_shape(nxt.outputs[0])[-1] % channels == 0:
                # Reshape never moves data: with channels fastest, flat index f
                # is channel f % C, and so is last-axis index k whenever C divides it.
                tensor, passed, reshaped = nxt.outputs[0], True, True
            elif nxt.op in _WEIGHTED and nxt.inputs[0] == tensor:
                w2_shape = ed.tensor_shape(nxt.inputs[1]) if ed.is_constant(nxt.inputs[1]) else ()
                width = (w2_shape[1] if nxt.op == "FULLY_CONNECTED" else w2_shape[-1]) if w2_shape else 0
                if (w1.op, nxt.op) not in _PAIRS:
                    skipped.append(f"skipped {w1.label} -> {nxt.label}: pair type not supported")
                elif act not in ("NONE", "RELU", "RELU6"):
                    skipped.append(f"skipped {w1.label} -> {nxt.label}: activation {act} is not positively homogeneous")
                elif not width or width % channels or (nxt.op == "DEPTHWISE_CONV_2D" and reshaped):
                    skipped.append(f"skipped {w1.label} -> {nxt.label}: channels do not line up "
                                   f"({channels} outputs, {width or 'no constant'} inputs)")
                elif not _own_float_constants(ed, nxt):
                    skipped.append(f"skipped {w1.label} -> {nxt.label}: its weights are not float32 "
                                   f"constants used by it alone")
                else:
                    pairs.append(_Pair(w1, nxt, act, act_tensor, channels))
                break
            else:
                break
    return pairs, skipped


def _relu6_maxima(tflite: bytes, calibration: np.ndarray | None, tensors: list[int]) -> dict[int, np.ndarray]:
    """Per-channel maxima of the given tensors over the calibration data (running max: bounded memory)."""
    if not tensors or calibration is None or n_samples(calibration) == 0:
        return {}
    maxima: dict[int, np.ndarray] = {}
    for batch in stream_tensors(tflite, check_calibration(calibration, 'cross-layer equalization'), tensors):
        for t, v in batch.items():
            m = v.reshape(-1, v.shape[-1]).max(axis=0)
            maxima[t] = np.maximum(maxima[t], m) if t in maxima else m
    return maxima


class CrossLayerEqualization:
    """``cle``: equalize per-channel weight ranges across consecutive layers; the function is unchanged."""

    name = TransformName.CLE

    def apply_for(self, tflite: bytes, calibration: np.ndarray | None, scheme: Scheme,
                  precisions: Mapping[str, Precision] | None = None,
                  progress: Progress = no_progress) -> TransformResult:  # one pass: no progress to report
        # Neither the scheme nor per-layer precision changes CLE: equal ranges help any bit width.
        return self.apply(tflite, calibration)

    def apply(self, tflite: bytes, calibration: np.ndarray | None = None, weight_bits: int = 8) -> TransformResult:
        # weight_bits does not change CLE: equal ranges help any bit width.
        ed = GraphEditor(tflite)
        pairs, changes = _find_pairs(ed)
        relu6 = [p for p in pairs if p.activation == "RELU6"]
        maxima = _relu6_maxima(tflite, calibration, sorted({p.act_tensor for p in relu6}))
        if relu6 and not maxima:
            changes += [f"skipped {p.label}: ReLU6 between them, and no calibration data to show "
                        f"that clipping is unaffected" for p in relu6]
            pairs = [p for p in pairs if p.activation != "RELU6"]
        # Channels kept at scale 1 (ReLU6 clipping active), per pair.
        kept = {p.label: (maxima[p.act_tensor] * RELU6_MARGIN >= 6.0) if p.activation == "RELU6"
                else np.zeros(p.channels, bool) for p in pairs}
        for p in [p for p in pairs if kept[p.label].all()]:
            changes.append(f"skipped {p.label}: every channel of the ReLU6 between them comes within "
                           f"{RELU6_MARGIN}x of the clip at 6 on calibration data")
        pairs = [p for p in pairs if not kept[p.label].all()]

        weights: dict[int, np.ndarray] = {}

        def w(t: int) -> np.ndarray:
            if t not in weights:
                weights[t] = ed.read_constant(t).astype(np.float64)
            return weights[t]

        def ranges(p: _Pair) -> tuple[np.ndarray, np.ndarray]:
            return _out_ranges(p.first, w(p.first.inputs[1])), _in_ranges(p.second, w(p.second.inputs[1]), p.channels)

        before = {p.label: ranges(p) for p in pairs}
        cumulative = {p.label: np.ones(p.channels) for p in pairs}
        rounds = 0
        for rounds in range(1, MAX_ROUNDS + 1):
            largest_step = 0.0
            for p in pairs:
                r1, r2 = ranges(p)
                dead = (r1 <= DEAD * r1.max()) | (r2 <= DEAD * r2.max()) | kept[p.label]
                s = np.clip(np.sqrt(np.divide(r1, r2, out=np.ones_like(r1), where=~dead)), 1 / MAX_STEP, MAX_STEP)
                if p.activation == "RELU6":
                    # The new clip, 6 * cumulative * s in original units, must stay
                    # RELU6_MARGIN above the channel's calibration maximum.
                    floor = RELU6_MARGIN * maxima[p.act_tensor] / (6.0 * cumulative[p.label])
                    s = np.where(dead, 1.0, np.maximum(s, floor))
                cumulative[p.label] *= s
                wt1, wt2 = p.first.inputs[1], p.second.inputs[1]
                weights[wt1] = _scale_out(p.first, w(wt1), 1.0 / s)
                if len(p.first.inputs) > 2 and p.first.inputs[2] >= 0:
                    weights[p.first.inputs[2]] = w(p.first.inputs[2]) / s
                weights[wt2] = _scale_in(p.second, w(wt2), s, p.channels)
                largest_step = max(largest_step, float(np.max(np.abs(np.log(s)))))
            if largest_step < CONVERGED:
                break

        spreads_before, spreads_after = [], []
        for p in pairs:
            (b1, b2), (a1, a2) = before[p.label], ranges(p)
            spreads_before.append(math.sqrt(_spread(b1) * _spread(b2)))
            spreads_after.append(math.sqrt(_spread(a1) * _spread(a2)))
            line = (f"equalized {p.label} ({p.channels} channels, {p.activation}): per-channel weight range "
                    f"spread (max/min) {p.first.label} outputs {_spread(b1):.1f} -> {_spread(a1):.1f}, "
                    f"{p.second.label} inputs {_spread(b2):.1f} -> {_spread(a2):.1f}")
            n_kept = int(kept[p.label].sum())
            if n_kept:
                line += (f"; {n_kept} of {p.channels} channels kept unscaled: their ReLU6 output comes within "
                         f"{RELU6_MARGIN}x of the clip at 6 on calibration data")
            changes.append(line)
        for t, values in weights.items():
            ed.write_constant(t, values.astype(np.float32))

        def geomean(v: list[float]) -> float:
            return float(math.exp(sum(math.log(x) for x in v) / len(v))) if v else 1.0

        metrics = {"pairs": float(len(pairs)), "relu6_pairs": float(sum(p.activation == "RELU6" for p in pairs)),
                   "skipped": float(sum(c.startswith("skipped") for c in changes)),
                   "channels_kept": float(sum(int(kept[p.label].sum()) for p in pairs)),
                   "rounds": float(rounds if pairs else 0),
                   "range_spread_before": geomean(spreads_before), "range_spread_after": geomean(spreads_after)}
        if not pairs:
            changes.append("no layer pair could be equalized: the model is unchanged")
        return TransformResult(tflite=ed.to_bytes() if pairs else bytes(tflite), name=self.name.value,
                               changes=tuple(changes), metrics=metrics)
