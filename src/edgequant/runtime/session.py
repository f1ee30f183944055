"""The LiteRT interpreter itself: the only module that imports it (runtime/worker.py runs it in a child).

A :class:`Session` holds one model's interpreter and does every step on it:
signature lookup, resizing, integer I/O conversion, invoke, reading tensors,
whole-data predictions. Its methods take and return plain data (arrays,
dicts, dataclasses), so the same object works in this process or behind a
worker's pipe, one message per call. :class:`OpSession` is the index-addressed
form analyze uses for one-op models.

Interpreter errors (allocate, resize, invoke, reading tensors) become one-line
:class:`~edgequant.errors.ModelRunError` here, at one boundary (:func:`guard`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edgequant._util import quiet
from edgequant.errors import InputError, ModelRunError
from edgequant.graph.flatbuffer import TFLITE_MAGIC
from edgequant.types import Signature, TensorSpec

__all__ = ["Session", "SessionInfo", "OpSession", "IOConversion", "guard", "open_interpreter", "chunks",
           "DEFAULT_KEY"]

# The key edgequant gives a model without any signature, and the one picked among several by default.
DEFAULT_KEY = "serving_default"

# What LiteRT's Python wrapper raises for a model it cannot run (bad shapes, a kernel's Prepare or Eval
# failing, null tensor data, undecodable tensor names).
_LITERT_ERRORS = (ValueError, RuntimeError, IndexError, TypeError, UnicodeDecodeError, SystemError, OverflowError,
                  KeyError, MemoryError)


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


def open_interpreter(tflite: bytes, what: str = "model", threads: int = 1, preserve: bool = False,
                     delegate: bool = True, allocate: bool = True) -> Any:
    """A LiteRT interpreter with tensors allocated, or an InputError for a bad file.

    ``preserve`` keeps every intermediate tensor readable (calibration and analysis); it also keeps the
    default delegate out, since XNNPACK reuses intermediate buffers. ``delegate=False`` keeps XNNPACK
    out too.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if len(tflite) < 8 or bytes(tflite[4:8]) != TFLITE_MAGIC:
        raise InputError(f"{what} is not a .tflite model: expected identifier 'TFL3' at byte 4, found {bytes(tflite[4:8])!r}")
    resolver = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        with quiet(), warnings.catch_warnings():
            # LiteRT warns that preserving tensors is "for debugging": we want exactly that.
            warnings.simplefilter("ignore")
            interp = Interpreter(model_content=bytes(tflite), num_threads=threads,
                                 experimental_preserve_all_tensors=preserve, experimental_op_resolver_type=resolver)
            if allocate:
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


@dataclasses.dataclass(frozen=True)
class IOConversion:
    """How a float tensor maps onto one integer (quantized) model input or output."""

    name: str
    dtype: str
    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float values as the model's integer input: round to nearest, saturate (never wrap)."""
        limits = np.iinfo(self.dtype)
        q = np.round(np.asarray(x, np.float32) / self.scale) + self.zero_point
        return np.ascontiguousarray(np.clip(q, limits.min, limits.max).astype(self.dtype))

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        return ((np.asarray(y).astype(np.int32) - self.zero_point) * self.scale).astype(np.float32)

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


@dataclasses.dataclass(frozen=True)
class SessionInfo:
    """What a model declares, read once when it is opened (the Runner keeps it on its side of the pipe)."""

    key: str
    subgraph: int
    signature: Signature
    input_indices: dict[str, int]
    output_indices: dict[str, int]
    input_conversions: dict[str, IOConversion]
    output_conversions: dict[str, IOConversion]
    shapes: dict[str, tuple[int, ...]]   # each input's shape as allocated at open

    @property
    def dynamic_batch(self) -> bool:
        return all(t.shape and t.shape[0] == -1 for t in self.signature.inputs)

    @property
    def fixed_batch(self) -> int | None:
        """The batch a fixed-batch model takes, None when the batch follows the data."""
        if self.dynamic_batch or not self.signature.inputs:
            return None
        first = self.shapes[self.signature.inputs[0].name]
        return max(1, first[0]) if first else 1


def chunks(named: Mapping[str, np.ndarray], fixed: int | None, batch_size: int,
           drop_partial: bool = False) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """(start, real rows, batch) of named inputs: a fixed-batch model's last chunk padded, or dropped."""
    total = len(next(iter(named.values()))) if named else 0
    step = fixed or batch_size
    for start in range(0, total, step):
        part = {n: v[start:start + step] for n, v in named.items()}
        rows = len(next(iter(part.values())))
        if fixed and rows != fixed:
            if drop_partial:
                return
            part = {n: np.concatenate([v, np.zeros((fixed - rows,) + v.shape[1:], v.dtype)])
                    for n, v in part.items()}
        yield start, rows, part


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


class Session:
    """One model's interpreter, addressed by signature names; every method takes and returns plain data."""

    def __init__(self, tflite: bytes, threads: int = 1, what: str = "model", signature: str | None = None,
                 preserve: bool = False) -> None:
        self.what = what
        self._tflite, self._threads, self._preserve = bytes(tflite), threads, preserve
        self.interp = open_interpreter(self._tflite, what, threads, preserve)
        key, self.subgraph, self._in_index, self._out_index = _signature_table(self.interp, what, signature)
        self._wrapper = self.interp._interpreter
        with guard(what, "reading its inputs"):
            self._in_detail = {n: self.interp._get_tensor_details(i, self.subgraph) for n, i in self._in_index.items()}
            out_detail = {n: self.interp._get_tensor_details(i, self.subgraph) for n, i in self._out_index.items()}
        sig = Signature(key, tuple(_spec(n, d) for n, d in self._in_detail.items()),
                        tuple(_spec(n, d) for n, d in out_detail.items()))
        self._in_dtype = {n: np.dtype(d["dtype"]) for n, d in self._in_detail.items()}
        self._shapes = {n: tuple(int(v) for v in d["shape"]) for n, d in self._in_detail.items()}
        self._info = SessionInfo(key, self.subgraph, sig, dict(self._in_index), dict(self._out_index),
                                 {n: c for n, d in self._in_detail.items() if (c := _conversion(n, d))},
                                 {n: c for n, d in out_detail.items() if (c := _conversion(n, d))},
                                 dict(self._shapes))

    def info(self) -> SessionInfo:
        return self._info

    def _to_model(self, name: str, x: np.ndarray) -> np.ndarray:
        conv = self._info.input_conversions.get(name)
        return np.ascontiguousarray(x, dtype=self._in_dtype[name]) if conv is None else conv.quantize(x)

    def _from_model(self, name: str, y: np.ndarray) -> np.ndarray:
        conv = self._info.output_conversions.get(name)
        if conv is None:
            y = np.array(y)
            # Float outputs come back as float32; complex and integer ones keep their dtype (a cast to float
            # would drop the imaginary part).
            return y.astype(np.float32, copy=False) if y.dtype.kind == "f" else y
        return conv.dequantize(y)

    def set_inputs(self, batch: Mapping[str, np.ndarray]) -> None:
        """Set one batch (keyed by input name), resizing the interpreter where the shapes changed."""
        shapes = {n: tuple(int(d) for d in np.shape(v)) for n, v in batch.items()}
        if shapes != self._shapes:
            if not self._preserve:
                # XNNPACK can compute wrong values after an allocated interpreter is resized (a float
                # BATCH_MATMUL fed by DEQUANTIZE ops, tests/test_islands.py); one sized before its first
                # allocation is right. So a new shape gets a new interpreter (without XNNPACK, resizing is safe).
                with quiet(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.interp = open_interpreter(self._tflite, self.what, self._threads, allocate=False)
                self._wrapper = self.interp._interpreter
                self._shapes = dict(self._info.shapes)
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
        """One invoke, in seconds, timed around the kernel call alone (where the interpreter runs)."""
        start = time.perf_counter()
        self.invoke()
        return time.perf_counter() - start

    def run(self, batch: Mapping[str, np.ndarray]) -> None:
        """Set a batch and invoke: one message instead of two."""
        self.set_inputs(batch)
        self.invoke()

    def outputs(self) -> dict[str, np.ndarray]:
        with guard(self.what, "reading outputs"):
            return {n: self._from_model(n, self._wrapper.GetTensor(i, self.subgraph))
                    for n, i in self._out_index.items()}

    def tensor(self, index: int) -> np.ndarray:
        with guard(self.what, f"reading tensor {index}"):
            return np.array(self._wrapper.GetTensor(index, self.subgraph))

    def tensors(self, indices: Sequence[int]) -> dict[int, np.ndarray]:
        return {int(i): self.tensor(int(i)) for i in indices}

    def attach(self, reducer: Any) -> None:
        """Hold ``reducer`` here, where the tensors are: run_reduce feeds it, detach hands it back."""
        self._reducer = reducer

    def run_reduce(self, batch: Mapping[str, np.ndarray], rows: int) -> None:
        """Run one batch and feed the reducer's tensors to it in place: only the reducer's small state ever
        crosses to the parent, never the batch's intermediates (for calibration, gigabytes per pass)."""
        self.run(batch)
        reducer = self._reducer
        with guard(self.what, "reading its tensors"):
            tensors = {i: self._wrapper.GetTensor(i, self.subgraph) for i in reducer.indices}
        reducer.update(rows, tensors)

    def detach(self) -> Any:
        reducer, self._reducer = self._reducer, None
        return reducer

    def tensor_details(self) -> list[dict[str, Any]]:
        with guard(self.what, "reading its tensors"):
            return self.interp.get_tensor_details(self.subgraph)

    def ops_details(self) -> list[dict[str, Any]]:
        """Every node in execution order, delegate kernels included (name, index, inputs, outputs)."""
        with guard(self.what, "reading its ops"):
            ops = self.interp._get_ops_details()  # no public form; kept to this one place
        return [{"index": int(op["index"]), "op_name": str(op["op_name"]),
                 "inputs": [int(i) for i in op["inputs"]], "outputs": [int(i) for i in op["outputs"]]} for op in ops]

    def predict(self, named: Mapping[str, np.ndarray], batch_size: int = 64) -> dict[str, np.ndarray]:
        """Every output, by name, for every row of ``named`` (already keyed by this model's input names)."""
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self._info.signature.output_names}
        for _, rows, batch in chunks(named, self._info.fixed_batch, batch_size):
            self.run(batch)
            for n, v in self.outputs().items():
                parts[n].append(v[:rows] if v.ndim else v[None])
        return {n: np.concatenate(c) if c else np.zeros((0,), np.float32) for n, c in parts.items()}


class OpSession:
    """A one-op model addressed by input position (analyze's local error), on a kernel chosen by ``delegate``.

    Stored shapes of dynamic tensors are placeholders (e.g. [1, 1] for [-1, -1]); the whole model fixes
    them by propagation, a cut-out op only once fed real shapes: allocation waits for the first feed
    when it fails at open.
    """

    def __init__(self, tflite: bytes, threads: int = 1, what: str = "op", delegate: bool = True) -> None:
        self.what = what
        self.interp = open_interpreter(bytes(tflite), what, threads, delegate=delegate, allocate=False)
        try:
            with quiet():
                self.interp.allocate_tensors()
            self._allocated = True
        except RuntimeError:
            self._allocated = False
        with guard(what, "reading its inputs"):
            self._in = self.interp.get_input_details()
            self._out = self.interp.get_output_details()[0]
        self._shapes = [tuple(int(s) for s in d["shape"]) for d in self._in]
        self._single: list[np.ndarray] = []

    def input_dtypes(self) -> list[str]:
        return [np.dtype(d["dtype"]).name for d in self._in]

    def _resize(self, feeds: Sequence[np.ndarray]) -> None:
        changed = not self._allocated
        for k, d in enumerate(self._in):
            shape = tuple(int(s) for s in np.shape(feeds[k]))
            if shape != self._shapes[k]:
                self.interp.resize_tensor_input(d["index"], list(shape))
                self._shapes[k] = shape
                changed = True
        if changed:
            self.interp.allocate_tensors()
            self._allocated = True
            self._out = self.interp.get_output_details()[0]

    def _set(self, feeds: Sequence[np.ndarray]) -> None:
        for k, d in enumerate(self._in):
            # np.ascontiguousarray would turn a scalar tensor (shape ()) into shape (1,).
            self.interp.set_tensor(d["index"], np.require(np.asarray(feeds[k], dtype=d["dtype"]), requirements="C"))

    def run(self, feeds: Sequence[np.ndarray]) -> np.ndarray:
        """The op's first output for these inputs (in input order), as stored."""
        try:
            self._resize(feeds)
        except (RuntimeError, ValueError):
            n = min((len(v) for v in feeds if np.ndim(v)), default=1)
            if n <= 1:
                raise
            # Some ops fix the batch in a constant (a RESHAPE to [1, n]): go sample by sample.
            return np.concatenate([self.run([v[k:k + 1] for v in feeds]) for k in range(n)])
        self._set(feeds)
        self.interp.invoke()
        return np.array(self.interp.get_tensor(self._out["index"]))

    def prepare_single(self, feeds: Sequence[np.ndarray]) -> None:
        self._resize(feeds)
        self._set(feeds)

    def invoke(self) -> None:
        self.interp.invoke()

    def timed_invoke(self) -> float:
        start = time.perf_counter()
        self.interp.invoke()
        return time.perf_counter() - start
