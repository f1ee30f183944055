"""What a report is made from: the JSON that compare, analyze, tune and the benchmark write.

Sources are recognised by their content, not their file names, so a renamed compare.json or an
analysis written with ``--json anything.json`` still counts. A tune run is a folder (trials.json
with best.json and best-recipe.json beside it) and is read as one source.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

from edgequant.errors import InputError

__all__ = ["SourceKind", "Source", "classify", "find_sources", "read_json"]


class SourceKind(str, enum.Enum):
    COMPARE = "compare"
    ANALYSIS = "analysis"
    TUNE = "tune"
    BENCH = "bench"


@dataclasses.dataclass(frozen=True)
class Source:
    kind: SourceKind
    path: Path  # the JSON file (for tune: trials.json)
    data: dict[str, Any]  # for tune: {"trials": ..., "best": ... or None, "recipe": ... or None}


def classify(data: Any) -> SourceKind | None:
    """The kind of result a parsed JSON object is, from the keys only that kind writes."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("variants"), list) and isinstance(data.get("float"), dict):
        return SourceKind.COMPARE
    if isinstance(data.get("layers"), list) and isinstance(data.get("fidelity"), dict):
        return SourceKind.ANALYSIS
    if isinstance(data.get("trials"), list) and isinstance(data.get("run"), dict):
        return SourceKind.TUNE
    if isinstance(data.get("meta"), dict) and isinstance(data.get("cells"), list):
        return SourceKind.BENCH
    return None


def read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: expected a readable JSON file, found {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: expected a JSON text file, found binary data") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: expected JSON, found a syntax error at line {exc.lineno} column {exc.colno} "
                         f"({exc.msg})") from None


def _tune_source(trials_path: Path, trials: dict[str, Any]) -> Source:
    folder = trials_path.parent
    best = read_json(folder / "best.json") if (folder / "best.json").is_file() else None
    recipe = read_json(folder / "best-recipe.json") if (folder / "best-recipe.json").is_file() else None
    return Source(SourceKind.TUNE, trials_path, {"trials": trials, "best": best if isinstance(best, dict) else None,
                                                 "recipe": recipe if isinstance(recipe, dict) else None})


WHAT = "the JSON of edgequant compare, analyze or tune, or the benchmark's results JSON"


def find_sources(path: Path) -> tuple[Source, ...]:
    """The sources in a folder (its *.json files, not recursive) or in one JSON file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: expected a folder or a JSON file holding {WHAT}, found no such path")
    if path.is_file():
        data = read_json(path)
        kind = classify(data)
        if kind is None:
            keys = ", ".join(sorted(data)[:6]) if isinstance(data, dict) else type(data).__name__
            raise InputError(f"{path}: expected {WHAT}, found JSON with {keys or 'nothing'}")
        return (_tune_source(path, data) if kind is SourceKind.TUNE else Source(kind, path, data),)
    sources: list[Source] = []
    seen: list[str] = []
    for file in sorted(path.glob("*.json")):
        seen.append(file.name)
        data = read_json(file)
        kind = classify(data)
        if kind is SourceKind.TUNE:
            sources.append(_tune_source(file, data))
        elif kind is not None:
            sources.append(Source(kind, file, data))
    if not sources:
        found = ", ".join(seen[:5]) if seen else "no .json file"
        raise InputError(f"{path}: expected a folder holding {WHAT}, found {found}")
    # Compare and tune first (the decision), then the analyses that explain it, then benchmarks.
    order = [SourceKind.COMPARE, SourceKind.TUNE, SourceKind.ANALYSIS, SourceKind.BENCH]
    return tuple(sorted(sources, key=lambda s: (order.index(s.kind), s.path.name)))
