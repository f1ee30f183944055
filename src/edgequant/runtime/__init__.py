"""Run models in LiteRT, the deployment runtime, with integer I/O handled for the user.

A full-integer model with int8/uint8 inputs expects ``q = round(x / scale) +
zero_point``; its outputs need ``(q - zero_point) * scale``. Seed 003 got this
wrong by hand (it cast normalized floats straight to uint8). ``Runner`` does
both conversions with the model's own parameters and says that it did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from edgequant._util import quiet
from edgequant.errors import InputError
from edgequant.graph.flatbuffer import TFLITE_MAGIC

__all__ = ["open_interpreter", "Runner", "IOConversion", "stream_tensors"]


def open_interpreter(tflite: bytes, what: str = "model", threads: int = 1) -> Any:
    """A LiteRT interpreter with tensors allocated, or an InputError for a bad file."""
    from ai_edge_litert.interpreter import Interpreter

    if len(tflite) < 8 or bytes(tflite[4:8]) != TFLITE_MAGIC:
        raise InputError(f"{what} is not a .tflite model: expected identifier 'TFL3' at byte 4, found {bytes(tflite[4:8])!r}")
    try:
        with quiet():
            interp = Interpreter(model_content=bytes(tflite), num_threads=threads)
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{what} is not a loadable .tflite model: {first}") from None
    return interp


@dataclasses.dataclass(frozen=True)
class IOConversion:
    """How a float tensor maps onto one integer model input or output."""

    name: str
    dtype: str
    scale: float
    zero_point: int

    def describe(self, direction: str) -> str:
        verb = "quantized from float" if direction == "input" else "dequantized to float"
        return (f"{direction} '{self.name}' is {self.dtype}: {verb} with the model's scale "
                f"{self.scale:.6g} and zero point {self.zero_point}")


def _conversion(detail: dict[str, Any]) -> IOConversion | None:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return None
    scale, zero = detail["quantization"]
    if not scale:
        return None
    return IOConversion(detail["name"], dtype.name, float(scale), int(zero))


class Runner:
    """Float in, float out, whatever the model's I/O dtype; batch-resizes where allowed."""

    def __init__(self, tflite: bytes, threads: int = 1, what: str = "model") -> None:
        self.tflite = bytes(tflite)
        self.threads = threads
        self.what = what
        self.interp = open_interpreter(self.tflite, what, threads)
        self._in = self.interp.get_input_details()[0]
        self._out = self.interp.get_output_details()[0]
        self.input_conversion = _conversion(self._in)
        self.output_conversion = _conversion(self._out)
        sig = self._in.get("shape_signature", self._in["shape"])
        self.dynamic_batch = len(sig) > 0 and int(sig[0]) == -1
        self.input_shape = tuple(int(d) for d in self._in["shape"])
        self._batch = int(self._in["shape"][0]) if len(self._in["shape"]) else 1

    @property
    def input_signature(self) -> tuple[int, ...]:
        """The input shape with -1 for a dynamic batch, as the model declares it."""
        return tuple(int(d) for d in self._in.get("shape_signature", self._in["shape"]))

    @property
    def input_dtype(self) -> str:
        return np.dtype(self._in["dtype"]).name

    @property
    def output_dtype(self) -> str:
        return np.dtype(self._out["dtype"]).name

    def io_notes(self) -> tuple[str, ...]:
        notes = []
        if self.input_conversion:
            notes.append(self.input_conversion.describe("input"))
        if self.output_conversion:
            notes.append(self.output_conversion.describe("output"))
        return tuple(notes)

    def _to_model_input(self, x: np.ndarray) -> np.ndarray:
        conv = self.input_conversion
        if conv is None:
            return x.astype(self._in["dtype"], copy=False)
        info = np.iinfo(conv.dtype)
        q = np.round(x / conv.scale) + conv.zero_point
        return np.clip(q, info.min, info.max).astype(conv.dtype)

    def _from_model_output(self, y: np.ndarray) -> np.ndarray:
        conv = self.output_conversion
        if conv is None:
            return y.astype(np.float32, copy=False)
        return ((y.astype(np.int32) - conv.zero_point) * conv.scale).astype(np.float32)

    def _set_batch(self, n: int) -> None:
        if n != self._batch:
            shape = list(self.input_shape)
            shape[0] = n
            self.interp.resize_tensor_input(self._in["index"], shape)
            self.interp.allocate_tensors()
            self._out = self.interp.get_output_details()[0]
            self._batch = n

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Outputs of the first model output for every row of ``x``, as float32."""
        step = batch_size if self.dynamic_batch else self._batch
        chunks = []
        for start in range(0, len(x), step):
            part = x[start:start + step]
            if self.dynamic_batch:
                self._set_batch(len(part))
            elif len(part) != self._batch:
                # A fixed-batch model: pad the last chunk and drop the padding after.
                pad = np.zeros((self._batch - len(part),) + part.shape[1:], part.dtype)
                part = np.concatenate([part, pad])
            self.interp.set_tensor(self._in["index"], self._to_model_input(part))
            self.interp.invoke()
            out = self._from_model_output(self.interp.get_tensor(self._out["index"]))
            chunks.append(out[: min(step, len(x) - start)])
        return np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)

    def prepare_single(self, x1: np.ndarray) -> None:
        """Set one sample as input at batch 1 (the deployment case) for latency runs."""
        if self.dynamic_batch:
            self._set_batch(1)
        self.interp.set_tensor(self._in["index"], self._to_model_input(x1[: self._batch]))

    def invoke(self) -> None:
        self.interp.invoke()


def stream_tensors(tflite: bytes, x: np.ndarray, tensors: Sequence[int],
                   batch_size: int = 64) -> Iterator[dict[int, np.ndarray]]:
    """Run a float model in LiteRT over ``x`` in batches and yield the listed tensors of each batch.

    Callers reduce each batch to running sums or maxima, so memory stays
    bounded by one batch whatever the size of ``x``. Intermediate tensors are
    only readable with ``experimental_preserve_all_tensors``, which also keeps
    the default delegate out (XNNPACK would reuse intermediate buffers).
    """
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with quiet(), warnings.catch_warnings():
        # LiteRT warns that preserving tensors is "for debugging": we want exactly that.
        warnings.simplefilter("ignore")
        interp = Interpreter(model_content=bytes(tflite), experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
    detail = interp.get_input_details()[0]
    signature = detail.get("shape_signature", detail["shape"])
    dynamic = len(signature) > 0 and int(signature[0]) == -1
    step = batch_size if dynamic else int(detail["shape"][0])
    current = int(detail["shape"][0])
    for start in range(0, len(x), step):
        part = np.asarray(x[start:start + step], dtype=np.float32)
        if dynamic and len(part) != current:
            interp.resize_tensor_input(detail["index"], [len(part), *detail["shape"][1:]])
            interp.allocate_tensors()
            current = len(part)
        elif not dynamic and len(part) != current:
            # A fixed-batch model: statistics must not see padding rows, so drop the tail.
            break
        interp.set_tensor(detail["index"], part)
        interp.invoke()
        yield {t: interp.get_tensor(t) for t in tensors}
