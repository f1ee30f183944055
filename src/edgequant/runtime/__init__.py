"""The one place that drives the LiteRT interpreter: named inputs and outputs, integer I/O, resizing.

Every stage runs models through :class:`Runner`: evaluation and latency,
calibration and the transforms (``stream_tensors``, with every intermediate
tensor kept), analyze's per-layer runs and tune's trials. Inputs and outputs
are addressed by their signature names, never by position.

A full-integer model with int8/uint8 inputs expects ``q = round(x / scale) +
zero_point``; its outputs need ``(q - zero_point) * scale``. Seed 003 got this
wrong by hand (it cast normalized floats straight to uint8). ``Runner`` does
both conversions with the model's own parameters and says that it did.
Integer inputs that are not quantized tensors (token ids, masks) pass through
unchanged.

Interpreter errors (allocate, resize, invoke, reading tensors) become one-line
:class:`~edgequant.errors.ModelRunError` here, at one boundary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edgequant._util import quiet
from edgequant.errors import InputError, ModelRunError
from edgequant.graph.flatbuffer import TFLITE_MAGIC
from edgequant.types import UNNAMED, Signature, TensorSpec

__all__ = ["open_interpreter", "Runner", "IOConversion", "stream_tensors", "guard", "read_signature",
           "Inputs", "DEFAULT_KEY", "as_inputs", "rows", "BATCH_BYTES", "batch_for"]

# Named inputs of one batch (or of a whole data set): signature input name -> array, batch first.
Inputs = Mapping[str, np.ndarray]

# The key edgequant gives a model without any signature, and the one picked among several by default.
DEFAULT_KEY = "serving_default"

# Memory a preserve-all-tensors batch may hold: every intermediate of every sample in the batch stays
# allocated, so the batch size comes from the model's per-sample activation bytes, not a fixed count
# (a fixed 32 held GBs per batch at 224x224; benchmarks/results/scale.md).
BATCH_BYTES = 256 * 2**20

# What LiteRT's Python wrapper raises for a model it cannot run (bad shapes, a kernel's Prepare or Eval
# failing, null tensor data, undecodable tensor names).
_LITERT_ERRORS = (ValueError, RuntimeError, IndexError, TypeError, UnicodeDecodeError, SystemError, OverflowError)


def as_inputs(inputs: Inputs | np.ndarray) -> dict[str, np.ndarray]:
    """Named inputs from a mapping, or from a bare array (named 'x' until it meets a model's one input)."""
    if isinstance(inputs, np.ndarray):
        return {UNNAMED: inputs}
    return {str(k): np.asarray(v) for k, v in inputs.items()}


def rows(inputs: Inputs | np.ndarray) -> int:
    """The number of samples (batch rows) in named inputs; every input has the same."""
    named = as_inputs(inputs)
    return int(next(iter(named.values())).shape[0]) if named else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def guard(what: str, stage: str) -> Iterator[None]:
    """The boundary: an interpreter error during ``stage`` becomes a one-line ModelRunError about ``what``."""
    try:
        yield
    except _LITERT_ERRORS as exc:
        raise ModelRunError(f"{what} fails in LiteRT at {stage}: {_first_line(exc)}") from None


def open_interpreter(tflite: bytes, what: str = "model", threads: int = 1, preserve: bool = False) -> Any:
    """A LiteRT interpreter with tensors allocated, or an InputError for a bad file.

    ``preserve`` keeps every intermediate tensor readable (calibration and analysis); it also keeps the
    default delegate out, since XNNPACK reuses intermediate buffers.
    """
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    if len(tflite) < 8 or bytes(tflite[4:8]) != TFLITE_MAGIC:
        raise InputError(f"{what} is not a .tflite model: expected identifier 'TFL3' at byte 4, found {bytes(tflite[4:8])!r}")
    try:
        with quiet(), warnings.catch_warnings():
            # LiteRT warns that preserving tensors is "for debugging": we want exactly that.
            warnings.simplefilter("ignore")
            interp = Interpreter(model_content=bytes(tflite), num_threads=threads,
                                 experimental_preserve_all_tensors=preserve)
            interp.allocate_tensors()
    except _LITERT_ERRORS as exc:
        raise InputError(f"{what} is not a loadable .tflite model: {_first_line(exc)}") from None
    return interp


def _spec(name: str, detail: dict[str, Any]) -> TensorSpec:
    shape = detail.get("shape_signature", detail["shape"])
    if len(shape) == 0:
        shape = detail["shape"]
    dtype = np.dtype(detail["dtype"])
    quantized = dtype.kind in "iu" and bool(detail["quantization"][0])
    return TensorSpec(name, tuple(int(d) for d in shape), dtype.name, quantized)


def _signature_table(interp: Any, what: str, key: str | None) -> tuple[str, int, dict[str, int], dict[str, int]]:
    """(key, subgraph, input name -> tensor index, output name -> tensor index) of the chosen signature.

    A model without signatures gets :data:`DEFAULT_KEY` over subgraph 0, named by its tensors.
    """
    with guard(what, "reading its signatures"):
        full = interp._get_full_signature_list()  # the only public form drops the tensor indices
    if not full:
        if key not in (None, DEFAULT_KEY):
            raise InputError(f"unknown --signature {key!r}: {what} has no signatures (expected none, or "
                             f"{DEFAULT_KEY!r})")
        with guard(what, "reading its inputs"):
            ins = {d["name"]: int(d["index"]) for d in interp.get_input_details()}
            outs = {d["name"]: int(d["index"]) for d in interp.get_output_details()}
        return DEFAULT_KEY, 0, ins, outs
    if key is None:
        if len(full) == 1:
            key = next(iter(full))
        elif DEFAULT_KEY in full:
            key = DEFAULT_KEY
        else:
            raise InputError(f"{what} has {len(full)} signatures: expected --signature KEY, one of "
                             f"{', '.join(sorted(full))}")
    if key not in full:
        raise InputError(f"unknown --signature {key!r}: expected one of {', '.join(sorted(full))}")
    with guard(what, "reading its signatures"):
        subgraph = int(interp._interpreter.GetSubgraphIndexFromSignature(key))
    return key, subgraph, dict(full[key]["inputs"]), dict(full[key]["outputs"])


def read_signature(tflite: bytes, what: str = "model", key: str | None = None) -> Signature:
    """The signature of a .tflite (names, shapes with -1 where unknown, dtypes) without running it."""
    return Runner(tflite, what=what, signature=key).signature


@dataclasses.dataclass(frozen=True)
class IOConversion:
    """How a float tensor maps onto one integer (quantized) model input or output."""

    name: str
    dtype: str
    scale: float
    zero_point: int

    def describe(self, direction: str) -> str:
        verb = "quantized from float" if direction == "input" else "dequantized to float"
        return (f"{direction} '{self.name}' is {self.dtype}: {verb} with the model's scale "
                f"{self.scale:.6g} and zero point {self.zero_point}")


def _conversion(name: str, detail: dict[str, Any]) -> IOConversion | None:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return None
    scale, zero = detail["quantization"]
    if not scale:
        return None  # an integer tensor that is not quantized: token ids, masks, indices
    return IOConversion(name, dtype.name, float(scale), int(zero))


class Runner:
    """One model in LiteRT: named inputs in (float, or integer where the model takes integers), float outputs.

    Unknown dimensions (batch, sequence length) take the shapes of the data given;
    a model with a fixed batch gets its last chunk padded and the padding dropped.
    """

    def __init__(self, tflite: bytes, threads: int = 1, what: str = "model", *, signature: str | None = None,
                 preserve: bool = False) -> None:
        self.tflite = bytes(tflite)
        self.threads = threads
        self.what = what
        self.interp = open_interpreter(self.tflite, what, threads, preserve)
        self.key, self.subgraph, self._in_index, self._out_index = _signature_table(self.interp, what, signature)
        self._wrapper = self.interp._interpreter
        with guard(what, "reading its inputs"):
            self._in_detail = {n: self.interp._get_tensor_details(i, self.subgraph) for n, i in self._in_index.items()}
            out_detail = {n: self.interp._get_tensor_details(i, self.subgraph) for n, i in self._out_index.items()}
        self.signature = Signature(self.key, tuple(_spec(n, d) for n, d in self._in_detail.items()),
                                   tuple(_spec(n, d) for n, d in out_detail.items()))
        self.input_conversions = {n: c for n, d in self._in_detail.items() if (c := _conversion(n, d))}
        self.output_conversions = {n: c for n, d in out_detail.items() if (c := _conversion(n, d))}
        self._out_dtypes = {n: np.dtype(d["dtype"]) for n, d in out_detail.items()}
        self._shapes = {n: tuple(int(v) for v in d["shape"]) for n, d in self._in_detail.items()}

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
        return all(t.shape and t.shape[0] == -1 for t in self.signature.inputs)

    def io_notes(self) -> tuple[str, ...]:
        return (tuple(c.describe("input") for c in self.input_conversions.values())
                + tuple(c.describe("output") for c in self.output_conversions.values()))

    # --- feeding
    @property
    def input_indices(self) -> dict[str, int]:
        """Signature input name -> tensor index in the signature's subgraph."""
        return dict(self._in_index)

    @property
    def output_indices(self) -> dict[str, int]:
        return dict(self._out_index)

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

    def _to_model(self, name: str, x: np.ndarray) -> np.ndarray:
        detail = self._in_detail[name]
        conv = self.input_conversions.get(name)
        if conv is None:
            return np.ascontiguousarray(x, dtype=detail["dtype"])
        info = np.iinfo(conv.dtype)
        q = np.round(np.asarray(x, np.float32) / conv.scale) + conv.zero_point
        return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(conv.dtype))

    def _from_model(self, name: str, y: np.ndarray) -> np.ndarray:
        conv = self.output_conversions.get(name)
        if conv is None:
            y = np.array(y)
            return y.astype(np.float32, copy=False) if y.dtype.kind in "fc" else y
        return ((y.astype(np.int32) - conv.zero_point) * conv.scale).astype(np.float32)

    def set_inputs(self, batch: Mapping[str, np.ndarray]) -> None:
        """Set one batch (already keyed by input name), resizing the interpreter where the shapes changed."""
        shapes = {n: tuple(int(d) for d in np.shape(v)) for n, v in batch.items()}
        if shapes != self._shapes:
            for n, shape in shapes.items():
                if shape != self._shapes[n]:
                    with guard(self.what, f"resizing input '{n}' to {shape}"):
                        self._wrapper.ResizeInputTensor(self._in_index[n], np.array(shape, np.int32), False,
                                                        self.subgraph)
            with guard(self.what, "allocating tensors"):
                self._wrapper.AllocateTensors(self.subgraph)
            self._shapes = shapes
        for n, v in batch.items():
            with guard(self.what, f"setting input '{n}'"):
                self._wrapper.SetTensor(self._in_index[n], self._to_model(n, v), self.subgraph)

    def invoke(self) -> None:
        with guard(self.what, "invoke"):
            self._wrapper.Invoke(self.subgraph)

    def timed_invoke(self) -> float:
        """One invoke, in seconds, timed around the kernel call alone."""
        start = time.perf_counter()
        self.invoke()
        return time.perf_counter() - start

    def outputs(self) -> dict[str, np.ndarray]:
        with guard(self.what, "reading outputs"):
            return {n: self._from_model(n, self._wrapper.GetTensor(i, self.subgraph))
                    for n, i in self._out_index.items()}

    def tensor_details(self) -> list[dict[str, Any]]:
        """Every tensor of the signature's subgraph: name, index, shape, dtype, quantization."""
        with guard(self.what, "reading its tensors"):
            return self.interp.get_tensor_details(self.subgraph)

    def op_outputs(self) -> list[int]:
        """The output tensor indices of every op, in execution order (what calibration watches)."""
        with guard(self.what, "reading its ops"):
            ops = self.interp._get_ops_details()  # no public form; kept to this one place
        return [int(i) for op in ops for i in op["outputs"] if int(i) >= 0]

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
        with guard(self.what, f"reading tensor {index}"):
            return np.array(self._wrapper.GetTensor(index, self.subgraph))

    def batches(self, inputs: Inputs | np.ndarray, batch_size: int = 64,
                drop_partial: bool = False) -> Iterator[tuple[int, int]]:
        """Set every batch of ``inputs`` in turn and invoke; yields (start, rows) after each invoke.

        A fixed-batch model gets its last chunk padded (rows is the real count),
        or skipped with ``drop_partial`` (statistics must not see padding).
        """
        named = self.named(inputs)
        total = len(next(iter(named.values())))
        fixed = None if self.dynamic_batch else max(1, self._shapes[self.input_names[0]][0])
        step = fixed or batch_size
        for start in range(0, total, step):
            part = {n: v[start:start + step] for n, v in named.items()}
            rows = len(next(iter(part.values())))
            if fixed and rows != fixed:
                if drop_partial:
                    break
                part = {n: np.concatenate([v, np.zeros((fixed - rows,) + v.shape[1:], v.dtype)])
                        for n, v in part.items()}
            self.set_inputs(part)
            self.invoke()
            yield start, rows

    def predict(self, inputs: Inputs | np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Every output, by name, for every row of ``inputs`` (float32 where the output is float or quantized)."""
        chunks: dict[str, list[np.ndarray]] = {n: [] for n in self.output_names}
        for _, rows in self.batches(inputs, batch_size):
            for n, v in self.outputs().items():
                chunks[n].append(v[:rows] if v.ndim else v[None])
        return {n: np.concatenate(c) if c else np.zeros((0,), np.float32) for n, c in chunks.items()}

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
        fixed = None if self.dynamic_batch else max(1, self._shapes[self.input_names[0]][0])
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
        yield {t: runner.tensor(t) for t in tensors}
