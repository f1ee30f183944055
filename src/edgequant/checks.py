"""The bounds of every number a user gives, defined once.

The API functions call these before any work, so Python users get the same
one-line InputError as the CLI, whose argparse types call them too (and so
refuse a bad number before a model is loaded or a run recorded). Each message
says what was expected and what was found.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from edgequant.errors import InputError

__all__ = ["MAX_RUNS", "max_threads", "check_int", "check_threads", "check_runs", "check_samples", "check_top_k",
           "check_epochs", "check_seed", "check_resize", "check_normalize", "check_labels", "classes_of"]

# Timed runs per model: 100,000 runs of even a 1 ms model take minutes per variant; more is a typo.
MAX_RUNS = 100_000
# LiteRT accepts any thread count, but threads beyond the cores only add contention; 4x the cores
# leaves room for measuring oversubscription, 64 keeps a typo (--threads 1000) from starting 1000 threads.
THREADS_PER_CORE, THREADS_CAP = 4, 64


def max_threads() -> int:
    return min(THREADS_PER_CORE * (os.cpu_count() or 1), THREADS_CAP)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(value: Any, option: str, low: int, high: int | None = None, why: str = "") -> int:
    """``value`` as an int within low..high (no upper bound when ``high`` is None), else an InputError."""
    if high is None:
        wanted = "a whole number of 0 or more" if low == 0 else f"a whole number of at least {low}"
    else:
        wanted = f"a whole number from {low} to {high:,}" + (f" ({why})" if why else "")
    if not _is_int(value) or value < low or (high is not None and value > high):
        raise InputError(f"{option}: expected {wanted}, found {value!r}")
    return int(value)


def check_threads(threads: Any, option: str = "--threads") -> int:
    cores = os.cpu_count() or 1
    return check_int(threads, option, 1, max_threads(),
                     f"at most {THREADS_PER_CORE} per core on {cores} core{'s' if cores != 1 else ''}, "
                     f"and {THREADS_CAP} at most")


def check_runs(runs: Any, option: str = "--runs") -> int:
    return check_int(runs, option, 0, MAX_RUNS)


def check_samples(samples: Any, option: str = "--samples") -> int | None:
    return None if samples is None else check_int(samples, option, 1)


def check_top_k(top_k: Any, option: str = "--top-k") -> int:
    return check_int(top_k, option, 0)


def check_epochs(epochs: Any, option: str = "--epochs") -> int:
    return check_int(epochs, option, 1)


# What Keras (and NumPy) accept as a random seed.
MAX_SEED = 2**32 - 1


def check_seed(seed: Any, option: str = "--seed") -> int:
    return check_int(seed, option, 0, MAX_SEED)


def check_resize(resize: Any, option: str = "--resize") -> tuple[int, int] | None:
    """H, W: two whole numbers of 1 or more."""
    if resize is None:
        return None
    try:
        h, w = resize
    except (TypeError, ValueError):
        raise InputError(f"{option}: expected H,W (two whole numbers of 1 or more), found {resize!r}") from None
    if not (_is_int(h) and _is_int(w)) or h < 1 or w < 1:
        raise InputError(f"{option}: expected H,W (two whole numbers of 1 or more), found {h},{w}")
    return int(h), int(w)


def check_normalize(normalize: Any, option: str = "--normalize") -> tuple[float, float] | None:
    """MEAN, STD: finite numbers, STD above 0 (a negative STD would flip the image's sign silently)."""
    if normalize is None:
        return None
    try:
        mean, std = (float(v) for v in normalize)
    except (TypeError, ValueError):
        raise InputError(f"{option}: expected MEAN,STD (two finite numbers, STD above 0), found {normalize!r}") \
            from None
    if not (math.isfinite(mean) and math.isfinite(std)) or std <= 0:
        raise InputError(f"{option}: expected MEAN,STD (two finite numbers, STD above 0), found {mean:g},{std:g}")
    return mean, std


def classes_of(output_shape: tuple[int, ...] | list[int]) -> int | None:
    """How many class ids top-1 can predict from an output of this shape (evaluate.metrics.predictions:
    argmax over the values of a sample, or a 0.5 threshold for one value), or None when unknown."""
    dims = [int(d) for d in output_shape[1:]]
    if any(d < 0 for d in dims):
        return None
    width = int(np.prod(dims)) if dims else 1
    return 2 if width == 1 else width


def check_labels(y: np.ndarray | None, classes: int | None, source: str, what: str = "") -> None:
    """Labels must be class ids the model can predict: 0 .. classes-1 (qat and prune check the same)."""
    if y is None or classes is None or len(y) == 0:
        return
    low, high = int(np.min(y)), int(np.max(y))
    if low < 0 or high >= classes:
        where = f" ({what})" if what else ""
        raise InputError(f"labels y in {source}{where}: expected class ids 0..{classes - 1} for the model's "
                         f"{classes} outputs, found {low}..{high}")
