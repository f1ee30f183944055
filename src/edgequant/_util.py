"""Small helpers every stage needs: atomic writes, silencing third-party noise, progress."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_write", "atomic_dir_file", "atomic_npz", "quiet", "Progress", "no_progress", "set_verbose"]

# A progress callback gets (step name, done, total). The library calls it and
# never prints; the CLI decides whether to draw a bar.
Progress = Callable[[str, int, int], None]


def no_progress(step: str, done: int, total: int) -> None:
    """The default progress callback: do nothing."""


_VERBOSE = os.environ.get("EDGEQUANT_VERBOSE", "") not in ("", "0")


def set_verbose(verbose: bool) -> None:
    """Let TensorFlow's and LiteRT's own console output through (the CLI's -v)."""
    global _VERBOSE
    _VERBOSE = verbose


def quiet_tensorflow() -> None:
    """Silence TensorFlow and absl before they are imported (they log at import)."""
    if not _VERBOSE:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """Capture everything written to file descriptors 1 and 2 inside the block.

    TensorFlow's converter prints "Saved artifact at ..." with print(), its C++
    core logs straight to fd 2, and litert-quantizer draws tqdm bars; Python-level
    redirection alone catches none of the C++ output. The captured lines are
    handed back so an error can quote the last meaningful one.
    """
    captured: list[str] = []
    if _VERBOSE:
        yield captured
        return
    import logging
    import warnings

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior_level = logging.root.manager.disable
        logging.disable(logging.WARNING)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        # Python-level print() goes to sys.stdout, which need not be fd 1 (a
        # notebook, pytest, an embedding app): swap the objects too.
        py_sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(py_sink), contextlib.redirect_stderr(py_sink):
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            logging.disable(prior_level)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            text += py_sink.getvalue()
            captured.extend(line for line in text.splitlines() if line.strip())


def last_error_line(lines: list[str], fallback: str) -> str:
    """The most informative captured line for a one-line error message."""
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "exception" in low or "failed" in low:
            return line.strip()[:300]
    return fallback


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp creates 0600 files; give the result the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_dir_file(path: Path, text: str) -> Path:
    """Text variant of :func:`atomic_write`."""
    return atomic_write(path, text.encode("utf-8"))


def atomic_npz(path: Path, **arrays: object) -> Path:
    """np.savez through :func:`atomic_write`."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return atomic_write(path, buf.getvalue())
