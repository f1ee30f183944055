"""Progress bars for the CLI: drawn on a terminal only, so logs and pipes stay clean."""

from __future__ import annotations

import sys
from typing import Any

from edgequant._util import Progress, no_progress

__all__ = ["make_progress"]


def make_progress(stream: Any = None) -> Progress:
    """A progress callback drawing one tqdm bar per step on a TTY, else a no-op."""
    stream = stream or sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        return no_progress
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(step: str, done: int, total: int) -> None:
        bar = bars.get(step)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bar = bars[step] = tqdm(total=total, desc=step, file=stream, leave=False, dynamic_ncols=True)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            bars.pop(step, None)

    return update
