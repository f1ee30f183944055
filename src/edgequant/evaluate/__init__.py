"""Stage: evaluate. Size, accuracy, fidelity (every output) and latency of models in LiteRT."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgequant._util import Progress, no_progress
from edgequant.errors import EdgequantError, InputError
from edgequant.evaluate.explain import SLOW_TOLERANCE, slow_reasons
from edgequant.evaluate.latency import measure_interleaved
from edgequant.evaluate.metrics import (changed_top1, fidelity, fidelity_by_output, mcnemar_p, paired_top1,
                                        predictions, top1, worst_output)
from edgequant.graph import read_graph
from edgequant.runtime import Runner
from edgequant.types import Dataset, Evaluation, Latency, Signature, SizeInfo

__all__ = ["size_of", "evaluate_runners", "slow_reasons", "SLOW_TOLERANCE", "fidelity", "top1",
           "predictions", "measure_interleaved", "paired_top1", "mcnemar_p", "changed_top1", "fidelity_by_output",
           "worst_output", "label_output", "Outputs"]

# Every output of a model on a data set, by output name.
Outputs = Mapping[str, np.ndarray]


def size_of(tflite: bytes) -> SizeInfo:
    graph = read_graph(tflite)
    return SizeInfo(total_bytes=len(tflite), weight_bytes=graph.weight_bytes,
                    weight_bytes_by_dtype=graph.weight_bytes_by_dtype)


def label_output(signature: Signature, chosen: str | None) -> tuple[str, tuple[str, ...]]:
    """The output top-1 is read from (``chosen``, else the first) and a note when the model has several."""
    if chosen is not None:
        if chosen not in signature.output_names:
            raise InputError(f"unknown --output {chosen!r}: expected one of {', '.join(signature.output_names)}")
        return chosen, ()
    first = signature.output_names[0]
    if len(signature.outputs) == 1:
        return first, ()
    return first, (f"accuracy read from output '{first}', the first of {len(signature.outputs)} "
                   f"({', '.join(signature.output_names)}); choose another with --output NAME",)


def evaluate_runners(runners: Sequence[Runner], data: Dataset | None, reference: Outputs | None,
                     runs: int, warmup: int, progress: Progress = no_progress,
                     sample: Mapping[str, np.ndarray] | None = None, output: str | None = None,
                     errors: dict[int, str] | None = None) -> list[Evaluation | None]:
    """Evaluate several models on the same data; latency is interleaved across all of them.

    ``reference`` holds the reference model's outputs on ``data`` by name (for
    fidelity of every output); ``sample`` is the input used for latency when
    there is no data; top-1 is read from ``output`` (default: the first).
    With ``errors``, a model that fails to run is recorded there by position
    (its one-line reason) and gets None, and the others are still measured;
    without, the failure is raised.
    """
    results_out: list[dict[str, np.ndarray] | None] = []
    failed: set[int] = set()
    for i, r in enumerate(runners):
        try:
            results_out.append(r.predict(data.inputs) if data is not None else None)
            if data is None and runs > 0 and sample is not None:
                r.prepare_single(sample)  # a model that cannot take the latency input fails here, not mid-timing
        except EdgequantError as exc:
            if errors is None:
                raise
            errors[i] = str(exc)
            failed.add(i)
            results_out.append(None)
        progress("run", i + 1, len(runners))
    latencies: list[Latency | None] = [None] * len(runners)
    latency_input = data.inputs if data is not None else sample
    live = [i for i in range(len(runners)) if i not in failed]
    if runs > 0 and latency_input is not None and live:
        timing_errors: dict[int, str] | None = None if errors is None else {}
        measured = measure_interleaved([runners[i] for i in live], latency_input, runs, warmup, progress,
                                       errors=timing_errors)
        for pos, (i, lat) in enumerate(zip(live, measured)):
            latencies[i] = lat
            if timing_errors and pos in timing_errors:
                errors[i] = timing_errors[pos]  # type: ignore[index]
                failed.add(i)
    evaluations: list[Evaluation | None] = []
    for k, (r, out, lat) in enumerate(zip(runners, results_out, latencies)):
        if k in failed:
            evaluations.append(None)
            continue
        name, notes = label_output(r.signature, output)
        acc = top1(out[name], data.y) if out is not None and data is not None and data.y is not None else None
        by_output = fidelity_by_output(out, reference) if out is not None and reference is not None else {}
        worst, fid = worst_output(by_output)
        evaluations.append(Evaluation(path=None, size=size_of(r.tflite), input_dtype=r.input_dtype,
                                      output_dtype=r.output_dtype, samples=0 if data is None else len(data),
                                      accuracy=acc, fidelity=fid, latency=lat,
                                      notes=r.io_notes() + (notes if acc is not None else ()),
                                      outputs=by_output, worst_output=worst if len(by_output) > 1 else None,
                                      label_output=name if acc is not None else None))
    return evaluations
