"""Real pretrained models read out of pinned PyPI wheels, and the benchmarks that measure edgequant on them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_results(out: Path, name: str, result: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """``<out>/<name>.json`` and ``.md`` from one result, and the table printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (out / f"{name}.md").write_text(text)
    print(text)
