"""registry/: the run registry, module by module, then through the CLI, then two processes at once.

- db.py: WAL mode, schema version, refusing files that are not ours (and leaving them untouched).
- store.py: the same bytes are stored once, whatever path or run they come from.
- Registry: begin/finish lifecycle, finish in one transaction, dead processes reported incomplete.
- diff.py: differences between hand-built runs.
- The CLI: real convert/quantize runs recorded with input hashes, `runs list/show/compare`.
- Concurrency: two real `edgequant` processes record at once; one is SIGKILLed mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgequant.cli import main
from edgequant.errors import EdgequantError, InputError
from edgequant.provenance import InputFile, Provenance, collect, content_sha256
from edgequant.registry import (ENV_VAR, ArtifactRecord, Registry, RunRecord, RunStatus, VariantRecord,
                                default_registry_path, diff_runs, open_registry)
from edgequant.registry.db import APPLICATION_ID, SCHEMA_VERSION
from edgequant.registry.diff import flatten
from edgequant.registry.store import ArtifactStore


def _prov(**inputs: Path) -> Provenance:
    return collect(inputs, ["edgequant", "test"])


def _file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _rows(db: Path, sql: str, *params: object) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------- where it lives


def test_default_path_env_xdg_and_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "r.sqlite3"))
    assert default_registry_path() == tmp_path / "r.sqlite3"
    monkeypatch.setenv(ENV_VAR, "off")
    assert default_registry_path() is None
    with pytest.raises(InputError, match="EDGEQUANT_REGISTRY=off"):
        open_registry()
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_registry_path() == tmp_path / "xdg" / "edgequant" / "registry.sqlite3"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")  # the XDG spec: relative values are invalid
    assert default_registry_path() == Path.home() / ".local" / "share" / "edgequant" / "registry.sqlite3"


# --------------------------------------------------------------------------- db.py


def test_schema_version_and_wal(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "registry.sqlite3"  # the folder is made too
    with Registry(db):
        pass
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL persists in the file
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()
    assert {"runs", "inputs", "variants", "artifacts"} <= tables
    with Registry(db):  # reopening an existing registry changes nothing
        pass


def test_refuses_what_is_not_a_registry_and_leaves_it_alone(tmp_path: Path) -> None:
    junk = _file(tmp_path / "junk.sqlite3", b"this is not a database" * 50)
    with pytest.raises(InputError, match=r"expected an edgequant run registry \(SQLite, schema 1\), found a file "
                                         r"that is not an SQLite database"):
        Registry(junk)
    assert junk.read_bytes() == b"this is not a database" * 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.sqlite3"]  # no -wal, -shm or artifacts/

    other = tmp_path / "other.sqlite3"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="another application"):
        Registry(other)

    newer = tmp_path / "newer.sqlite3"
    with Registry(newer):
        pass
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(InputError, match=f"schema {SCHEMA_VERSION + 1}, written by a newer edgequant"):
        Registry(newer)

    with pytest.raises(InputError, match="found a directory"):
        Registry(tmp_path)


# --------------------------------------------------------------------------- store.py


def test_store_keeps_one_object_per_content(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    a = _file(tmp_path / "a" / "model.tflite", b"TFL3 same bytes")
    b = _file(tmp_path / "b" / "copy.tflite", b"TFL3 same bytes")
    first = store.put(a)
    obj = Path(first.object)
    assert first.sha256 == content_sha256(a) and first.bytes == a.stat().st_size
    assert obj == tmp_path / "artifacts" / first.sha256[:2] / f"{first.sha256}.tflite"
    assert obj.read_bytes() == a.read_bytes()
    inode = obj.stat().st_ino
    second = store.put(b)
    assert second == first and obj.stat().st_ino == inode  # not copied again
    objects = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert objects == [obj]  # and no temporary file left behind
    assert store.put(tmp_path / "missing.tflite") is None and store.put(tmp_path / "a") is None


# --------------------------------------------------------------------------- Registry lifecycle


def test_begin_then_finish_records_everything(tmp_path: Path) -> None:
    model = _file(tmp_path / "in" / "model.tflite", b"model bytes")
    out = _file(tmp_path / "out" / "int8.tflite", b"quantized bytes")
    db = tmp_path / "reg" / "registry.sqlite3"
    with Registry(db) as reg:
        run_id = reg.begin("quantize", _prov(model=model, data=tmp_path / "in-memory"))
        run = reg.run(run_id)
        assert run.status is RunStatus.RUNNING and run.pid == os.getpid() and run.variants == ()
        assert [i.sha256 for i in run.inputs] == [content_sha256(model), None]
        done = reg.finish(run_id, [VariantRecord("int8/litert", str(out), {"size_bytes": 15, "sqnr_db": None},
                                                 {"scheme": "int8"})], {"scheme": "int8"})
        assert done.status is RunStatus.COMPLETE and done.exit_code == 0 and done.finished
        (v,) = done.variants
        assert v.metrics == {"size_bytes": 15, "sqnr_db": None} and v.recipe == {"scheme": "int8"}
        assert v.artifact.sha256 == content_sha256(out) and Path(v.artifact.object).read_bytes() == b"quantized bytes"
        assert done.recipe == {"scheme": "int8"} and done.versions["python"]
        with pytest.raises(EdgequantError, match="expected a running run to finish, found it complete"):
            reg.finish(run_id, [])
        failed = reg.fail(reg.begin("convert", _prov()), "model not found: x.keras", 2)
        assert failed.status is RunStatus.FAILED and failed.exit_code == 2 and failed.error.startswith("model not")
        with pytest.raises(InputError, match="run 99: expected an id listed by 'edgequant runs list', found none"):
            reg.run(99)


def test_inputs_made_by_the_run_are_added_at_finish(tmp_path: Path) -> None:
    # The demo trains its own model and writes its data: they are inputs only once it has run.
    data = _file(tmp_path / "data.npz", b"data")
    made = _file(tmp_path / "model.keras", b"trained")
    with Registry(tmp_path / "registry.sqlite3") as reg:
        run_id = reg.begin("demo", _prov(data=data))
        done = reg.finish(run_id, [], None, inputs=_prov(model=made, data=tmp_path / "other.npz").inputs)
    assert [(i.role, i.sha256) for i in done.inputs] == [("data", content_sha256(data)), ("model", content_sha256(made))]


def test_two_runs_share_one_artifact(tmp_path: Path) -> None:
    a = _file(tmp_path / "a.tflite", b"identical model")
    b = _file(tmp_path / "elsewhere" / "b.tflite", b"identical model")
    db = tmp_path / "registry.sqlite3"
    with Registry(db) as reg:
        r1 = reg.finish(reg.begin("convert", _prov()), [VariantRecord("float", str(a), {})])
        r2 = reg.finish(reg.begin("convert", _prov()), [VariantRecord("float", str(b), {})])
    assert r1.variants[0].artifact == r2.variants[0].artifact
    assert r1.variants[0].path != r2.variants[0].path  # each run keeps where its command wrote the file
    assert _rows(db, "SELECT count(*) FROM artifacts") == [(1,)]
    assert len([p for p in (tmp_path / "artifacts").rglob("*.tflite")]) == 1


def test_finish_is_one_transaction(tmp_path: Path) -> None:
    """A failure while writing the second variant leaves no variant, no artifact row and the status unchanged."""
    outs = [_file(tmp_path / f"v{i}.tflite", f"model {i}".encode()) for i in range(3)]
    variants = [VariantRecord(f"v{i}", str(p), {"size_bytes": i}) for i, p in enumerate(outs)]
    db = tmp_path / "registry.sqlite3"
    with Registry(db) as reg:
        run_id = reg.begin("compare", _prov())
        con = sqlite3.connect(db)
        con.execute("CREATE TRIGGER boom BEFORE INSERT ON variants WHEN NEW.position = 1 "
                    "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
        con.commit()
        with pytest.raises(EdgequantError, match="could not finish the run: disk on fire"):
            reg.finish(run_id, variants, {"schemes": "all"})
        assert reg.run(run_id).status is RunStatus.RUNNING
        assert _rows(db, "SELECT count(*) FROM variants") == [(0,)]
        assert _rows(db, "SELECT count(*) FROM artifacts") == [(0,)]
        assert _rows(db, "SELECT recipe, finished FROM runs WHERE id = ?", run_id) == [(None, None)]
        con.execute("DROP TRIGGER boom")
        con.commit()
        con.close()
        assert [v.label for v in reg.finish(run_id, variants).variants] == ["v0", "v1", "v2"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process (until the kernel reuses it)
    return proc.pid


def test_dead_runs_are_reported_and_stored_incomplete(tmp_path: Path) -> None:
    db = tmp_path / "registry.sqlite3"
    with Registry(db) as reg:
        dead, reused, other_host, alive = (reg.begin("quantize", _prov()) for _ in range(4))
        con = sqlite3.connect(db)
        con.execute("UPDATE runs SET pid = ? WHERE id = ?", (_dead_pid(), dead))
        # Our own pid, but another process start time: the pid was reused after the run's process died.
        con.execute("UPDATE runs SET pid_start = 'another-boot:1' WHERE id = ?", (reused,))
        # Another host's processes cannot be checked from here: left running.
        con.execute("UPDATE runs SET host = 'elsewhere', pid = ? WHERE id = ?", (_dead_pid(), other_host))
        con.commit()
        con.close()
        statuses = {r.id: r.status for r in reg.runs()}
        assert statuses == {dead: RunStatus.INCOMPLETE, reused: RunStatus.INCOMPLETE,
                            other_host: RunStatus.RUNNING, alive: RunStatus.RUNNING}
    assert dict(_rows(db, "SELECT id, status FROM runs")) == {dead: "incomplete", reused: "incomplete",
                                                              other_host: "running", alive: "running"}


# --------------------------------------------------------------------------- diff.py


def _run(run_id: int, recipe: dict, inputs: dict[str, str | None], versions: dict, variants: list[VariantRecord],
         command: str = "quantize") -> RunRecord:
    files = tuple(InputFile(role, f"/data/{role}", sha, 10 if sha else None) for role, sha in inputs.items())
    return RunRecord(run_id, command, ("edgequant", command), "/w", RunStatus.COMPLETE, "2025-01-01T00:00:00+00:00",
                     None, "h", 1, 0, None, recipe, files, versions, {"host": "h", "cores": 2}, tuple(variants))


def _art(sha: str) -> ArtifactRecord:
    return ArtifactRecord(sha, 1, f"/store/{sha}")


def test_diff_lists_only_what_differs() -> None:
    a = _run(1, {"scheme": "int8", "observer": "mse", "tensors": {"conv1": {"observer": "minmax"}}},
             {"model": "aa", "calibration": "cc"}, {"python": "3.11.7", "numpy": "2.4.6"},
             [VariantRecord("float", None, {"size_bytes": 100}, artifact=_art("f")),
              VariantRecord("int8/litert", None, {"size_bytes": 30, "accuracy": 0.95, "sqnr_db": None},
                            {"observer": "mse"}, _art("x")),
              VariantRecord("fp16/tflite-converter", None, {"size_bytes": 50})])
    b = _run(2, {"scheme": "int8", "observer": "entropy", "tensors": {"conv1": {"observer": "mse"}}, "samples": 50},
             {"model": "aa", "calibration": "dd", "data": "ee"}, {"python": "3.11.7", "numpy": "2.5.0"},
             [VariantRecord("float", None, {"size_bytes": 100}, artifact=_art("f")),
              VariantRecord("int8/litert", None, {"size_bytes": 28, "accuracy": 0.96, "sqnr_db": 30.5},
                            {"observer": "entropy"}, _art("y")),
              VariantRecord("dynamic/litert", None, {"size_bytes": 29})], command="compare")
    d = diff_runs(a, b)
    assert (d.a, d.b) == (1, 2) and (d.command.a, d.command.b) == ("quantize", "compare")
    assert [(c.key, c.a, c.b) for c in d.recipe] == [("observer", "mse", "entropy"), ("samples", None, 50),
                                                      ("tensors.conv1.observer", "minmax", "mse")]
    assert [(c.key, c.a, c.b) for c in d.inputs] == [("calibration", "cc", "dd"), ("data", None, "ee")]
    assert [(c.key, c.a, c.b) for c in d.versions] == [("numpy", "2.4.6", "2.5.0")]
    assert d.machine == ()
    flt, q = d.variants
    assert flt.label == "float" and flt.same_bytes is True and flt.recipe == ()
    assert q.label == "int8/litert" and q.same_bytes is False
    deltas = {m.name: (m.a, m.b, m.delta) for m in q.metrics}
    assert deltas["size_bytes"] == (30, 28, -2) and deltas["sqnr_db"] == (None, 30.5, None)
    assert deltas["accuracy"][2] == pytest.approx(0.01)
    assert [(c.key, c.a, c.b) for c in q.recipe] == [("observer", "mse", "entropy")]
    assert d.only_a == ("fp16/tflite-converter",) and d.only_b == ("dynamic/litert",)
    assert json.dumps(d.to_dict(), allow_nan=False)
    same = diff_runs(a, a)
    assert same.recipe == same.inputs == same.versions == () and same.command is None


def test_flatten_keeps_lists_and_empty_objects_whole() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}, "f": [3]}) == {"a.b": 1, "a.c.d": [1, 2], "e": {},
                                                                              "f": [3]}


# --------------------------------------------------------------------------- capture.py


def test_capture_knows_every_model_producing_result(tmp_path: Path) -> None:
    """What tune, qat and prune record (their commands are too slow to run here); field names
    are checked against the real result classes."""
    import math

    from edgequant.qat.records import LossKind, PruneResult, PruneSchedule, QATResult, SizeReport
    from edgequant.registry import capture
    from edgequant.tune.records import Budget, Metric, Objective, Trial, TuneResult
    from edgequant.types import Scheme

    ran = {"version": 2, "scheme": "int8", "tensors": {"dense": {"precision": "float"}}}
    best = Trial(4, "layers", "dense -> float", {"scheme": "int8"}, "ok", ran_recipe=ran, metric=0.95, drop=0.4,
                 accuracy=0.95, sqnr_db=math.inf, cosine=0.999, size_bytes=1000, size_ratio=0.3, latency_ms=0.2,
                 latency_ratio=0.6)
    tune = TuneResult("m.keras", "d.npz", Budget(Metric.TOP1, 0.5, 0.954), Objective.SIZE, 3000, 0.954, best, True,
                      None, (), (), (), (best,) * 5, out_dir=str(tmp_path / "tune"))
    recipe, (v,) = capture(tune, {"schemes": "all"})
    assert recipe == {"schemes": "all", "metric": "top1", "max_drop": 0.5, "objective": "size", "best": ran}
    assert v.label == "best" and v.path == str(tmp_path / "tune" / "best.tflite") and v.recipe == ran
    assert v.metrics["sqnr_db"] is None and v.metrics["trials"] == 5 and v.metrics["met"] == 1

    qat = QATResult(Scheme.W4A8, tmp_path / "q.tflite", b"1234", LossKind.LABELS, (), 2, "val.npz", 100, 0.97,
                    0.96, 0.955, 0.99, 41.0, (), (), (), 3, 9.5)
    recipe, (v,) = capture(qat, {"epochs": 3, "resize": (28, 28)})
    assert recipe == {"epochs": 3, "resize": [28, 28]} and v.label == "w4a8/qat"
    assert v.metrics["accuracy"] == 0.955 and v.metrics["size_bytes"] == 4 and v.path == str(tmp_path / "q.tflite")

    size = SizeReport(100, 90, 100, 30, 200, 60)
    prune = PruneResult(tmp_path / "p.keras", b"k", 0.8, PruneSchedule.POLYNOMIAL, LossKind.DISTILL, (), (), 0.79,
                        size, None, 0.97, 0.96, 12.0)
    _, (v,) = capture(prune, {"sparsity": 0.8})
    assert v.label == "pruned" and v.metrics["gzip_ratio"] == 3.0 and v.metrics["sparsity"] == 0.79
    with pytest.raises(TypeError, match="does not know what to record of a str"):
        capture("a result")


# --------------------------------------------------------------------------- the CLI


def _recorded_id(out: str) -> int:
    line = next(line for line in out.splitlines() if line.startswith("recorded run "))
    return int(line.split()[2])


def test_cli_records_runs_and_shows_them(float_tflite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    reg = tmp_path / "reg" / "registry.sqlite3"
    flt = tmp_path / "float.tflite"
    assert main(["convert", str(float_tflite), "-o", str(flt), "--registry", str(reg)]) == 0
    out = capsys.readouterr().out
    assert f"in {reg}" in out.splitlines()[-1]
    convert_id = _recorded_id(out)
    runs = {}
    for scheme in ("dynamic", "weight-only-int8"):
        q = tmp_path / f"{scheme}.tflite"
        assert main(["quantize", str(flt), "--scheme", scheme, "-o", str(q), "--registry", str(reg)]) == 0
        runs[scheme] = _recorded_id(capsys.readouterr().out)

    with Registry(reg) as registry:
        conv = registry.run(convert_id)
        dyn = registry.run(runs["dynamic"])
    # Inputs by content hash, outputs stored by content hash.
    assert conv.command == "convert" and conv.argv[:2] == ("edgequant", "convert")
    assert [(i.role, i.sha256) for i in conv.inputs] == [("model", content_sha256(float_tflite))]
    assert [(i.role, i.sha256) for i in dyn.inputs] == [("model", content_sha256(flt))]
    (v,) = dyn.variants
    assert v.label == "dynamic/litert" and v.path == str(tmp_path / "dynamic.tflite")
    assert v.artifact.sha256 == content_sha256(tmp_path / "dynamic.tflite")
    assert v.metrics["size_bytes"] == (tmp_path / "dynamic.tflite").stat().st_size
    assert dyn.recipe["scheme"] == "dynamic" and dyn.status is RunStatus.COMPLETE and dyn.exit_code == 0
    # convert of a float .tflite writes the same bytes: one stored object for both.
    assert conv.variants[0].artifact.sha256 == content_sha256(flt)

    assert main(["runs", "list", "--registry", str(reg)]) == 0
    listing = capsys.readouterr().out
    lines = listing.splitlines()
    assert lines[0].split()[:4] == ["id", "started", "(UTC)", "status"]
    assert [line.split()[0] for line in lines[2:5]] == [str(runs["weight-only-int8"]), str(runs["dynamic"]),
                                                        str(convert_id)]
    assert "complete" in lines[2] and "quantize float.tflite --scheme weight-only-int8" in lines[2]
    assert "3 run(s)" in listing

    assert main(["runs", "show", str(runs["dynamic"]), "--registry", str(reg)]) == 0
    shown = capsys.readouterr().out
    assert f"run {runs['dynamic']}: quantize, complete (exit 0)" in shown
    assert content_sha256(flt) in shown and v.artifact.object in shown and "dynamic/litert" in shown
    assert main(["runs", "show", str(runs["dynamic"]), "--json", "--registry", str(reg)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["variants"][0]["artifact"]["sha256"] == v.artifact.sha256 and data["status"] == "complete"

    a, b = runs["dynamic"], runs["weight-only-int8"]
    assert main(["runs", "compare", str(a), str(b), "--registry", str(reg)]) == 0
    diff = capsys.readouterr().out
    assert f"run {a} (A) vs run {b} (B)" in diff
    scheme_row = next(line for line in diff.splitlines() if line.strip().startswith("scheme "))
    assert scheme_row.split() == ["scheme", "dynamic", "weight-only-int8"]
    assert f"only in run {a}: dynamic/litert" in diff and f"only in run {b}: weight-only-int8/litert" in diff
    assert "inputs" not in diff  # same model bytes: no input difference
    assert main(["runs", "compare", str(convert_id), str(convert_id), "--json", "--registry", str(reg)]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["recipe"] == [] and same["variants"][0]["same_bytes"] is True


def test_cli_failed_and_unrecorded_runs(float_tflite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    reg = tmp_path / "registry.sqlite3"
    assert main(["convert", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "m.tflite"),
                 "--registry", str(reg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err  # the command's own one-line error, nothing else
    with Registry(reg) as registry:
        (run,) = registry.runs()
    assert run.status is RunStatus.FAILED and run.exit_code == 2 and "not found" in run.error and not run.variants

    assert main(["convert", str(float_tflite), "-o", str(tmp_path / "f.tflite"), "--no-registry"]) == 0
    assert "recorded run" not in capsys.readouterr().out
    with Registry(reg) as registry:
        assert len(registry.runs()) == 1


def test_cli_default_registry_failure_warns_and_keeps_the_model(float_tflite: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ENV_VAR, str(_file(tmp_path / "junk.sqlite3", b"not sqlite at all")))
    out = tmp_path / "f.tflite"
    assert main(["convert", str(float_tflite), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert out.exists() and "recorded run" not in captured.out
    assert captured.err.startswith("edgequant: warning: run not recorded: expected an edgequant run registry")
    assert captured.err.count("\n") == 1

    monkeypatch.setenv(ENV_VAR, "off")
    assert main(["convert", str(float_tflite), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "recorded run" not in captured.out and captured.err == ""


# --------------------------------------------------------------------------- two processes at once

# A real `edgequant` process that, once its run has begun, waits for a gate file to appear: it
# stays `running` for as long as the test needs, with no timing guesses.
GATED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import edgequant.registry as registry
    from edgequant.cli import main

    begin = registry.Registry.begin
    def gated_begin(self, *args, **kwargs):
        run_id = begin(self, *args, **kwargs)
        while not Path(sys.argv[1]).exists():
            time.sleep(0.05)
        return run_id
    registry.Registry.begin = gated_begin
    sys.exit(main(sys.argv[2:]))
""")


def _wait_for(predicate, what: str, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _running_pids(db: Path) -> dict[int, int]:
    if not db.exists():
        return {}
    try:
        return {pid: run_id for run_id, pid in _rows(db, "SELECT id, pid FROM runs WHERE status = 'running'")}
    except sqlite3.OperationalError:  # the schema is being created by one of them right now
        return {}


def test_two_processes_at_once_one_killed(float_tflite: Path, tmp_path: Path) -> None:
    db = tmp_path / "shared" / "registry.sqlite3"
    env = {**os.environ, ENV_VAR: str(db)}
    gates = {name: tmp_path / f"{name}.go" for name in ("survivor", "victim")}
    procs = {name: subprocess.Popen([sys.executable, "-c", GATED, str(gates[name]), "quantize", str(float_tflite),
                                     "--scheme", "dynamic", "-o", str(tmp_path / f"{name}.tflite")],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("survivor", "victim")}
    try:
        # Both began (the registry was created by whichever came first) and are running now.
        running = _wait_for(lambda: (lambda r: r if all(p.pid in r for p in procs.values()) else None)(
            _running_pids(db)), "both runs to be recorded as running")
        victim_id, survivor_id = running[procs["victim"].pid], running[procs["survivor"].pid]
        procs["victim"].send_signal(signal.SIGKILL)
        assert procs["victim"].wait(timeout=60) == -signal.SIGKILL
        gates["survivor"].touch()
        out, err = procs["survivor"].communicate(timeout=300)
        assert procs["survivor"].returncode == 0, err
        assert f"recorded run {survivor_id} in {db}" in out
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

    with Registry(db) as registry:
        survivor, victim = registry.run(survivor_id), registry.run(victim_id)
        listed = {r.id: r.status for r in registry.runs()}
    assert survivor.status is RunStatus.COMPLETE and survivor.exit_code == 0
    (v,) = survivor.variants
    assert v.label == "dynamic/litert" and v.artifact.sha256 == content_sha256(tmp_path / "survivor.tflite")
    assert victim.status is RunStatus.INCOMPLETE and victim.variants == () and victim.finished is None
    assert listed == {survivor_id: RunStatus.COMPLETE, victim_id: RunStatus.INCOMPLETE}
    # Stored, not just shown: the next reader finds it incomplete without checking processes.
    assert _rows(db, "SELECT status FROM runs WHERE id = ?", victim_id) == [("incomplete",)]
    assert _rows(db, "SELECT count(*) FROM variants WHERE run_id = ?", victim_id) == [(0,)]
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert not (tmp_path / "victim.tflite").exists()
