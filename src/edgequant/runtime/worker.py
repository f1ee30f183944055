"""LiteRT in a child process: models are untrusted input and LiteRT is native code.

A segfault, abort or hang inside the interpreter must not take edgequant with
it. Each opened model (a :class:`Remote`) gets a worker process of its own
from a small pool; the worker holds the real :class:`~edgequant.runtime.session.Session`
and answers one pickled message per call over a pipe. A worker that dies or
stays silent past the timeout becomes a one-line :class:`ModelCrashError`
naming the model, the signal and the step, and is replaced; the other models,
each in its own worker, carry on.

Workers are forked from a forkserver that has imported LiteRT once, so a new
worker costs a fork, not an interpreter start. A worker serves one model and
ends with it (a model can corrupt LiteRT's heap without an error); fresh
spares are started ahead so the next model need not wait. Latency is timed inside the worker, around the
kernel call alone, so the pipe adds nothing to the figures.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import gc
import multiprocessing
import multiprocessing.connection as mpc
import os
import signal
import sys
import tempfile
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from edgequant.errors import EngineError, ModelCrashError

__all__ = ["Remote", "Pool", "POOL", "call_timeout"]

# Seconds one call may take before its worker counts as hung (EDGEQUANT_WORKER_TIMEOUT overrides):
# far above any invoke or whole-data prediction of the models edgequant is for.
DEFAULT_TIMEOUT = 600.0
# Fresh workers started ahead, so the next model does not wait for one to boot.
SPARES = 2

# What each call is, in the error's words ("crashed LiteRT (SIGSEGV) at invoke").
STAGES = {"open": "loading", "set_inputs": "setting inputs", "run": "invoke", "invoke": "invoke",
          "timed_invoke": "invoke", "outputs": "reading outputs", "tensor": "reading a tensor",
          "tensors": "reading tensors", "tensor_details": "reading its tensors", "ops_details": "reading its ops",
          "predict": "invoke", "prepare_single": "setting inputs", "info": "loading"}


def call_timeout() -> float:
    try:
        value = float(os.environ.get("EDGEQUANT_WORKER_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


# --- the child side

def _kinds() -> dict[str, Any]:
    from edgequant.runtime.session import OpSession, Session

    return {"session": Session, "op": OpSession, "probe": _Probe}


class _Probe:
    """What tests use to stand for a crashing or hanging kernel (a signal, a sleep) in a real worker."""

    def kill(self, signum: int) -> None:
        os.kill(os.getpid(), signum)

    def sleep(self, seconds: float) -> None:
        import time
        time.sleep(seconds)


def _serve(conn: mpc.Connection, log_path: str) -> None:
    """The worker loop: build objects, call their methods, send back results or the exception."""
    # Ctrl-C is the parent's to handle (it ends the workers); LiteRT's console output and any crash
    # report go to a log the parent quotes, never to the user's terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A collection would walk (and so copy) every object inherited from the forkserver; a worker lives
    # for one model, so reference counting alone frees enough.
    gc.disable()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    kinds = _kinds()
    objects: dict[int, Any] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        op, oid = message[0], message[1]
        if op == "del":
            objects.pop(oid, None)
            continue
        try:
            if op == "new":
                objects[oid] = kinds[message[2]](*message[3], **message[4])
                result = None
            else:
                result = getattr(objects[oid], message[2])(*message[3], **message[4])
            reply: tuple[str, Any] = ("ok", result)
        except Exception as exc:  # sent back and raised in the parent, as if the call were local
            reply = ("err", exc)
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result or exception: its text, as the parent's RuntimeError
            conn.send(("err", RuntimeError(f"{type(exc).__name__}: {exc}")))


# --- the parent side

def exit_reason(code: int | None) -> str:
    """A child's exit code in words: "SIGSEGV", "exit code 1", or "no answer" while it runs."""
    if code is None:
        return "no answer"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _context() -> Any:
    # Forked from a server that imported LiteRT once: fast to start, and no state of ours is inherited
    # (plain fork could copy TensorFlow's threads mid-lock).
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")  # Windows: slower to start, as safe
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["edgequant.runtime.session", "edgequant.runtime.worker"])
    return ctx


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """Start a worker without the caller's __main__: multiprocessing would import it again in the child,
    running a user's script that has no ``if __name__ == "__main__"`` guard a second time."""
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


def start_process(target: Callable[..., None], args: tuple[Any, ...], *, name: str, daemon: bool = False) -> Any:
    """A child process started as the workers are: forked from the forkserver, without the caller's __main__."""
    proc = _context().Process(target=target, args=args, daemon=daemon, name=name)
    with _without_main():
        proc.start()
    return proc


def pipe(duplex: bool = True) -> tuple[Any, Any]:
    """A pipe for :func:`start_process`'s children."""
    return _context().Pipe(duplex)  # type: ignore[no-any-return]


class _Worker:
    """One child process and its pipe."""

    def __init__(self) -> None:
        fd, self.log_path = tempfile.mkstemp(prefix="edgequant-worker-", suffix=".log")
        self.log = os.fdopen(fd, "rb")  # read through this; the name is removed once the child has it open
        self.linked = True
        self.conn, child = pipe()
        self.proc = start_process(_serve, (child, self.log_path), name="edgequant-litert", daemon=True)
        child.close()
        self.alive = True
        # Set when LiteRT raised an error here: a model it refused may have left its heap corrupt, so a
        # shared worker (analyze's op models) takes no new model after it.
        self.tainted = False

    def hint(self) -> str:
        """The last line LiteRT wrote before dying (an abort's reason), if any."""
        try:
            size = os.fstat(self.log.fileno()).st_size
            self.log.seek(max(0, size - 4096))
            lines = [ln.strip() for ln in self.log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        for line in reversed(lines):
            if any(w in line.lower() for w in ("error", "abort", "fail", "check")):
                return line[:200]
        return ""

    def request(self, message: tuple[Any, ...], what: str, stage: str, timeout: float,
                meanwhile: Callable[[], None] | None = None) -> Any:
        """Send one message and wait for its answer; ``meanwhile`` runs while the child works on it."""
        try:
            self.conn.send(message)
            if meanwhile is not None:
                meanwhile()
            ready = mpc.wait([self.conn, self.proc.sentinel], timeout)
            if self.conn in ready:
                try:
                    status, value = self.conn.recv()
                except (EOFError, OSError):
                    status, value = "dead", None
            else:
                status, value = ("dead" if ready else "hung"), None
        except (BrokenPipeError, ConnectionResetError, EOFError):
            status, value = "dead", None
        except BaseException:
            self.end()  # interrupted mid-call: the worker's state is unknown
            raise
        if self.linked and status in ("ok", "err"):
            self._unlink()  # the child has answered, so it holds the log open: no name left behind by a kill
        if status == "ok":
            return value
        if status == "err":
            self.tainted = True
            raise value
        if status == "hung":
            self.end()
            raise ModelCrashError(f"{what} hung LiteRT at {stage}: no answer within {timeout:g} s "
                                  "(expected a result; EDGEQUANT_WORKER_TIMEOUT sets the limit)")
        self.proc.join(5)
        hint, code = self.hint(), self.proc.exitcode
        self.end()
        raise ModelCrashError(f"{what} crashed LiteRT ({exit_reason(code)}) at {stage}" + (f": {hint}" if hint else ""))

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            self.conn.send(message)
        except (OSError, ValueError):
            self.alive = False

    def retire(self) -> None:
        """End a worker that is idle and well: closing its pipe ends its loop and it exits by itself, so the
        caller waits for neither a kill nor a join (multiprocessing reaps it when it next starts a process)."""
        if self.alive:
            self.alive = False
            self.conn.close()
            self._unlink()
            self.log.close()

    def end(self) -> None:
        if self.alive:
            self.alive = False
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5)
            self.conn.close()
            self._unlink()
            self.log.close()

    def _unlink(self) -> None:
        self.linked = False
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


def _new_worker(attempts: int = 4) -> _Worker:
    """A started worker. A busy machine can refuse a fork for a moment (EAGAIN, also inside the forkserver,
    which then exits and is started again on the next try): wait and retry before giving up in one line."""
    for k in range(attempts):
        try:
            return _Worker()
        except (OSError, EOFError, RuntimeError) as exc:
            if k == attempts - 1:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
                raise EngineError(f"could not start a LiteRT worker process: the system refused it ({reason}); "
                                  "expected a free process slot, try again when the machine is less busy") from None
            time.sleep(0.5 * 2 ** k)
    raise AssertionError("unreachable")


class Pool:
    """The workers of this process: one per open model (or per ``share`` name), and fresh spares."""

    def __init__(self) -> None:
        self._idle: list[_Worker] = []
        self._busy: dict[_Worker, int] = {}   # worker -> models open in it
        self._shared: dict[str, _Worker] = {}
        self._pinned: set[str] = set()        # shares held open until unpin(), even with no model open
        self._lock = threading.Lock()
        self._next_id = 0
        self._released: collections.deque[tuple[_Worker, int]] = collections.deque()

    def acquire(self, share: str | None = None) -> tuple[_Worker, int]:
        self.collect()
        with self._lock:
            self._next_id += 1
            worker = self._shared.get(share) if share is not None else None
            if worker is None or not worker.alive or worker.tainted:
                if worker is not None and share in self._pinned:
                    self._give_back(worker, None)  # its pin moves to the fresh worker below
                worker = None
                while self._idle and worker is None:
                    candidate = self._idle.pop()
                    if candidate.alive and candidate.proc.is_alive():
                        worker = candidate
                    else:
                        candidate.end()
                worker = worker or _new_worker()
                if share is not None:
                    self._shared[share] = worker
                    if share in self._pinned:  # the pin's own hold, so the worker outlives its models
                        self._busy[worker] = self._busy.get(worker, 0) + 1
            self._busy[worker] = self._busy.get(worker, 0) + 1
            return worker, self._next_id

    def pin(self, share: str) -> None:
        """Keep the worker of ``share`` (started by the first model that names it) until :meth:`unpin`."""
        with self._lock:
            self._pinned.add(share)

    def unpin(self, share: str) -> None:
        self.collect()
        with self._lock:
            self._pinned.discard(share)
            worker = self._shared.get(share)
            if worker is not None:
                self._give_back(worker, None)

    def release(self, worker: _Worker, oid: int) -> None:
        """Called by a model's finalizer, at any point of any code (garbage collection): only noted here."""
        self._released.append((worker, oid))

    def collect(self) -> None:
        """Give back the workers of released models (before the next request, never inside one)."""
        while self._released:
            with self._lock:
                if not self._released:
                    return
                self._give_back(*self._released.popleft())

    def _give_back(self, worker: _Worker, oid: int | None) -> None:
        left = self._busy.pop(worker, 1) - 1
        if left > 0:
            self._busy[worker] = left
        if not worker.alive:
            return
        if oid is not None:
            worker.send(("del", oid))
        if left > 0:
            return
        for key in [k for k, w in self._shared.items() if w is worker]:
            del self._shared[key]
        # Never reused: a model can corrupt LiteRT's heap without any error, and the next model
        # would then crash in its place (the fuzz test saw it). A fresh spare costs a fork.
        worker.retire()

    def shutdown(self) -> None:
        with self._lock:
            for worker in self._idle + list(self._busy):
                worker.end()
            self._idle.clear()
            self._busy.clear()
            self._shared.clear()
            self._pinned.clear()

    def refill(self) -> None:
        """Start spares up to SPARES; called while a worker loads its model, so the fork overlaps that work."""
        try:
            self.warm()
        except EngineError:
            pass  # no process slot now: the next model starts its worker when it needs one

    def warm(self, count: int = SPARES) -> None:
        """Start ``count`` fresh workers now (they boot while the caller goes on)."""
        with self._lock:
            while len(self._idle) < count:
                self._idle.append(_new_worker())


POOL = Pool()
atexit.register(POOL.shutdown)


def _release(pool: Pool, worker: _Worker, oid: int) -> None:
    if not sys.is_finalizing():
        pool.release(worker, oid)


class Remote:
    """A Session (or OpSession) living in a worker: ``call(method, ...)`` runs it there."""

    def __init__(self, kind: str, what: str, *args: Any, share: str | None = None, **kwargs: Any) -> None:
        self.what = what
        self._timeout = call_timeout()
        self._worker, self._oid = POOL.acquire(share)
        self._release = weakref.finalize(self, _release, POOL, self._worker, self._oid)
        try:
            self._worker.request(("new", self._oid, kind, args, kwargs), what, STAGES["open"], self._timeout,
                                 meanwhile=POOL.refill)
        except BaseException:
            self._release()  # at once: a traceback may keep this object alive for a while
            raise

    def close(self) -> None:
        """Give the worker back now (otherwise when this object is collected)."""
        self._release()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        POOL.collect()
        if not self._worker.alive:
            raise ModelCrashError(f"{self.what} cannot run: its LiteRT worker crashed earlier (expected a live "
                                  "worker; open the model again)")
        return self._worker.request(("call", self._oid, method, args, kwargs), self.what,
                                    STAGES.get(method, method), self._timeout)
