"""The ``edgequant`` command: a thin adapter over the public API.

Exit codes: 0 ok, 1 a step or check failed, 2 bad input (usage errors too), 130
interrupted. Every EdgequantError becomes one line on stderr; anything else is a
bug and keeps its traceback. Before any work, every output path is checked
against every input (cli/paths.py); a command's files are written all or none
(_util.staged_writes).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgequant import checks
from edgequant._util import Progress, atomic_dir_file, atomic_write, set_verbose, staged_writes
from edgequant.cli.args import RUNS, SAMPLES, THREADS, Parser, checked, pair, path
from edgequant.cli.paths import check_paths
from edgequant.cli.progress import make_progress
from edgequant.cli.runs import add_registry_options, add_runs_parser, record_run, runs_command
from edgequant.errors import EdgequantError
from edgequant.types import EngineName, IOType, Scheme

__all__ = ["main", "build_parser"]


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resize", type=checked(pair(int), checks.check_resize, "H,W (two whole numbers)"),
                   metavar="H,W", help="resize images of a DATA folder to H x W")
    p.add_argument("--normalize", type=checked(pair(float), checks.check_normalize, "MEAN,STD (two numbers)"),
                   metavar="MEAN,STD", help="map image pixels (0..255) with (pixel - MEAN) / STD; default pixel / 255")


def _add_source_options(p: argparse.ArgumentParser, what: str = "MODEL") -> None:
    """PyTorch and ONNX sources (net.py:build, .pt2, .onnx): fixed input shapes and the I/O layout."""
    p.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...",
                   help=f"fix an ONNX input's shape for conversion ({what}), e.g. x=1,3,48,320; repeatable")
    p.add_argument("--layout", choices=("nchw", "nhwc"),
                   help=f"I/O layout of a converted PyTorch/ONNX {what}: nchw (default, as exported) or nhwc "
                   "(channels-last)")


def _source(args: argparse.Namespace, attr: str = "model"):
    """MODEL as the API takes it: the path, or for a PyTorch/ONNX source the converted FloatModel, loaded once
    per command with --input-shape and --layout."""
    from edgequant.errors import InputError
    from edgequant.frontends import detect_kind, load_model, source_options
    from edgequant.types import SourceKind

    path = getattr(args, attr)
    if path is None:
        return None
    if detect_kind(path) not in (SourceKind.PYTORCH, SourceKind.ONNX):
        if args.input_shape or args.layout:
            raise InputError(f"--input-shape and --layout apply to PyTorch and ONNX models, found {path.name}")
        return path
    cache = f"_loaded_{attr}"
    if getattr(args, cache, None) is None:
        options = source_options(args.input_shape, args.layout)
        setattr(args, cache, load_model(path, unsafe=getattr(args, "unsafe", False), options=options))
    return getattr(args, cache)


OBSERVER_HELP = ("activation ranges (litert engine): minmax, ema-minmax, percentile:P, mse, entropy; "
                 "default: the best of minmax, mse, percentile:99.99/99.9, ema-minmax on the calibration samples")


def _add_model_options(p: argparse.ArgumentParser, output: bool = False) -> None:
    """What every command that reads a model shares: the signature to run, and (where top-1 is measured) the
    output labels are read from."""
    p.add_argument("--signature", metavar="KEY", help="the signature of a .tflite with several (default: the only "
                   "one, else serving_default)")
    if output:
        p.add_argument("--output", dest="label_output", metavar="NAME",
                       help="the output top-1 is read from, for a model with several (default: the first)")


TRANSFORMS_HELP = ("float-graph transforms before quantizing (litert engine), comma-separated: cle, "
                   "adaround, bias-correction (run in that order), or none; default: adaround for dynamic, "
                   "int8, int16x8, w4a8 and weight-only-int4 when --calibration is given, none otherwise")


def _add_training_options(p: argparse.ArgumentParser, match: str, val_help: str, epochs: int, loss_help: str,
                          learning_rate: float, rate_help: str) -> None:
    """What qat and prune share: a Keras model, training data, fine-tuning settings, JSON and data options."""
    p.add_argument("model", type=path, help="the trained Keras model (.keras or .h5)")
    p.add_argument("--data", type=path, required=True,
                   help=f"training data; without labels the model learns to match {match} outputs")
    p.add_argument("--val", type=path, help=val_help)
    p.add_argument("--epochs", type=int, default=epochs, help=f"fine-tuning epochs (default {epochs})")
    p.add_argument("--loss", default="auto", help=loss_help)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=learning_rate, help=rate_help)
    p.add_argument("--seed", type=checked(int, checks.check_seed, "a whole number"), default=0)
    p.add_argument("--json", type=path, help="also write the result as JSON")
    p.add_argument("--unsafe", action="store_true")
    _add_data_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="edgequant", description="Quantize, run and compare LiteRT models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's and LiteRT's own output")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="Keras/.h5/SavedModel/float .tflite/PyTorch/ONNX -> float .tflite")
    p.add_argument("model", type=path, help="a .keras, .h5, SavedModel folder, .tflite, net.py:build (runs that "
                   "file), .pt2 or .onnx")
    p.add_argument("-o", "--output", type=path, required=True)
    p.add_argument("--unsafe", action="store_true", help="allow Keras models that hold Python code (Lambda)")
    p.add_argument("--data", type=path, help="PyTorch/ONNX: inputs (.npy, or .npz by input name) the conversion "
                   "is checked on (default: example and generated inputs)")
    _add_source_options(p)
    _add_model_options(p)

    p = sub.add_parser("calibrate", help="gather activation statistics in LiteRT, saved as JSON for --stats")
    p.add_argument("model", type=path)
    p.add_argument("--data", type=path, required=True)
    p.add_argument("--samples", type=SAMPLES, help="samples to use (default 200), picked deterministically")
    p.add_argument("-o", "--output", type=path, required=True)
    p.add_argument("--unsafe", action="store_true")
    _add_model_options(p)
    _add_source_options(p)
    _add_data_options(p)

    p = sub.add_parser("quantize", help="quantize a model with one scheme and engine")
    p.add_argument("model", type=path)
    p.add_argument("--recipe", type=path, metavar="FILE",
                   help="the plan as a recipe JSON file (docs/recipe.md); options given here override its fields")
    p.add_argument("--scheme", help="one of " + ", ".join(s.value for s in Scheme) + " (required unless --recipe "
                   "names one)")
    # Defaults live in the API (litert, float I/O), so an option left out never overrides a --recipe.
    p.add_argument("--engine", help="litert (default) or tflite-converter")
    p.add_argument("--calibration", type=path, help="representative data for int8 / int16x8")
    p.add_argument("--samples", type=SAMPLES, help="calibration samples to use (default 200), picked deterministically")
    p.add_argument("--io", help="int8 model I/O: float (default), int8 or uint8")
    p.add_argument("--observer", help=OBSERVER_HELP + "; 'auto' for that choice")
    p.add_argument("--stats", type=path, help="statistics from 'edgequant calibrate' instead of a new pass")
    p.add_argument("--transforms", help=TRANSFORMS_HELP + "; 'default' for that choice")
    p.add_argument("--float-islands", choices=("auto", "on", "off"), default="auto",
                   help="int8/w4a8 on the litert engine: keep the ops between the matmuls (LayerNorm, softmax, GELU, "
                        "residual adds), depthwise convolutions and outlier-channel layers in float; auto (default): "
                        "for attention models when the recipe sets no per-layer precision")
    p.add_argument("-o", "--output", type=path, required=True)
    p.add_argument("--save-recipe", type=path, metavar="FILE",
                   help="write the recipe that ran (observer and transforms resolved) for reuse with --recipe")
    p.add_argument("--unsafe", action="store_true")
    _add_model_options(p)
    _add_source_options(p)
    _add_data_options(p)

    p = sub.add_parser("run", help="one inference in LiteRT, integer I/O handled")
    p.add_argument("model", type=path)
    p.add_argument("--input", type=path, required=True, help=".npy, .npz (one array per input name, or x) or image "
                   "folder of inputs, batch first")
    p.add_argument("-o", "--output", type=path, help="save the outputs: .npy for a one-output model, else .npz with "
                   "one array per output name")
    _add_model_options(p)

    p = sub.add_parser("eval", help="size, accuracy, fidelity and latency of a .tflite model")
    p.add_argument("model", type=path)
    p.add_argument("--data", type=path)
    p.add_argument("--reference", type=path, help="float model to compare outputs with")
    p.add_argument("--threads", type=THREADS, default=1,
                   help=f"LiteRT threads, 1 to {checks.max_threads()} on this machine (default 1)")
    p.add_argument("--runs", type=RUNS, default=50, help="timed runs after 5 warm-up runs")
    p.add_argument("--json", type=path)
    p.add_argument("--unsafe", action="store_true")
    _add_model_options(p, output=True)
    _add_source_options(p, "--reference")
    _add_data_options(p)

    p = sub.add_parser("analyze", help="where a quantized model's error comes from, layer by layer, and why it is "
                                       "slow or large")
    p.add_argument("model", type=path, help="the quantized .tflite")
    p.add_argument("--reference", type=path, required=True,
                   help="the float model it was made from (any MODEL form)")
    p.add_argument("--data", type=path, required=True, help="data to measure on (labels give accuracy)")
    p.add_argument("--top-k", type=checked(int, checks.check_top_k, "a whole number"), default=3,
                   help="layers (by local error) to re-quantize with only that layer in float (default 3; 0 skips)")
    p.add_argument("--samples", type=SAMPLES, default=500, help="samples to measure on (default 500), picked "
                   "deterministically")
    p.add_argument("--threads", type=THREADS, default=1,
                   help=f"LiteRT threads, 1 to {checks.max_threads()} on this machine (default 1)")
    p.add_argument("--runs", type=RUNS, default=50, help="timed runs per model and per op after 5 warm-up runs; "
                   "0 skips timing")
    p.add_argument("--json", type=path, help="also write the whole analysis as JSON")
    p.add_argument("--report", type=path, metavar="HTML", help="where to write the HTML report (default: beside "
                   "--json with .html, else MODEL-STEM-analysis.html in the current folder)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--unsafe", action="store_true")
    _add_model_options(p, output=True)
    _add_source_options(p, "--reference")
    _add_data_options(p)

    p = sub.add_parser("compare", help="float model and every variant, measured side by side")
    p.add_argument("model", type=path)
    p.add_argument("--data", type=path, required=True)
    p.add_argument("--calibration", type=path)
    p.add_argument("--samples", type=SAMPLES)
    p.add_argument("--schemes", default="all", help="comma-separated schemes or 'all'")
    p.add_argument("--engines", default="all", help="comma-separated engines or 'all'")
    p.add_argument("--observer", help=OBSERVER_HELP)
    p.add_argument("--threads", type=THREADS, default=1,
                   help=f"LiteRT threads, 1 to {checks.max_threads()} on this machine (default 1)")
    p.add_argument("--runs", type=RUNS, default=50)
    p.add_argument("--out", type=path, required=True)
    p.add_argument("--analyze", action="store_true",
                   help="also run 'edgequant analyze' on every variant and attach its top findings to compare.json")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report (DIR/report.html)")
    p.add_argument("--unsafe", action="store_true")
    _add_model_options(p, output=True)
    _add_source_options(p)
    _add_data_options(p)

    p = sub.add_parser("qat", help="quantization-aware training of a Keras 3 model, exported as an integer .tflite")
    _add_training_options(p, "the float model's", "validation data: picks the best epoch and checks the export",
                          3, "auto (default: labels if the data has them, else distill), labels or distill",
                          3e-4, "Adam's starting learning rate, decaying to 0 along a cosine (default 3e-4)")
    p.add_argument("--scheme", default="int8", help="int8 (default) or w4a8")
    p.add_argument("--observer", default="mse", help="observer for the starting activation ranges (default mse)")
    p.add_argument("--samples", type=SAMPLES, default=200, help="training samples that calibrate the starting ranges "
                   "(default 200)")
    p.add_argument("--fixed-ranges", action="store_true", help="keep the calibrated activation ranges instead of "
                   "learning them")
    p.add_argument("-o", "--output", type=path, required=True, help="where to write the integer .tflite")

    p = sub.add_parser("prune", help="magnitude pruning of a Keras 3 model with a sparsity schedule")
    _add_training_options(p, "the original's", "validation data for the before/after accuracy", 4,
                          "auto (default), labels or distill", 1e-3, "Adam learning rate (default 1e-3)")
    p.add_argument("--sparsity", type=float, required=True, help="share of each kernel to zero, between 0 and 1")
    p.add_argument("--schedule", default="polynomial", help="polynomial (default) or constant")
    p.add_argument("-o", "--output", type=path, required=True, help="where to write the pruned .keras model")

    p = sub.add_parser("tune", help="search for the smallest and fastest model within an accuracy budget")
    p.add_argument("model", type=path)
    p.add_argument("--data", type=path, required=True, help="data the budget is measured on (labels give top-1)")
    p.add_argument("--calibration", type=path, help="calibration data (default: --data, which flatters int8)")
    p.add_argument("--max-drop", required=True, metavar="X",
                   help="budget in the metric's units: top-1 points, the lowest output SQNR in dB, cosine, or "
                   "the task score's")
    p.add_argument("--metric", help="top1 (default with labels), sqnr (default without labels), cosine, or task "
                   "(the default with --score)")
    p.add_argument("--score", metavar="FILE.py:FUNCTION", help="the task metric: your function of (outputs, "
                   "float outputs), dicts of arrays by output name, returning one score per sample (higher is "
                   "better); --max-drop is in its units")
    p.add_argument("--objective", default="balanced", help="size, latency or balanced (default)")
    p.add_argument("--time-budget", metavar="DURATION", help="stop starting trials after this long: 90s, 10m, 1h")
    p.add_argument("--trials", type=int, help="stop after this many trials (history included)")
    p.add_argument("--schemes", default="all", help="comma-separated schemes (and per-layer precisions) to "
                   "search, or 'all'")
    p.add_argument("--samples", type=SAMPLES, help="calibration samples (default 200), picked deterministically")
    p.add_argument("--runs", type=RUNS, default=50, help="interleaved latency runs per trial (default 50)")
    p.add_argument("--out", type=path, required=True, help="run folder: best.tflite, best.json, best-recipe.json, "
                   "trials.json")
    p.add_argument("--resume", action="store_true", help="continue the run whose history is in --out")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report (DIR/report.html)")
    p.add_argument("--unsafe", action="store_true")
    _add_model_options(p, output=True)
    _add_source_options(p)
    _add_data_options(p)

    p = sub.add_parser("demo", help="train the seed CNN on bundled digits and compare every variant")
    p.add_argument("--out", type=path, default=Path("demo-out"))
    p.add_argument("--epochs", type=checked(int, checks.check_epochs, "a whole number"), default=5)
    p.add_argument("--runs", type=RUNS, default=100)
    p.add_argument("--no-report", action="store_true", help="skip the HTML report (DIR/report.html)")

    p = sub.add_parser("report", help="one self-contained HTML page from the JSON of compare, analyze, tune or "
                                      "the benchmark")
    p.add_argument("source", type=path, nargs="+", help="folders of results (compare --out, tune --out, demo-out, "
                   "benchmarks/results) or result JSON files; all go into one page")
    p.add_argument("-o", "--output", type=path, help="the HTML file (default: DIR/report.html, or FILE.html "
                   "beside a JSON file)")
    p.add_argument("--title", help="the page title (default: edgequant report)")

    add_registry_options(sub)  # --registry/--no-registry on the model-producing commands (cli/runs.py)
    add_runs_parser(sub)
    return parser


# Arguments that name input files: the run's provenance hashes each one by content.
INPUT_ROLES = ("model", "data", "calibration", "reference", "val", "stats", "recipe", "input")


def command_provenance(args: argparse.Namespace):
    """The provenance of this command (argv, inputs by content hash, versions, machine), computed once and
    shared by the JSON results, the HTML report and the run registry."""
    from edgequant.provenance import collect

    # Cached on args: hashing a large data set twice (registry, then the command's report) is slow.
    if getattr(args, "provenance", None) is None:
        args.provenance = collect({role: getattr(args, role, None) for role in INPUT_ROLES}, args.argv)
    return args.provenance


# Commands whose files are written all or none: held under temporary names until every write
# succeeded (quantize -o + --save-recipe, analyze --json + --report ...). compare stages its model
# and result files, then writes its page from them; demo and tune are left out: demo reads back the
# model it trained, and tune keeps the best model so far on disk by design.
STAGED = frozenset({"convert", "calibrate", "quantize", "run", "eval", "analyze", "qat", "prune", "report"})


def _run_command(args: argparse.Namespace) -> int:
    if args.command in STAGED:
        with staged_writes():
            return _dispatch(args)
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    import edgequant as eq
    from edgequant import report

    progress = make_progress()
    out = sys.stdout
    if args.command == "convert":
        data = None
        if args.data is not None:
            from edgequant.data import load_data

            data = load_data(args.data, None, None, None).inputs
        m = eq.convert(args.model, args.output, unsafe=args.unsafe, input_shapes=args.input_shape,
                       layout=args.layout, data=data, signature=args.signature)
        args.result = m  # each model-producing command hands its result to the run registry (cli/runs.py)
        print(f"float .tflite from {m.kind.value}: {len(m.tflite):,} bytes -> {args.output}", file=out)
        print(f"signature {m.signature.key!r}: {m.signature.describe()}", file=out)
        for n in m.notes:
            print(f"note: {n}", file=out)
    elif args.command == "calibrate":
        st = eq.calibrate(_source(args), args.data, samples=args.samples, output=args.output, unsafe=args.unsafe,
                          resize=args.resize, normalize=args.normalize, progress=progress, signature=args.signature)
        print(report.stats_text(st), file=out)
        print(f"saved -> {args.output}", file=out)
    elif args.command == "quantize":
        q = eq.quantize(_source(args), args.scheme, args.engine, calibration=args.calibration, samples=args.samples,
                        io=args.io, output=args.output, unsafe=args.unsafe, resize=args.resize,
                        normalize=args.normalize, observer=args.observer, stats=args.stats,
                        transforms=args.transforms, progress=progress, recipe=args.recipe, signature=args.signature,
                        float_islands={"auto": None, "on": True, "off": False}[args.float_islands])
        args.result = q
        print(report.quantized_text(q), file=out)
        if args.save_recipe and q.recipe is not None:
            q.recipe.save(args.save_recipe)
            print(f"recipe -> {args.save_recipe}", file=out)
    elif args.command == "run":
        r = eq.run(args.model, args.input, signature=args.signature)
        for n in r.notes:
            print(f"note: {n}", file=out)
        for name, value in r.outputs.items():
            print(f"output '{name}': shape {value.shape}, {value.dtype}", file=out)
            if value.ndim == 2 and value.shape[1] > 1 and value.dtype.kind == "f":
                print("  top-1: " + " ".join(str(int(i)) for i in value.argmax(axis=1)[:20])
                      + (" ..." if len(value) > 20 else ""), file=out)
        if args.output:
            import io

            import numpy as np

            buf = io.BytesIO()
            if len(r.outputs) == 1:
                np.save(buf, next(iter(r.outputs.values())))
            else:
                np.savez(buf, **r.outputs)
            atomic_write(args.output, buf.getvalue())
            print(f"saved -> {args.output}", file=out)
    elif args.command == "eval":
        ev = eq.evaluate(args.model, args.data, _source(args, "reference"), threads=args.threads, runs=args.runs,
                         resize=args.resize, normalize=args.normalize, unsafe=args.unsafe, progress=progress,
                         signature=args.signature, output=args.label_output)
        print(report.evaluation_text(ev), file=out)
        if args.json:
            atomic_dir_file(args.json, report.to_json(ev))
    elif args.command == "analyze":
        an = eq.analyze(args.model, _source(args, "reference"), args.data, top_k=args.top_k, samples=args.samples,
                        runs=args.runs, threads=args.threads, resize=args.resize, normalize=args.normalize,
                        unsafe=args.unsafe, progress=progress, provenance=command_provenance(args),
                        signature=args.signature, output=args.label_output)
        print(report.analysis_text(an), file=out)
        if args.json:
            atomic_dir_file(args.json, report.to_json(an))
            print(f"\nwrote {args.json}", file=out)
        if not args.no_report:
            _analysis_report(args, an)
    elif args.command == "compare":
        with staged_writes():  # the models and compare.json/csv together; the page is made from them after
            res = eq.compare(_source(args), args.data, args.calibration, args.schemes, args.engines, args.samples,
                             args.out, threads=args.threads, runs=args.runs, unsafe=args.unsafe,
                             resize=args.resize, normalize=args.normalize, observer=args.observer,
                             analyze=args.analyze, progress=progress, provenance=command_provenance(args),
                             signature=args.signature, output=args.label_output)
        args.result = res
        print(report.compare_table(res), file=out)
        print(f"\nwrote {args.out / 'compare.json'}, {args.out / 'compare.csv'} and the .tflite files", file=out)
        _folder_report(args, args.out)
        return 1 if res.failed else 0
    elif args.command in ("qat", "prune"):
        from edgequant.qat.records import EpochLog
        from edgequant.report.qat import epoch_line, prune_text, qat_text

        what = "fake-quantized" if args.command == "qat" else ""

        def on_epoch(log: EpochLog) -> None:  # the library never prints; the command prints a line per epoch
            print(epoch_line(log, what), file=out, flush=True)

        common = dict(val=args.val, epochs=args.epochs, loss=args.loss, batch_size=args.batch_size,
                      learning_rate=args.learning_rate, output=args.output, unsafe=args.unsafe, resize=args.resize,
                      normalize=args.normalize, seed=args.seed, progress=progress, on_epoch=on_epoch)
        if args.command == "qat":
            result = eq.qat(args.model, args.data, scheme=args.scheme, observer=args.observer, samples=args.samples,
                            learn_ranges=not args.fixed_ranges, **common)
            print(qat_text(result), file=out)
        else:
            result = eq.prune(args.model, args.data, sparsity=args.sparsity, schedule=args.schedule, **common)
            print(prune_text(result), file=out)
        args.result = result
        if args.json:
            atomic_dir_file(args.json, report.to_json(result))
            print(f"wrote {args.json}", file=out)
    elif args.command == "tune":
        return _tune(args, progress)
    elif args.command == "demo":
        res = eq.demo(args.out, epochs=args.epochs, runs=args.runs, progress=progress, command=args.argv)
        args.result = res
        print(report.compare_table(res), file=out)
        print(f"\nwrote {args.out / 'compare.json'}, {args.out / 'compare.csv'} and the .tflite files", file=out)
        _folder_report(args, args.out)
        return 1 if res.failed else 0
    elif args.command == "runs":
        return runs_command(args)
    elif args.command == "report":
        from edgequant.report.html import write_report

        rep = write_report(args.source, args.output, title=args.title)
        print(_report_line(rep), file=out)
    return 0


def _tune(args: argparse.Namespace, progress: Progress) -> int:
    import edgequant as eq
    from edgequant.errors import InputError
    from edgequant.report.tune import trial_line, tune_text

    try:
        max_drop = float(args.max_drop)
    except ValueError:
        raise InputError(f"--max-drop: expected a number in the metric's units, found {args.max_drop!r}") from None
    result = eq.tune(_source(args), args.data, max_drop, args.out, calibration=args.calibration, metric=args.metric,
                     objective=args.objective, time_budget=args.time_budget, trials=args.trials, resume=args.resume,
                     schemes=args.schemes, samples=args.samples, runs=args.runs, unsafe=args.unsafe,
                     resize=args.resize, normalize=args.normalize, progress=progress,
                     on_trial=lambda report: print(trial_line(report), flush=True),
                     provenance=command_provenance(args), signature=args.signature, output=args.label_output,
                     score=args.score)
    args.result = result
    calibration = args.calibration or args.data
    reproduce = (f"edgequant quantize {args.model} --recipe {args.out / 'best-recipe.json'} "
                 f"--calibration {calibration} -o tuned.tflite")
    print(tune_text(result, reproduce), flush=True)
    _folder_report(args, args.out)
    # Not meeting the budget is a failed check (exit 1), though the closest model is kept.
    return 0 if result.met else 1


def _report_line(rep) -> str:
    return (f"report -> {rep.path} ({len(rep.sections)} sections, {rep.charts} charts, {rep.marks} points; open it "
            "in any browser, no network needed)")


def _folder_report(args: argparse.Namespace, folder: Path) -> None:
    """The HTML report of a command's output folder, unless --no-report."""
    if getattr(args, "no_report", False):
        return
    from edgequant.report.html import write_report

    print(_report_line(write_report(folder)), flush=True)


def _analysis_report(args: argparse.Namespace, an) -> None:
    from edgequant.report.html import write_report_for
    from edgequant.report.sources import Source, SourceKind

    target = args.report or (args.json.with_suffix(".html") if args.json else Path(f"{args.model.stem}-analysis.html"))
    source = Source(SourceKind.ANALYSIS, args.json or args.model, an.to_dict())
    print(_report_line(write_report_for([source], target)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code. With ``argv`` None (the ``edgequant`` script and
    ``python -m edgequant``) the process ends here, so a Ctrl-C at any point ends it with 130."""
    try:
        code = _main(argv)
    except KeyboardInterrupt:  # before the command started (parsing) or while reporting its error
        code = _interrupted()
    if argv is None:
        _end_process(code)
    return code


def _interrupted() -> int:
    print("edgequant: interrupted", file=sys.stderr)
    return 130


def _end_process(code: int) -> None:
    """Flush and leave without the interpreter's shutdown. Every file is written and closed by now; the
    shutdown (TensorFlow's teardown takes about 0.1 s) first resets SIGINT to the default, so a Ctrl-C
    in it would kill the process by the signal (-2) instead of the one line and 130."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        os.write(2, b"edgequant: interrupted\n")
        os._exit(130)

    try:
        signal.signal(signal.SIGINT, stop)
    except ValueError:  # not the main thread: leave as Python would
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left (exit code 141 already chosen) or a closed stream
            pass
    os._exit(code)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage; return it so in-process callers see it
        return int(exc.code or 0)
    args.argv = ["edgequant", *argv]
    verbose = args.verbose or os.environ.get("EDGEQUANT_VERBOSE", "") not in ("", "0")
    set_verbose(verbose)
    try:
        with warnings.catch_warnings():
            if not verbose:  # a library's warning (numpy, Keras ...) is not ours to show; -v shows it
                warnings.simplefilter("ignore")
            check_paths(args)  # before any work: no output may overwrite an input (cli/paths.py)
            code = record_run(args, _run_command)  # model-producing commands are recorded (cli/runs.py)
        sys.stdout.flush()  # inside the try: a reader that left early fails here, not at interpreter exit
        return code
    except EdgequantError as exc:
        print(f"edgequant: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        # The reader of our output closed it (`edgequant runs list | head -1`): stop quietly, as a
        # command killed by SIGPIPE does. Point stdout at /dev/null so the exit flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13
