"""What differs between two recorded runs (``edgequant runs compare A B``).

Recipes are nested JSON (a recipe's per-tensor rules, tune's best recipe under "best"), so they
are flattened to dotted key paths first: the answer is "tensors.conv1.observer: mse vs minmax",
not two whole objects to compare by eye. Inputs are compared by content hash, not by path: the
same data moved elsewhere is the same input. Variants are matched by label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgequant.registry.records import Change, MetricDelta, RunDiff, RunRecord, VariantDiff, VariantRecord

__all__ = ["flatten", "changes", "diff_variants", "diff_runs"]


def flatten(data: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": 1, "c": [1, 2]}; lists stay whole values."""
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def changes(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> tuple[Change, ...]:
    """Every flattened key whose value differs, in sorted key order; a missing key is None."""
    fa, fb = flatten(a), flatten(b)
    return tuple(Change(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k))


def _delta(a: Any, b: Any) -> float | None:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return b - a if numbers else None


def diff_variants(a: VariantRecord, b: VariantRecord) -> VariantDiff:
    # Metrics in the order run A lists them, then any only B measured.
    names = list(a.metrics) + [n for n in b.metrics if n not in a.metrics]
    metrics = tuple(MetricDelta(n, a.metrics.get(n), b.metrics.get(n), _delta(a.metrics.get(n), b.metrics.get(n)))
                    for n in names)
    same = None if a.artifact is None or b.artifact is None else a.artifact.sha256 == b.artifact.sha256
    return VariantDiff(a.label, metrics, changes(a.recipe, b.recipe), same)


def _inputs(a: RunRecord, b: RunRecord) -> tuple[Change, ...]:
    ha = {i.role: i.sha256 or i.path for i in a.inputs}
    hb = {i.role: i.sha256 or i.path for i in b.inputs}
    return tuple(Change(r, ha.get(r), hb.get(r)) for r in sorted(set(ha) | set(hb)) if ha.get(r) != hb.get(r))


def diff_runs(a: RunRecord, b: RunRecord) -> RunDiff:
    """The differences between run ``a`` and run ``b``; metrics of shared variants are listed in
    full (the point is to read them side by side), everything else only where it differs."""
    labels_b = {v.label for v in b.variants}
    labels_a = {v.label for v in a.variants}
    shared = [diff_variants(v, b.variant(v.label)) for v in a.variants if v.label in labels_b]  # type: ignore[arg-type]
    command = Change("command", a.command, b.command) if a.command != b.command else None
    return RunDiff(a.id, b.id, command, changes(a.recipe, b.recipe), _inputs(a, b),
                   changes(a.versions, b.versions), changes(a.machine, b.machine), tuple(shared),
                   tuple(v.label for v in a.variants if v.label not in labels_b),
                   tuple(v.label for v in b.variants if v.label not in labels_a))
