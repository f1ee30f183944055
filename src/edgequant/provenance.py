"""How a run was made: the command, the inputs by content hash, library versions and the machine.

One record serves the HTML report ("how was this made?") and the run registry ("what differs between
these two runs?"), so both read the same hashes and versions. Inputs are hashed by content, not by
path or mtime: the same data copied elsewhere is the same input, and an edited file is not.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgequant.types import Record

__all__ = ["InputFile", "Provenance", "collect", "content_sha256", "library_versions", "machine_info"]

# The libraries whose versions change what a quantized model holds or how fast it runs.
LIBRARIES = ("edgequant", "tensorflow-cpu", "keras", "ai-edge-litert", "litert-quantizer", "numpy")

_CHUNK = 1 << 20


def content_sha256(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative paths and contents, in sorted order).

    A folder is hashed as a whole because a SavedModel or an image folder is one input."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode("utf-8") + b"\0")
            h.update(bytes.fromhex(content_sha256(f)))
        return h.hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@dataclasses.dataclass(frozen=True)
class InputFile(Record):
    """One input named by its role (model, data, calibration, ...). A path that is not on disk (an
    in-memory array given to the Python API) has no hash."""

    role: str
    path: str
    sha256: str | None
    bytes: int | None


@dataclasses.dataclass(frozen=True)
class Provenance(Record):
    command: tuple[str, ...] | None  # argv of the CLI call; None from the Python API
    cwd: str
    started: str  # ISO 8601, UTC
    inputs: tuple[InputFile, ...]
    versions: dict[str, str | None]
    machine: dict[str, str | int | None]

    def input(self, role: str) -> InputFile | None:
        return next((i for i in self.inputs if i.role == role), None)


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["edgequant-commit"] = _git_commit()
    return out


def _git_commit() -> str | None:
    """The commit of an edgequant checkout (editable installs), so a result names its code."""
    here = Path(__file__).resolve().parent
    if not (here.parent.parent / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict[str, str | int | None]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"host": platform.node(), "system": f"{platform.system()} {platform.release()}",
            "arch": platform.machine(), "cpu": _cpu_model(), "cores": cores}


def collect(inputs: Mapping[str, Path | str | None], command: Sequence[str] | None = None) -> Provenance:
    """Hash every input that is a path on disk; record the rest by name only."""
    files = []
    for role, value in inputs.items():
        if value is None:
            continue
        p = Path(value) if isinstance(value, (str, os.PathLike)) else None
        if p is not None and p.exists():
            files.append(InputFile(role, str(p), content_sha256(p), _size(p)))
        else:
            files.append(InputFile(role, str(value) if p is not None else type(value).__name__, None, None))
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return Provenance(tuple(command) if command is not None else None, os.getcwd(), started, tuple(files),
                      library_versions(), machine_info())
