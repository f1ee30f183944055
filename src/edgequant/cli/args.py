"""argparse, edgequant's way: usage errors as one line (exit 2), paths that cannot be empty, and
number types that apply the API's own bounds (edgequant.checks) while parsing."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from edgequant import checks
from edgequant.errors import InputError

__all__ = ["Parser", "path", "checked", "pair", "THREADS", "RUNS", "SAMPLES"]


class Parser(argparse.ArgumentParser):
    """argparse with usage errors as ONE line on stderr and exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("edgequant").strip()
        text = " ".join(message.split())  # argparse's own messages can span lines
        self.exit(2, f"edgequant: error: {where + ': ' if where else ''}{text} "
                     f"(see edgequant {where + ' ' if where else ''}--help)\n")


def path(text: str) -> Path:
    # Path("") is "." (the current folder): an empty argument must not quietly mean that.
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, found {'an empty string' if not text else repr(text)}")
    return Path(text)


def checked(parse: Callable[[str], Any], check: Callable[[Any], Any], wanted: str) -> Callable[[str], Any]:
    """An argparse type: parse the text, then apply the API's own bound (edgequant.checks), so the
    command refuses a bad number before it loads a model or records a run."""
    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, found {text!r}") from None
        try:
            return check(value)
        except InputError as exc:  # "--threads: expected ..." -> "expected ..." (argparse names the option)
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    return convert


def pair(kind: type) -> Callable[[str], tuple[Any, Any]]:
    def parse(text: str) -> tuple[Any, Any]:
        parts = text.split(",")
        if len(parts) != 2:
            raise ValueError(text)
        return kind(parts[0]), kind(parts[1])
    return parse


THREADS = checked(int, checks.check_threads, "a whole number")
RUNS = checked(int, checks.check_runs, "a whole number")
SAMPLES = checked(int, checks.check_samples, "a whole number")
