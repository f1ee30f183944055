"""The run registry: every model-producing command recorded in a local SQLite database.

A run is written twice. ``begin`` records the command, its inputs by content hash, library
versions and machine, with status ``running``. ``finish`` stores the model files in the
content-addressed artifact store, then writes every variant, its metrics and the final status in
ONE transaction. So a run is either finished with all its variants or has none: a process
killed in between leaves a ``running`` row whose process is gone, which every read reports
(and stores) as ``incomplete``. Layout, schema and semantics: docs/registry.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgequant.errors import EdgequantError, InputError
from edgequant.provenance import InputFile, Provenance
from edgequant.registry import db
from edgequant.registry.capture import capture
from edgequant.registry.diff import diff_runs
from edgequant.registry.process import host_name, is_alive, process_identity
from edgequant.registry.records import (ArtifactRecord, Change, MetricDelta, RunDiff, RunRecord, RunStatus,
                                        VariantDiff, VariantRecord)
from edgequant.registry.store import ArtifactStore

__all__ = ["Registry", "default_registry_path", "open_registry", "capture", "diff_runs", "ENV_VAR",
           "RunStatus", "RunRecord", "VariantRecord", "ArtifactRecord", "RunDiff", "VariantDiff", "MetricDelta",
           "Change"]

ENV_VAR = "EDGEQUANT_REGISTRY"
OFF = "off"


def default_registry_path() -> Path | None:
    """$EDGEQUANT_REGISTRY (a file path; "off" turns recording off: None), else the XDG data folder."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value.lower() == OFF:
        return None
    if value:
        return Path(value).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "edgequant" / "registry.sqlite3"


def open_registry(path: str | Path | None = None, create: bool = True) -> Registry:
    """The registry at ``path``, or at the default path; InputError if recording is off or the file is
    not a registry."""
    if path is None:
        path = default_registry_path()
        if path is None:
            raise InputError(f"expected a run registry path ({ENV_VAR} or --registry PATH), found "
                             f"{ENV_VAR}={OFF}")
    return Registry(path, create=create)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, allow_nan=False, sort_keys=False)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Registry:
    """One registry file, opened by one process; safe to use from many processes at once."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path).expanduser().absolute()
        self._con = db.connect(self.path, create)
        self._con.row_factory = sqlite3.Row
        self.store = ArtifactStore(self.path.parent / "artifacts")

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, what: str, fn: Any) -> Any:
        """Run ``fn`` in one transaction; an SQLite failure (disk full, locked past the timeout) is one
        line naming the registry."""
        try:
            with db.transaction(self._con) as con:
                return fn(con)
        except sqlite3.Error as exc:
            raise EdgequantError(f"run registry {self.path}: could not {what}: {exc}") from None

    # ------------------------------------------------------------------ lifecycle

    def begin(self, command: str, provenance: Provenance) -> int:
        """Record a run as ``running`` (before its work starts); returns its id."""
        def insert(con: sqlite3.Connection) -> int:
            cur = con.execute(
                "INSERT INTO runs (command, argv, cwd, status, started, host, pid, pid_start, versions, machine) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (command, _json(list(provenance.command or ())), provenance.cwd, RunStatus.RUNNING.value,
                 provenance.started, host_name(), os.getpid(), process_identity(), _json(provenance.versions),
                 _json(provenance.machine)))
            run_id = int(cur.lastrowid)  # type: ignore[arg-type]
            con.executemany("INSERT INTO inputs (run_id, role, path, sha256, bytes) VALUES (?, ?, ?, ?, ?)",
                            [(run_id, i.role, i.path, i.sha256, i.bytes) for i in provenance.inputs])
            return run_id
        return self._write("record the run", insert)

    def finish(self, run_id: int, variants: Sequence[VariantRecord] = (), recipe: dict[str, Any] | None = None,
               status: RunStatus = RunStatus.COMPLETE, exit_code: int | None = 0,
               error: str | None = None, inputs: Sequence[InputFile] = ()) -> RunRecord:
        """Store the variants' files, then write variants, metrics, recipe and status in one transaction.

        ``inputs`` are inputs known only once the work is done (the demo makes its own model and data);
        those of a role recorded at ``begin`` are not added again."""
        # Files first, outside the transaction: a copy can take seconds and must not hold the write
        # lock. An object stored by a run killed before its transaction is simply reused later.
        stored = []
        seen: dict[str, int] = {}
        for v in variants:
            seen[v.label] = seen.get(v.label, 0) + 1
            label = v.label if seen[v.label] == 1 else f"{v.label}#{seen[v.label]}"  # labels match runs: unique
            try:
                artifact = self.store.put(Path(v.path)) if v.path and v.error is None else None
            except OSError as exc:
                raise EdgequantError(f"run registry {self.path}: could not store {v.path}: "
                                     f"{exc.strerror or exc}") from None
            # Absolute: the record outlives the working directory the command ran in.
            path = os.path.abspath(v.path) if v.path else None
            stored.append(dataclasses.replace(v, label=label, path=path, artifact=artifact))
        rows = [(run_id, i, v.label, v.path, v.artifact.sha256 if v.artifact else None, _json(v.metrics),
                 _json(v.recipe), v.error) for i, v in enumerate(stored)]
        root = self.path.parent

        def write(con: sqlite3.Connection) -> None:
            row = con.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise _unknown(run_id)
            # A run wrongly marked incomplete (its host name changed, say) still finishes properly.
            if row["status"] not in (RunStatus.RUNNING.value, RunStatus.INCOMPLETE.value):
                raise EdgequantError(f"run {run_id}: expected a running run to finish, found it {row['status']}")
            for v in stored:
                if v.artifact is not None:
                    obj = Path(v.artifact.object)
                    con.execute("INSERT OR IGNORE INTO artifacts (sha256, bytes, object, stored) VALUES (?, ?, ?, ?)",
                                (v.artifact.sha256, v.artifact.bytes, obj.relative_to(root).as_posix(), _now()))
            con.executemany("INSERT INTO variants (run_id, position, label, path, artifact, metrics, recipe, error) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            known = {r["role"] for r in con.execute("SELECT role FROM inputs WHERE run_id = ?", (run_id,))}
            con.executemany("INSERT INTO inputs (run_id, role, path, sha256, bytes) VALUES (?, ?, ?, ?, ?)",
                            [(run_id, i.role, i.path, i.sha256, i.bytes) for i in inputs if i.role not in known])
            con.execute("UPDATE runs SET status = ?, finished = ?, exit_code = ?, error = ?, recipe = ? WHERE id = ?",
                        (RunStatus(status).value, _now(), exit_code, error, _json(recipe), run_id))
        self._write("finish the run", write)
        return self.run(run_id)

    def fail(self, run_id: int, error: str, exit_code: int) -> RunRecord:
        """Record that the command raised: the error line and exit code, no variants."""
        return self.finish(run_id, (), None, RunStatus.FAILED, exit_code, error)

    # ------------------------------------------------------------------ reading

    def reconcile(self) -> tuple[int, ...]:
        """Mark this host's ``running`` runs whose process is gone as ``incomplete``; their ids."""
        rows = self._con.execute("SELECT id, pid, pid_start FROM runs WHERE status = ? AND host = ?",
                                 (RunStatus.RUNNING.value, host_name())).fetchall()
        dead = tuple(r["id"] for r in rows if not is_alive(r["pid"], r["pid_start"]))
        if dead:
            marks = ",".join("?" * len(dead))
            try:
                with db.transaction(self._con) as con:
                    # "AND status = running": never overwrite a run that finished meanwhile.
                    con.execute(f"UPDATE runs SET status = ? WHERE status = ? AND id IN ({marks})",
                                (RunStatus.INCOMPLETE.value, RunStatus.RUNNING.value, *dead))
            except sqlite3.OperationalError:
                pass  # a read-only registry: the records below still say incomplete
        return dead

    def runs(self, limit: int | None = 20) -> tuple[RunRecord, ...]:
        """The newest ``limit`` runs (all with None), newest first."""
        dead = self.reconcile()
        rows = self._con.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?",
                                 (-1 if limit is None else limit,)).fetchall()
        return tuple(self._record(r, dead) for r in rows)

    def run(self, run_id: int) -> RunRecord:
        dead = self.reconcile()
        row = self._con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise _unknown(run_id)
        return self._record(row, dead)

    def compare(self, a: int, b: int) -> RunDiff:
        return diff_runs(self.run(a), self.run(b))

    def _record(self, row: sqlite3.Row, dead: tuple[int, ...] = ()) -> RunRecord:
        status = RunStatus(row["status"])
        if status is RunStatus.RUNNING and row["id"] in dead:
            status = RunStatus.INCOMPLETE
        inputs = tuple(InputFile(r["role"], r["path"], r["sha256"], r["bytes"]) for r in self._con.execute(
            "SELECT * FROM inputs WHERE run_id = ? ORDER BY rowid", (row["id"],)))
        variants = tuple(self._variant(r) for r in self._con.execute(
            "SELECT v.*, a.bytes AS a_bytes, a.object AS a_object FROM variants v "
            "LEFT JOIN artifacts a ON a.sha256 = v.artifact WHERE v.run_id = ? ORDER BY v.position", (row["id"],)))
        return RunRecord(row["id"], row["command"], tuple(_load(row["argv"])), row["cwd"], status, row["started"],
                         row["finished"], row["host"], row["pid"], row["exit_code"], row["error"],
                         _load(row["recipe"]), inputs, _load(row["versions"]), _load(row["machine"]), variants)

    def _variant(self, r: sqlite3.Row) -> VariantRecord:
        artifact = None
        if r["artifact"] is not None:
            artifact = ArtifactRecord(r["artifact"], r["a_bytes"], str(self.path.parent / r["a_object"]))
        return VariantRecord(r["label"], r["path"], _load(r["metrics"]), _load(r["recipe"]), artifact, r["error"])


def _unknown(run_id: int) -> InputError:
    return InputError(f"run {run_id}: expected an id listed by 'edgequant runs list', found none")
