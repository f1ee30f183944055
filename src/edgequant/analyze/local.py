"""The error one op adds on its own: the quantized op and the float op, run alone on the same inputs.

Method. For each layer, the op is cut out of the quantized model into a
one-op model (graph/submodel.py) with its weights as stored, plus any
DEQUANTIZE that expands those weights; its float counterpart is cut out of
the float model the same way. The quantized op is fed the *float reference's*
values for its activation inputs, stored exactly as the quantized model
stores them (the input tensor's own dtype, scale and zero point; float inputs
as float). The float op is fed those same stored values, dequantized. The two
outputs are subtracted (the quantized one dequantized). What remains is the
error this op adds: weight quantization, integer arithmetic, and output
rounding and clipping, with no error inherited from earlier layers. Its SQNR
is taken against the float model's own output for the tensor, the same
signal as the accumulated error's, so the two can be compared.

Input rounding is not counted here: it is the output rounding of the op that
produced the input, and counting it at every consumer would count it twice
(a RESHAPE or MAX_POOL_2D would then look as lossy as the layer before it).
The model input's own rounding shows as the first layer's inherited error.

Both one-op models run in LiteRT on the kernels the whole model uses (the
default XNNPACK delegate where it takes the op), so the figure is the
deployment runtime's arithmetic, not a simulation of it. Inputs with no float
counterpart (integer shape tensors) get the quantized run's own values. When
the float op cannot be cut out, the quantized op's output is compared with
the float model's own output for that tensor instead (input rounding then
counts), and the layer says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgequant.graph.submodel import GraphModel, SubModel
from edgequant.runtime import open_session

__all__ = ["OpModel", "LocalProbe", "to_float", "to_stored", "local_feeds"]


def _qshape(q: tuple[np.ndarray, np.ndarray, int], ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scales, zps, axis = q
    if len(scales) == 1 or ndim == 0:
        return scales[:1].reshape(()), zps[:1].reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return scales.reshape(shape), zps.reshape(shape)


def to_float(values: np.ndarray, q: tuple[np.ndarray, np.ndarray, int] | None) -> np.ndarray:
    """A tensor's real values: (stored - zero point) * scale for quantized tensors, as float64."""
    if q is None:
        return np.asarray(values, np.float64)
    scale, zp = _qshape(q, values.ndim)
    return (values.astype(np.float64) - zp) * scale


def to_stored(values: np.ndarray, dtype: str, q: tuple[np.ndarray, np.ndarray, int] | None) -> np.ndarray:
    """Float values as a tensor of ``dtype`` stores them (round to nearest, clamp), as the model would."""
    if dtype in ("float32", "float16"):
        return np.asarray(values, np.dtype(dtype))
    if q is None:
        return np.asarray(values).astype(dtype)
    scale, zp = _qshape(q, values.ndim)
    info = np.iinfo(np.dtype(dtype))
    return np.clip(np.round(values / scale) + zp, info.min, info.max).astype(dtype)


class OpModel:
    """One op (plus the DEQUANTIZE ops feeding it stored weights) as a runnable LiteRT model.

    It runs in a LiteRT worker (runtime.OpSession) shared by every op model of the process: an analysis
    opens one per op. It also has the ``prepare_single``/``invoke``/``threads`` shape of
    runtime.Runner, so evaluate.measure_interleaved can time it.
    """

    def __init__(self, g: GraphModel, op_index: int, with_weight_dequantize: bool = True, threads: int = 1,
                 delegate: bool = True) -> None:
        ops = [op_index]
        if with_weight_dequantize:
            producers = g.producers()
            for t in g.op_inputs(op_index):
                p = producers.get(t)
                if p is not None and g.op_names[p] == "DEQUANTIZE" and all(g.is_constant(i) for i in g.op_inputs(p)):
                    ops.append(p)
        self.sub: SubModel = g.submodel(ops, outputs=g.op_outputs(op_index))
        self.threads = threads
        # "<model>: OP#i"; timers and messages use it to tell the two models' ops apart.
        self.what = f"{g.what}: {g.op_names[op_index]}#{op_index}"
        # ``delegate`` follows what XNNPACK did with this op in the whole model, so the op
        # runs on the same kernel here as there.
        self._session = open_session("op", self.what, self.sub.tflite, threads, self.what, delegate, share="ops")
        self._dtypes = dict(zip(self.sub.inputs, self._session.call("input_dtypes")))
        self._single: Mapping[int, np.ndarray] = {}

    @property
    def inputs(self) -> tuple[int, ...]:
        """The original model's tensor indices this model reads, in order."""
        return self.sub.inputs

    def input_dtype(self, tensor: int) -> str:
        return self._dtypes[tensor]

    def run(self, feeds: Mapping[int, np.ndarray]) -> np.ndarray:
        """The op's first output for these inputs (keyed by original tensor index), as stored."""
        return self._session.call("run", [np.asarray(feeds[t]) for t in self.sub.inputs])

    # --- the Runner shape, for timing with evaluate.measure_interleaved
    def prepare_single(self, sample: Any) -> None:
        """Load the batch-1 inputs given to :meth:`set_single` (the model sample is not this op's input)."""
        self._session.call("prepare_single", [self._single[t] for t in self.sub.inputs])

    def set_single(self, feeds: Mapping[int, np.ndarray]) -> None:
        self._single = {t: np.asarray(v) for t, v in feeds.items()}

    def invoke(self) -> None:
        self._session.call("invoke")

    def timed_invoke(self) -> float:
        return float(self._session.call("timed_invoke"))


def local_feeds(model: OpModel, qg: GraphModel, counterpart: Mapping[int, int], f_batch: Mapping[int, np.ndarray],
                q_batch: Mapping[int, np.ndarray]) -> tuple[dict[int, np.ndarray], list[int]]:
    """Inputs for ``model`` from the float run (stored as the quantized model stores them).

    Returns the feeds and the tensors that had no float counterpart and were
    fed the quantized run's own values instead.
    """
    feeds: dict[int, np.ndarray] = {}
    own: list[int] = []
    for t in model.inputs:
        f = counterpart.get(t)
        dtype = model.input_dtype(t)
        if f is not None and f in f_batch:
            feeds[t] = to_stored(f_batch[f], dtype, qg.quantization(t))
        else:
            feeds[t] = q_batch[t]
            own.append(t)
    return feeds, own


class LocalProbe:
    """The quantized op and its float counterpart, each alone, fed the same (stored) inputs."""

    def __init__(self, qg: GraphModel, fg: GraphModel, op_index: int, f_op: int | None,
                 counterpart: Mapping[int, int], delegate: bool = True, f_delegate: bool = True) -> None:
        self.qg = qg
        self.q = OpModel(qg, op_index, delegate=delegate)
        self.f: OpModel | None = None
        self.counterpart = counterpart
        self.note: str | None = None
        if f_op is not None:
            try:
                self.f = OpModel(fg, f_op, delegate=f_delegate)
            except Exception as exc:  # noqa: BLE001 - any failure to cut/load only changes the method
                self.note = (f"float op could not run alone ({type(exc).__name__}): compared with the float "
                             "model's output")
        else:
            self.note = "no float op writes this tensor: compared with the float model's output"
        # Which quantized input feeds each float input (by counterpart).
        self._q_for_f = {counterpart[t]: t for t in self.q.inputs if t in counterpart}

    @property
    def f_inputs(self) -> tuple[int, ...]:
        return self.f.inputs if self.f is not None else ()

    def run(self, f_batch: Mapping[int, np.ndarray], q_batch: Mapping[int, np.ndarray], f_out: int,
            q_out: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(signal, signal + local error, inputs fed the quantized run's own values).

        The signal is the float model's own output for the tensor, as for the
        accumulated error, so both SQNRs share one denominator. The local error
        is the quantized op's output minus the float op's on the same inputs:
        measured against the float op on rounded inputs alone, the signal
        would shrink with every error upstream (an input rounded to zero makes
        any later error look huge).
        """
        feeds, own = local_feeds(self.q, self.qg, self.counterpart, f_batch, q_batch)
        out = to_float(self.q.run(feeds), self.qg.quantization(q_out))
        signal = np.asarray(f_batch[f_out], np.float64)
        if self.f is None:
            return signal, out, own
        f_feeds = {}
        for t in self.f.inputs:
            q = self._q_for_f.get(t)
            # The float op sees what the quantized op saw, dequantized: the same rounded inputs.
            f_feeds[t] = to_float(feeds[q], self.qg.quantization(q)).astype(np.float32) if q is not None \
                else np.asarray(f_batch[t])
        return signal, signal + (out - to_float(self.f.run(f_feeds), None)), own
