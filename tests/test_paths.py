"""No output may overwrite an input, and a command's files are written all or none.

Each clash case runs a command that would succeed and overwrite its input without the check
(cli/paths.py): the test asserts exit 2, one line naming both arguments, and the input's bytes
unchanged. The write cases make one write of a command fail (a directory in the way, no space
left, a read-only file system) and assert that none of its files is left behind.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from clitools import one_line, run_cli
from edgequant import _util
from edgequant.cli import build_parser, main
from edgequant.cli.paths import COMMANDS, check_paths
from edgequant.errors import InputError

CLASH = r"expected outputs that overwrite no input and no other output, found the same file"




def no_temp_files(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*.part")]
    assert not left, f"temporary files left: {left}"


@pytest.fixture
def work(tmp_path: Path, float_tflite: Path, seed_cnn_path: Path, digits: dict[str, Path]) -> Path:
    """Copies of the session's models and data: a broken check must not destroy the shared fixtures."""
    shutil.copy(float_tflite, tmp_path / "in.tflite")
    shutil.copy(seed_cnn_path, tmp_path / "model.keras")
    shutil.copy(digits["calibration"], tmp_path / "calib.npz")
    with np.load(digits["test"]) as z:
        np.savez(tmp_path / "test.npz", x=z["x"][:40], y=z["y"][:40])
        np.save(tmp_path / "in.npy", z["x"][:3])
    return tmp_path


# --------------------------------------------------------------------------- outputs onto inputs

CLASHES = [
    ("convert-onto-model", lambda w: ["convert", w / "model.keras", "-o", w / "model.keras"],
     "model.keras", (r"-o/--output .*model\.keras is also the input MODEL",)),
    ("quantize-onto-model", lambda w: ["quantize", w / "in.tflite", "--scheme", "dynamic", "-o", w / "in.tflite"],
     "in.tflite", (r"-o/--output .*in\.tflite is also the input MODEL",)),
    ("quantize-onto-calibration",
     lambda w: ["quantize", w / "in.tflite", "--scheme", "dynamic", "--calibration", w / "calib.npz",
                "-o", w / "calib.npz"], "calib.npz", (r"is also the input --calibration",)),
    ("run-onto-input", lambda w: ["run", w / "in.tflite", "--input", w / "in.npy", "-o", w / "in.npy"],
     "in.npy", (r"-o/--output .*in\.npy is also the input --input",)),
    ("eval-json-onto-model", lambda w: ["eval", w / "in.tflite", "--runs", "1", "--json", w / "in.tflite"],
     "in.tflite", (r"--json .*in\.tflite is also the input MODEL",)),
    ("eval-json-onto-data",
     lambda w: ["eval", w / "in.tflite", "--data", w / "test.npz", "--runs", "1", "--json", w / "test.npz"],
     "test.npz", (r"--json .* is also the input --data",)),
    ("prune-onto-model",
     lambda w: ["prune", w / "model.keras", "--data", w / "test.npz", "--sparsity", "0.5", "--epochs", "1",
                "-o", w / "model.keras"], "model.keras", (r"is also the input MODEL",)),
    ("qat-json-onto-data",
     lambda w: ["qat", w / "model.keras", "--data", w / "test.npz", "--epochs", "1", "-o", w / "q.tflite",
                "--json", w / "test.npz"], "test.npz", (r"--json .* is also the input --data",)),
    ("convert-through-a-symlink",
     lambda w: (os.symlink(w / "model.keras", w / "link.keras"),
                ["convert", w / "link.keras", "-o", w / "model.keras"])[1], "model.keras",
     (r"is also the input MODEL",)),
    ("quantize-onto-a-hard-link",
     lambda w: (os.link(w / "in.tflite", w / "hard.tflite"),
                ["quantize", w / "in.tflite", "--scheme", "dynamic", "-o", w / "hard.tflite"])[1], "in.tflite",
     (r"is also the input MODEL",)),
    ("quantize-onto-the-registry",
     lambda w: ["quantize", w / "in.tflite", "--scheme", "dynamic", "--registry", w / "calib.npz",
                "-o", w / "calib.npz"], "calib.npz", (r"is also the input --registry",)),
    ("compare-out-holding-the-model",
     lambda w: (shutil.copy(w / "in.tflite", w / "cmp.tflite"), os.mkdir(w / "cmp"),
                shutil.move(w / "cmp.tflite", w / "cmp" / "float.tflite"),
                ["compare", w / "cmp" / "float.tflite", "--data", w / "test.npz", "--schemes", "dynamic",
                 "--engines", "litert", "--runs", "1", "--out", w / "cmp"])[-1], "cmp/float.tflite",
     (r"--out .*cmp: compare writes float\.tflite there, which is MODEL",)),
    ("tune-out-holding-the-data",
     lambda w: (os.mkdir(w / "tune"), shutil.copy(w / "test.npz", w / "tune" / "trials.json"),
                ["tune", w / "in.tflite", "--data", w / "tune" / "trials.json", "--max-drop", "1", "--runs", "0",
                 "--objective", "size", "--out", w / "tune"])[-1], "tune/trials.json",
     (r"tune writes trials\.json there, which is --data",)),
]


@pytest.mark.parametrize(("build", "kept", "patterns"), [pytest.param(b, k, p, id=i) for i, b, k, p in CLASHES])
def test_output_onto_an_input_is_refused_before_any_work(build, kept: str, patterns: tuple[str, ...], work: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = build(work)
    before = (work / kept).read_bytes()
    code, out, err = run_cli(argv, capsys)
    one_line(code, err, CLASH if "--out" not in argv else "expected an --out folder", *patterns)
    assert (work / kept).read_bytes() == before
    assert not out  # refused before any work: nothing printed, nothing recorded
    no_temp_files(work)


def test_report_onto_its_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`report c.json -o c.json` would replace the result with its page."""
    src = tmp_path / "c.json"
    src.write_text(json.dumps({"model": "m", "float": {}, "variants": []}))
    before = src.read_bytes()
    code, _, err = run_cli(["report", src, "-o", src], capsys)
    one_line(code, err, CLASH, r"-o/--output .*c\.json is also the input SOURCE")
    assert src.read_bytes() == before


def test_two_outputs_on_one_path(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`quantize -o same.tflite --save-recipe same.tflite`: the recipe would replace the model."""
    same = work / "same.tflite"
    code, out, err = run_cli(["quantize", work / "in.tflite", "--scheme", "dynamic", "-o", same,
                              "--save-recipe", same], capsys)
    one_line(code, err, CLASH, r"--save-recipe .*same\.tflite is also -o/--output")
    assert not same.exists() and not out
    code, _, err = run_cli(["analyze", work / "in.tflite", "--reference", work / "in.tflite", "--data",
                            work / "test.npz", "--json", work / "a.json", "--report", work / "a.json"], capsys)
    one_line(code, err, CLASH, r"--report .*a\.json is also --json")


def test_file_inside_an_input_folder(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An output over a file of a SavedModel or an image folder breaks that input; a new file beside is fine."""
    folder = work / "saved"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    code, _, err = run_cli(["convert", folder, "-o", folder / "saved_model.pb"], capsys)
    one_line(code, err, r"is a file inside the input folder")
    assert (folder / "saved_model.pb").read_bytes() == b"\x08\x01"


def _args(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args([str(a) for a in argv])
    args.argv = argv
    return args


@pytest.mark.parametrize("argv", [
    ["convert", "m.keras", "-o", "m.tflite"],
    ["quantize", "m.tflite", "--scheme", "int8", "--calibration", "c.npz", "-o", "q.tflite", "--save-recipe", "r.json"],
    ["compare", "m.keras", "--data", "d.npz", "--out", "."],  # --out holds the inputs, but writes none of them
    ["report", "out"],  # the page goes into the source folder: its default, not a clash
    ["analyze", "q.tflite", "--reference", "m.keras", "--data", "d.npz", "--json", "a.json"],
], ids=["convert", "quantize", "compare-out-beside-inputs", "report-folder", "analyze-default-page"])
def test_no_clash_is_not_refused(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("m.keras", "m.tflite", "c.npz", "d.npz", "q.tflite"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "compare.json").write_text("{}")
    (tmp_path / "out" / "report.html").write_text("old page")
    check_paths(_args(argv))  # raises on a clash


def test_every_command_with_files_is_in_the_table() -> None:
    """A new command with a path argument must declare it in cli/paths.COMMANDS."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        if name == "runs":
            continue
        dests = {a.dest for a in p._actions if a.type is not None and getattr(a.type, "__name__", "") == "path"}
        io = COMMANDS[name]
        declared = set(io.inputs) | {o.dest for o in io.outputs}
        assert dests - {"registry"} <= declared, f"{name}: {sorted(dests - declared)} not in cli/paths.COMMANDS"


# --------------------------------------------------------------------------- writing

def test_output_kinds_are_checked_before_any_work(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = work / "adir"
    folder.mkdir()
    code, out, err = run_cli(["quantize", work / "in.tflite", "--scheme", "dynamic", "-o", work / "out.tflite",
                              "--save-recipe", folder], capsys)
    one_line(code, err, r"--save-recipe .*adir: expected a file path, found a directory")
    assert not (work / "out.tflite").exists() and not out
    code, _, err = run_cli(["eval", work / "in.tflite", "--runs", "1", "--json", work / "test.npz" / "e.json"],
                           capsys)
    one_line(code, err, r"--json .*: expected a folder at .*test\.npz, found a file")
    code, _, err = run_cli(["compare", work / "in.tflite", "--data", work / "test.npz", "--out", work / "in.npy"],
                           capsys)
    one_line(code, err, r"--out .*in\.npy: expected a folder \(existing or new\), found a file")
    code, _, err = run_cli(["convert", work / "in.tflite", "-o", ""], capsys)
    one_line(code, err, r"convert: argument -o/--output: expected a path, found an empty string")
    no_temp_files(work)


def _fail_writes(monkeypatch: pytest.MonkeyPatch, name_part: str, err: int) -> None:
    """Make the write of any file whose name contains ``name_part`` fail with OS error ``err``."""
    real = _util.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if name_part in kwargs.get("prefix", ""):
            raise OSError(err, os.strerror(err))
        return real(*args, **kwargs)

    monkeypatch.setattr(_util.tempfile, "mkstemp", mkstemp)


def test_quantize_writes_model_and_recipe_or_neither(work: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The recipe's write fails (no space left) after the model's: the model is not left behind."""
    _fail_writes(monkeypatch, "r.json", errno.ENOSPC)
    out = work / "new" / "q.tflite"
    code, _, err = run_cli(["quantize", work / "in.tflite", "--scheme", "dynamic", "--no-registry", "-o", out,
                            "--save-recipe", work / "new" / "r.json"], capsys)
    one_line(code, err, r"cannot write .*r\.json: expected a writable file path, found no space left on the device")
    assert not out.exists() and not (work / "new").exists()  # nor the folder made for them
    no_temp_files(work)
    monkeypatch.undo()
    code, _, err = run_cli(["quantize", work / "in.tflite", "--scheme", "dynamic", "--no-registry", "-o", out,
                            "--save-recipe", work / "new" / "r.json"], capsys)
    assert code == 0, err
    assert out.read_bytes()[4:8] == b"TFL3" and json.loads((work / "new" / "r.json").read_text())["scheme"]


@pytest.mark.slow
def test_analyze_writes_json_and_page_or_neither(work: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import edgequant

    edgequant.quantize(work / "in.tflite", "dynamic", output=work / "q.tflite")
    _fail_writes(monkeypatch, "a.html", errno.EROFS)
    code, _, err = run_cli(["analyze", work / "q.tflite", "--reference", work / "in.tflite", "--data",
                            work / "test.npz", "--samples", "10", "--top-k", "0", "--runs", "0",
                            "--json", work / "a.json"], capsys)
    one_line(code, err, r"cannot write .*a\.html: expected a writable file path, found a read-only file system")
    assert not (work / "a.json").exists()
    no_temp_files(work)


def test_atomic_write_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match=r"expected a file path, found a directory"):
        _util.atomic_write(tmp_path, b"x")
    with pytest.raises(InputError, match=r"expected a file path, found an empty string"):
        _util.atomic_write("", b"x")  # type: ignore[arg-type]
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"found a file where a folder is needed"):
        _util.atomic_write(tmp_path / "f" / "g.bin", b"x")
    for code, found in ((errno.EACCES, "no permission to write there"), (errno.EROFS, "a read-only file system"),
                        (errno.ENOSPC, "no space left on the device"), (errno.EEXIST, "a file where a folder")):
        _fail_writes(monkeypatch, "out.bin", code)
        with pytest.raises(InputError, match=f"cannot write .*out.bin: expected a writable file path, found {found}"):
            _util.atomic_write(tmp_path / "out.bin", b"x")
        monkeypatch.undo()
    # The data's write itself fails half-way (a full disk): no temporary file is left.
    monkeypatch.setattr(_util.os, "chmod", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(InputError, match="no space left"):
        _util.atomic_write(tmp_path / "out.bin", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    """docs/cli.md: a missing parent folder of an output is created (and removed again if a write fails)."""
    target = tmp_path / "a" / "b" / "out.bin"
    _util.atomic_write(target, b"x")
    assert target.read_bytes() == b"x"
    with pytest.raises(RuntimeError), _util.staged_writes():
        _util.atomic_write(tmp_path / "c" / "d" / "one.bin", b"1")
        _util.atomic_write(tmp_path / "two.bin", b"2")
        raise RuntimeError("a later step fails")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_staged_writes_commit_together(tmp_path: Path) -> None:
    (tmp_path / "one.bin").write_bytes(b"old")
    with _util.staged_writes():
        _util.atomic_write(tmp_path / "one.bin", b"new")
        _util.atomic_write(tmp_path / "two.bin", b"2")
        assert (tmp_path / "one.bin").read_bytes() == b"old" and not (tmp_path / "two.bin").exists()
    assert (tmp_path / "one.bin").read_bytes() == b"new" and (tmp_path / "two.bin").read_bytes() == b"2"
    no_temp_files(tmp_path)


# --------------------------------------------------------------------------- usage errors

@pytest.mark.parametrize(("argv", "pattern"), [
    ([], r"^edgequant: error: the following arguments are required: command \(see edgequant --help\)$"),
    (["quantize"], r"^edgequant: error: quantize: the following arguments are required: model, -o/--output"),
    (["frobnicate"], r"argument command: invalid choice: 'frobnicate'"),
    (["eval", "m.tflite", "--colour"], r"unrecognized arguments: --colour"),
    (["eval", "m.tflite", "--threads", "two"], r"eval: argument --threads: expected a whole number, found 'two'"),
    (["runs", "show"], r"runs show: the following arguments are required: id"),
    (["convert", "m.keras", "-o", "x", "--registry", "r", "--no-registry"], r"not allowed with argument"),
])
def test_usage_errors_are_one_line(argv: list[str], pattern: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(argv, capsys)
    line = one_line(code, err)
    assert re.search(pattern, line), line
    assert "usage:" not in err and not out


def test_help_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["--help"], capsys)
    assert code == 0 and out.startswith("usage: edgequant") and not err
    code, out, err = run_cli(["quantize", "--help"], capsys)
    assert code == 0 and "--save-recipe" in out and not err
