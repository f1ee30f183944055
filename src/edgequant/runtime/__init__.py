"""The one place that drives the LiteRT interpreter: named inputs and outputs, integer I/O, resizing.

Every stage runs models through :class:`Runner`: evaluation and latency,
calibration and the transforms (``stream_tensors``, with every intermediate
tensor kept), analyze's per-layer runs and tune's trials. Inputs and outputs
are addressed by their signature names, never by position.

The interpreter runs in a worker process (runtime/worker.py): models are
untrusted input and LiteRT is native code, so a segfault, abort or hang
becomes a one-line :class:`~edgequant.errors.ModelCrashError` and edgequant
carries on. ``EDGEQUANT_ISOLATE=0`` (or :func:`isolation`) runs it in this
process instead; the benchmark compares the two.

A full-integer model with int8/uint8 inputs expects ``q = round(x / scale) +
zero_point``; its outputs need ``(q - zero_point) * scale``. Seed 003 got this
wrong by hand (it cast normalized floats straight to uint8). ``Runner`` does
both conversions with the model's own parameters and says that it did.
Integer inputs that are not quantized tensors (token ids, masks) pass through
unchanged.

Interpreter errors (allocate, resize, invoke, reading tensors) become one-line
:class:`~edgequant.errors.ModelRunError` at one boundary (session.guard).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from edgequant.errors import InputError
from edgequant.runtime.session import (DEFAULT_KEY, IOConversion, OpSession, Session, SessionInfo, chunks, guard,
                                       open_interpreter)
from edgequant.types import UNNAMED

__all__ = ["open_interpreter", "Runner", "IOConversion", "stream_tensors", "guard",
           "Inputs", "DEFAULT_KEY", "as_inputs", "rows", "isolated", "isolation", "open_session", "ops_details",
           "BATCH_BYTES", "batch_for", "Reducer", "one_worker"]


class Reducer(Protocol):
    """Folds batches of some tensors into a small state, in the process that runs the model (Runner.reduce)."""

    indices: Sequence[int]

    def update(self, rows: int, tensors: dict[int, np.ndarray]) -> None: ...


R = TypeVar("R", bound=Reducer)

# Named inputs of one batch (or of a whole data set): signature input name -> array, batch first.
Inputs = Mapping[str, np.ndarray]

_ISOLATE = os.environ.get("EDGEQUANT_ISOLATE", "1").strip().lower() not in ("0", "false", "no", "off")


def isolated() -> bool:
    """Whether new runners put LiteRT in a worker process (the default; EDGEQUANT_ISOLATE=0 turns it off)."""
    return _ISOLATE


@contextlib.contextmanager
def isolation(enabled: bool) -> Iterator[None]:
    """Open runners in worker processes (True) or in this process (False) inside the block."""
    global _ISOLATE
    prior, _ISOLATE = _ISOLATE, enabled
    try:
        yield
    finally:
        _ISOLATE = prior


class _Local:
    """The in-process form of a worker's object: the same ``call`` over a local Session."""

    def __init__(self, kind: str, what: str, *args: Any, **kwargs: Any) -> None:
        self.what = what
        self.obj = {"session": Session, "op": OpSession}[kind](*args, **kwargs)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.obj, method)(*args, **kwargs)


_SHARE: contextvars.ContextVar[str | None] = contextvars.ContextVar("edgequant_share", default=None)
_SHARES = itertools.count(1)


@contextlib.contextmanager
def one_worker(label: str) -> Iterator[None]:
    """Every runner opened inside the block (that names no other) shares one worker, kept until the block ends.

    For one step whose models all come from the same source, such as a
    quantize (its float model, transforms, candidates and their checks): any
    crash fails that step as a whole, so a process per model would buy no
    isolation, only a fork per open. Separate steps (compare's variants, tune's
    trials) each get their own, so a crash still costs only that one.
    """
    if not isolated() or _SHARE.get() is not None:
        yield  # in-process, or already inside a step that shares one worker
        return
    from edgequant.runtime.worker import POOL

    share = f"{label}#{next(_SHARES)}"
    POOL.pin(share)
    token = _SHARE.set(share)
    try:
        yield
    finally:
        _SHARE.reset(token)
        POOL.unpin(share)


def open_session(kind: str, what: str, *args: Any, isolate: bool | None = None, share: str | None = None,
                 **kwargs: Any) -> Any:
    """A Session ("session") or OpSession ("op") built with these arguments, in a worker unless told not to.

    Each gets a worker of its own, unless ``share`` names a worker it shares with others (an analysis
    opens one model per op: one process each would be too many), or it is opened inside :func:`one_worker`.
    """
    from edgequant.runtime.worker import Remote

    if isolated() if isolate is None else isolate:
        return Remote(kind, what, *args, share=share or _SHARE.get(), **kwargs)
    return _Local(kind, what, *args, **kwargs)


# Memory a preserve-all-tensors batch may hold: every intermediate of every sample in the batch stays
# allocated, so the batch size comes from the model's per-sample activation bytes, not a fixed count
# (a fixed 32 held GBs per batch at 224x224; benchmarks/results/scale.md).
BATCH_BYTES = 256 * 2**20


def as_inputs(inputs: Inputs | np.ndarray) -> dict[str, np.ndarray]:
    """Named inputs from a mapping, or from a bare array (named 'x' until it meets a model's one input)."""
    if isinstance(inputs, np.ndarray):
        return {UNNAMED: inputs}
    return {str(k): np.asarray(v) for k, v in inputs.items()}


def rows(inputs: Inputs | np.ndarray) -> int:
    """The number of samples (batch rows) in named inputs; every input has the same."""
    named = as_inputs(inputs)
    return int(next(iter(named.values())).shape[0]) if named else 0


def ops_details(tflite: bytes, what: str = "model", threads: int = 1, signature: str | None = None) -> list[dict[str, Any]]:
    """Every node LiteRT runs for a model, delegate kernels included (name, index, inputs, outputs)."""
    return Runner(tflite, threads, what, signature=signature).ops_details()


class Runner:
    """One model in LiteRT: named inputs in (float, or integer where the model takes integers), float outputs.

    Unknown dimensions (batch, sequence length) take the shapes of the data given;
    a model with a fixed batch gets its last chunk padded and the padding dropped.
    The interpreter lives in a worker process unless ``isolate=False`` (see :func:`isolated`).
    """

    def __init__(self, tflite: bytes, threads: int = 1, what: str = "model", *, signature: str | None = None,
                 preserve: bool = False, isolate: bool | None = None) -> None:
        self.tflite = bytes(tflite)
        self.threads = threads
        self.what = what
        self._session = open_session("session", what, self.tflite, threads, what, signature, preserve,
                                     isolate=isolate)
        info: SessionInfo = self._session.call("info")
        self._info = info
        self.key, self.subgraph, self.signature = info.key, info.subgraph, info.signature
        self.input_conversions = dict(info.input_conversions)
        self.output_conversions = dict(info.output_conversions)

    # --- what the model declares
    @property
    def input_names(self) -> tuple[str, ...]:
        return self.signature.input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.signature.output_names

    @property
    def input_dtype(self) -> str:
        """The input dtypes, comma-separated when there are several."""
        return ", ".join(dict.fromkeys(t.dtype for t in self.signature.inputs))

    @property
    def output_dtype(self) -> str:
        return ", ".join(dict.fromkeys(t.dtype for t in self.signature.outputs))

    @property
    def dynamic_batch(self) -> bool:
        return self._info.dynamic_batch

    def io_notes(self) -> tuple[str, ...]:
        return (tuple(c.describe("input") for c in self.input_conversions.values())
                + tuple(c.describe("output") for c in self.output_conversions.values()))

    @property
    def input_indices(self) -> dict[str, int]:
        """Signature input name -> tensor index in the signature's subgraph."""
        return dict(self._info.input_indices)

    @property
    def output_indices(self) -> dict[str, int]:
        return dict(self._info.output_indices)

    def zeros(self) -> dict[str, np.ndarray]:
        """One sample of zeros per input (unknown dimensions as 1): a latency input when there is no data."""
        return {t.name: np.zeros((1,) + tuple(d if d > 0 else 1 for d in t.shape[1:]), t.dtype)
                for t in self.signature.inputs}

    def named(self, inputs: Inputs | np.ndarray) -> dict[str, np.ndarray]:
        """``inputs`` keyed by this model's input names (a bare array, or one named 'x', feeds a one-input model)."""
        inputs = as_inputs(inputs)
        names = self.input_names
        if len(names) == 1 and len(inputs) == 1:
            # One input: the data was matched to a model by name already (data.check_against_model); a model
            # built from it (a QAT export, an engine's output) may call its one input otherwise.
            return {names[0]: next(iter(inputs.values()))}
        missing = [n for n in names if n not in inputs]
        extra = [n for n in inputs if n not in names]
        if missing or extra:
            raise InputError(f"{self.what}: expected inputs named {', '.join(names)}, found "
                             f"{', '.join(inputs) or 'none'}" + (f" (missing {', '.join(missing)})" if missing else "")
                             + (f" (unknown {', '.join(extra)})" if extra else ""))
        return {n: inputs[n] for n in names}

    # --- running (each call is one message to the worker)
    def set_inputs(self, batch: Mapping[str, np.ndarray]) -> None:
        """Set one batch (already keyed by input name), resizing the interpreter where the shapes changed."""
        self._session.call("set_inputs", {n: np.asarray(v) for n, v in batch.items()})

    def invoke(self) -> None:
        self._session.call("invoke")

    def timed_invoke(self) -> float:
        """One invoke, in seconds, timed around the kernel call alone where it runs (no messaging time)."""
        return float(self._session.call("timed_invoke"))

    def outputs(self) -> dict[str, np.ndarray]:
        return self._session.call("outputs")

    def tensor_details(self) -> list[dict[str, Any]]:
        """Every tensor of the signature's subgraph: name, index, shape, dtype, quantization."""
        return self._session.call("tensor_details")

    def ops_details(self) -> list[dict[str, Any]]:
        """Every node in execution order, delegate kernels included: index, op_name, inputs, outputs."""
        return self._session.call("ops_details")

    def op_outputs(self) -> list[int]:
        """The output tensor indices of every op, in execution order (what calibration watches)."""
        return [i for op in self.ops_details() for i in op["outputs"] if i >= 0]

    def sample_bytes(self) -> int:
        """Bytes one sample occupies across the inputs and every op output (what preserve mode keeps)."""
        details = {int(d["index"]): d for d in self.tensor_details()}
        total = 0
        for i in set(self.input_indices.values()) | set(self.op_outputs()):
            d = details.get(i)
            if d is None or not len(d["shape"]):
                continue
            shape = [int(v) for v in d["shape"]]
            total += int(np.prod(shape[1:])) * np.dtype(d["dtype"]).itemsize
        return total

    def tensor(self, index: int) -> np.ndarray:
        """Any tensor by index (intermediates need ``preserve=True``), copied out of the interpreter."""
        return self._session.call("tensor", int(index))

    def tensors(self, indices: Sequence[int]) -> dict[int, np.ndarray]:
        """Several tensors by index, in one message."""
        return self._session.call("tensors", [int(i) for i in indices])

    def batches(self, inputs: Inputs | np.ndarray, batch_size: int = 64,
                drop_partial: bool = False) -> Iterator[tuple[int, int]]:
        """Set every batch of ``inputs`` in turn and invoke; yields (start, rows) after each invoke.

        A fixed-batch model gets its last chunk padded (rows is the real count),
        or skipped with ``drop_partial`` (statistics must not see padding).
        """
        for start, n, part in chunks(self.named(inputs), self._info.fixed_batch, batch_size, drop_partial):
            self._session.call("run", part)
            yield start, n

    def reduce(self, inputs: Inputs | np.ndarray, reducer: R, batch_size: int = 64) -> Iterator[tuple[int, R | None]]:
        """Run every batch and fold the tensors ``reducer.indices`` into ``reducer.update(rows, {index: array})``
        where LiteRT holds them (the worker process): yields (rows done, None) per batch, then (rows, the
        reducer with every batch folded in). A fixed-batch model's partial last batch is dropped (statistics
        must not see padding). The reducer is pickled both ways, so its state must stay small.
        """
        self._session.call("attach", reducer)
        done = 0
        for _, n, part in chunks(self.named(inputs), self._info.fixed_batch, batch_size, drop_partial=True):
            self._session.call("run_reduce", part, n)
            done += n
            yield done, None
        yield done, self._session.call("detach")

    def predict(self, inputs: Inputs | np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Every output, by name, for every row of ``inputs`` (float32 where the output is float or quantized)."""
        return self._session.call("predict", self.named(inputs), batch_size)

    def predict_output(self, inputs: Inputs | np.ndarray, name: str | None = None, batch_size: int = 64) -> np.ndarray:
        """One output for every row of ``inputs``: ``name``, or the model's only output."""
        if name is None:
            if len(self.output_names) != 1:
                raise InputError(f"{self.what} has {len(self.output_names)} outputs: expected an output name, one of "
                                 f"{', '.join(self.output_names)}")
            name = self.output_names[0]
        elif name not in self.output_names:
            raise InputError(f"unknown output {name!r}: expected one of {', '.join(self.output_names)}")
        return self.predict(inputs, batch_size)[name]

    def prepare_single(self, inputs: Inputs | np.ndarray) -> None:
        """Set the first sample of ``inputs`` at batch 1 (the deployment case), for latency runs."""
        named = self.named(inputs)
        fixed = self._info.fixed_batch
        self.set_inputs({n: v[: fixed or 1] for n, v in named.items()})


def batch_for(runner: Runner, budget: int = BATCH_BYTES, most: int = 64) -> int:
    """The batch size whose preserved tensors fit in ``budget`` bytes: at least 1, at most ``most``.

    Memory then stays flat in the number of samples and grows with the model's activations.
    """
    return int(max(1, min(most, budget // max(runner.sample_bytes(), 1))))


def stream_tensors(tflite: bytes, inputs: Inputs | np.ndarray, tensors: Sequence[int],
                   batch_size: int | None = None, what: str = "float model") -> Iterator[dict[int, np.ndarray]]:
    """Run a model in LiteRT over ``inputs`` in batches and yield the listed tensors of each batch.

    Callers reduce each batch to running sums or maxima, so memory stays
    bounded by one batch whatever the size of the data; ``batch_size`` None
    takes :func:`batch_for`'s. A fixed-batch model's
    partial last batch is dropped: statistics must not see padding rows.
    """
    runner = Runner(tflite, what=what, preserve=True)
    batch_size = batch_size or batch_for(runner)
    for _ in runner.batches(inputs, batch_size, drop_partial=True):
        yield runner.tensors(tensors)
