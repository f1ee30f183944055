"""The registry's SQLite file: schema, connection settings, and the checks that it is ours.

Settings and why:
- WAL journal: readers never block the one writer, so ``runs list`` works while runs are being
  recorded, and a writer killed mid-transaction leaves the database as of its last commit.
- busy_timeout 30 s: two commands that finish at the same moment wait for each other's
  (millisecond) transaction instead of failing with "database is locked".
- Explicit ``BEGIN IMMEDIATE`` transactions (autocommit mode otherwise): the write lock is taken
  at the start, so a transaction never fails halfway on an upgrade from a read lock.
- ``application_id`` marks the file as an edgequant registry and ``user_version`` holds the schema
  version, so a stranger's database or one from a newer edgequant is refused, never altered.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from edgequant.errors import InputError

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "connect", "transaction"]

SCHEMA_VERSION = 1
APPLICATION_ID = 0x45515247  # "EQRG"
BUSY_TIMEOUT_MS = 30_000
_HEADER = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    command     TEXT NOT NULL,
    argv        TEXT NOT NULL,               -- JSON array
    cwd         TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed', 'incomplete')),
    started     TEXT NOT NULL,               -- ISO 8601, UTC
    finished    TEXT,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    pid_start   TEXT,                        -- boot id and start time of the process (PID reuse)
    exit_code   INTEGER,
    error       TEXT,
    recipe      TEXT,                        -- JSON object
    versions    TEXT NOT NULL,               -- JSON object
    machine     TEXT NOT NULL                -- JSON object
);
CREATE INDEX runs_status ON runs (status);
CREATE TABLE inputs (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    role        TEXT NOT NULL,
    path        TEXT NOT NULL,
    sha256      TEXT,
    bytes       INTEGER,
    PRIMARY KEY (run_id, role)
);
CREATE TABLE artifacts (
    sha256      TEXT PRIMARY KEY,
    bytes       INTEGER NOT NULL,
    object      TEXT NOT NULL,               -- relative to the database's folder
    stored      TEXT NOT NULL                -- when first stored, ISO 8601, UTC
);
CREATE TABLE variants (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    position    INTEGER NOT NULL,
    label       TEXT NOT NULL,
    path        TEXT,
    artifact    TEXT REFERENCES artifacts (sha256),
    metrics     TEXT NOT NULL,               -- JSON object of numbers and nulls
    recipe      TEXT,                        -- JSON object
    error       TEXT,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX variants_artifact ON variants (artifact);
"""


def _expected(found: str) -> InputError:
    return InputError(f"expected an edgequant run registry (SQLite, schema {SCHEMA_VERSION}), found {found}")


def _check_file(path: Path) -> None:
    """Refuse what is plainly not a registry before SQLite touches it (and perhaps writes to it)."""
    if path.is_dir():
        raise _expected(f"a directory: {path}")
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            head = fh.read(len(_HEADER))
        if head != _HEADER:
            raise _expected(f"a file that is not an SQLite database: {path}")


def connect(path: Path, create: bool = True) -> sqlite3.Connection:
    """Open (and with ``create``, make) the registry at ``path``; InputError if it is not usable."""
    path = Path(path)
    try:
        _check_file(path)
        if not path.exists():
            if not create:
                raise InputError(f"expected a run registry at {path}, found no file")
            path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"run registry {path}: expected a file edgequant can read and write, found "
                         f"{exc.strerror or exc}") from None
    con = None
    try:
        # isolation_level=None: autocommit; every write goes through transaction() below.
        con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _check_schema(con, path, create)
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise InputError(f"run registry {path}: expected a file system where SQLite can use WAL mode, "
                             f"found journal mode {mode}")
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable at checkpoints, never corrupt
        return con
    except sqlite3.DatabaseError as exc:
        if con is not None:
            con.close()
        raise _expected(f"{exc} ({path})") from None
    except BaseException:
        if con is not None:
            con.close()
        raise


def _check_schema(con: sqlite3.Connection, path: Path, create: bool) -> None:
    app = con.execute("PRAGMA application_id").fetchone()[0]
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if app == APPLICATION_ID and version == SCHEMA_VERSION:
        return
    if app == APPLICATION_ID and version > SCHEMA_VERSION:
        raise _expected(f"schema {version}, written by a newer edgequant ({path})")
    if app != 0 or version != 0 or _table_count(con):
        raise _expected(f"an SQLite database of another application ({path})")
    if not create:
        raise _expected(f"an empty SQLite database ({path})")
    with transaction(con):
        # Re-read under the write lock: another process may have created the schema meanwhile.
        if con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
            return
        if _table_count(con):
            raise _expected(f"an SQLite database of another application ({path})")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                con.execute(statement)
        con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _table_count(con: sqlite3.Connection) -> int:
    return con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]


@contextlib.contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: all of it commits, or (on any exception, or a killed process) none."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
