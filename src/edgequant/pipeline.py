"""The orchestrator: the public API, wiring the stages in processing order.

    load (frontends) -> data -> rewrite (engines) -> validate/evaluate (runtime, evaluate) -> report

Each function here only wires stages; the work is in the stage packages.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgequant._util import Progress, atomic_write, no_progress
from edgequant.data import DataLike, check_against_model, load_data, select_samples
from edgequant.engines import ENGINES, check_supported, get_engine
from edgequant.errors import EngineError, InputError
from edgequant.evaluate import evaluate_runners
from edgequant.frontends import load_model
from edgequant.runtime import Runner
from edgequant.types import (Dataset, EngineName, Evaluation, FloatModel, IOType, QuantizedModel, Record,
                             Scheme, parse_enum)

__all__ = ["convert", "quantize", "run", "evaluate", "RunResult", "DEFAULT_SAMPLES", "resolve_model",
           "load_checked_data"]

# Calibration samples used when the user does not say: enough for stable
# min-max ranges on small models, few enough to calibrate in seconds.
DEFAULT_SAMPLES = 200


@dataclasses.dataclass(frozen=True, eq=False)
class RunResult(Record):
    """Outputs of one inference, and how integer I/O was converted."""

    outputs: np.ndarray = dataclasses.field(repr=False, metadata={"json": False})
    input_dtype: str
    output_dtype: str
    notes: tuple[str, ...] = ()


def check_measurement_options(threads: int, runs: int) -> None:
    if threads < 1:
        raise InputError(f"--threads: expected a positive number, found {threads}")
    if runs < 0:
        raise InputError(f"--runs: expected 0 or more, found {runs}")


def resolve_model(model: FloatModel | str | Path, unsafe: bool = False) -> FloatModel:
    return model if isinstance(model, FloatModel) else load_model(model, unsafe=unsafe)


def load_checked_data(data: DataLike, model: FloatModel, resize: tuple[int, int] | None = None,
                      normalize: tuple[float, float] | None = None) -> Dataset:
    channels = model.input_shape[-1] if len(model.input_shape) == 4 else None
    return check_against_model(load_data(data, resize, normalize, channels), model.input_shape, model.input_dtype)


def convert(model: str | Path, output: str | Path | None = None, unsafe: bool = False) -> FloatModel:
    """Load a Keras/.h5/SavedModel/.tflite model as a checked float .tflite; optionally write it."""
    loaded = load_model(model, unsafe=unsafe)
    if output is not None:
        atomic_write(Path(output), loaded.tflite)
    return loaded


def quantize(model: FloatModel | str | Path, scheme: Scheme | str, engine: EngineName | str = EngineName.LITERT,
             calibration: DataLike | None = None, samples: int | None = None, io: IOType | str = IOType.FLOAT,
             output: str | Path | None = None, unsafe: bool = False, resize: tuple[int, int] | None = None,
             normalize: tuple[float, float] | None = None, progress: Progress = no_progress) -> QuantizedModel:
    """Quantize ``model`` with one scheme and engine; the result is checked to load and run in LiteRT."""
    scheme = parse_enum(Scheme, scheme, "scheme")
    io = parse_enum(IOType, io, "I/O type")
    eng = get_engine(engine)
    check_supported(eng, scheme, io)
    floats = resolve_model(model, unsafe)
    calib: np.ndarray | None = None
    n_calib = 0
    if scheme.needs_calibration:
        if calibration is None:
            raise InputError(f"scheme {scheme.value} calibrates activation ranges: expected --calibration DATA, found none")
        ds = select_samples(load_checked_data(calibration, floats, resize, normalize),
                            samples if samples is not None else DEFAULT_SAMPLES)
        calib, n_calib = ds.x, len(ds)
    ignored = [] if scheme.needs_calibration or calibration is None else [
        f"calibration data not used: scheme {scheme.value} has float activations and needs no ranges"]
    progress("quantize", 0, 1)
    start = time.perf_counter()
    tflite, notes = eng.rewrite(floats, scheme, io, calib, progress)
    seconds = time.perf_counter() - start
    # Validate: the engine's output must load and run once in LiteRT before we call it a model.
    try:
        runner = Runner(tflite, what=f"{scheme.value}/{eng.name.value} output")
        runner.predict(np.zeros((1,) + tuple(abs(d) for d in floats.input_shape[1:]), np.float32))
    except InputError as exc:
        raise EngineError(f"engine {eng.name.value} produced a model LiteRT cannot run: {exc}") from None
    progress("quantize", 1, 1)
    path = atomic_write(Path(output), tflite) if output is not None else None
    return QuantizedModel(scheme=scheme, engine=eng.name, io=io, tflite=tflite, path=path, seconds=seconds,
                          calibration_samples=n_calib, notes=notes + tuple(ignored) + runner.io_notes())


def run(model: str | Path | bytes, x: DataLike) -> RunResult:
    """One inference in LiteRT; integer I/O is converted from and to float with the model's own parameters."""
    tflite = model if isinstance(model, bytes) else _read_tflite(Path(model))
    runner = Runner(tflite, what=str(model) if not isinstance(model, bytes) else "model")
    ds = load_data(x)
    shape = tuple(runner._in.get("shape_signature", runner.input_shape))
    ds = check_against_model(ds, shape, "float32")
    return RunResult(outputs=runner.predict(ds.x), input_dtype=runner.input_dtype,
                     output_dtype=runner.output_dtype, notes=runner.io_notes())


def _read_tflite(path: Path) -> bytes:
    if not path.exists():
        raise InputError(f"model not found: {path} (expected a .tflite file)")
    if path.is_dir() or path.suffix.lower() != ".tflite":
        raise InputError(f"expected a .tflite file, found {path.name}")
    data = path.read_bytes()
    if not data:
        raise InputError(f"expected a .tflite flatbuffer in {path}, found an empty file")
    return data


def evaluate(model: str | Path | bytes, data: DataLike | None = None, reference: FloatModel | str | Path | None = None,
             threads: int = 1, runs: int = 50, warmup: int = 5, resize: tuple[int, int] | None = None,
             normalize: tuple[float, float] | None = None, unsafe: bool = False,
             progress: Progress = no_progress) -> Evaluation:
    """Size, top-1 (with labels), fidelity to ``reference`` and batch-1 latency of one .tflite model."""
    check_measurement_options(threads, runs)
    tflite = model if isinstance(model, bytes) else _read_tflite(Path(model))
    runner = Runner(tflite, threads=threads, what=str(model) if not isinstance(model, bytes) else "model")
    shape = tuple(runner._in.get("shape_signature", runner.input_shape))
    channels = shape[-1] if len(shape) == 4 else None
    ds = check_against_model(load_data(data, resize, normalize, channels), shape) if data is not None else None
    ref_out = None
    if reference is not None:
        if ds is None:
            raise InputError("--reference compares outputs on data: expected --data DATA, found none")
        ref_model = resolve_model(reference, unsafe)
        ref_out = Runner(ref_model.tflite, threads=threads, what="reference").predict(ds.x)
    sample = ds.x if ds is not None else np.zeros((1,) + tuple(abs(d) for d in shape[1:]), np.float32)
    result = evaluate_runners([runner], ds, ref_out, runs, warmup, progress, sample=sample)[0]
    path = None if isinstance(model, bytes) else Path(model)
    return dataclasses.replace(result, path=path)


def supported_pairs(schemes: Sequence[Scheme], engines: Sequence[EngineName]) -> list[tuple[Scheme, EngineName]]:
    return [(s, e) for s in schemes for e in engines if s in ENGINES[e].schemes]
