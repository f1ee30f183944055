"""Small helpers every stage needs: atomic writes, silencing third-party noise, progress."""

from __future__ import annotations

import contextlib
import contextvars
import errno
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from edgequant.errors import InputError

__all__ = ["atomic_write", "atomic_dir_file", "atomic_npz", "staged_writes", "deferred_interrupt", "write_error",
           "quiet", "Progress", "no_progress", "set_verbose", "verbose"]

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


def verbose() -> bool:
    """Whether TensorFlow's and LiteRT's own console output is let through (see :func:`set_verbose`)."""
    return _VERBOSE


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


# What the user is told for each OS error a write can meet: "expected ..., found <this>".
_WRITE_ERRORS = {
    errno.EISDIR: "a directory", errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
    errno.EROFS: "a read-only file system", errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota used up", errno.EEXIST: "a file where a folder is needed",
    errno.ENOTDIR: "a file where a folder is needed", errno.ENAMETOOLONG: "a name too long for the file system",
    errno.ENOENT: "a folder that does not exist",
}


def write_error(path: Path | str, exc: OSError) -> InputError:
    """One line for an OS error met while writing ``path``: what was expected, what was found."""
    found = _WRITE_ERRORS.get(exc.errno or 0) or (exc.strerror or type(exc).__name__).lower()
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) \
        and not str(exc.filename).endswith(".part") else ""
    return InputError(f"cannot write {path}: expected a writable file path, found {found}{where}")


class _Staged:
    """Writes held under temporary names until every write of a command succeeded (see staged_writes)."""

    def __init__(self) -> None:
        self.pending: dict[Path, Path] = {}  # final path -> temporary file beside it
        self.made_dirs: list[Path] = []  # folders created for these writes, removed again on failure


_STAGE: contextvars.ContextVar[_Staged | None] = contextvars.ContextVar("edgequant_stage", default=None)


def _make_parents(path: Path) -> list[Path]:
    """Create the missing folders above ``path`` (docs/cli.md: a missing parent folder is created);
    returns the ones made, outermost first."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        if folder.is_symlink():  # a dangling link: mkdir would fail with a confusing EEXIST
            raise InputError(f"cannot write {path}: expected a folder at {folder}, found a broken symbolic link")
        folder.mkdir()
    return list(reversed(missing))


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a crash never leaves a half-written file.

    Every file edgequant writes goes through here. An OS error is one InputError line (exit 2)
    naming the path; no temporary file is left. Inside :func:`staged_writes` the file stays
    under its temporary name until the block ends without an error.
    """
    if str(path) == "":
        raise InputError("cannot write: expected a file path, found an empty string")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: expected a file path, found a directory")
    stage = _STAGE.get()
    tmp = None
    try:
        made = _make_parents(path)
        if stage is not None:
            stage.made_dirs.extend(made)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp creates 0600 files; give the result the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if stage is not None:
            old = stage.pending.pop(path, None)
            if old is not None:  # written twice in one command: the later bytes win
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(old)
            stage.pending[path] = Path(tmp)
            return path
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise
    return path


@contextlib.contextmanager
def staged_writes() -> Iterator[None]:
    """All or none: every :func:`atomic_write` in the block goes to a temporary name, and all are
    renamed into place only when the block ends without an error. A failure (or Ctrl-C) removes
    them, and any folder made for them, so a command that writes several files leaves none."""
    stage = _Staged()
    token = _STAGE.set(stage)
    try:
        yield
    except BaseException:
        _STAGE.reset(token)
        _discard(stage)
        raise
    _STAGE.reset(token)
    with deferred_interrupt():  # a Ctrl-C between two renames would leave half the files
        for final in stage.pending:
            if final.is_dir():  # made a directory since: no rename done yet, drop them all
                _discard(stage)
                raise InputError(f"cannot write {final}: expected a file path, found a directory")
        done: list[Path] = []
        try:
            for final, tmp in stage.pending.items():
                os.replace(tmp, final)
                done.append(final)
        except OSError as exc:
            for final, tmp in stage.pending.items():
                if final not in done:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
            raise write_error(final, exc) from None


def _discard(stage: _Staged) -> None:
    for tmp in stage.pending.values():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    for folder in reversed(stage.made_dirs):  # innermost first; only if still empty
        with contextlib.suppress(OSError):
            folder.rmdir()
    stage.pending.clear()


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block has finished, then raise it: for steps that must not
    stop half-way (renaming a command's files into place, one registry write). Outside the main
    thread, where signal handlers cannot be set, the block runs as is."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt here
    elif received and previous == signal.SIG_DFL:
        os.kill(os.getpid(), signal.SIGINT)


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
