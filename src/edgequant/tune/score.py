"""The user's task score for ``tune --metric task``: their own measure of what the model is for.

    outputs, float outputs -> score(outputs, reference) -> one number per sample (higher is better)

Output SQNR, cosine and top-1 stand in for what a model is for, and sometimes badly: a text
recognizer's output differs from float in most positions while it reads the same string. A
task score is called with a candidate's outputs and the float model's, each a dict of output
name -> array over the same samples (batch first), and returns one finite score per sample:
1 or 0 for "reads the same text", an IoU, an error turned into a score by its sign. The budget
is the drop of its mean from the float model's own score (the float outputs given as both
arguments), held at its paired lower confidence bound like top-1 (evaluate.metrics.paired_bound).

From the command line it is ``--score FILE.py:FUNCTION``: the file is the user's own code, run
as they run any script of theirs (never a file that came with a model).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from edgequant.errors import InputError

__all__ = ["Score", "resolve_score", "load_score", "score_name", "per_sample"]

Score = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], object]


def resolve_score(score: Score | str) -> tuple[Score, str, str]:
    """A score as tune takes it (a function, or ``FILE.py:FUNCTION``) -> the function, its name for messages
    and its identity for ``--resume``."""
    if isinstance(score, str):
        return load_score(score)
    if not callable(score):
        raise InputError(f"score: expected a function or FILE.py:FUNCTION, found {type(score).__name__}")
    return score, score_name(score), score_name(score)


def load_score(spec: str) -> tuple[Score, str, str]:
    """``FILE.py:FUNCTION`` -> the function, its name for messages (the file's name and the function's) and
    its identity for ``--resume`` (the name and the file's SHA-256: an edited file is another score)."""
    file, sep, name = str(spec).rpartition(":")
    if not sep or not file or not name.isidentifier():
        raise InputError(f"--score: expected FILE.py:FUNCTION, found {spec!r}")
    path = Path(file)
    if path.suffix != ".py" or not path.is_file():
        raise InputError(f"--score: expected an existing Python file (.py) before ':', found {file!r}"
                         + ("" if path.exists() else " (no such file)"))
    module_name = f"edgequant_user_score_{abs(hash(str(path.resolve())))}"
    try:
        spec_ = importlib.util.spec_from_file_location(module_name, path)
        assert spec_ is not None and spec_.loader is not None
        module = importlib.util.module_from_spec(spec_)
        sys.modules[module_name] = module
        spec_.loader.exec_module(module)
    except Exception as exc:  # the user's file: any failure to load it is bad input, said in one line
        sys.modules.pop(module_name, None)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(f"--score: could not load {file}: {type(exc).__name__}{': ' + first if first else ''}") \
            from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise InputError(f"--score: expected a function {name} in {file}, found "
                         f"{'none' if fn is None else type(fn).__name__}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return fn, f"{path.name}:{name}", f"{path.name}:{name} sha256:{digest}"


def score_name(score: Score) -> str:
    """A name for a score given as a Python function (the API's form)."""
    module = getattr(score, "__module__", None) or "?"
    return f"{module}.{getattr(score, '__qualname__', type(score).__name__)}"


def per_sample(score: Score, name: str, outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
               samples: int, what: str) -> np.ndarray:
    """``score`` on ``what``'s outputs against float's, checked: one finite number per sample."""
    try:
        raw = score(dict(outputs), dict(reference))
    except Exception as exc:  # the user's code: its failure is reported in one line, never a traceback
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(f"task score {name} failed on {what}: {type(exc).__name__}"
                         f"{': ' + first if first else ''}") from None
    try:
        values = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"task score {name}: expected one number per sample ({samples}), found "
                         f"{type(raw).__name__}") from None
    if values.shape != (samples,):
        raise InputError(f"task score {name}: expected one number per sample, shape ({samples},), found shape "
                         f"{values.shape} on {what}")
    if not np.isfinite(values).all():
        raise InputError(f"task score {name}: expected finite numbers, found {int((~np.isfinite(values)).sum())} "
                         f"NaN or infinite on {what}")
    return values
