"""Progress bars for the CLI: drawn on a terminal only, so logs and pipes stay clean."""

from __future__ import annotations

import os
import sys
from typing import Any

from edgequant._util import Progress, no_progress

__all__ = ["make_progress"]


def make_progress(stream: Any = None) -> Progress:
    """A progress callback drawing one tqdm bar per step on a TTY, else a no-op."""
    if stream is None:
        if not sys.stderr.isatty():
            return no_progress
        # The library silences third-party output by pointing fd 2 elsewhere
        # while it works, and progress is reported from inside those blocks:
        # draw on a private duplicate of the terminal's descriptor instead.
        stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    elif not getattr(stream, "isatty", lambda: False)():
        return no_progress
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(step: str, done: int, total: int) -> None:
        bar = bars.get(step)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            # The count and the time left, from the average rate so far (smoothing 0): steps such as
            # AdaRound's layers differ in cost, and a recent-rate estimate jumps with each one.
            bar = bars[step] = tqdm(total=total, desc=step, file=stream, leave=False, smoothing=0,
                                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                               "[{elapsed} elapsed, {remaining} left]")
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            bars.pop(step, None)

    return update
