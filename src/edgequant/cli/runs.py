"""The run registry in the CLI: ``--registry``/``--no-registry`` on every model-producing command,
the recording around such a command, and ``edgequant runs list|show|compare``.

Recording must never cost the user a model. So a registry that cannot be opened is an error
(exit 2, before any work) only when the user named it with ``--registry``; at the default path
it is one warning line and the command runs unrecorded. Once a run has begun, the command's own
error stays the error the user sees: the run is marked failed and the error re-raised.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgequant._util import deferred_interrupt
from edgequant.errors import EdgequantError, InputError

__all__ = ["RECORDED", "add_registry_options", "add_runs_parser", "record_run", "runs_command"]

# The error line of a run stopped with Ctrl-C (exit code 130).
INTERRUPTED = "interrupted"

# The commands that produce models, and so are recorded.
RECORDED = ("convert", "quantize", "compare", "tune", "qat", "prune", "demo")

REGISTRY_HELP = ("the run registry (SQLite) to use; default: $EDGEQUANT_REGISTRY, else "
                 "$XDG_DATA_HOME/edgequant/registry.sqlite3 (docs/registry.md)")

# Namespace entries that are not settings of the run: bookkeeping, and switches of what is printed
# or written (--no-report, --json ...). Paths are left out as a rule: inputs are recorded with
# their hashes, outputs as the variants' paths.
_NOT_OPTIONS = {"command", "argv", "verbose", "registry", "no_registry", "result", "provenance", "resume"}


def add_registry_options(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for name in RECORDED:
        group = sub.choices[name].add_mutually_exclusive_group()
        group.add_argument("--registry", type=Path, metavar="PATH", help=REGISTRY_HELP)
        group.add_argument("--no-registry", action="store_true", help="do not record this run")


def add_runs_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("runs", help="the recorded runs: list, show ID, compare ID ID")
    actions = p.add_subparsers(dest="runs_command", required=True)
    listing = actions.add_parser("list", help="the newest runs, one line each")
    listing.add_argument("--limit", type=int, default=20, help="runs to list, newest first (default 20)")
    show = actions.add_parser("show", help="one run in full: command, inputs by hash, versions, variants")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="print the run as JSON")
    compare = actions.add_parser("compare", help="what differs between two runs: recipe, inputs, versions, "
                                                 "metrics side by side")
    compare.add_argument("a", type=int, metavar="ID")
    compare.add_argument("b", type=int, metavar="ID")
    compare.add_argument("--json", action="store_true", help="print the differences as JSON")
    for p in (listing, show, compare):
        p.add_argument("--registry", type=Path, metavar="PATH", help=REGISTRY_HELP)


def _warn(message: str) -> None:
    print(f"edgequant: warning: {message}", file=sys.stderr)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items()
            if k not in _NOT_OPTIONS and not k.startswith("no_") and v is not None and not isinstance(v, Path)}


def _open(args: argparse.Namespace) -> Any:
    """The registry to record in, or None (off, or unusable at the default path: warned)."""
    from edgequant.registry import Registry, default_registry_path

    explicit = args.registry is not None
    path = args.registry if explicit else default_registry_path()
    if path is None:  # EDGEQUANT_REGISTRY=off
        return None
    try:
        return Registry(path)
    except EdgequantError as exc:
        if explicit:
            raise
        _warn(f"run not recorded: {exc}")
        return None


def record_run(args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """Run the command, recorded in the registry when it produces models. The command sets
    ``args.result`` to its result object, which says what to record."""
    if args.command not in RECORDED or args.no_registry:
        return run(args)
    registry = _open(args)
    if registry is None:
        return run(args)
    # Imported here, not at the top: edgequant.cli imports this module.
    from edgequant.cli import command_provenance
    from edgequant.registry import RunStatus

    with registry:
        try:
            provenance = command_provenance(args)
        except OSError as exc:  # an unreadable input: the command reports it, if it needs the file at all
            code = run(args)
            _warn(f"run not recorded: could not hash an input: {exc}")
            return code
        run_id: int | None = None
        try:
            with deferred_interrupt():  # a run recorded as begun is then always marked, however it ends
                run_id = registry.begin(args.command, provenance)
        except EdgequantError as exc:
            if args.registry is not None:
                raise
            _warn(f"run not recorded: {exc}")
            return run(args)
        except KeyboardInterrupt:
            if run_id is not None:
                _fail(registry, args, run_id, INTERRUPTED, 130)
            raise
        try:
            code = run(args)
        except EdgequantError as exc:
            _fail(registry, args, run_id, str(exc), exc.exit_code)
            raise
        except KeyboardInterrupt:
            # A Ctrl-C is a failed run like any other (docs/registry.md): marked before the 130 exit.
            _fail(registry, args, run_id, INTERRUPTED, 130)
            raise
        except BaseException as exc:  # a bug: still not left "running"; the traceback follows
            _fail(registry, args, run_id, f"{type(exc).__name__}: {exc}", 1)
            raise
        if getattr(args, "result", None) is None:
            _fail(registry, args, run_id, f"edgequant {args.command} handed the registry no result (a bug)", code)
            _warn(f"run {run_id} recorded as failed: the command handed the registry no result")
            return code
        try:
            # The demo's model and data exist only once it has run: its result's provenance names them.
            made = getattr(getattr(args.result, "provenance", None), "inputs", ())
            # Its files are written: a Ctrl-C now waits for the record (the run is complete), then exits 130.
            with deferred_interrupt():
                registry.finish(run_id, *_captured(args), RunStatus.COMPLETE, code, inputs=made)
        except EdgequantError as exc:  # the model is written already; losing the record is the lesser harm
            _warn(f"run {run_id} not recorded: {exc}")
            return code
        print(f"recorded run {run_id} in {registry.path}")
    return code


def _captured(args: argparse.Namespace) -> tuple[Any, Any]:
    """(variants, recipe) of the result the command handed over."""
    from edgequant.registry import capture

    recipe, variants = capture(args.result, _options(args), getattr(args, "output", None))
    return variants, recipe


def _fail(registry: Any, args: argparse.Namespace, run_id: int, error: str, exit_code: int) -> None:
    """Mark the run failed. A command that failed after building its models (its HTML report, say)
    handed them over already: they are kept with the failed run."""
    from edgequant.registry import RunStatus

    variants, recipe = (), None
    if getattr(args, "result", None) is not None:
        try:
            variants, recipe = _captured(args)
        except Exception:  # noqa: BLE001 - a bug here must not replace the command's own error
            pass
    try:
        with deferred_interrupt():  # a second Ctrl-C must not leave the run "running"
            registry.finish(run_id, variants, recipe, RunStatus.FAILED, exit_code, error)
    except EdgequantError as exc:  # never hide the command's own error behind the registry's
        _warn(f"run {run_id} not marked failed: {exc}")


def runs_command(args: argparse.Namespace) -> int:
    """``edgequant runs list|show|compare``."""
    from edgequant.registry import ENV_VAR, Registry, default_registry_path
    from edgequant.report import to_json
    from edgequant.report.runs import diff_text, run_text, runs_table

    path = args.registry or default_registry_path()
    if path is None:
        raise InputError(f"expected a run registry: {ENV_VAR} is 'off'; name one with --registry PATH")
    action = args.runs_command
    if action == "list" and args.limit < 1:
        raise InputError(f"--limit: expected 1 or more, found {args.limit}")
    if not Path(path).exists():  # reading creates nothing
        if action == "list":
            print(f"no runs recorded in {path}")
            return 0
        run_id = args.id if action == "show" else args.a
        raise InputError(f"run {run_id}: expected an id listed by 'edgequant runs list', found none "
                         f"(no registry at {path})")
    with Registry(path, create=False) as registry:
        if action == "list":
            print(runs_table(registry.runs(args.limit), str(registry.path)))
        elif action == "show":
            run = registry.run(args.id)
            print(to_json(run).rstrip() if args.json else run_text(run))
        else:
            diff = registry.compare(args.a, args.b)
            print(to_json(diff).rstrip() if args.json else diff_text(diff))
    return 0
