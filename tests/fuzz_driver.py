"""Runs edgequant's CLI on many inputs in one child process, for the fuzz test (tests/test_fuzz.py).

    python tests/fuzz_driver.py MANIFEST.json RESULTS.jsonl

MANIFEST holds {"deadline": unix time, "runs": [[id, [argv...]], ...]}. Each run is
``edgequant.cli.main(argv)`` with file descriptor 2 captured, so output that
native code writes straight to stderr is counted too; one JSON line per run
(id, exit code, stderr) is appended to RESULTS as soon as it ends. A run
that kills this process (a signal) leaves its id as the first one missing.
Starting a Python process per run would cost about a second each; the test
starts a few real `python -m edgequant` processes besides.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
import traceback


def main() -> int:
    manifest = json.loads(open(sys.argv[1]).read())
    from edgequant.cli import main as cli

    with open(sys.argv[2], "a") as results:
        for run_id, argv in manifest["runs"]:
            if time.time() > manifest["deadline"]:
                break
            saved = os.dup(2)
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), 2)
                py_err, sys.stderr = sys.stderr, io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), write_through=True)
                try:
                    code = cli(argv)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - what a user would see: a traceback
                    traceback.print_exc()
                    code = "traceback"
                finally:
                    sys.stderr.flush()
                    sys.stderr = py_err
                    os.dup2(saved, 2)
                    os.close(saved)
                sink.seek(0)
                err = sink.read().decode("utf-8", "replace")
            results.write(json.dumps({"id": run_id, "code": code, "stderr": err}) + "\n")
            results.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
