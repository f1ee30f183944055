"""Per-layer error of a quantized model against its float reference, streamed over the data.

Both models run in LiteRT side by side, batch by batch, with every
intermediate tensor kept (``experimental_preserve_all_tensors``; LiteRT then
delegates op by op to XNNPACK, so the kernels are the deployment's). Each
batch is reduced at once to running sums per tensor (signal and noise power,
absolute error, per-sample cosine, clipped count) and a bounded histogram of
the float values (calibrate.histogram.TensorStats), then dropped: memory is
one batch of tensors plus O(1) per layer, whatever the number of samples.
The batch size is chosen so one batch of the watched tensors stays under
``BATCH_BUDGET_BYTES``.

For each layer it measures:
- accumulated error: the quantized model's output (dequantized) vs float;
- local error: the op alone on float inputs (local.py);
- inherited error: the accumulated error of the op's activation inputs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from edgequant._util import Progress, no_progress
from edgequant.analyze.local import LocalProbe, to_float
from edgequant.analyze.match import LayerPair, Matching
from edgequant.analyze.records import LayerError
from edgequant.calibrate.histogram import BINS, TensorStats
from edgequant.errors import EdgequantError, InputError
from edgequant.graph.submodel import GraphModel
from edgequant.runtime import Inputs, Runner, rows

__all__ = ["ErrorSums", "PreservedRun", "measure_layers", "BATCH_BUDGET_BYTES", "central_range"]

# One batch of every watched tensor (float and quantized) stays under this.
BATCH_BUDGET_BYTES = 64 * 2 ** 20
MAX_BATCH = 64
# The central share of float values reported as the range "most values" need.
CENTRAL_SHARE = 0.9999


@dataclasses.dataclass
class ErrorSums:
    """Running sums comparing a tensor with its reference; mergeable across tensors."""

    signal: float = 0.0
    noise: float = 0.0
    abs_sum: float = 0.0
    count: int = 0
    max_abs: float = 0.0
    cos_sum: float = 0.0
    rows: int = 0

    def update(self, ref: np.ndarray, out: np.ndarray) -> None:
        r = np.asarray(ref, np.float64).reshape(len(ref), -1)
        o = np.asarray(out, np.float64).reshape(len(out), -1)
        e = o - r
        self.signal += float(np.sum(r * r))
        self.noise += float(np.sum(e * e))
        self.abs_sum += float(np.sum(np.abs(e)))
        self.count += e.size
        self.max_abs = max(self.max_abs, float(np.max(np.abs(e))) if e.size else 0.0)
        norms = np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1)
        dots = np.sum(r * o, axis=1)
        # As evaluate.metrics.fidelity: two all-zero rows are identical (cosine 1).
        self.cos_sum += float(np.sum(np.where(norms > 0, dots / np.where(norms > 0, norms, 1),
                                              np.where(dots == 0, 1.0, 0.0))))
        self.rows += len(r)

    @classmethod
    def merged(cls, parts: Sequence[ErrorSums]) -> ErrorSums:
        out = cls()
        for p in parts:
            out.signal += p.signal
            out.noise += p.noise
            out.abs_sum += p.abs_sum
            out.count += p.count
            out.max_abs = max(out.max_abs, p.max_abs)
            out.cos_sum += p.cos_sum
            out.rows += p.rows
        return out

    @property
    def sqnr_db(self) -> float:
        if self.noise == 0:
            return math.inf
        return 10 * math.log10(self.signal / self.noise) if self.signal > 0 else -math.inf

    @property
    def cosine(self) -> float:
        return self.cos_sum / self.rows if self.rows else 1.0

    @property
    def mean_abs(self) -> float:
        return self.abs_sum / self.count if self.count else 0.0


def central_range(stats: TensorStats, share: float = CENTRAL_SHARE) -> tuple[float, float]:
    """The range holding ``share`` of the values seen, read from the histogram (rounded outwards to bin edges)."""
    cum = np.cumsum(stats.counts)
    if not cum.size or cum[-1] == 0:
        return stats.min, stats.max
    tail = (1 - share) / 2 * cum[-1]
    edges = np.linspace(stats.lo, stats.hi, BINS + 1)
    lo_bin = int(np.searchsorted(cum, tail, side="right"))
    hi_bin = int(np.searchsorted(cum, cum[-1] - tail, side="left"))
    return max(stats.min, float(edges[lo_bin])), min(stats.max, float(edges[min(hi_bin + 1, BINS)]))


class PreservedRun:
    """A model in LiteRT with every intermediate tensor readable after invoke (through runtime.Runner)."""

    def __init__(self, tflite: bytes, what: str) -> None:
        self.runner = Runner(tflite, what=what, preserve=True)
        self.dynamic = self.runner.dynamic_batch
        first = self.runner.signature.inputs[0].shape if self.runner.signature.inputs else ()
        self.batch = int(first[0]) if first and first[0] > 0 else 1

    def run(self, inputs: Mapping[str, np.ndarray]) -> None:
        self.runner.set_inputs(self.runner.named(inputs))
        self.runner.invoke()

    def get(self, tensor: int) -> np.ndarray:
        return self.runner.tensor(tensor)


def _batches(f: PreservedRun, q: PreservedRun, n: int, per_sample_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of each batch both models can take."""
    if f.dynamic and q.dynamic:
        step = max(1, min(MAX_BATCH, BATCH_BUDGET_BYTES // max(1, per_sample_bytes)))
    elif not f.dynamic and not q.dynamic and f.batch != q.batch:
        raise InputError(f"the quantized model does not correspond to the reference: it takes batches of {q.batch}, "
                         f"the reference {f.batch}")
    else:
        step = q.batch if not q.dynamic else f.batch
    for start in range(0, n, step):
        if start + step > n and not (f.dynamic and q.dynamic):
            break  # a fixed-batch model: no padding rows in the statistics
        yield start, min(n, start + step)


def measure_layers(fg: GraphModel, qg: GraphModel, matching: Matching, x: Inputs,
                   delegated: set[int] | None = None, f_delegated: set[int] | None = None,
                   progress: Progress = no_progress) -> tuple[list[LayerError], int]:
    """Accumulated, local and inherited error of every paired layer, and the samples used.

    ``delegated``/``f_delegated`` list the ops XNNPACK takes in the whole quantized/float
    model (runtime.xnnpack_ops), so each op's local run uses the kernel it gets there;
    None delegates every op it can.
    """
    f_model, q_model = PreservedRun(fg.tflite, "reference model"), PreservedRun(qg.tflite, "quantized model")
    cp = matching.counterpart
    watched = sorted({t for lay in matching.layers for t in (lay.q_tensor, *lay.inputs) if t in cp})
    sums = {t: ErrorSums() for t in watched}
    local_sums = {lay.op_index: ErrorSums() for lay in matching.layers}
    clipped = {lay.op_index: 0 for lay in matching.layers}
    hists = {lay.op_index: TensorStats(fg.tensor_name(lay.f_tensor), len(fg.tensor_shape(lay.f_tensor)))
             for lay in matching.layers}
    probes: dict[int, LocalProbe] = {}
    notes: dict[int, list[str]] = {lay.op_index: [] for lay in matching.layers}
    f_producers = fg.producers()
    for lay in matching.layers:
        f_op = f_producers.get(lay.f_tensor)
        try:
            probes[lay.op_index] = LocalProbe(qg, fg, lay.op_index, f_op, cp,
                                              delegate=delegated is None or lay.op_index in delegated,
                                              f_delegate=f_delegated is None or f_op in f_delegated)
        except (EdgequantError, ValueError, RuntimeError) as exc:
            notes[lay.op_index].append(f"no local figure: the op cannot run on its own in LiteRT ({exc})")
            continue
        if probes[lay.op_index].note:
            notes[lay.op_index].append(f"local figure: {probes[lay.op_index].note}")
    f_needed = sorted({cp[t] for t in watched} | {lay.f_tensor for lay in matching.layers}
                      | {cp[t] for p in probes.values() for t in p.q.inputs if t in cp}
                      | {t for p in probes.values() for t in p.f_inputs})
    q_needed = sorted(set(watched) | {t for p in probes.values() for t in p.q.inputs})
    per_sample = sum(int(np.prod([abs(d) for d in g.tensor_shape(t)[1:]] or [1])) * 4
                     for g, ts in ((fg, f_needed), (qg, q_needed)) for t in ts)
    spans = list(_batches(f_model, q_model, rows(x), per_sample))
    if not spans:
        raise InputError(f"data: expected at least {q_model.batch} samples for this fixed-batch model, found {rows(x)}")
    own_fed: dict[int, set[int]] = {}
    for k, (start, stop) in enumerate(spans, start=1):
        part = {n: v[start:stop] for n, v in x.items()}
        f_model.run(part)
        q_model.run(part)
        fb = {t: f_model.get(t) for t in f_needed}
        qb = {t: q_model.get(t) for t in q_needed}
        for t in watched:
            sums[t].update(fb[cp[t]], to_float(qb[t], qg.quantization(t)))
        for lay in matching.layers:
            ref = fb[lay.f_tensor]
            hists[lay.op_index].update(ref if ref.ndim else ref[None])
            lo_hi = _representable(qg, lay.q_tensor)
            if lo_hi is not None:
                clipped[lay.op_index] += int(np.count_nonzero((ref < lo_hi[0]) | (ref > lo_hi[1])))
            probe = probes.get(lay.op_index)
            if probe is not None:
                try:
                    local_ref, local_out, own = probe.run(fb, qb, lay.f_tensor, lay.q_tensor)
                except (RuntimeError, ValueError) as exc:
                    # A figure over part of the data would mislead: drop it and say why.
                    del probes[lay.op_index]
                    why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    notes[lay.op_index].append(f"no local figure: the op alone failed in LiteRT on batch {k} ({why})")
                    continue
                own_fed.setdefault(lay.op_index, set()).update(own)
                local_sums[lay.op_index].update(local_ref, local_out)
        progress("analyze layers", k, len(spans))
    for i, own in own_fed.items():
        named = [qg.tensor_name(t) for t in own if qg.tensor_dtype(t) not in ("int32", "int64")]
        if named:
            notes[i].append("local figure fed the quantized run's own values for input(s) with no float "
                            f"counterpart: {', '.join(named)}")
    samples = spans[-1][1]
    return [_record(qg, fg, lay, sums, local_sums, hists, clipped, probes, notes) for lay in matching.layers], samples


def _representable(qg: GraphModel, tensor: int) -> tuple[float, float] | None:
    """The real-valued range a quantized tensor can hold, widened by half a step (values rounding inside)."""
    q = qg.quantization(tensor)
    dtype = qg.tensor_dtype(tensor)
    if q is None or dtype not in ("int8", "uint8", "int16") or len(q[0]) != 1:
        return None
    info = np.iinfo(np.dtype(dtype))
    scale, zp = float(q[0][0]), int(q[1][0])
    return (info.min - zp - 0.5) * scale, (info.max - zp + 0.5) * scale


def _record(qg: GraphModel, fg: GraphModel, lay: LayerPair, sums: dict[int, ErrorSums],
            local_sums: dict[int, ErrorSums], hists: dict[int, TensorStats], clipped: dict[int, int],
            probes: dict[int, LocalProbe],
            notes: dict[int, list[str]]) -> LayerError:
    acc = sums.get(lay.q_tensor, ErrorSums())
    loc = local_sums[lay.op_index] if lay.op_index in probes else None
    inherited = [sums[t] for t in lay.inputs if t in sums]
    hist = hists[lay.op_index]
    q = qg.quantization(lay.q_tensor)
    rep = _representable(qg, lay.q_tensor)
    p_lo, p_hi = central_range(hist)
    return LayerError(
        index=lay.op_index, op=lay.op, tensor=fg.tensor_name(lay.f_tensor),
        quantized_tensor=qg.tensor_name(lay.q_tensor), match=lay.method, dtype=qg.tensor_dtype(lay.q_tensor),
        scale=float(q[0][0]) if q is not None and len(q[0]) == 1 else None,
        zero_point=int(q[1][0]) if q is not None and len(q[1]) == 1 else None,
        range_min=None if rep is None else rep[0] + 0.5 * float(q[0][0]),
        range_max=None if rep is None else rep[1] - 0.5 * float(q[0][0]),
        float_min=hist.min, float_max=hist.max, p9999_min=p_lo, p9999_max=p_hi,
        clipped_share=None if rep is None or hist.count == 0 else clipped[lay.op_index] / hist.count,
        sqnr_db=acc.sqnr_db, cosine=acc.cosine, mean_abs_error=acc.mean_abs, max_abs_error=acc.max_abs,
        local_sqnr_db=None if loc is None else loc.sqnr_db,
        local_mean_abs_error=None if loc is None else loc.mean_abs,
        local_max_abs_error=None if loc is None else loc.max_abs,
        inherited_sqnr_db=ErrorSums.merged(inherited).sqnr_db if inherited else None,
        notes=tuple(notes[lay.op_index]))
