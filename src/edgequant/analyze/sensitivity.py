"""Layer sensitivity: the model's output metric when only one layer is kept in float.

For the top-K layers by local error (or layers the caller names), the float
model is re-quantized by the litert engine with that one op left in float
(a litert-quantizer keep-float rule, engines.litert.rewrite_keeping_float)
and the output metric is measured on the data: top-1 accuracy with labels,
else output SQNR against float. The gain over the baseline (the same
re-quantization with nothing kept float) is how much that layer costs.

The baseline reproduces the analysed model as closely as the engine allows:
same scheme, and for every tensor whose name it shares with the float model,
the analysed model's own activation range (from its scale and zero point);
other ranges come from min-max calibration on the data. How close it comes
is reported as ``reproduction_sqnr_db`` (its outputs against the analysed
model's). This is the function the tuning stage builds on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgequant._util import Progress, no_progress
from edgequant.analyze.match import match_graphs
from edgequant.analyze.records import LayerSensitivity, Sensitivity
from edgequant.data import DataLike, select_samples
from edgequant.errors import EngineError, InputError, UnsupportedError
from edgequant.evaluate import Outputs
from edgequant.evaluate.metrics import fidelity_by_output, top1, worst_output
from edgequant.graph.submodel import GraphModel
from edgequant.runtime import Inputs, Runner, rows
from edgequant.types import CalibrationInput, Dataset, FloatModel, Scheme, parse_enum

__all__ = ["layer_sensitivity", "sensitivity_for", "Ranked"]

# (float tensor name, op type, local SQNR in dB or None): a layer to try in float.
Ranked = tuple[str, str, float | None]
CALIBRATION_SAMPLES = 200


def _ranges(floats: FloatModel, x: Inputs, scheme: Scheme, quantized: bytes | None) -> tuple[dict, list[str]]:
    from edgequant.calibrate import collect_stats, compute_ranges

    bits = 16 if scheme is Scheme.INT16X8 else 8
    ranges, _ = compute_ranges(collect_stats(floats.tflite, x), "minmax", bits)
    notes = [f"baseline ranges: min-max over {rows(x)} samples"]
    if quantized is not None:
        fg, qg = GraphModel(floats.tflite, "reference model"), GraphModel(quantized, "quantized model")
        taken = 0
        for q, f in match_graphs(fg, qg).counterpart.items():
            params, dtype = qg.quantization(q), qg.tensor_dtype(q)
            name = fg.tensor_name(f)
            if params is None or len(params[0]) != 1 or dtype not in ("int8", "uint8", "int16") or name not in ranges:
                continue
            info = np.iinfo(np.dtype(dtype))
            scale, zp = float(params[0][0]), int(params[1][0])
            ranges[name] = ((info.min - zp) * scale, (info.max - zp) * scale)
            taken += 1
        notes = [f"baseline ranges: the analysed model's own for {taken} tensor(s), min-max over {len(x)} samples "
                 "for the rest"]
    return ranges, notes


def _difference(value: float, baseline: float) -> float:
    # Two identical outputs (inf dB both) differ by nothing, not by inf - inf.
    return 0.0 if value == baseline else value - baseline


def _metric(out: Outputs, reference: Outputs, y: np.ndarray | None) -> tuple[float | None, float]:
    """Top-1 on the first output (with labels) and the worst output's SQNR."""
    first = next(iter(reference))
    return (top1(out[first], y) if y is not None else None), worst_output(fidelity_by_output(out, reference))[1].sqnr_db


def sensitivity_for(floats: FloatModel, ds: Dataset, scheme: Scheme, ranked: Sequence[Ranked],
                    quantized: bytes | None = None, progress: Progress = no_progress) -> Sensitivity:
    """Sensitivity of the listed layers (already ranked) under ``scheme``; see the module docstring."""
    from edgequant.engines.litert import LiteRTEngine, rewrite_keeping_float

    if scheme not in LiteRTEngine.schemes:
        raise UnsupportedError(f"layer sensitivity re-quantizes with the litert engine, which cannot produce scheme "
                               f"{scheme.value}")
    notes: list[str] = []
    calib = None
    if scheme.needs_calibration:
        x_cal = select_samples(ds, CALIBRATION_SAMPLES).inputs
        ranges, notes = _ranges(floats, x_cal, scheme, quantized)
        calib = CalibrationInput(x_cal, ranges, rows(x_cal), "analysis baseline")
    reference = Runner(floats.tflite, what="reference").predict(ds.inputs)
    total = len(ranked) + 1
    progress("analyze sensitivity", 0, total)
    baseline = rewrite_keeping_float(floats, scheme, calib)
    base_out = Runner(baseline, what="sensitivity baseline").predict(ds.inputs)
    base_acc, base_sqnr = _metric(base_out, reference, ds.y)
    reproduction = None
    if quantized is not None:
        reproduction = worst_output(fidelity_by_output(
            base_out, Runner(quantized, what="quantized model").predict(ds.inputs)))[1].sqnr_db
    progress("analyze sensitivity", 1, total)
    layers = []
    for k, (tensor, op, local) in enumerate(ranked, start=2):
        try:
            kept = rewrite_keeping_float(floats, scheme, calib, (tensor,))
        except EngineError as exc:
            notes.append(f"{tensor}: not measured ({exc})")
            continue
        acc, sqnr = _metric(Runner(kept, what=f"{tensor} in float").predict(ds.inputs), reference, ds.y)
        gain = (acc - base_acc) if acc is not None and base_acc is not None else _difference(sqnr, base_sqnr)
        layers.append(LayerSensitivity(tensor=tensor, op=op, local_sqnr_db=local, accuracy=acc, sqnr_db=sqnr,
                                       gain=gain))
        progress("analyze sensitivity", k, total)
    # Accuracy moves in steps of 1/samples and often ties on small data: output SQNR breaks ties.
    layers.sort(key=lambda s: (s.gain, s.sqnr_db), reverse=True)
    return Sensitivity(metric="accuracy" if ds.y is not None else "sqnr_db", scheme=scheme.value, samples=len(ds),
                       baseline_accuracy=base_acc, baseline_sqnr_db=base_sqnr, reproduction_sqnr_db=reproduction,
                       layers=tuple(layers), notes=tuple(notes))


def layer_sensitivity(reference: FloatModel | str | Path, quantized: bytes | str | Path | Scheme,
                      data: DataLike, top_k: int = 3, layers: Sequence[str] | None = None,
                      samples: int | None = None, unsafe: bool = False,
                      progress: Progress = no_progress) -> Sensitivity:
    """How much each of the top-K layers costs: the output metric with only that layer kept in float.

    ``quantized`` is the model to explain (bytes or a .tflite path; its scheme
    and ranges are read from it) or a scheme to start from (e.g. "int8").
    ``layers`` names float tensors to try instead of the top-K by local error.
    """
    from edgequant.analyze.layers import measure_layers
    from edgequant.analyze.runtime import infer_scheme
    from edgequant.pipeline import load_checked_data, resolve_model

    if top_k < 0:
        raise InputError(f"--top-k: expected 0 or more, found {top_k}")
    floats = resolve_model(reference, unsafe)
    ds = select_samples(load_checked_data(data, floats), samples)
    q_bytes: bytes | None = None
    if isinstance(quantized, bytes):
        q_bytes = quantized
    elif isinstance(quantized, Path) or (isinstance(quantized, str) and quantized.endswith(".tflite")):
        from edgequant.pipeline import read_tflite

        q_bytes = read_tflite(Path(quantized))
    if q_bytes is not None:
        scheme = infer_scheme(GraphModel(q_bytes, "quantized model"))
        if scheme is None:
            raise InputError("the quantized model has no quantized tensor: expected a quantized .tflite, "
                             "found a float one")
    else:
        scheme = parse_enum(Scheme, quantized, "scheme")
    if layers is not None:
        producers = GraphModel(floats.tflite, "reference model")
        names = {producers.tensor_name(t): producers.op_names[i] for t, i in producers.producers().items()}
        missing = [n for n in layers if n not in names]
        if missing:
            raise InputError(f"layers: expected tensor names of the float model, found {missing[0]!r}")
        ranked: list[Ranked] = [(n, names[n], None) for n in layers]
    else:
        from edgequant.engines.litert import LiteRTEngine, rewrite_keeping_float

        target = q_bytes
        if target is None:
            if scheme not in LiteRTEngine.schemes:
                raise UnsupportedError(f"layer sensitivity re-quantizes with the litert engine, which cannot "
                                       f"produce scheme {scheme.value}")
            calib = None
            if scheme.needs_calibration:
                x_cal = select_samples(ds, CALIBRATION_SAMPLES).inputs
                calib = CalibrationInput(x_cal, _ranges(floats, x_cal, scheme, None)[0], rows(x_cal), "ranking")
            target = rewrite_keeping_float(floats, scheme, calib)
        fg, qg = GraphModel(floats.tflite, "reference model"), GraphModel(target, "quantized model")
        errors, _ = measure_layers(fg, qg, match_graphs(fg, qg), ds.inputs, progress=progress)
        worst = sorted((e for e in errors if e.local_sqnr_db is not None), key=lambda e: e.local_sqnr_db)
        ranked = [(e.tensor, e.op, e.local_sqnr_db) for e in worst[:top_k]]
    return sensitivity_for(floats, ds, scheme, ranked, q_bytes, progress)
