"""Stage: analyze. Where a quantized model's error comes from, and why it is slow or large.

    match (match.py) -> layer errors, accumulated and local (layers.py, local.py)
        -> sensitivity (sensitivity.py) -> run time (runtime.py) -> size (size.py) -> findings (findings.py)

``analyze`` wires these in that order and does no work of its own. Every
figure is measured in LiteRT on the user's data or read from the flatbuffer;
docs/analyze.md explains each one and the tensor-matching fallback.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path

from edgequant._util import Progress, no_progress
from edgequant.analyze.findings import findings
from edgequant.analyze.layers import measure_layers
from edgequant.analyze.match import match_graphs
from edgequant.analyze.records import (Analysis, Conversion, LayerError, LayerSensitivity, MatchMethod, OpRuntime,
                                       RuntimeReport, Sensitivity, SizeBreakdown, WeightTensor)
from edgequant.analyze.runtime import Timer, infer_scheme, runtime_report, xnnpack_ops
from edgequant.analyze.sensitivity import layer_sensitivity, sensitivity_for
from edgequant.analyze.size import size_breakdown
from edgequant.checks import check_labels, check_samples, check_top_k, classes_of
from edgequant.data import DataLike, check_against_model, select_samples
from edgequant.errors import InputError, UnsupportedError
from edgequant.evaluate.explain import slow_reasons
from edgequant.evaluate.latency import measure_interleaved
from edgequant.evaluate import label_output
from edgequant.evaluate.metrics import fidelity_by_output, top1, worst_output
from edgequant.graph import read_graph
from edgequant.graph.submodel import GraphModel
from edgequant.provenance import Provenance, collect
from edgequant.runtime import Runner
from edgequant.types import FloatModel, Latency

__all__ = ["analyze", "layer_sensitivity", "findings", "Analysis", "LayerError", "LayerSensitivity", "Sensitivity",
           "OpRuntime", "Conversion", "RuntimeReport", "SizeBreakdown", "WeightTensor", "MatchMethod", "Timer",
           "DEFAULT_SAMPLES", "DEFAULT_TOP_K"]

# Samples for the layer statistics: enough for stable SQNRs on small models,
# few enough that a big model's layer pass stays in minutes. Picked by a
# seeded shuffle, so every run sees the same ones.
DEFAULT_SAMPLES = 500
DEFAULT_TOP_K = 3


# A layer whose values and error are all under this share of the values it flows into cannot be what hurts
# the model, however low its local SQNR: an int16x8 SVTRv2's Erf polynomial has a MUL whose values stay under
# 5e-9, below one int16 step, so it stored zeros (local SQNR 0 dB) and the output still measured 39.7 dB.
NEGLIGIBLE = 1e-3


def _peak(e: LayerError) -> float:
    return max(abs(e.float_min), abs(e.float_max))


def _negligible(e: LayerError, by_index: Mapping[int, LayerError], qg: GraphModel,
                consumers: Mapping[int, list[int]]) -> bool:
    """Whether ``e``'s values and error are under NEGLIGIBLE of every layer its output reaches first.

    Ops without a layer record (QUANTIZE, DEQUANTIZE, RESHAPE, ...) are passed through. A layer that reaches
    no measured layer (a model output) is never negligible.
    """
    frontier, seen, peaks = list(qg.op_outputs(e.index)), set(), []
    while frontier:
        for op in consumers.get(frontier.pop(), []):
            if op in seen:
                continue
            seen.add(op)
            if op in by_index:
                peaks.append(_peak(by_index[op]))
            else:
                frontier.extend(qg.op_outputs(op))
    return bool(peaks) and max(_peak(e), e.max_abs_error) < NEGLIGIBLE * min(peaks)


def _ranked(layers: list[LayerError], qg: GraphModel) -> tuple[list[LayerError], list[LayerError]]:
    """Layers with local_rank set: 1 = the most error added on its own (lowest local SQNR), the negligible ones
    (see NEGLIGIBLE) ranked after all others; and those negligible ones."""
    measured = [e for e in layers if e.local_sqnr_db is not None]
    by_index, consumers = {e.index: e for e in layers}, qg.consumers()
    small = [e for e in measured if _negligible(e, by_index, qg, consumers)]
    small_ids = {e.index for e in small}
    order = sorted(measured, key=lambda e: (e.index in small_ids, float(e.local_sqnr_db)))  # type: ignore[arg-type]
    rank = {e.index: k for k, e in enumerate(order, start=1)}
    return [dataclasses.replace(e, local_rank=rank.get(e.index)) for e in layers], small


def analyze(model: str | Path | bytes, reference: FloatModel | str | Path, data: DataLike,
            top_k: int = DEFAULT_TOP_K, samples: int | None = DEFAULT_SAMPLES, runs: int = 50, warmup: int = 5,
            threads: int = 1, resize: tuple[int, int] | None = None, normalize: tuple[float, float] | None = None,
            unsafe: bool = False, timer: Timer = measure_interleaved,
            model_latency: tuple[Latency, Latency] | None = None, progress: Progress = no_progress,
            provenance: Provenance | None = None, *, signature: str | None = None,
            output: str | None = None) -> Analysis:
    """Explain one quantized .tflite against its float reference, layer by layer, on ``data``.

    ``top_k`` layers (by local error) get a sensitivity run (0 skips it);
    ``runs`` timed runs measure model and per-op latency (0 skips timing).
    ``timer`` times runners (tests pass a fake); ``model_latency`` reuses a
    (float, quantized) latency pair measured by the caller.
    """
    from edgequant.pipeline import read_tflite, check_measurement_options, load_checked_data, resolve_model

    check_top_k(top_k)
    check_samples(samples)
    check_measurement_options(threads, runs)
    if provenance is None:
        provenance = collect({"model": None if isinstance(model, bytes) else model, "reference": reference,
                              "data": data})
    what = "quantized model" if isinstance(model, bytes) else str(model)
    q_bytes = model if isinstance(model, bytes) else read_tflite(Path(model))
    qg = GraphModel(q_bytes, what)
    q_runner = Runner(q_bytes, threads, what, signature=signature)
    label, label_notes = label_output(q_runner.signature, output)
    scheme = infer_scheme(qg)
    if scheme is None:
        raise InputError(f"{what} has no quantized tensor and no reduced-precision weight: expected a quantized "
                         ".tflite to analyze against the float reference")
    floats = reference if isinstance(reference, FloatModel) else resolve_model(reference, unsafe, signature)
    fg = GraphModel(floats.tflite, "reference model")
    matching = match_graphs(fg, qg)
    ds = check_against_model(load_checked_data(data, floats, resize, normalize), q_runner.signature)
    check_labels(ds.y, classes_of(q_runner.signature.output(label).shape), ds.source)
    ds = select_samples(ds, samples)

    taken, f_taken = xnnpack_ops(qg, threads), xnnpack_ops(fg, threads)
    layers, used = measure_layers(fg, qg, matching, ds.inputs, taken, f_taken, progress)
    layers, negligible = _ranked(layers, qg)
    ref_out = Runner(floats.tflite, threads, "reference").predict(ds.inputs)
    q_out = q_runner.predict(ds.inputs)
    by_output = fidelity_by_output(q_out, ref_out)
    worst_name, worst_fid = worst_output(by_output)
    notes = [f"{len(ds)} samples ({ds.source}); layer statistics over {used} of them"] if used != len(ds) else \
        [f"{len(ds)} samples ({ds.source})"]
    notes += [f"{m.value}-matched layers: {sum(1 for e in layers if e.match is m)}" for m in MatchMethod
              if any(e.match is m for e in layers)]
    if negligible:
        shown = ", ".join(f"{e.op}#{e.index}" for e in negligible[:3]) + (
            f" and {len(negligible) - 3} more" if len(negligible) > 3 else "")
        notes.append(f"{len(negligible)} layer(s) ranked last whatever their local SQNR ({shown}): their values and "
                     f"error stay under {NEGLIGIBLE:g} of the values of the layers they feed")

    sensitivity = None
    if top_k > 0:
        worst = [e for e in sorted(layers, key=lambda e: (e.local_rank is None, e.local_rank or 0))
                 if e.local_sqnr_db is not None and math.isfinite(e.local_sqnr_db)][:top_k]
        try:
            sensitivity = sensitivity_for(floats, ds, scheme, [(e.tensor, e.op, e.local_sqnr_db) for e in worst],
                                          q_bytes, progress)
        except UnsupportedError as exc:
            notes.append(f"sensitivity not measured: {exc}")
    if ds.y is not None:
        notes += label_notes
    if len(by_output) > 1:
        notes.append(f"fidelity is the worst of {len(by_output)} outputs: '{worst_name}' ("
                     + ", ".join(f"{n} {f.sqnr_db:.1f} dB" for n, f in by_output.items()) + ")")
    runtime = runtime_report(fg, qg, matching, ds.inputs, runs, warmup, threads, timer, taken, model_latency, progress)
    result = Analysis(model=what, reference=str(floats.source), data=ds.source, samples=len(ds),
                      scheme=scheme.value, accuracy=top1(q_out[label], ds.y) if ds.y is not None else None,
                      float_accuracy=top1(ref_out[label], ds.y) if ds.y is not None else None,
                      fidelity=worst_fid, layers=tuple(layers), unmatched=matching.unmatched,
                      sensitivity=sensitivity, runtime=runtime, size=size_breakdown(fg, qg), findings=(),
                      notes=tuple(notes), provenance=provenance)
    return dataclasses.replace(result, findings=findings(result, slow_reasons(read_graph(q_bytes, what))))
