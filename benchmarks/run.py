"""One benchmark run: every zoo model x scheme x method, evaluated side by side in one process.

For each model, every cell is built first, then all of them (and the float
model) are evaluated together: the same held-out data, the same float
reference outputs, and latency runs interleaved across all variants of the
model, so a burst of machine load hits every method alike.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import zoo
from benchmarks.memory import calibration_memory
from benchmarks.methods import METHODS, SCHEMES, TUNED, TUNED_BUDGET_PT, NotApplicable
from edgequant.data import select_samples
from edgequant.evaluate import changed_top1, fidelity, measure_interleaved, paired_top1, top1
from edgequant.runtime import Runner
from edgequant.types import Dataset

__all__ = ["Cell", "held_out", "benchmark_calibration", "run_benchmark", "summarize", "paired_summary", "tuned_comparison", "QUICK_MODELS", "QUICK_SCHEMES",
           "CALIBRATION_SAMPLES"]

QUICK_MODELS = ("seed_mlp", "seed_cnn", "outlier_mlp")
QUICK_SCHEMES = ("dynamic", "int8")
CALIBRATION_SAMPLES = 200

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (model, scheme, method) result. status: ok, n/a (cannot do it) or error (crashed)."""

    model: str
    scheme: str
    method: str
    status: str
    reason: str | None = None
    accuracy: float | None = None
    accuracy_delta: float | None = None
    sqnr_db: float | None = None
    size_ratio: float | None = None
    latency_ratio: float | None = None
    quantize_seconds: float | None = None
    changed: int | None = None  # held-out images whose top-1 differs from the float model's


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else v


def held_out(zm: zoo.ZooModel) -> Dataset:
    """A zoo model's held-out split (float32 inputs, labels): every method is evaluated on it."""
    with np.load(zm.test_path) as z:
        return Dataset(z["x"].astype(np.float32), z["y"], str(zm.test_path))


def benchmark_calibration(zm: zoo.ZooModel) -> np.ndarray:
    """The benchmark's calibration samples for a zoo model: the same CALIBRATION_SAMPLES for every method."""
    with np.load(zm.calibration_path) as z:
        return select_samples(Dataset(z["x"].astype(np.float32), None, "calibration"), CALIBRATION_SAMPLES).x


def _bench_model(name: str, schemes: Sequence[str], methods: Sequence[str], runs: int, cache: Path,
                 log: Log) -> tuple[dict[str, Any], list[Cell], list[dict[str, Any]]]:
    import edgequant

    zm = zoo.load(name, cache)
    test, calib = held_out(zm), benchmark_calibration(zm)
    float_tflite = edgequant.convert(zm.keras_path).tflite
    built: list[tuple[str, str, bytes, float]] = []
    cells: list[Cell] = []
    notes: dict[tuple[str, str], str] = {}
    for scheme in schemes:
        for method in methods:
            scope = METHODS[method].applies_to
            # The tuned row is not a scheme a fixed method can be asked for.
            if (scope is not None and scheme not in scope) or (scope is None and scheme == TUNED):
                continue
            start = time.perf_counter()
            try:
                if method == TUNED:
                    tflite, notes[(scheme, method)] = METHODS[method].tune(zm.keras_path, calib)  # type: ignore[attr-defined]
                else:
                    tflite = METHODS[method].build(zm.keras_path, scheme, calib)
                Runner(tflite).predict_output(test.x[:1])  # must load and run, or it is an error cell
                built.append((scheme, method, tflite, time.perf_counter() - start))
            except NotApplicable as exc:
                cells.append(Cell(name, scheme, method, "n/a", str(exc)))
            except Exception as exc:  # a peer crashing on a model is itself a finding: record it
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
                cells.append(Cell(name, scheme, method, "error", f"{type(exc).__name__}: {first}"))
                log(f"  {name}/{scheme}/{method}: error: {first}\n{traceback.format_exc(limit=2)}")
    runners = [Runner(float_tflite, 1, "float")]
    outputs = [runners[0].predict_output(test.x)]
    kept = []
    for s, m, t, secs in built:
        # A variant that crashes LiteRT (its worker dies) is an error cell; the others go on.
        try:
            runner = Runner(t, 1, f"{s}/{m}")
            outputs.append(runner.predict_output(test.x))
        except edgequant.EdgequantError as exc:
            cells.append(Cell(name, s, m, "error", f"{type(exc).__name__}: {exc}"))
            continue
        runners.append(runner)
        kept.append((s, m, t, secs))
    built = kept
    timing_errors: dict[int, str] = {}
    lat = (measure_interleaved(runners, test.x, runs=runs, warmup=5, errors=timing_errors) if runs > 0
           else [None] * len(runners))
    if 0 in timing_errors:
        raise edgequant.EdgequantError(f"{name}: the float model fails to run: {timing_errors[0]}")
    for pos, (s, m, _, _) in enumerate(built, start=1):
        if pos in timing_errors:
            cells.append(Cell(name, s, m, "error", timing_errors[pos]))
    built = [b for pos, b in enumerate(built, start=1) if pos not in timing_errors]
    outputs = [o for pos, o in enumerate(outputs) if pos not in timing_errors]
    lat = [x for pos, x in enumerate(lat) if pos not in timing_errors]
    ref, base_acc = outputs[0], top1(outputs[0], test.y)
    for (scheme, method, tflite, secs), out, latency in zip(built, outputs[1:], lat[1:]):
        acc = top1(out, test.y)
        ratio = latency.median_ms / lat[0].median_ms if latency is not None and lat[0] is not None else None
        changed = changed_top1(out, ref)
        cells.append(Cell(name, scheme, method, "ok", notes.get((scheme, method)), acc, acc - base_acc,
                          _finite(fidelity(out, ref).sqnr_db), len(tflite) / len(float_tflite), ratio, secs,
                          changed))
    by_cell = {(s, m): out for (s, m, _, _), out in zip(built, outputs[1:])}
    paired = [{"model": name, "scheme": s, "peer": peer,
               **dataclasses.asdict(paired_top1(by_cell[(s, PRIMARY)], by_cell[(s, peer)], test.y))}
              for s in schemes for peer in PEERS if (s, PRIMARY) in by_cell and (s, peer) in by_cell]
    float_info = {"name": name, "description": zm.description, "size_bytes": len(float_tflite),
                  "accuracy": base_acc, "latency_ms": lat[0].median_ms if lat[0] is not None else None,
                  "test_samples": len(test), "train_seconds": zm.train_seconds}
    order = {(s, m): i for i, (s, m) in enumerate((s, m) for s in schemes for m in methods)}
    return float_info, sorted(cells, key=lambda c: order[(c.scheme, c.method)]), paired


HEADLINE = ("tf-converter", "litert-quantizer", "edgequant")
# edgequant's default, compared image by image with each peer on the same held-out images.
PRIMARY = "edgequant"
PEERS = ("tf-converter", "litert-quantizer")
# Below this McNemar p-value a difference in top-1 between two methods is called real, not chance.
SIGNIFICANCE = 0.05
# The peers the tuned row is compared with: each one's best fixed scheme within the same budget.
TUNED_PEERS = ("tf-converter", "litert-quantizer", "edgequant")


def tuned_comparison(cells: Sequence[Cell], budget_pt: float = TUNED_BUDGET_PT) -> list[dict[str, Any]]:
    """Per model: the tuned cell, and for each peer its smallest and its fastest fixed scheme within the budget.

    Within the budget means a top-1 drop of at most ``budget_pt`` points against the float model on the
    held-out split; a peer with no such scheme is listed as None. Sizes and latencies are the shared
    evaluation's ratios to float (latency interleaved with every other cell of the model).
    """
    out = []
    for model in dict.fromkeys(c.model for c in cells):
        tuned = next((c for c in cells if c.model == model and c.method == TUNED and c.status == "ok"), None)
        if tuned is None:
            continue
        row: dict[str, Any] = {"model": model, "tuned": dataclasses.asdict(tuned), "peers": {}}
        for peer in TUNED_PEERS:
            within = [c for c in cells if c.model == model and c.method == peer and c.status == "ok"
                      and c.scheme != TUNED and c.accuracy_delta is not None
                      and -c.accuracy_delta * 100 <= budget_pt + 1e-9]
            smallest = min(within, key=lambda c: (c.size_ratio, c.latency_ratio or math.inf), default=None)
            fastest = min(within, key=lambda c: (c.latency_ratio or math.inf, c.size_ratio), default=None)
            row["peers"][peer] = {"smallest": dataclasses.asdict(smallest) if smallest else None,
                                  "fastest": dataclasses.asdict(fastest) if fastest else None}
        out.append(row)
    return out


def summarize(cells: Sequence[Cell], schemes: Sequence[str], methods: Sequence[str]) -> dict[str, Any]:
    """Per scheme: on how many models each method had the best accuracy delta, the best SQNR, and the
    fewest held-out images whose top-1 differs from float's (agreement with float, before labels).

    The headline compares the peers with edgequant's default only; the
    ablation columns (one observer or transform each) are ranked separately,
    so that they neither crowd the headline nor take wins from it.
    Ties count for every tied method (accuracy deltas are exact sample counts;
    SQNR ties within 0.05 dB).
    """
    headline = [m for m in methods if m in HEADLINE]
    out = _rank(cells, schemes, headline or list(methods))
    if len(headline) < len(methods):
        for scheme, ranked in _rank(cells, schemes, list(methods)).items():
            out[scheme]["all_methods"] = ranked
    return out


def _rank(cells: Sequence[Cell], schemes: Sequence[str], methods: Sequence[str]) -> dict[str, Any]:
    cells = [c for c in cells if c.method in methods]
    out: dict[str, Any] = {}
    for scheme in schemes:
        present = [m for m in methods if any(c.scheme == scheme and c.method == m for c in cells)]
        best_acc = {m: 0 for m in present}
        best_sqnr = {m: 0 for m in present}
        fewest_changed = {m: 0 for m in present}
        models = sorted({c.model for c in cells if c.scheme == scheme})
        for model in models:
            ok = [c for c in cells if c.model == model and c.scheme == scheme and c.status == "ok"]
            if not ok:
                continue
            top = max(c.accuracy_delta for c in ok)
            for c in ok:
                if abs(c.accuracy_delta - top) < 1e-9:
                    best_acc[c.method] += 1
            with_sqnr = [c for c in ok if c.sqnr_db is not None]
            if with_sqnr:
                top_s = max(c.sqnr_db for c in with_sqnr)
                for c in with_sqnr:
                    if top_s - c.sqnr_db <= 0.05:
                        best_sqnr[c.method] += 1
            counted = [c for c in ok if c.changed is not None]
            if counted:
                least = min(c.changed for c in counted)
                for c in counted:
                    if c.changed == least:
                        fewest_changed[c.method] += 1
        out[scheme] = {"models": len(models), "best_accuracy_delta": best_acc, "best_sqnr": best_sqnr,
                       "fewest_changed": fewest_changed}
    return out


def paired_summary(paired: Sequence[dict[str, Any]], schemes: Sequence[str],
                   alpha: float = SIGNIFICANCE) -> dict[str, Any]:
    """Per scheme, from the image-by-image comparisons: on how many models edgequant's default is behind
    some peer, and ahead of every peer, by a margin that chance (exact McNemar, p < alpha) does not explain."""
    out: dict[str, Any] = {}
    for scheme in schemes:
        rows = [p for p in paired if p["scheme"] == scheme]
        models = list(dict.fromkeys(p["model"] for p in rows))
        behind = [m for m in models if any(p["model"] == m and p["b_only"] > p["a_only"] and p["p_value"] < alpha
                                           for p in rows)]
        ahead = [m for m in models if all(p["a_only"] > p["b_only"] and p["p_value"] < alpha
                                          for p in rows if p["model"] == m)]
        out[scheme] = {"models": len(models), "behind": behind, "ahead": ahead}
    return out


def run_benchmark(models: Sequence[str], schemes: Sequence[str], methods: Sequence[str], runs: int,
                  cache: Path, log: Log = lambda s: None) -> dict[str, Any]:
    """Run every cell and return the JSON-ready result (meta, models, cells, summary)."""
    for s in schemes:
        if s not in SCHEMES:
            raise KeyError(f"unknown scheme {s!r}: expected one of {', '.join(SCHEMES)}")
    for m in methods:
        if m not in METHODS:
            raise KeyError(f"unknown method {m!r}: expected one of {', '.join(METHODS)}")
    started = time.perf_counter()
    floats, cells, paired = [], [], []
    for i, name in enumerate(models, start=1):
        log(f"[{i}/{len(models)}] {name}")
        info, model_cells, model_paired = _bench_model(name, schemes, methods, runs, cache, log)
        floats.append(info)
        cells.extend(model_cells)
        paired.extend(model_paired)
    log("calibration memory (fresh processes)")
    memory = calibration_memory(list(models), cache)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {platform.system()}, {_cores()} cores",
            "python": platform.python_version(),
            "versions": {p: version(p) for p in ("tensorflow-cpu", "ai-edge-litert", "litert-quantizer", "keras")},
            "commit": _commit(), "latency_runs": runs, "threads": 1, "batch": 1, "calibration_samples": CALIBRATION_SAMPLES,
            "seconds": round(time.perf_counter() - started, 1)}
    ranked = [s for s in schemes if s != TUNED]  # the tuned row is compared on its own, in "tuned"
    result = {"meta": meta, "models": floats, "schemes": list(schemes), "methods": list(methods),
              "cells": [dataclasses.asdict(c) for c in cells], "summary": summarize(cells, ranked, methods),
              "paired": {"significance": SIGNIFICANCE, "pairs": paired, "summary": paired_summary(paired, ranked)},
              "calibration_memory": memory}
    if TUNED in schemes and TUNED in methods:
        result["tuned"] = {"budget_pt": TUNED_BUDGET_PT, "models": tuned_comparison(cells)}
    return result


def _commit() -> str | None:
    """The git commit the run measured, when run from a checkout (results name their code)."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
