"""What a run records from each command's result: its recipe and one VariantRecord per model.

Each result type measures different things, so each gets a small function here, and a result
type without one fails loudly (a new model-producing command must say what it records). The
variants come back without artifacts: ``Registry.finish`` stores the files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgequant.registry.records import Metric, VariantRecord
# Options as JSON (paths and enums as strings, pairs as lists): the same conversion as to_dict().
from edgequant.types import CompareResult, FloatModel, QuantizedModel, Variant, _plain

__all__ = ["Captured", "capture"]

# (run recipe, variants)
Captured = tuple[dict[str, Any] | None, tuple[VariantRecord, ...]]

# The numbers a compare row measures, in its table's order.
VARIANT_METRICS = ("size_bytes", "weight_bytes", "size_ratio", "gzip_bytes", "accuracy", "accuracy_delta",
                   "sqnr_db", "cosine", "max_abs_error", "latency_ms_median", "latency_ms_p90", "speedup",
                   "quantize_seconds")


def _num(value: Any) -> Metric:
    """A metric as JSON allows it: non-finite numbers (SQNR of identical outputs) become None."""
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if hasattr(value, "item"):  # a NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (int, float)) else None


def _metrics(**values: Any) -> dict[str, Metric]:
    return {k: _num(v) for k, v in values.items()}


def _path(p: Any) -> str | None:
    return None if p is None else str(p)


def _convert(m: FloatModel, options: Mapping[str, Any], output: Path | None) -> Captured:
    return dict(options) or None, (VariantRecord("float", _path(output), _metrics(size_bytes=len(m.tflite))),)


def _quantize(q: QuantizedModel, options: Mapping[str, Any], output: Path | None) -> Captured:
    # The recipe that ran (observer and transforms resolved) is the plan; the options were its inputs.
    recipe = q.recipe.to_dict() if q.recipe is not None else {"scheme": q.scheme.value, "engine": q.engine.value,
                                                              "io": q.io.value}
    label = f"{q.scheme.value}/{q.engine.value}"
    metrics = _metrics(size_bytes=len(q.tflite), quantize_seconds=q.seconds,
                       calibration_samples=q.calibration_samples)
    return recipe, (VariantRecord(label, _path(q.path or output), metrics, recipe),)


def _variant(v: Variant, observer: str | None) -> VariantRecord:
    recipe = None
    if v.scheme != "float":
        recipe = {"scheme": v.scheme, "engine": v.engine, "io": v.io}
        if v.engine == "litert":  # the converter computes its own ranges: no observer applies
            recipe["observer"] = observer or "auto"
    metrics = {name: _num(getattr(v, name)) for name in VARIANT_METRICS}
    return VariantRecord(v.label, v.path, metrics, recipe, error=v.error)


def _compare(res: CompareResult, options: Mapping[str, Any], output: Path | None) -> Captured:
    observer = options.get("observer")
    variants = (_variant(res.float, observer),) + tuple(_variant(v, observer) for v in res.variants)
    # The counts actually used: --samples may exceed the calibration data, and --data sets the rest.
    recipe = {**options, "calibration_samples": res.calibration_samples, "eval_samples": res.samples}
    return recipe, variants


def _tune(res: Any, options: Mapping[str, Any], output: Path | None) -> Captured:
    best = res.best
    recipe = {**options, "metric": res.budget.metric.value, "max_drop": res.budget.max_drop,
              "objective": res.objective.value}
    if best is None:
        return recipe, ()
    best_recipe = best.ran_recipe or best.recipe
    recipe["best"] = best_recipe
    path = Path(res.out_dir) / "best.tflite" if res.out_dir else None
    metrics = _metrics(size_bytes=best.size_bytes, size_ratio=best.size_ratio, metric=best.metric, drop=best.drop,
                       accuracy=best.accuracy, sqnr_db=best.sqnr_db, cosine=best.cosine,
                       latency_ms_median=best.latency_ms, latency_ratio=best.latency_ratio,
                       trials=len(res.trials), met=res.met)
    return recipe, (VariantRecord("best", _path(path), metrics, best_recipe),)


def _qat(res: Any, options: Mapping[str, Any], output: Path | None) -> Captured:
    metrics = _metrics(size_bytes=len(res.tflite), accuracy=res.litert_accuracy, float_accuracy=res.float_accuracy,
                       fake_quant_accuracy=res.fake_quant_accuracy, agreement=res.agreement,
                       simulation_sqnr_db=res.simulation_sqnr_db, seconds=res.seconds)
    recipe = dict(options)
    return recipe, (VariantRecord(f"{res.scheme.value}/qat", _path(res.path or output), metrics, recipe),)


def _prune(res: Any, options: Mapping[str, Any], output: Path | None) -> Captured:
    s = res.size
    metrics = _metrics(sparsity=res.sparsity, float_accuracy=res.float_accuracy, accuracy=res.pruned_accuracy,
                       keras_bytes=s.keras_bytes, gzip_bytes=s.pruned_tflite_gzip_bytes,
                       size_bytes=s.pruned_tflite_bytes, gzip_ratio=s.gzip_ratio, seconds=res.seconds)
    recipe = dict(options)
    return recipe, (VariantRecord("pruned", _path(res.path or output), metrics, recipe),)


def _capturers() -> dict[type, Callable[[Any, Mapping[str, Any], Path | None], Captured]]:
    # Imported here: tune/ and qat/ records are cheap, but keep `import edgequant.registry` minimal.
    from edgequant.qat.records import PruneResult, QATResult
    from edgequant.tune.records import TuneResult

    return {FloatModel: _convert, QuantizedModel: _quantize, CompareResult: _compare, TuneResult: _tune,
            QATResult: _qat, PruneResult: _prune}


def capture(result: Any, options: Mapping[str, Any] | None = None, output: Path | None = None) -> Captured:
    """The recipe and variants of a command's result. ``options`` are the settings the command was
    given (JSON-ready); ``output`` is where a result that does not know its own path was written."""
    for kind, fn in _capturers().items():
        if isinstance(result, kind):
            return fn(result, _plain(dict(options or {})), output)
    raise TypeError(f"the run registry does not know what to record of a {type(result).__name__}")
