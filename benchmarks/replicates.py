"""python -m benchmarks.replicates [--models ...] [--scheme int8] [--replicates 10] [--same-model] [--methods ...]

The benchmark trains each zoo model once and calibrates every method on one draw of 200
samples, so each accuracy cell is one outcome of two random choices. On 450 held-out images
one image is 0.22 points, and which images a quantized model happens to flip from wrong to
right depends on that one trained model and that one draw. A method's expected accuracy
change on a model cannot be read from one such outcome.

This run repeats the headline methods over replicates. Replicate 0 is the benchmark's own
model and calibration set. Replicate k > 0 trains the zoo model again with seed k (same
architecture, recipe and data split; other initial weights and batch order) and calibrates
on 200 samples of the training split drawn with seed k. Every replicate is evaluated on the
same held-out images. Per model it reports the mean and spread of the top-1 change against
float, the mean number of held-out images whose top-1 differs from float's, the mean output
SQNR, and edgequant's difference from each peer paired by replicate, with a 95% interval.
``--same-model`` keeps replicate 0's model and varies only the calibration draw.

Writes <out>/replicates.md and <out>/replicates.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import zoo
from benchmarks.methods import SCHEMES, TUNED, get_method
from benchmarks.run import CALIBRATION_SAMPLES, PEERS, PRIMARY, benchmark_calibration, held_out

__all__ = ["calibration_draw", "run_replicates", "aggregate", "markdown", "main"]

RESULTS = Path(__file__).resolve().parent / "results"
Log = Callable[[str], None]


def calibration_draw(zm: zoo.ZooModel, train_x: np.ndarray, replicate: int) -> np.ndarray:
    """Replicate 0: the benchmark's calibration samples. Replicate k > 0: as many from the training
    split, drawn with seed k. Unlabelled inputs only, and never the held-out images."""
    from edgequant.data import select_samples
    from edgequant.types import Dataset

    if replicate == 0:
        return benchmark_calibration(zm)
    return select_samples(Dataset(train_x, None, "train"), CALIBRATION_SAMPLES, seed=replicate).x


def run_replicates(models: Sequence[str], scheme: str, methods: Sequence[str], replicates: int, cache: Path,
                   same_model: bool = False, log: Log = lambda s: None) -> dict[str, Any]:
    """Quantize every replicate of every model with every method; evaluate on the held-out split."""
    import edgequant
    from edgequant.evaluate import changed_top1, fidelity, top1
    from edgequant.runtime import Runner

    started = time.perf_counter()
    rows = []
    for name in models:
        train_x, _ = zoo.training_split(zoo.get_spec(name).input_kind)
        for k in range(replicates):
            log(f"{name}: replicate {k + 1}/{replicates}" + ("" if k == 0 or same_model else f" (training seed {k})"))
            zm = zoo.load(name, cache, seed=zoo.SEED if same_model or k == 0 else k)
            test, calib = held_out(zm), calibration_draw(zm, train_x, k)
            ref = Runner(edgequant.convert(zm.keras_path).tflite, 1, "float").predict_output(test.x)
            base = top1(ref, test.y)
            for method in methods:
                try:
                    out = Runner(get_method(method).build(zm.keras_path, scheme, calib), 1, method).predict_output(test.x)
                except Exception as exc:  # a peer that cannot do a model has no row there; the run goes on
                    log(f"  {name}/{method}: no result: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}")
                    continue
                sqnr = fidelity(out, ref).sqnr_db
                rows.append({"model": name, "replicate": k, "method": method, "float_accuracy": base,
                             "accuracy_delta": top1(out, test.y) - base, "changed": changed_top1(out, ref),
                             "sqnr_db": sqnr if np.isfinite(sqnr) else None, "test_samples": len(test)})
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "scheme": scheme, "replicates": replicates, "same_model": same_model,
            "calibration_samples": CALIBRATION_SAMPLES, "seconds": round(time.perf_counter() - started, 1)}
    return {"meta": meta, "methods": list(methods), "rows": rows, "models": aggregate(rows, methods)}


def aggregate(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    """Per model and method: mean and sample standard deviation of the top-1 change (points), mean
    changed images and mean SQNR over the replicates; and on how many replicates edgequant's change
    was at least the better peer's."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        stats: dict[str, Any] = {}
        for method in methods:
            rs = [r for r in mine if r["method"] == method]
            if not rs:
                continue
            deltas = [r["accuracy_delta"] * 100 for r in rs]
            sqnrs = [r["sqnr_db"] for r in rs if r["sqnr_db"] is not None]
            stats[method] = {"mean_delta_pt": statistics.fmean(deltas),
                             "sd_delta_pt": statistics.stdev(deltas) if len(deltas) > 1 else 0.0,
                             "mean_changed": statistics.fmean(r["changed"] for r in rs),
                             "mean_sqnr_db": statistics.fmean(sqnrs) if sqnrs else None, "replicates": len(rs)}
        row: dict[str, Any] = {"model": model, "methods": stats}
        peers = [p for p in PEERS if p in stats]
        if PRIMARY in stats and peers:
            by_rep: dict[int, dict[str, float]] = {}
            for r in mine:
                by_rep.setdefault(r["replicate"], {})[r["method"]] = r["accuracy_delta"]
            # Exact sample counts: compare in images, not in rounded points.
            n = mine[0]["test_samples"]
            row["replicates_at_least_better_peer"] = sum(
                1 for v in by_rep.values() if PRIMARY in v and any(p in v for p in peers)
                and round(v[PRIMARY] * n) >= max(round(v[p] * n) for p in peers if p in v))
            # Paired by replicate (same model, same calibration draw): the difference edgequant - peer in
            # points, its mean and a 95% t interval. An interval wholly below 0 is behind beyond chance.
            row["vs_peer"] = {p: _paired_interval([(by_rep[k][PRIMARY] - by_rep[k][p]) * 100 for k in sorted(by_rep)
                                                   if PRIMARY in by_rep[k] and p in by_rep[k]]) for p in peers}
            row["vs_peer"] = {p: v for p, v in row["vs_peer"].items() if v is not None}
            row["behind_beyond_chance"] = any(v["high"] < 0 for v in row["vs_peer"].values())
            row["ahead_beyond_chance"] = bool(row["vs_peer"]) and all(v["low"] > 0 for v in row["vs_peer"].values())
            best_peer = max(stats[p]["mean_delta_pt"] for p in peers)
            row["mean_at_least_better_peer"] = stats[PRIMARY]["mean_delta_pt"] >= best_peer - 1e-9
            row["fewest_mean_changed"] = stats[PRIMARY]["mean_changed"] <= min(
                stats[p]["mean_changed"] for p in peers)
        out.append(row)
    return out


def _paired_interval(diffs: Sequence[float], confidence: float = 0.95) -> dict[str, float] | None:
    """Mean of paired differences with a two-sided t interval (a single difference: the interval is the
    point; none: None)."""
    from scipy import stats as st

    if not diffs:
        return None
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return {"mean": mean, "low": mean, "high": mean, "n": len(diffs)}
    half = float(st.t.ppf(0.5 + confidence / 2, len(diffs) - 1)) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(diffs)}


def markdown(result: dict[str, Any], command: str) -> str:
    meta, methods = result["meta"], result["methods"]
    models = result["models"]
    n = meta["replicates"]
    judged = [m for m in models if "mean_at_least_better_peer" in m]
    varied = ("the benchmark's model with calibration draw k" if meta["same_model"] else
              "the zoo model trained again with seed k and calibration draw k")
    floats = {m: [r["float_accuracy"] * 100 for r in result["rows"] if r["model"] == m and r["method"] == methods[0]]
              for m in dict.fromkeys(r["model"] for r in result["rows"])}
    out = [f"# edgequant benchmark over replicates: {meta['scheme']}", "",
           f"Run {meta['date']}, {meta['seconds']} s. Reproduce: `{command}`", "",
           f"{n} replicates per model: replicate 0 is the benchmark's own model and calibration set, replicate "
           f"k > 0 is {varied} ({meta['calibration_samples']} unlabelled samples of the training split, seed k). "
           "Every replicate is evaluated on the same held-out images. Cells read the mean top-1 change against "
           "float in points ± its standard deviation over the replicates, then the mean number of held-out "
           "images whose top-1 differs from float's, then the mean output SQNR in dB.", "",
           "## Summary", "", "```",
           f"edgequant's mean change at least the better peer's:  "
           f"{sum(m['mean_at_least_better_peer'] for m in judged)}/{len(judged)} models",
           f"edgequant changes the fewest images on average:     "
           f"{sum(m['fewest_mean_changed'] for m in judged)}/{len(judged)} models",
           f"single replicates where edgequant >= better peer:   "
           f"{sum(m['replicates_at_least_better_peer'] for m in judged)}/{len(judged) * n}",
           f"behind a peer beyond chance (paired 95% interval):  "
           f"{sum(m['behind_beyond_chance'] for m in judged)}/{len(judged)} models",
           f"ahead of both peers beyond chance:                  "
           f"{sum(m['ahead_beyond_chance'] for m in judged)}/{len(judged)} models",
           "```", "",
           "| model | float top-1 (mean) | " + " | ".join(methods) + " | replicates with edgequant ≥ better peer |",
           "|---|---:|" + "---|" * len(methods) + "---:|"]
    for m in models:
        cells = []
        for method in methods:
            s = m["methods"].get(method)
            if s is None:
                cells.append("-")
                continue
            sq = "-" if s["mean_sqnr_db"] is None else f"{s['mean_sqnr_db']:.1f}"
            cells.append(f"{s['mean_delta_pt']:+.2f} ± {s['sd_delta_pt']:.2f} / {s['mean_changed']:.1f} / {sq}")
        fl = floats.get(m["model"]) or [float("nan")]
        out.append(f"| {m['model']} | {statistics.fmean(fl):.2f}% | " + " | ".join(cells)
                   + f" | {m.get('replicates_at_least_better_peer', '-')}/{n} |")
    if judged:
        peers = [p for p in PEERS if any(p in m["vs_peer"] for m in judged)]
        out += ["", "edgequant minus each peer, paired by replicate (same trained model, same calibration draw): the "
                "mean difference in top-1 change, in points, with its 95% t interval. An interval that contains 0 "
                "is a difference chance explains.", "",
                "| model | " + " | ".join(f"edgequant - {p}" for p in peers) + " |",
                "|---|" + "---|" * len(peers)]
        for m in judged:
            out.append(f"| {m['model']} | " + " | ".join(
                "-" if (v := m["vs_peer"].get(p)) is None else f"{v['mean']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}]"
                for p in peers) + " |")
    return "\n".join(out) + "\n"


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    from edgequant._util import atomic_dir_file

    p = argparse.ArgumentParser(prog="python -m benchmarks.replicates", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=_list, default=list(zoo.ZOO), help="comma-separated zoo models (default: all)")
    p.add_argument("--scheme", default="int8")
    p.add_argument("--methods", type=_list, default=[*PEERS, PRIMARY])
    p.add_argument("--replicates", type=int, default=10, help="replicates per model (default 10)")
    p.add_argument("--same-model", action="store_true", help="vary the calibration draw only, not the model")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="replicates", help="file name stem (default: replicates)")
    p.add_argument("--cache", type=Path, default=zoo.DEFAULT_CACHE)
    args = p.parse_args(argv)
    if args.replicates < 1:
        print(f"benchmarks.replicates: error: --replicates: expected a positive number, found {args.replicates}",
              file=sys.stderr)
        return 2
    schemes = [s for s in SCHEMES if s != TUNED]  # tuned is a row of the benchmark, not a scheme to repeat
    if args.scheme not in schemes:
        print(f"benchmarks.replicates: error: unknown scheme {args.scheme!r}: expected one of {', '.join(schemes)}",
              file=sys.stderr)
        return 2
    try:
        for m in args.models:
            zoo.get_spec(m)
        for m in args.methods:
            get_method(m)
    except KeyError as exc:  # zoo.UnknownModelError is one
        print(f"benchmarks.replicates: error: {exc.args[0]}", file=sys.stderr)
        return 2
    command = "python -m benchmarks.replicates " + " ".join(argv if argv is not None else sys.argv[1:])
    result = run_replicates(args.models, args.scheme, args.methods, args.replicates, args.cache, args.same_model,
                            log=lambda s: print(s, file=sys.stderr, flush=True))
    md = markdown(result, command.strip())
    atomic_dir_file(args.out / f"{args.name}.json", json.dumps(result, indent=1) + "\n")
    atomic_dir_file(args.out / f"{args.name}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
