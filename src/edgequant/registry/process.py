"""Is the process that began a run still alive? Decides whether a ``running`` run is incomplete.

A PID alone is not enough: after a crash the kernel may hand the same PID to an unrelated
process. So a run also stores the identity of its process: the boot id and the process start
time (field 22 of /proc/<pid>/stat, in clock ticks since boot). Same host, same PID, same boot,
same start time: the same process. Without /proc (macOS) the PID check is all there is.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["host_name", "process_identity", "is_alive"]


def host_name() -> str:
    return platform.node()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onwards of /proc/<pid>/stat. The command name (field 2) is in parentheses and may
    itself hold spaces and parentheses, so the split starts after the last ')'."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def process_identity(pid: int | None = None) -> str | None:
    """"<boot id>:<start ticks>" of a process (default: this one), or None without /proc."""
    fields = _stat_fields(os.getpid() if pid is None else pid)
    if fields is None or len(fields) < 20:
        return None
    return f"{_boot_id()}:{fields[19]}"  # fields[0] is field 3 (state), so field 22 is fields[19]


def is_alive(pid: int, identity: str | None) -> bool:
    """Whether the process that stored (pid, identity) on this host is still running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    fields = _stat_fields(pid)
    if fields is None:
        # No /proc: the signal check is all we have. With /proc but no entry: it just exited.
        return not Path("/proc/self/stat").exists()
    if fields[0] in ("Z", "X"):  # a zombie has died; only its exit status awaits its parent
        return False
    return identity is None or process_identity(pid) == identity
