"""No output may overwrite an input, or another output of the same command.

Every command's file arguments are declared once in ``COMMANDS``: which name inputs,
which name files it writes, and which name folders it writes into (with the names it
writes there). ``check_paths`` compares them all before any work and refuses a clash
with one line (exit 2), so `edgequant convert model.keras -o model.keras` never costs
the user the model. It also refuses outputs that cannot be written as asked: an
existing directory as a file output, an existing file as an --out folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from edgequant.errors import InputError

__all__ = ["COMMANDS", "Io", "Out", "Folder", "check_paths"]


@dataclasses.dataclass(frozen=True)
class Out:
    """A file the command writes: the argument holding it, or ``default`` when that is left out."""

    dest: str
    default: Callable[[argparse.Namespace], Path | None] | None = None


@dataclasses.dataclass(frozen=True)
class Folder:
    """A folder the command writes into, and the names (glob patterns) of the files it writes there."""

    dest: str
    writes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Io:
    """``inputs`` are read; an input that is a folder is read whole, unless ``reads`` names the files
    (glob patterns) the command reads in it."""

    inputs: tuple[str, ...]
    outputs: tuple[Out | Folder, ...] = ()
    reads: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def read_in(self, dest: str, name: str) -> bool:
        patterns = dict(self.reads).get(dest, ("*",))
        return any(fnmatch.fnmatch(name, p) for p in patterns)


def _analysis_page(args: argparse.Namespace) -> Path | None:
    """analyze's HTML report when --report is left out (cli._analysis_report)."""
    if args.no_report:
        return None
    if args.report is not None:
        return args.report
    return args.json.with_suffix(".html") if args.json else Path(f"{args.model.stem}-analysis.html")


def _report_page(args: argparse.Namespace) -> Path | None:
    from edgequant.report.html import default_output

    return args.output if args.output is not None else default_output(args.source[0])


_REPORT = ("report.html",)
COMPARE_WRITES = ("compare.json", "compare.csv", "*.tflite") + _REPORT
TUNE_WRITES = ("best.tflite", "best.json", "best-recipe.json", "trials.json") + _REPORT
DEMO_WRITES = ("seed_cnn.keras", "seed_cnn_pruned.keras", "digits_test.npz", "digits_calibration.npz") \
    + COMPARE_WRITES

# Each command's file arguments (argparse dests). "registry" is an input of every recorded command:
# writing a model over the run registry would lose every run.
COMMANDS: dict[str, Io] = {
    "convert": Io(("model", "data", "registry"), (Out("output"),)),
    "calibrate": Io(("model", "data"), (Out("output"),)),
    "quantize": Io(("model", "recipe", "calibration", "stats", "registry"), (Out("output"), Out("save_recipe"))),
    "run": Io(("model", "input"), (Out("output"),)),
    "eval": Io(("model", "data", "reference"), (Out("json"),)),
    "analyze": Io(("model", "reference", "data"), (Out("json"), Out("report", _analysis_page))),
    "compare": Io(("model", "data", "calibration", "registry"), (Folder("out", COMPARE_WRITES),)),
    "qat": Io(("model", "data", "val", "registry"), (Out("output"), Out("json"))),
    "prune": Io(("model", "data", "val", "registry"), (Out("output"), Out("json"))),
    "tune": Io(("model", "data", "calibration", "registry"), (Folder("out", TUNE_WRITES),)),
    "demo": Io(("registry",), (Folder("out", DEMO_WRITES),)),
    # A source folder is read one level deep for result JSON; its report.html is the default output.
    "report": Io(("source",), (Out("output", _report_page),), reads=(("source", ("*.json",)),)),
}

# How each dest is spelled on the command line, for the message.
_FLAGS = {"model": "MODEL", "source": "SOURCE", "output": "-o/--output", "save_recipe": "--save-recipe",
          "no_report": "--no-report"}


def _flag(dest: str) -> str:
    return _FLAGS.get(dest, "--" + dest.replace("_", "-"))


def _same(a: Path, b: Path) -> bool:
    """The same file: os.path.samefile when both exist (links, ../ and hard links included), else the
    same resolved path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _values(args: argparse.Namespace, dest: str) -> list[Path]:
    value = getattr(args, dest, None)
    if value is None:
        return []
    return [Path(v) for v in value] if isinstance(value, (list, tuple)) else [Path(value)]


def _registry(args: argparse.Namespace) -> list[Path]:
    """The registry the command will record in, unless recording is off."""
    if getattr(args, "no_registry", False):
        return []
    if args.registry is not None:
        return [args.registry]
    from edgequant.registry import default_registry_path

    path = default_registry_path()
    return [] if path is None else [path]


def _inputs(args: argparse.Namespace, io: Io) -> list[tuple[str, Path]]:
    found = []
    for dest in io.inputs:
        paths = _registry(args) if dest == "registry" and hasattr(args, "registry") else _values(args, dest)
        found += [(dest, p) for p in paths]
    return found


def _files(args: argparse.Namespace, io: Io) -> list[tuple[str, Path]]:
    found = []
    for out in io.outputs:
        if isinstance(out, Out):
            paths = _values(args, out.dest)
            if not paths and out.default is not None:
                paths = [p for p in [out.default(args)] if p is not None]
            found += [(out.dest, p) for p in paths]
    return found


def _folders(args: argparse.Namespace, io: Io) -> list[tuple[str, Path, tuple[str, ...]]]:
    return [(out.dest, p, out.writes) for out in io.outputs if isinstance(out, Folder) for p in _values(args, out.dest)]


def _written_in(folder: Path, writes: tuple[str, ...], path: Path) -> bool:
    """Whether a file the command writes into ``folder`` would be ``path``."""
    return _same(path.parent, folder) and any(fnmatch.fnmatch(path.name, w) for w in writes)


def _clash(out_flag: str, out: Path, in_flag: str, inp: Path, how: str) -> InputError:
    return InputError(f"{out_flag} {out} {how} {in_flag} {inp}: expected outputs that overwrite no input and "
                      "no other output, found the same file")


def _check_kinds(files: Iterable[tuple[str, Path]], folders: Iterable[tuple[str, Path, tuple[str, ...]]]) -> None:
    for dest, path in files:
        if path.is_dir():
            raise InputError(f"{_flag(dest)} {path}: expected a file path, found a directory")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise InputError(f"{_flag(dest)} {path}: expected a folder at {parent}, found a file")
                break
    for dest, path, _ in folders:
        if path.exists() and not path.is_dir():
            raise InputError(f"{_flag(dest)} {path}: expected a folder (existing or new), found a file")


def check_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, outputs that would overwrite an input or each other (one line, exit 2)."""
    io = COMMANDS.get(args.command)
    if io is None:
        return
    inputs, files, folders = _inputs(args, io), _files(args, io), _folders(args, io)
    _check_kinds(files, folders)
    for dest, out in files:
        for in_dest, inp in inputs:
            if _same(out, inp):
                raise _clash(_flag(dest), out, _flag(in_dest), inp, "is also the input")
            if inp.is_dir() and out.is_file() and _inside(out, inp) and io.read_in(in_dest, out.name):
                # Writing over a file inside an input folder (a SavedModel, an image folder) breaks the input.
                raise _clash(_flag(dest), out, _flag(in_dest), inp, "is a file inside the input folder")
    for dest, folder, writes in folders:
        for in_dest, inp in inputs:
            if _written_in(folder, writes, inp):
                raise InputError(f"{_flag(dest)} {folder}: {args.command} writes {inp.name} there, which is "
                                 f"{_flag(in_dest)} {inp}: expected an {_flag(dest)} folder that holds no input "
                                 f"it writes over, found {inp.name}")
            if inp.is_dir() and _inside(folder, inp):
                hit = sorted(p.name for p in folder.iterdir() if p.is_file() and io.read_in(in_dest, p.name) and any(
                    fnmatch.fnmatch(p.name, w) for w in writes)) if folder.is_dir() else []
                if hit:
                    raise InputError(f"{_flag(dest)} {folder}: {args.command} would overwrite {hit[0]} in "
                                     f"{_flag(in_dest)} {inp}: expected an {_flag(dest)} folder outside the input")
    for i, (dest, out) in enumerate(files):
        for other_dest, other in files[i + 1:]:
            if _same(out, other):
                raise _clash(_flag(other_dest), other, _flag(dest), out, "is also")
