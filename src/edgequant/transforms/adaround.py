"""AdaRound: learned rounding of weights (Nagel et al. 2020, "Up or Down? Adaptive Rounding for PTQ").

Nearest rounding minimizes each weight's own error, not the layer's output
error; at 4 bits the difference costs whole points of accuracy. AdaRound
chooses, per weight, floor or ceil on the engine's grid to minimize

    || W x  -  W~ x~ ||^2   over the calibration data,

where x is the layer's input in the float model and x~ its input with every
earlier layer already rounded (so a layer also repairs what earlier layers
broke; activations stay float, as in bias correction). W~ = s * (floor(W/s) +
h(V)), h a rectified sigmoid relaxed to {0, 1} by an annealed regularizer
(the paper's beta schedule, 20 -> 2), optimized with Adam.

The loss is quadratic in W~, so the data enters only through G = sum x~ x~^T
and C = sum x~ y^T, accumulated batch by batch (bounded memory, every
calibration row used): each step costs out * k^2, whatever the number of
samples. A layer with fewer calibration rows than inputs per output (a large
FULLY_CONNECTED on 200 samples) keeps nearest rounding: there the loss has
many exact minimizers and the learned rounding fits the calibration rows, not
the data (on the seed CNN's 5408-input dense layer it reconstructed worse than
nearest). We reconstruct the pre-activation output; the paper's
post-activation loss would lose the closed form.

Then the float weights are replaced by s * q, exactly on the grid the litert
engine computes (bias_correction.fake_quantize: symmetric per channel, scale =
max|w| / qmax, round half to even): the element of each channel that sets
max|w| keeps +-qmax, so the engine derives the same scale and its own
rounding reproduces q. Remaining mean output error is folded into the float
bias. A layer whose learned rounding reconstructs worse than nearest rounding
keeps nearest rounding (it never makes a layer worse on calibration data).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping

import numpy as np

from edgequant._util import Progress, no_progress
from edgequant.graph.edit import GraphEditor, OpRef
from edgequant.runtime import BATCH_BYTES, Runner, batch_for
from edgequant.runtime import rows as n_samples
from edgequant.transforms import TransformName, TransformResult, check_calibration, stream_tensors
from edgequant.transforms.grid import MIN_BOUND, OnEngineGrid, grouped_conv, layer_weight_bits, op_grid, same_padding

__all__ = ["AdaRound", "im2col", "ITERATIONS"]

_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Optimization settings. The paper runs 10-20k steps on ImageNet layers; our
# closed-form loss is exact on all rows and small layers converge in 1,000.
# The regularizer weight is relative to the layer's nearest-rounding error
# (normalized to 1) and averaged over weights. Scanned on six zoo layers at 4
# bits (lenet, mobilenet_like, resnet_like, transformer): at 0.01 learned
# rounding was often *worse* than nearest (h stayed fractional and the final
# hard rounding undid it); 1 to 10 gained 5 to 14 dB of layer SQNR; 3 with
# learning rate 0.1 was best or within 0.3 dB of best on each.
ITERATIONS = 1000
LEARNING_RATE = 0.1
WARMUP = 0.2            # share of steps with no rounding regularizer
BETA = (20.0, 2.0)      # annealed exponent of the regularizer
REG_WEIGHT = 3.0
ZETA, GAMMA = 1.1, -0.1  # stretch of the rectified sigmoid
SEED = 0
# Early stop: checked every CHECK_EVERY steps once the regularizer is on; the
# hard rounding counts as settled when at most SETTLED of its weights flipped.
CHECK_EVERY, PATIENCE, SETTLED = 50, 2, 1e-3
# A step costs about groups * out * k * (k + ELEMENTWISE) multiply-adds (the Gram
# product and the element-wise update). When ITERATIONS steps of every layer
# would exceed MODEL_BUDGET, every layer's steps shrink by the same factor (at
# least MIN_STEPS), the schedule (warm-up, annealing) compressed to fit: the
# digit zoo (full setting, FULL_ROWS) keeps all ITERATIONS, MobileNetV2-224 gets MIN_STEPS.
ELEMENTWISE = 64
MODEL_BUDGET = 2e10
MIN_STEPS = 50
# Below 8 bits rounding is most of a layer's error and 50 steps learn little of it (on MobileNetV2's 1x1
# convolutions 1,000 steps gained 5 to 11 dB of layer SQNR where 50 gained 1 to 3): 4-bit layers share this
# larger budget.
W4_BUDGET = 2e11
# Statistics on sampled rows, not every output position of every sample (at
# 224x224 that is millions of rows per layer, and the closed-form loss needs
# only a well-determined Gram matrix): at least ROWS per layer and ROWS_PER_WEIGHT
# per weight of an output channel, picked at random (seeded) positions of every
# sample used. Samples: all while they fit one runtime batch budget, else
# SAMPLES spread evenly over the data. Layers are learned in at most WAVES
# groups of consecutive layers, one float and one rounded pass per group: a
# 4-bit layer sees the learned rounding of earlier groups, and float inputs from
# layers of its own group; an 8-bit layer sees float inputs (as at int8). The
# SQNR this costs is in benchmarks/results/scale.md.
ROWS = 4096
ROWS_PER_WEIGHT = 8
SAMPLES = 32
WAVES = 4
# Sampling only where it is needed: when no layer has more than FULL_POSITIONS output positions a sample
# (28x28 digit models: 784) nor FULL_ROWS rows in all, the statistics use every row, one pass pair per
# layer, every step: the full setting, which costs seconds there. By positions, not rows alone: 1,000
# steps of every layer cost the same on 50 samples as on 1,000, and a 96x96 MobileNetV2 on 50 samples
# (115k rows) took longer in the full setting than on 200 sampled ones.
FULL_POSITIONS = 1024
FULL_ROWS = 2 ** 20
# The waves and the float inputs above save model passes, which is all they are for. Where one pass pair per
# layer over the sampled inputs costs under PASS_BUDGET multiply-adds (the weighted layers' own), the sampled
# path keeps the full setting's order instead: one rounded pass per layer, every layer learning from the
# rounded model's inputs, only the rows sampled: each layer then repairs the rounding of the layers before
# it, which on every digit-zoo model kept more held-out SQNR (benchmarks/results/adaround-passes.md). Real
# MobileNetV2, EfficientNet-Lite0 and BlazeFace stay well above the budget, where more rounded passes
# measured on dev crops gained nothing reliable for their cost.
PASS_BUDGET = 2e10
# Where AdaRound pays (8-bit weights under integer activations): learning can at best remove a layer's
# weight-rounding noise, so a layer whose estimated weight noise at its output is under GATE of the
# activation quantization noise there (its input's, carried through the weights, and its output's) keeps
# nearest rounding. Noise adds over layers, so with every skipped layer under GATE the model's output
# noise exceeds the fully learned one by at most 10 log10(1 + GATE) = 0.41 dB. The estimate reads
# per-channel second moments and min-max ranges (min-max overstates the activation noise where an
# observer clips) from GATE_SAMPLES samples.
GATE = 0.1
GATE_SAMPLES = 16
# On the sampled path (a model too large for the full setting), 8-bit layers past the gate are learned in
# order of that ratio, largest first, while their estimated multiply-adds (MIN_STEPS steps and the sampled
# statistics) fit INT8_BUDGET; the rest keep nearest rounding, named in the notes with the largest ratio
# left, which bounds what they give up. On MobileNetV2-224 at int8 this learns a layer or two instead of
# eighteen (about a minute); the trade, measured on real MobileNetV2, is in benchmarks/results/scale.md.
INT8_BUDGET = 2e10
# Below 8 bits the grid's range matters as much as the rounding: each output channel's bound is clipped to the
# fraction of max|w| (of CLIP_FRACTIONS) with the least output error, as the AdaRound paper initializes its
# scales. Only layers that learn and whose exact loss (Gram matrix) costs under EXACT_CLIP_COST (channels * k^2 *
# fractions) are clipped: chosen from the diagonal estimate on too few rows, the seed CNN's 5408-input dense
# layer clipped every channel and the model lost 3.7 dB of held-out SQNR (36.5 -> 32.8).
CLIP_BELOW_BITS = 8
CLIP_FRACTIONS = tuple(np.linspace(0.4, 1.0, 25))
EXACT_CLIP_COST = 5e10


def _padded(x: np.ndarray, kh: int, kw: int, opts: object) -> tuple[np.ndarray, int, int, int, int, int, int]:
    """The input padded as CONV_2D pads it, the output height and width, strides and dilations."""
    same = int(opts.padding) == 0  # type: ignore[attr-defined]
    sh, sw = opts.strideH, opts.strideW  # type: ignore[attr-defined]
    dh, dw = opts.dilationHFactor, opts.dilationWFactor  # type: ignore[attr-defined]
    t, b, oh = same_padding(x.shape[1], kh, sh, dh, same)
    left, right, ow = same_padding(x.shape[2], kw, sw, dw, same)
    return np.pad(x, ((0, 0), (t, b), (left, right), (0, 0))), oh, ow, sh, sw, dh, dw


def im2col(x: np.ndarray, kh: int, kw: int, opts: object) -> np.ndarray:
    """NHWC input -> (N*OH*OW, kh, kw, C) patches, in CONV_2D's weight order [out, kh, kw, in]."""
    xp, oh, ow, sh, sw, dh, dw = _padded(x, kh, kw, opts)
    taps = [xp[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
            for i in range(kh) for j in range(kw)]
    patches = np.stack(taps, axis=3)  # (N, OH, OW, kh*kw, C)
    return patches.reshape(-1, kh, kw, x.shape[-1])


def _patches_at(x: np.ndarray, kh: int, kw: int, opts: object, pick: np.ndarray) -> np.ndarray:
    """im2col(x)[pick] without building im2col: (len(pick), kh, kw, C), in x's dtype."""
    xp, oh, ow, sh, sw, dh, dw = _padded(x, kh, kw, opts)
    n, rest = np.divmod(pick, oh * ow)
    oy, ox = np.divmod(rest, ow)
    iy = (oy * sh)[:, None, None] + (np.arange(kh) * dh)[None, :, None]
    ix = (ox * sw)[:, None, None] + (np.arange(kw) * dw)[None, None, :]
    return xp[n[:, None, None], iy, ix, :]


class _Layer:
    """One weight tensor and every op using it (an unrolled RNN shares one kernel across time steps).

    Weights are viewed as (groups, out, k); the loss sums over all uses, so a
    shared kernel gets one rounding that serves every step.
    """

    def __init__(self, ed: GraphEditor, ops: list[OpRef], bits: int) -> None:
        self.ops, self.op, self.bits = ops, ops[0], bits
        self.w = ed.read_constant(self.op.inputs[1])
        self.opts = {op.index: ed.options(op) for op in ops}
        bias = self.op.inputs[2] if len(self.op.inputs) > 2 else -1
        # The mean error is folded into a bias only when it serves this one use.
        self.bias = bias if (len(ops) == 1 and bias >= 0 and ed.is_constant(bias)
                             and ed.tensor_dtype(bias) == "float32" and len(ed.consumers(bias)) == 1) else -1
        self.label = self.op.label + (f" (+{len(ops) - 1} ops sharing its weights)" if len(ops) > 1 else "")
        if self.op.op == "DEPTHWISE_CONV_2D":
            # One group per output channel: each sees only its own input channel.
            self.mat = np.moveaxis(self.w[0], -1, 0).reshape(self.w.shape[-1], 1, -1)  # (C, 1, kh*kw)
        else:
            self.mat = self.w.reshape(1, self.w.shape[0], -1)  # (1, out, k)

    def rows(self, x: np.ndarray, op: OpRef | None = None, pick: np.ndarray | None = None) -> np.ndarray:
        """Input rows per group, (groups, n, k), for one use of the weights (default: the first).

        ``pick`` selects output positions (flat indices over batch x positions); only their patches are built,
        so a 112x112 layer never materializes its full im2col.
        """
        op = op or self.op
        if op.op == "FULLY_CONNECTED":
            flat = x.reshape(-1, self.mat.shape[-1])
            return (flat if pick is None else flat[pick]).astype(np.float64)[None]
        kh, kw = self.w.shape[1:3]
        if pick is None:
            p = im2col(x.astype(np.float64), kh, kw, self.opts[op.index])  # (n, kh, kw, Cin)
        else:
            p = _patches_at(x, kh, kw, self.opts[op.index], pick).astype(np.float64)
        if op.op == "CONV_2D":
            return p.reshape(1, len(p), -1)
        multiplier = self.w.shape[-1] // x.shape[-1]
        p = np.repeat(p, multiplier, axis=-1) if multiplier > 1 else p
        return np.moveaxis(p.reshape(len(p), kh * kw, -1), -1, 0)  # (C, n, kh*kw)

    def positions(self, x: np.ndarray, op: OpRef | None = None) -> int:
        """Output positions (rows) per sample of one use, for an input batch ``x``."""
        op = op or self.op
        if op.op == "FULLY_CONNECTED":
            return max(1, x[:1].size // self.mat.shape[-1])
        opts = self.opts[op.index]
        kh, kw = self.w.shape[1:3]
        same = int(opts.padding) == 0
        oh = same_padding(x.shape[1], kh, opts.strideH, opts.dilationHFactor, same)[2]
        ow = same_padding(x.shape[2], kw, opts.strideW, opts.dilationWFactor, same)[2]
        return oh * ow

    def to_weights(self, mat: np.ndarray) -> np.ndarray:
        if self.op.op == "DEPTHWISE_CONV_2D":
            kh, kw = self.w.shape[1:3]
            return np.moveaxis(mat.reshape(-1, kh, kw), 0, -1)[None].astype(np.float32)
        return mat.reshape(self.w.shape).astype(np.float32)


class _Problem:
    """The layer's quadratic loss, from streamed statistics: sum over rows of ||x~ W~^T - x W^T||^2."""

    def __init__(self, layer: _Layer, learn: bool = True) -> None:
        self.layer, self.learn = layer, learn
        groups, _, k = layer.mat.shape
        # Without learning only the means are needed (no k x k matrix: 234 MB for a 5408-input dense).
        kg = k if learn else 0
        self.gram = np.zeros((groups, kg, kg))
        self.cross = np.zeros((groups, kg, layer.mat.shape[1]))
        self.yy = 0.0
        self.n = 0
        self.sum_y = np.zeros((groups, layer.mat.shape[1]))
        self.sum_xq = np.zeros((groups, k))
        self.sum_xq2 = np.zeros((groups, k))

    def add(self, x_float: np.ndarray, x_rounded: np.ndarray, op: OpRef, pick: np.ndarray | None = None) -> None:
        rf, rq = self.layer.rows(x_float, op, pick), self.layer.rows(x_rounded, op, pick)
        y = rf @ np.swapaxes(self.layer.mat, 1, 2)  # (groups, n, out)
        self.yy += float((y * y).sum())
        self.sum_y += y.sum(axis=1)
        self.sum_xq += rq.sum(axis=1)
        self.sum_xq2 += (rq * rq).sum(axis=1)
        self.n += rf.shape[1]
        if self.learn:
            self.gram += _matmul(np.swapaxes(rq, 1, 2), rq)
            self.cross += _matmul(np.swapaxes(rq, 1, 2), y)

    def finish(self) -> None:
        self.cross_t = np.ascontiguousarray(np.swapaxes(self.cross, 1, 2))
        # The optimization steps run in float32 (half the time of float64 BLAS); losses stay float64.
        self.gram32, self.cross_t32 = self.gram.astype(np.float32), self.cross_t.astype(np.float32)

    def loss(self, m: np.ndarray) -> float:
        """Squared error of weights m (groups, out, k) over every calibration row."""
        return max(float((_matmul(m, self.gram) * m).sum() - 2.0 * (self.cross_t * m).sum() + self.yy), 0.0)

    def grad(self, m: np.ndarray) -> np.ndarray:
        """d loss / d m, the only thing each optimization step needs (float32)."""
        return 2.0 * (_matmul(m.astype(np.float32), self.gram32) - self.cross_t32)

    def mean_residual(self, m: np.ndarray) -> np.ndarray:
        """E[x W^T] - E[x~ m^T] per output channel, flattened to the bias layout."""
        mean = (self.sum_y - np.einsum("gok,gk->go", m, self.sum_xq)) / max(self.n, 1)
        return mean.reshape(-1)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched matmul over groups; one group (conv, dense) goes straight to BLAS as 2-D."""
    if a.shape[0] == 1 and b.shape[0] == 1:
        return (a[0] @ b[0])[None]
    return a @ b


def _learn(problem: _Problem, ratio: np.ndarray, qmin: int, qmax: int, fixed: np.ndarray,
           iterations: int, early_stop: bool = True) -> tuple[np.ndarray, float, float, int]:
    """Learned integer grid values, the loss of nearest and learned rounding (in grid units^2 * s^2), and
    the steps taken.

    With ``early_stop`` the steps end once the regularizer is on and the hard rounding (the sign of v) has
    not changed for PATIENCE checks CHECK_EVERY steps apart: later steps only push h further into {0, 1}.
    """
    scale = problem.layer.scale
    # An exact zero (a pruned weight) stays zero: floor + 1 would undo the sparsity that gzip and sparse
    # kernels rely on, for an error term of one grid step the layer's other weights can absorb.
    fixed = fixed | (ratio == 0.0)
    floor = np.floor(ratio)
    nearest = np.clip(np.rint(ratio), qmin, qmax)
    nearest_loss = problem.loss(nearest * scale)
    frac = np.clip(ratio - floor, 1e-4, 1 - 1e-4)
    v = np.log((frac - GAMMA) / (ZETA - frac))  # h(v) == frac at the start
    m1 = np.zeros_like(v)
    m2 = np.zeros_like(v)
    norm = max(nearest_loss, 1e-30)
    count = v.size
    warm = int(WARMUP * iterations)
    hard, still, step = v >= 0.0, 0, 0
    for step in range(1, iterations + 1):
        sig = 1.0 / (1.0 + np.exp(-v))
        stretched = sig * (ZETA - GAMMA) + GAMMA
        h = np.clip(stretched, 0.0, 1.0)
        q = np.where(fixed, nearest, np.clip(floor + h, qmin, qmax))
        grad_w = problem.grad(q * scale)
        grad_h = grad_w * scale / norm
        if step > warm:
            beta = BETA[0] + (BETA[1] - BETA[0]) * (step - warm) / max(iterations - warm, 1)
            d = 2.0 * h - 1.0
            grad_h = grad_h - REG_WEIGHT / count * beta * np.abs(d) ** (beta - 1.0) * np.sign(d) * 2.0
        inside = (stretched > 0.0) & (stretched < 1.0) & ~fixed
        grad_v = np.where(inside, grad_h * sig * (1.0 - sig) * (ZETA - GAMMA), 0.0)
        m1 = 0.9 * m1 + 0.1 * grad_v
        m2 = 0.999 * m2 + 0.001 * grad_v * grad_v
        v -= LEARNING_RATE * (m1 / (1 - 0.9 ** step)) / (np.sqrt(m2 / (1 - 0.999 ** step)) + 1e-8)
        if early_stop and step > warm and step % CHECK_EVERY == 0:
            now = v >= 0.0
            still = still + 1 if np.count_nonzero(now != hard) <= SETTLED * count else 0
            hard = now
            if still >= PATIENCE:
                break
    learned = np.where(fixed, nearest, np.clip(floor + (v >= 0.0), qmin, qmax))
    learned_loss = problem.loss(learned * scale)
    return learned, nearest_loss, learned_loss, step


def _db(signal: float, noise: float) -> float:
    return float("inf") if noise <= 0 else 10.0 * math.log10(max(signal, 1e-30) / noise)


class AdaRound(OnEngineGrid):
    """``adaround``: learn each weight's rounding direction on calibration data, layer by layer."""

    name = TransformName.ADAROUND
    reports_progress = True
    gates = True

    def apply(self, tflite: bytes, calibration: np.ndarray, weight_bits: int = 8, *,
              op_bits: dict[str, int | None] | None = None, iterations: int = ITERATIONS,
              layer_bits: Mapping[str, int | None] | None = None, rows: int | None = ROWS,
              full_rows: int = FULL_ROWS, activation_bits: int | None = None,
              gate_exempt: Collection[str] | None = None, progress: Progress = no_progress) -> TransformResult:
        """``op_bits`` overrides ``weight_bits`` per op type, ``layer_bits`` per op output tensor name
        (None: the op's weights stay float). ``rows`` None is the full-quality setting: every row of every
        sample, one pass pair per layer, every step (no early stop); so is any ``rows`` when no layer has
        more than FULL_POSITIONS positions a sample nor ``full_rows`` rows in all. ``activation_bits`` (the
        scheme's integer activations; None: float) turns on the GATE: 8-bit layers where learning cannot
        pay keep nearest rounding, with no pass or step spent on them; ``gate_exempt`` names the layers whose
        activations are not the scheme's (a per-layer int16x8 or float rule; default: every layer with a
        ``layer_bits`` rule), which the gate cannot judge and which always learn. Progress reports ("adaround",
        layers done, layers)."""
        x = check_calibration(calibration, "AdaRound")
        ed = GraphEditor(tflite)
        op_bits = dict(op_bits or {})
        layer_bits = dict(layer_bits or {})
        layers: list[_Layer] = []
        changes: list[str] = []
        uses: dict[int, list[OpRef]] = {}
        left_float: dict[str, list[str]] = {}  # op type -> labels of the layers whose weights stay float
        for op in ed.find_ops(*_WEIGHTED):
            if ed.is_constant(op.inputs[1]) and ed.tensor_dtype(op.inputs[1]) == "float32":
                uses.setdefault(op.inputs[1], []).append(op)
        for ops in uses.values():
            if len({op.op for op in ops}) > 1:
                changes.append(f"skipped {ops[0].label}: its weights serve ops of different types")
                continue
            # Shared kernels (an unrolled RNN) take the first use's layer rule; a rule on a later use alone
            # would split one weight tensor between two grids, which no engine stores.
            if grouped_conv(ed, ops[0]):
                changes.append(f"skipped {ops[0].label}: a grouped convolution (its rows are per group)")
                continue
            bits = layer_weight_bits(ed, ops[0], weight_bits, op_bits, layer_bits)
            if bits is None:
                left_float.setdefault(ops[0].op, []).append(ops[0].label)
                continue
            layers.append(_Layer(ed, ops, int(bits)))
        for op_type, labels in left_float.items():  # one line a type: a model can have dozens
            shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
            changes.append(f"skipped {len(labels)} {op_type} layer{'s' if len(labels) > 1 else ''} ({shown}): "
                           "their weights stay float")
        metrics: dict[str, float] = {"layers": float(len(layers))}
        if not layers:
            changes.append("no quantized weighted layer: the model is unchanged")
            return TransformResult(bytes(tflite), self.name.value, tuple(changes), metrics, activations_kept=True)

        eight_bit = all(la.bits >= 8 for la in layers)
        done = 0
        total = len(layers)
        progress("adaround", 0, total)
        learned: dict[str, np.ndarray] = {}
        full = rows is None or (max(_positions(la.op, ed) * len(la.ops) for la in layers) <= FULL_POSITIONS
                                and _most_rows(layers, ed, n_samples(x)) <= full_rows)
        if activation_bits is not None or not full:
            exempt = set(layer_bits if gate_exempt is None else gate_exempt)
            layers = _skip_unpaying(tflite, x, ed, layers, activation_bits, full, exempt, learned, changes,
                                    metrics, lambda: progress("adaround", len(learned), total))
            if not layers:
                changes.append("no layer left to learn")
                return TransformResult(ed.to_bytes() if learned else bytes(tflite), self.name.value,
                                       tuple(changes), metrics, grid_values=learned, activations_kept=eight_bit)
            done = len(learned)
        placed = bool(learned)  # layers kept at nearest rounding are on the grid already
        picks = _Sampling(tflite, x, layers, ed, None if full else rows)
        xs = picks.inputs
        if not full:
            changes.append(f"statistics on sampled rows: up to {picks.target_rows(layers[0]):,} per layer from "
                           f"{n_samples(xs)} of {n_samples(x)} samples, {len(picks.waves)} rounded passes")
        metrics["samples"] = float(n_samples(xs))
        metrics["passes"] = float(len(picks.waves))
        # Only layers that will learn count: a large dense layer left to nearest rounding costs no steps.
        # With integer activations the 8-bit layers left by the gate take MIN_STEPS; the rest share the budget.
        steps_shared = [la for la in layers if picks.rows(la) >= la.mat.shape[-1]
                        and not (la.bits >= 8 and activation_bits is not None)]
        cost = sum(_step_cost(la) for la in steps_shared) * iterations
        budget = W4_BUDGET if any(la.bits < 8 for la in steps_shared) else MODEL_BUDGET
        share = min(1.0, budget / max(cost, 1.0))
        improved = 0
        for wave in picks.waves:
            rounded = ed.to_bytes()
            grids, problems = {}, {}
            for la in wave:
                ratio, scale, qmin, qmax = op_grid(la.w, la.op.op, la.bits)
                la.scale = _as_groups(la, scale)  # type: ignore[attr-defined]
                grids[id(la)] = (_as_groups(la, ratio), qmin, qmax)
                # Fewer rows than weights per output: many roundings fit the calibration
                # rows exactly, and a learned one overfits them. Such a layer gets
                # nearest rounding, still placed on the grid with its mean error folded.
                problems[id(la)] = _Problem(la, picks.rows(la) >= la.mat.shape[-1])
            inputs = sorted({op.inputs[0] for la in wave for op in la.ops})
            # Before any layer is rounded the rounded model is the float one: one pass serves both. 8-bit
            # layers alone on the sampled path also learn from float inputs (8-bit rounding barely moves them).
            floats = stream_tensors(tflite, xs, inputs, picks.batch)
            one_pass = wave is picks.waves[0] and \
                (not placed or (not picks.sequential and all(la.bits >= 8 for la in wave)))
            pairs = ((fb, fb) for fb in floats) if one_pass else \
                zip(floats, stream_tensors(rounded, xs, inputs, picks.batch))
            for fb, qb in pairs:
                for la in wave:
                    for op in la.ops:
                        pick = picks.pick(la, fb[op.inputs[0]], op)
                        # On the sampled path an 8-bit layer learns from float inputs in every wave, as at int8:
                        # with its few steps, learning against the rounded inputs lost AdaRound's gain (real
                        # EfficientNet-Lite0, one 4-bit layer: tests/test_adaround.py).
                        rounded_in = qb if (la.bits < 8 or picks.sequential) else fb
                        problems[id(la)].add(fb[op.inputs[0]], rounded_in[op.inputs[0]], op, pick)
            for la in wave:
                problem = problems[id(la)]
                problem.finish()
                ratio, qmin, qmax = grids[id(la)]
                learn, k, n_rows = problem.learn, la.mat.shape[-1], picks.rows(la)
                if la.bits < CLIP_BELOW_BITS and learn and _exact_clip(la):
                    la.scale, clipped = _clipped_scale(la, problem, qmax)  # type: ignore[attr-defined]
                    # Symmetric: a -qmax - 1 would raise max|w| and so the engine's scale.
                    ratio, qmin = la.mat / la.scale, -qmax
                    metrics[f"{la.op.label}.clipped"] = clipped
                    if clipped:
                        changes.append(f"{la.label} int{la.bits}: {100 * clipped:.0f}% of output channels clipped "
                                       "below max|w| (the bound with the least output error on calibration data)")
                # The element that sets each channel's max|w| keeps +-qmax, so the engine's scale is unchanged.
                # Clipped weights (|ratio| >= qmax) all store +-qmax: nothing to learn there either.
                fixed = np.abs(ratio) >= np.minimum(np.abs(ratio).max(axis=-1, keepdims=True) * (1 - 1e-6), qmax)
                nearest = np.clip(np.rint(ratio), qmin, qmax)
                done += 1
                if not learn:
                    q, before, after = nearest, float("nan"), float("nan")
                    changes.append(f"{la.label} int{la.bits}: nearest rounding kept: {n_rows:,} calibration rows "
                                   f"for {k:,} weights per output channel leave the reconstruction underdetermined "
                                   "(more --samples let AdaRound learn it)")
                    if la.bits >= 8:
                        # At 8 bits the mean error is smaller than its estimate's noise
                        # on few rows: folding it cost the seed CNN's int8 model 2.2 dB
                        # (44.6 -> 42.4). At 4 bits it is large and folding it gains
                        # (seed CNN w4a8 36.9 -> 42.3 dB). So the layer stays as it is
                        # and the engine's own nearest rounding gives the same integers.
                        learned[ed.tensor_name(la.op.inputs[1])] = la.to_weights(q).astype(np.int8)
                        progress("adaround", done, total)
                        continue
                else:
                    # 8-bit layers chosen within INT8_BUDGET get the MIN_STEPS it counted.
                    steps = iterations if full else MIN_STEPS if (la.bits >= 8 and activation_bits is not None) \
                        else max(MIN_STEPS, int(iterations * share))
                    q, before, after, steps = _learn(problem, ratio, qmin, qmax, fixed, steps, not full)
                    metrics[f"{la.op.label}.steps"] = float(steps)
                    if after > before:
                        q, after = nearest, before
                        changes.append(f"{la.label}: learned rounding reconstructed worse than nearest; kept nearest")
                    else:
                        improved += 1
                flips = float(np.mean(q != nearest))
                mat = q * la.scale
                ed.write_constant(la.op.inputs[1], la.to_weights(mat))
                if la.bias >= 0:
                    ed.write_constant(la.bias, ed.read_constant(la.bias).astype(np.float64)
                                      + problem.mean_residual(mat))
                learned[ed.tensor_name(la.op.inputs[1])] = la.to_weights(q).astype(np.int8)
                progress("adaround", done, total)
                if not learn:
                    continue
                label, key = la.label, la.op.label
                metrics[f"{key}.sqnr_nearest_db"] = _db(problem.yy, before)
                metrics[f"{key}.sqnr_adaround_db"] = _db(problem.yy, after)
                metrics[f"{key}.flipped"] = flips
                changes.append(f"{label} int{la.bits}: output SQNR on calibration data {_db(problem.yy, before):.1f} "
                               f"dB (nearest) -> {_db(problem.yy, after):.1f} dB, {100 * flips:.1f}% of weights "
                               "rounded the other way"
                               + ("" if la.bias >= 0 else "; no float bias of its own for the mean error"))
        metrics["improved_layers"] = float(improved)
        changes.append("the weights now sit on the engine's grid: quantize this model with the same scheme, "
                       "or it is not the learned rounding that gets stored")
        return TransformResult(ed.to_bytes(), self.name.value, tuple(changes), metrics, grid_values=learned,
                               activations_kept=eight_bit)


def _clipped_scale(la: _Layer, problem: _Problem, qmax: int) -> tuple[np.ndarray, float]:
    """Per output channel, the scale bound * f / qmax (f in CLIP_FRACTIONS) whose nearest rounding gives the least
    output error on the calibration rows, and the share of channels clipped (f < 1), in the layer's layout.

    The error is the layer's exact loss where its Gram matrix is small enough (EXACT_CLIP_COST), else the
    diagonal estimate sum_k (w~ - w)^2 E[x_k^2]. The engine reproduces the scale from the stored weights: the
    channel's clipped elements store +-qmax, so max|w~| / qmax is the chosen scale.
    """
    w = la.mat.astype(np.float64)
    top = np.maximum(np.abs(w).max(axis=-1, keepdims=True), MIN_BOUND)
    exact = problem.learn and _exact_clip(la)
    power = problem.sum_xq2[:, None, :]
    best, choice = None, None
    for f in CLIP_FRACTIONS:
        scale = (top * f / qmax).astype(np.float32).astype(np.float64)
        m = np.clip(np.rint(w / scale), -qmax, qmax) * scale
        if exact:
            err = (_matmul(m, problem.gram) * m).sum(-1) - 2.0 * (problem.cross_t * m).sum(-1)
        else:
            err = ((m - w) ** 2 * power).sum(-1)
        if best is None:
            best, choice = err, np.full(err.shape, f)
        else:
            better = err < best
            best, choice = np.where(better, err, best), np.where(better, f, choice)
    assert choice is not None
    scale = (top * choice[..., None] / qmax).astype(np.float32).astype(np.float64)
    return scale, float(np.mean(choice < 1.0))


def _exact_clip(la: _Layer) -> bool:
    """Whether the layer's exact loss can choose its clipping (EXACT_CLIP_COST)."""
    return la.mat.size * la.mat.shape[-1] * len(CLIP_FRACTIONS) <= EXACT_CLIP_COST


def _as_groups(la: _Layer, a: np.ndarray) -> np.ndarray:
    """Per-weight or per-channel arrays in the weight layout -> the layer's (groups, out, k) layout."""
    if la.op.op == "DEPTHWISE_CONV_2D":
        full = np.broadcast_to(a, la.w.shape)[0]
        return np.moveaxis(full, -1, 0).reshape(la.w.shape[-1], 1, -1).astype(np.float64)
    full = np.broadcast_to(a, la.w.shape)
    return full.reshape(1, la.w.shape[0], -1).astype(np.float64)


def _step_cost(la: _Layer) -> float:
    """Multiply-adds of one optimization step (deterministic, not timed)."""
    groups, out, k = la.mat.shape
    return float(groups * out * k * (k + ELEMENTWISE))


def _pass_macs(ed: GraphEditor) -> float:
    """Multiply-adds of one sample through the model's weighted layers (output positions times weights)."""
    return sum(_positions(op, ed) * float(np.prod(ed.tensor_shape(op.inputs[1])))
               for op in ed.find_ops(*_WEIGHTED))


def _positions(op: OpRef, ed: GraphEditor) -> int:
    """Output positions per sample of ``op``, from the model's declared output shape."""
    shape = ed.tensor_shape(op.outputs[0])
    return max(int(np.prod(shape[1:-1])) if len(shape) > 2 else 1, 1)


def _skip_unpaying(tflite: bytes, x: Mapping[str, np.ndarray], ed: GraphEditor, layers: list[_Layer],
                   activation_bits: int | None, full: bool, exempt: Collection[str],
                   learned: dict[str, np.ndarray], changes: list[str], metrics: dict[str, float],
                   tick: Callable[[], None]) -> list[_Layer]:
    """The layers left to learn: 8-bit layers under the GATE, or (sampled path) past INT8_BUDGET, keep nearest
    rounding; their grid values go to ``learned``, what was done to ``changes`` and ``metrics``.

    With float activations (``activation_bits`` None: dynamic) there is no gate, since no activation noise
    hides the weights'; on the sampled path the budget still applies, the layers ranked by their weight
    noise against their output's power.
    """
    total = len(layers)
    if full and any(la.bits < 8 for la in layers):
        # Downstream of a 4-bit layer an 8-bit one also repairs that layer's error (its loss reads the rounded
        # inputs), which the estimate does not see: gating w4a8's depthwise layers cost mobilenet_like 2.3 dB.
        # On the sampled path (real-size models) every 8-bit layer learning from few steps lost instead: a w4a8
        # MobileNetV2 with most layers int8 lost its AdaRound gain (benchmarks/results/w4a8-choices.md), so
        # there the 8-bit layers are gated and budgeted as at int8 and only the 4-bit ones all learn.
        metrics["gated_layers"] = 0.0
        return layers
    eight = [la for la in layers if la.bits >= 8 and ed.tensor_name(la.op.outputs[0]) not in exempt]
    ratios = _gate(tflite, x, ed, eight, activation_bits)
    gated = {i: r for i, r in ratios.items() if r < GATE} if activation_bits is not None else {}
    over: dict[int, float] = {}
    if not full:
        spent = 0.0
        for la in sorted((la for la in eight if id(la) in ratios and id(la) not in gated),
                         key=lambda la: -ratios[id(la)]):
            cost = _learn_cost(la)
            if spent + cost > INT8_BUDGET:
                over[id(la)] = ratios[id(la)]
            else:
                spent += cost
    for la in [la for la in layers if id(la) in gated or id(la) in over]:
        # Placed on the grid as the engine would round them, so later layers learn against this rounding
        # (the engine derives the same scale from s * q and stores the same integers).
        ratio, scale, qmin, qmax = op_grid(la.w, la.op.op, la.bits)
        q = np.clip(np.rint(ratio), qmin, qmax)
        ed.write_constant(la.op.inputs[1], (q * scale).astype(np.float32))
        learned[ed.tensor_name(la.op.inputs[1])] = q.astype(np.int8)
        tick()
    if gated:
        changes.append(f"{len(gated)} of {total} int8 layers keep nearest rounding: their estimated weight rounding "
                       f"noise is under {GATE:g} of the activation quantization noise (largest "
                       f"{max(gated.values()):.3f}), so learning cannot gain {10 * math.log10(1 + GATE):.2f} dB there")
    if over and activation_bits is None:
        worst = max(over.values())
        changes.append(f"{len(over)} of {total} int8 layers keep nearest rounding: learning them would pass the "
                       f"budget of {INT8_BUDGET:.0e} multiply-adds (the noisiest left: weight rounding noise "
                       f"{10 * math.log10(max(worst, 1e-30)):.1f} dB against its output)")
    elif over:
        worst = max(over.values())
        changes.append(f"{len(over)} more int8 layers keep nearest rounding: learning them would pass the budget of "
                       f"{INT8_BUDGET:.0e} multiply-adds (largest ratio left {worst:.3f}: at most "
                       f"{10 * math.log10(1 + worst):.2f} dB given up)")
    metrics["gated_layers"] = float(len(gated))
    metrics["over_budget_layers"] = float(len(over))
    return [la for la in layers if id(la) not in gated and id(la) not in over]


def _learn_cost(la: _Layer) -> float:
    """Multiply-adds of learning one layer on the sampled path: MIN_STEPS steps and the sampled statistics."""
    groups, out, k = la.mat.shape
    rows = max(ROWS, ROWS_PER_WEIGHT * k)
    return MIN_STEPS * _step_cost(la) + float(groups * rows * k * (k + out))


def _most_rows(layers: list[_Layer], ed: GraphEditor, samples: int) -> int:
    """The most rows any layer's full statistics would sum over (every position of every sample, every use)."""
    return max(samples * _positions(la.op, ed) * len(la.ops) for la in layers)


class _Moments:
    """Per-channel sums of squares and min-max of some tensors, folded where LiteRT runs (runtime.Reducer)."""

    def __init__(self, indices: list[int]) -> None:
        self.indices = indices
        self.squares: dict[int, np.ndarray] = {}
        self.count: dict[int, int] = {}
        self.lo: dict[int, float] = {}
        self.hi: dict[int, float] = {}

    def update(self, rows: int, tensors: dict[int, np.ndarray]) -> None:
        for i, v in tensors.items():
            flat = np.asarray(v, np.float32).reshape(-1, v.shape[-1] if v.ndim else 1)
            sq = np.square(flat).sum(axis=0, dtype=np.float64)
            self.squares[i] = self.squares.get(i, 0.0) + sq
            self.count[i] = self.count.get(i, 0) + len(flat)
            self.lo[i] = min(self.lo.get(i, 0.0), float(flat.min()))
            self.hi[i] = max(self.hi.get(i, 0.0), float(flat.max()))


def _gate(tflite: bytes, x: Mapping[str, np.ndarray], ed: GraphEditor, layers: list[_Layer],
          activation_bits: int | None) -> dict[int, float]:
    """Each layer's (by id) ratio of estimated weight rounding noise to activation quantization noise.

    Weight noise at an output channel: sum_k (nearest(w_k) - w_k)^2 E[x_k^2] (independent rounding errors);
    activation noise: step^2 / 12 of the output, plus the input's step^2 / 12 times sum_k w_k^2; steps from
    min-max ranges at ``activation_bits``. Averaged over output channels. ``activation_bits`` None (float
    activations): the ratio is to the output's mean power instead.
    """
    if not layers:
        return {}
    runner = Runner(tflite, what="float model", preserve=True)
    n = n_samples(x)
    index = np.unique(np.linspace(0, n - 1, min(n, GATE_SAMPLES)).round().astype(int))
    wanted = sorted({t for la in layers for t in (la.op.inputs[0], la.op.outputs[0])})
    moments = _Moments(wanted)
    for _, result in runner.reduce({k: v[index] for k, v in x.items()}, moments, batch_for(runner)):
        moments = result if result is not None else moments
    levels = 2 ** activation_bits - 1 if activation_bits is not None else 1
    ratios: dict[int, float] = {}
    for la in layers:
        src, dst = la.op.inputs[0], la.op.outputs[0]
        if src not in moments.count or dst not in moments.count:
            continue  # a batch-less or skipped tensor: no estimate, so the layer learns
        ex2 = moments.squares[src] / max(moments.count[src], 1)
        groups, out, k = la.mat.shape
        if la.op.op == "DEPTHWISE_CONV_2D":
            per_group = ex2[np.arange(groups) * len(ex2) // groups] if len(ex2) != groups else ex2
            power = np.broadcast_to(per_group[:, None, None], la.mat.shape)
        elif len(ex2) * (k // max(len(ex2), 1)) == k:
            power = np.broadcast_to(np.tile(ex2, k // len(ex2)), la.mat.shape)  # (kh, kw, cin) order
        else:
            power = np.full(la.mat.shape, float(ex2.mean()))
        ratio, scale, qmin, qmax = op_grid(la.w, la.op.op, la.bits)
        r, sc = _as_groups(la, ratio), _as_groups(la, scale)
        error = (np.clip(np.rint(r), qmin, qmax) - r) * sc
        weight_noise = float((error * error * power).sum(axis=-1).mean())
        if activation_bits is None:
            ratios[id(la)] = weight_noise / float(moments.squares[dst].sum() / max(moments.count[dst], 1)
                                                  / len(moments.squares[dst]) or 1e-30)
            continue
        step_in = (moments.hi[src] - moments.lo[src]) / levels
        step_out = (moments.hi[dst] - moments.lo[dst]) / levels
        act_noise = step_out ** 2 / 12 + step_in ** 2 / 12 * float((la.mat.astype(np.float64) ** 2).sum(-1).mean())
        ratios[id(la)] = weight_noise / act_noise if act_noise > 0 else math.inf
    return ratios


class _Sampling:
    """Which samples, output positions and layer groups AdaRound's statistics use (seeded, deterministic).

    ``rows`` None: every sample, every position, one group per layer (the full setting).
    """

    def __init__(self, tflite: bytes, x: Mapping[str, np.ndarray], layers: list[_Layer], ed: GraphEditor,
                 rows: int | None) -> None:
        self.full, self.rows_wanted = rows is None, rows or 0
        self.positions = {id(la): _positions(la.op, ed) for la in layers}
        runner = Runner(tflite, what="float model", preserve=True)
        self.batch = batch_for(runner)
        n = n_samples(x)
        if self.full:
            keep = n
        else:
            keep = min(n, max(SAMPLES, BATCH_BYTES // max(runner.sample_bytes(), 1)))
        # Evenly spread over the data (which select_samples already drew at random), first and last included.
        index = np.unique(np.linspace(0, n - 1, keep).round().astype(int)) if keep < n else np.arange(n)
        self.inputs = {k: v[index] for k, v in x.items()}
        self.samples = len(index)
        # Every layer learns from the rounded model's inputs, one pass pair per layer, where that is affordable.
        self.sequential = self.full or 2 * self.samples * len(layers) * _pass_macs(ed) <= PASS_BUDGET
        # Otherwise only 4-bit layers see earlier layers' learned rounding (at 8 bits the inputs barely move):
        # 8-bit layers alone are learned in one group, from one float pass.
        count = len(layers) if self.sequential else \
            min(len(layers), WAVES if any(la.bits < 8 for la in layers) else 1)
        bounds = np.linspace(0, len(layers), count + 1).round().astype(int)
        self.waves = [layers[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        self._rng = {id(la): np.random.default_rng([SEED, i]) for i, la in enumerate(layers)}

    def target_rows(self, la: _Layer) -> int:
        return max(self.rows_wanted, ROWS_PER_WEIGHT * la.mat.shape[-1])

    def per_sample(self, la: _Layer) -> int | None:
        """Positions taken from each sample for each use (None: all of them)."""
        if self.full:
            return None
        want = -(-self.target_rows(la) // (self.samples * len(la.ops)))
        return None if want >= self.positions[id(la)] else want

    def rows(self, la: _Layer) -> int:
        """Rows the layer's loss sums over (decides learned vs nearest rounding)."""
        each = self.per_sample(la) or self.positions[id(la)]
        return self.samples * each * len(la.ops)

    def pick(self, la: _Layer, x: np.ndarray, op: OpRef) -> np.ndarray | None:
        """Flat row indices of one batch for one use: per_sample random positions of every sample."""
        each = self.per_sample(la)
        if each is None:
            return None
        per = la.positions(x, op)
        if each >= per:
            return None
        batch = len(x)
        chosen = self._rng[id(la)].random((batch, per)).argpartition(each, axis=1)[:, :each]
        return np.sort((chosen + (np.arange(batch) * per)[:, None]).ravel())
