"""What the CLI tests share: running edgequant in-process, and checking a one-line bad-input error."""

from __future__ import annotations

import re

import pytest

from edgequant.cli import main


def run_cli(argv: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``edgequant ARGV`` in this process; (exit code, stdout, stderr) of this call only."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code: int, err: str, *patterns: str) -> str:
    """Exit 2 with exactly one 'edgequant: error:' line matching every pattern, and no traceback."""
    lines = err.splitlines()
    assert code == 2, f"exit {code}; stderr:\n{err}"
    assert len(lines) == 1 and lines[0].startswith("edgequant: error: "), err
    assert "Traceback" not in err
    for p in patterns:
        assert re.search(p, lines[0]), f"{p!r} not in {lines[0]}"
    return lines[0]
