"""Chart descriptions for the HTML report: plain data that the page's script draws as SVG.

The numbers and the Pareto front are decided here, in Python, where they are tested; the script
only places marks. ``marks()`` is how many marks a chart must draw, which the browser test checks
against what Chromium actually drew.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["Point", "Scatter", "Series", "Layers", "Ranges", "Chart", "pareto_front", "finite"]


def finite(value: Any) -> float | None:
    """A plottable number, or None (missing, NaN, infinite, or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    group: int = 0  # index into the chart's groups (its colour)
    float: bool = False  # the float baseline: drawn ringed and labelled
    best: bool = False  # the variant the source chose
    front: bool = False  # on the Pareto front
    tip: str = ""
    tag: str = ""  # a label drawn beside the point (the front's variants are named on the chart)


@dataclasses.dataclass(frozen=True)
class Scatter:
    id: str
    title: str
    x_label: str
    y_label: str
    points: tuple[Point, ...]
    groups: tuple[str, ...] = ()
    kind: str = "scatter"

    def marks(self) -> int:
        return len(self.points)

    def spec(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "x": {"label": self.x_label},
                "y": {"label": self.y_label}, "groups": list(self.groups),
                "points": [dataclasses.asdict(p) for p in self.points]}


@dataclasses.dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float | None, ...] = ()
    spans: tuple[tuple[float, float] | None, ...] = ()


@dataclasses.dataclass(frozen=True)
class Layers:
    """One line per series over categories in order (SQNR by layer)."""

    id: str
    title: str
    x_label: str
    y_label: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    unit: str = ""
    kind: str = "layers"

    def marks(self) -> int:
        return sum(v is not None for s in self.series for v in s.values)

    def spec(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "x": {"label": self.x_label},
                "y": {"label": self.y_label, "unit": self.unit}, "categories": list(self.categories),
                "series": [{"name": s.name, "values": list(s.values)} for s in self.series]}


@dataclasses.dataclass(frozen=True)
class Ranges:
    """One row per category with a bar per series (float range against quantized range)."""

    id: str
    title: str
    x_label: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]
    kind: str = "ranges"

    def marks(self) -> int:
        return sum(s is not None for ser in self.series for s in ser.spans)

    def spec(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "x": {"label": self.x_label},
                "y": {"label": ""}, "categories": list(self.categories),
                "series": [{"name": s.name, "spans": [list(sp) if sp else None for sp in s.spans]}
                           for s in self.series]}


Chart = Scatter | Layers | Ranges


def pareto_front(points: Sequence[tuple[float, float]]) -> set[int]:
    """Indexes of the points no other point dominates, where x is a cost (lower is better) and y a
    quality (higher is better). Equal points are all on the front."""
    front = set()
    for i, (x, y) in enumerate(points):
        dominated = any((ox <= x and oy >= y) and (ox < x or oy > y) for j, (ox, oy) in enumerate(points) if j != i)
        if not dominated:
            front.add(i)
    return front
