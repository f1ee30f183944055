"""Stage: evaluate. Size, accuracy, fidelity and latency of models in LiteRT."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgequant._util import Progress, no_progress
from edgequant.evaluate.explain import SLOW_TOLERANCE, slow_reasons
from edgequant.evaluate.latency import measure_interleaved
from edgequant.evaluate.metrics import changed_top1, fidelity, mcnemar_p, paired_top1, predictions, top1
from edgequant.graph import read_graph
from edgequant.runtime import Runner
from edgequant.types import Dataset, Evaluation, Latency, SizeInfo

__all__ = ["size_of", "evaluate_runners", "slow_reasons", "SLOW_TOLERANCE", "fidelity", "top1",
           "predictions", "measure_interleaved", "paired_top1", "mcnemar_p", "changed_top1"]


def size_of(tflite: bytes) -> SizeInfo:
    graph = read_graph(tflite)
    return SizeInfo(total_bytes=len(tflite), weight_bytes=graph.weight_bytes,
                    weight_bytes_by_dtype=graph.weight_bytes_by_dtype)


def evaluate_runners(runners: Sequence[Runner], data: Dataset | None, reference: np.ndarray | None,
                     runs: int, warmup: int, progress: Progress = no_progress,
                     sample: np.ndarray | None = None) -> list[Evaluation]:
    """Evaluate several models on the same data; latency is interleaved across all of them.

    ``reference`` holds the reference model's outputs on ``data`` (for fidelity);
    ``sample`` is the input used for latency when there is no data.
    """
    results_out: list[np.ndarray | None] = []
    for i, r in enumerate(runners):
        results_out.append(r.predict(data.x) if data is not None else None)
        progress("run", i + 1, len(runners))
    latencies: list[Latency | None] = [None] * len(runners)
    latency_input = data.x if data is not None else sample
    if runs > 0 and latency_input is not None:
        latencies = list(measure_interleaved(runners, latency_input, runs, warmup, progress))
    evaluations = []
    for r, out, lat in zip(runners, results_out, latencies):
        acc = top1(out, data.y) if out is not None and data is not None and data.y is not None else None
        fid = fidelity(out, reference) if out is not None and reference is not None else None
        evaluations.append(Evaluation(path=None, size=size_of(r.tflite), input_dtype=r.input_dtype,
                                      output_dtype=r.output_dtype, samples=0 if data is None else len(data),
                                      accuracy=acc, fidelity=fid, latency=lat, notes=r.io_notes()))
    return evaluations
