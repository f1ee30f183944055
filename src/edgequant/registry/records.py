"""What the run registry hands back: a run, its variants and their stored artifacts, and the
difference between two runs.

Metrics and recipes stay plain JSON objects here, not dataclasses: each command measures a
different set (compare has latency and SQNR, prune has sparsity and gzip sizes), and a registry
written by one edgequant version must stay readable by the next one whatever it measured.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from edgequant.provenance import InputFile
from edgequant.types import Record

__all__ = ["RunStatus", "ArtifactRecord", "VariantRecord", "RunRecord", "Change", "MetricDelta", "VariantDiff",
           "RunDiff"]

# A metric value: a number, or None where the command could not measure it (no labels, an
# infinite SQNR for bit-identical outputs, a failed variant).
Metric = float | int | None


class RunStatus(str, enum.Enum):
    """Where a run is in its life (docs/registry.md, "Statuses")."""

    RUNNING = "running"  # begun; its process is (as far as this host can tell) still alive
    COMPLETE = "complete"  # finished, every variant written in the same transaction as this status
    FAILED = "failed"  # the command raised; the error line and exit code are kept, no variants
    INCOMPLETE = "incomplete"  # its process died before finishing (killed, crashed, power cut)


@dataclasses.dataclass(frozen=True)
class ArtifactRecord(Record):
    """One stored model file, named by its content: the same bytes are stored once however many
    runs produce them. ``object`` is the absolute path of the stored copy."""

    sha256: str
    bytes: int
    object: str


@dataclasses.dataclass(frozen=True)
class VariantRecord(Record):
    """One model a run produced: ``path`` is where the command wrote it (which the user may later
    overwrite or delete; ``artifact`` is the registry's own copy). ``label`` matches variants
    across runs ("float", "int8/litert", "best")."""

    label: str
    path: str | None
    metrics: dict[str, Metric]
    recipe: dict[str, Any] | None = None
    artifact: ArtifactRecord | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class RunRecord(Record):
    """One command as recorded. ``command`` is the subcommand name, ``argv`` the full command line."""

    id: int
    command: str
    argv: tuple[str, ...]
    cwd: str
    status: RunStatus
    started: str
    finished: str | None
    host: str
    pid: int
    exit_code: int | None
    error: str | None
    recipe: dict[str, Any] | None
    inputs: tuple[InputFile, ...]
    versions: dict[str, str | None]
    machine: dict[str, str | int | None]
    variants: tuple[VariantRecord, ...] = ()

    def variant(self, label: str) -> VariantRecord | None:
        return next((v for v in self.variants if v.label == label), None)


@dataclasses.dataclass(frozen=True)
class Change(Record):
    """One key whose value differs between run A and run B; None where a side lacks the key."""

    key: str
    a: Any
    b: Any


@dataclasses.dataclass(frozen=True)
class MetricDelta(Record):
    """One metric of a variant in both runs; ``delta`` is B − A when both are numbers."""

    name: str
    a: Metric
    b: Metric
    delta: float | None


@dataclasses.dataclass(frozen=True)
class VariantDiff(Record):
    """A variant present in both runs (matched by label): every metric side by side, the recipe
    keys that differ, and whether the two runs produced byte-identical models."""

    label: str
    metrics: tuple[MetricDelta, ...]
    recipe: tuple[Change, ...]
    same_bytes: bool | None  # None when a side has no stored artifact


@dataclasses.dataclass(frozen=True)
class RunDiff(Record):
    """What differs between two runs; keys that are equal are left out (metrics excepted)."""

    a: int
    b: int
    command: Change | None
    recipe: tuple[Change, ...]
    inputs: tuple[Change, ...]  # by role; the values are sha256 digests
    versions: tuple[Change, ...]
    machine: tuple[Change, ...]
    variants: tuple[VariantDiff, ...]
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
