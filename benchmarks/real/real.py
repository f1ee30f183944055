"""Real pretrained models, every method side by side in one run per model (issue 18).

    python -m benchmarks.real [--models mobilenet_v2,minilm] [--quick] [--calibration N] [--dev N]
                              [--test N] [--runs N] [--tune-budget 2m] [--methods edgequant,...]

Per model: the float .tflite through ``edgequant.convert`` (checked against its source), then every cell
of cells.py built from the calibration split, scored on the test split against the float model's outputs
(and the labels where there are any), and timed batch-1 interleaved in one round-robin (1 thread). tune
chooses on the dev split only. A cell that fails is an error with its one-line reason and the run goes on.
Results merge into benchmarks/results/real.json (a run with --models replaces only those models; one with --methods
also keeps the model's other cells from the earlier run, each marked with that run's date, and takes that run's
split sizes: a size option that differs from them is refused) and
real.md is rendered from it with the issue's goals, each met or not met.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path


from benchmarks.real import goals as goals_mod
from benchmarks.real.cells import Context, cells
from benchmarks.real.fetch import DEFAULT_CACHE
from benchmarks.real.models import MODELS, RealModel, Split
from benchmarks.real.score import PRIMARY, score

RESULTS = Path(__file__).resolve().parents[1] / "results"
# Split sizes (calibration, dev, test) and latency rounds; --quick is the short lane.
FULL = {"calibration": 16, "dev": 16, "test": 32, "runs": 20, "tune_budget": "4m"}
QUICK = {"calibration": 8, "dev": 8, "test": 12, "runs": 5, "tune_budget": "40s"}
# Larger test splits where a model runs fast enough: on 32 crops one flipped prediction is 3 points, so the
# classifiers' "within 1 point" goals could not be told apart from noise (photo crops are unlimited). The dev
# split too: tune's "top-1 within 1 point" on 16 crops is met only by a model that agrees on all 16, which one
# MobileNetV2 int8 model did and then agreed on 74% of the test crops; on 128, one miss is 0.8 points. The
# text recognizers' goal (exact match within 1 point of float) is the same arithmetic on rendered lines, also
# unlimited; their tune checks cosine, not a share, so their dev split stays small. BlazeFace's faces are
# pasted on photo crops, also unlimited, and its goal is a mean IoU: on 48 faces one face found at another
# anchor (IoU 0.9 -> 0) moves it 2 points, more than the gap between edgequant's int8 and the best peer's.
FULL_BY_MODEL = {"mobilenet_v2": {"dev": 128, "test": 128}, "efficientnet_lite0": {"dev": 128, "test": 128},
                 "ppocr_rec": {"test": 128}, "svtrv2": {"test": 128},
                 "blazeface": {"calibration": 24, "dev": 24, "test": 192}}


def _one_line(exc: BaseException) -> str:
    from benchmarks.real.minilm_peers import _one_line as one

    return f"{type(exc).__name__}: {one(exc)}"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def float_model(model: RealModel, reconvert: bool) -> tuple[bytes, list[str]]:
    """The checked float .tflite, cached in .model-cache/real/<name>/ (keyed by its MODEL spec)."""
    import edgequant as eq

    folder = DEFAULT_CACHE / "real" / model.name
    blob, stamp = folder / "float.tflite", folder / "float.json"
    spec = {"source": model.source(), "input_shapes": list(model.input_shapes or ())}
    if not reconvert and blob.exists() and stamp.exists():
        saved = json.loads(stamp.read_text())
        if saved.get("spec") == spec:
            return blob.read_bytes(), saved["notes"]
    fm = eq.convert(spec["source"], input_shapes=model.input_shapes)
    folder.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(fm.tflite)
    stamp.write_text(json.dumps({"spec": spec, "notes": list(fm.notes)}, indent=1))
    return fm.tflite, list(fm.notes)


def run_model(model: RealModel, sizes: dict, only: set[str] | None, reconvert: bool, analyze: bool) -> dict:
    from edgequant._util import quiet
    from edgequant.evaluate import measure_interleaved
    from edgequant.runtime import Runner

    started = time.time()
    entry: dict = {"title": model.title, "kind": model.kind, "primary": PRIMARY[model.kind],
                   "transformer": model.transformer, "cnn": model.cnn,
                   "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   "sizes": sizes, "cells": {}}
    _log(f"[{model.name}] converting to float .tflite")
    try:
        float_tflite, notes = float_model(model, reconvert)
    except Exception as exc:
        entry["error"] = f"float conversion failed: {_one_line(exc)}"
        _log(f"[{model.name}] {entry['error']}")
        return entry
    entry["float_notes"] = notes
    float_runner = Runner(float_tflite, what=f"{model.name} float")
    splits = {s: _named(model.make_split(s, sizes[s]), float_runner.input_names)
              for s in ("calibration", "dev", "test")}
    entry["split_sizes"] = {s: len(v) for s, v in splits.items()}
    charset = model.charset() if model.charset else None
    ref = float_runner.predict(splits["test"].inputs)
    ctx = Context(model, float_tflite, float_runner.key, float_runner.input_names, splits["calibration"],
                  splits["dev"], float_runner.predict(splits["dev"].inputs), sizes["tune_budget"])
    runners: dict[str, Runner] = {"float": float_runner}
    built: dict[str, bytes] = {}
    entry["cells"]["float"] = {"method": "float", "scheme": "float", "peer": False, "bytes": len(float_tflite),
                               **score(model.kind, ref, ref, splits["test"].labels, charset)}
    todo = cells(ctx, only)
    for k, cell in enumerate(todo, 1):
        _log(f"[{model.name}] {k}/{len(todo)} {cell.key} ...")
        t = time.time()
        row: dict = {"method": cell.method, "scheme": cell.scheme, "peer": cell.peer}
        try:
            with quiet():
                blob, note = cell.build()
            runner = Runner(blob, what=cell.key)
            built[cell.key] = blob
            _keep(model.name, cell.key, blob)
            outs = runner.predict(splits["test"].inputs)
            row.update(bytes=len(blob), note=note, **score(model.kind, outs, ref, splits["test"].labels, charset))
            runners[cell.key] = runner
        except Exception as exc:  # a failing method is an error cell, never the end of the run
            row["error"] = _one_line(exc)
        row["seconds"] = round(time.time() - t, 1)
        entry["cells"][cell.key] = row
        _log(f"[{model.name}]   {row.get('error') or _brief(row, model.kind)} ({row['seconds']} s)")
    _log(f"[{model.name}] latency: {len(runners)} models, {sizes['runs']} interleaved rounds")
    first = {n: v[:1] for n, v in splits["test"].inputs.items()}
    errors: dict[int, str] = {}
    lat = measure_interleaved(list(runners.values()), first, sizes["runs"], 3, errors=errors)
    base = lat[0].median_ms if lat[0] is not None else math.nan
    for (key, _), got in zip(runners.items(), lat):
        if got is not None:
            entry["cells"][key].update(latency_ms=got.median_ms, latency_ratio=got.median_ms / base)
    for pos, why in errors.items():
        entry["cells"][list(runners)[pos]]["latency_error"] = why
    for row in entry["cells"].values():
        if "bytes" in row:
            row["size_ratio"] = row["bytes"] / len(float_tflite)
    if analyze:
        from benchmarks.real.explain import explain

        _log(f"[{model.name}] edgequant analyze on edgequant int8 and every edgequant model >= 1.10x float latency")
        with quiet():
            entry["analysis"] = explain(entry["cells"], built, DEFAULT_CACHE / "real" / model.name / "float.tflite",
                                        splits["dev"])
    entry["seconds"] = round(time.time() - started, 1)
    return entry


def _keep(model: str, key: str, blob: bytes) -> None:
    """Keep a built model for inspection (edgequant analyze / compare on it), overwritten by the next run;
    a cache that cannot be written is the harness's problem, not the method's."""
    folder = DEFAULT_CACHE / "real" / model / "built"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{key.replace(' ', '_')}.tflite").write_bytes(blob)
    except OSError as exc:
        _log(f"[{model}]   (not kept in {folder}: {exc.strerror})")


def _named(split: Split, names: tuple[str, ...]) -> Split:
    """The split with its one input named as the converted model names it (a torch source's input names
    come from its forward() arguments); peers that calibrate by name need it."""
    if len(split.inputs) == 1 and len(names) == 1:
        return Split({names[0]: next(iter(split.inputs.values()))}, split.labels)
    if set(split.inputs) != set(names):
        raise KeyError(f"the data has inputs {sorted(split.inputs)}, the model {sorted(names)}")
    return split


def _brief(row: dict, kind: str) -> str:
    p = PRIMARY[kind]
    return f"{p} {row[p]:.3f}, SQNR {row['sqnr_db']:.1f} dB, cosine {row['cosine']:.4f}, {row['bytes'] / 1e6:.2f} MB"


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real", description=__doc__.split("\n")[0])
    p.add_argument("--models", help=f"comma-separated, of: {', '.join(MODELS)} (default: all)")
    p.add_argument("--methods", help="comma-separated method names or cell keys (\"edgequant int8\") to build "
                   "(default: all; float always)")
    p.add_argument("--quick", action="store_true", help="small splits, few latency rounds, short tune")
    for name in ("calibration", "dev", "test", "runs"):
        p.add_argument(f"--{name}", type=int, help=f"{name} size (default {FULL[name]}, quick {QUICK[name]})")
    p.add_argument("--tune-budget", help=f"tune's time budget per model (default {FULL['tune_budget']})")
    p.add_argument("--reconvert", action="store_true", help="convert the float models again")
    p.add_argument("--no-analyze", action="store_true", help="skip edgequant analyze on edgequant's models")
    p.add_argument("--render", action="store_true", help="only judge the goals and render real.md from real.json")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    names = [n.strip() for n in args.models.split(",")] if args.models else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"benchmarks.real: error: unknown model {', '.join(unknown)}: expected some of {', '.join(MODELS)}",
              file=sys.stderr)
        return 2
    sizes = dict(QUICK if args.quick else FULL)
    given = {name: getattr(args, name) for name in ("calibration", "dev", "test", "runs")
             if getattr(args, name) is not None}
    if args.tune_budget:
        given["tune_budget"] = args.tune_budget
    sizes.update(given)
    only = {m.strip() for m in args.methods.split(",")} if args.methods else None

    out_json = args.out / "real.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {"models": {}}
    for name in [] if args.render else names:
        earlier = results["models"].get(name)
        model_sizes = sizes if args.quick else {**sizes, **FULL_BY_MODEL.get(name, {}), **given}
        if only and earlier and "sizes" in earlier and not args.quick:
            # The kept cells were measured on the earlier run's splits: the new ones must be too.
            # tune's time budget shapes the tune cell alone (its note states the budget), so a run that
            # rebuilds that cell may give another one; the splits and latency rounds are shared by every cell.
            retune = bool(only & {"edgequant tune", "edgequant tune tuned"})
            clash = {k: (v, earlier["sizes"].get(k)) for k, v in given.items()
                     if earlier["sizes"].get(k) != v and not (k == "tune_budget" and retune)}
            if clash:
                shown = ", ".join(f"--{k.replace('_', '-')} {v} (earlier {was})" for k, (v, was) in clash.items())
                print(f"benchmarks.real: error: {name}: a --methods run keeps the earlier cells, so it needs the "
                      f"earlier run's sizes: expected them or no size option, found {shown}", file=sys.stderr)
                return 2
            model_sizes = dict(earlier["sizes"])
            if "tune_budget" in given:
                model_sizes["tune_budget"] = given["tune_budget"]
        entry = _finite(run_model(MODELS[name], model_sizes, only, args.reconvert, not args.no_analyze))
        results["models"][name] = carry(entry, results["models"].get(name)) if only else entry
        results["models"] = {n: results["models"][n] for n in MODELS if n in results["models"]}
        results["goals"] = goals_mod.evaluate(results["models"])
        args.out.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=1) + "\n")
        (args.out / "real.md").write_text(render(results))
    results["goals"] = goals_mod.evaluate(results["models"])
    args.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "real.md").write_text(render(results))
    for line in goals_mod.lines(results["goals"]):
        print(line)
    return 0


def carry(new: dict, old: dict | None) -> dict:
    """A --methods run's entry with the earlier run's other cells kept, each marked with the run it came from
    (its ``run``: that run's date); their latency ratios are to float in their own run's rounds."""
    if old is None or "error" in old or "error" in new:
        return new
    cells = {k: ({**r, "run": r.get("run", old["date"])} if k not in new["cells"] else new["cells"][k])
             for k, r in old["cells"].items()}
    cells.update({k: r for k, r in new["cells"].items() if k not in cells})
    analysis = {k: a for k, a in (old.get("analysis") or {}).items() if k not in new["cells"]}
    analysis.update(new.get("analysis") or {})
    return {**new, "cells": cells, **({"analysis": analysis} if analysis else {})}


def summary_row(name: str, m: dict) -> str:
    if "error" in m:
        return f"| {name} | | | not measured: {m['error'][:100]} | | |"
    prim, cells = m["primary"], m["cells"]
    ok = {k: r for k, r in cells.items() if "error" not in r}

    def fig(key: str) -> str:
        r = ok.get(key)
        if r is None:
            return "failed" if key in cells else "not run"
        return f"{_fmt(r[prim])} / {_fmt(r['sqnr_db'], '.1f')} dB"

    peers = [k for k, r in ok.items() if r.get("peer") and r["scheme"] == "int8"]
    best = max(peers, key=lambda k: goals_mod._num(ok[k]["sqnr_db"]), default=None)
    close = [k for k, r in ok.items() if not r.get("peer") and k != "float" and r.get("latency_ratio") is not None
             and goals_mod._num(r[prim]) >= goals_mod._num(cells["float"][prim]) - goals_mod.POINT - 1e-9]
    fast = min(close, key=lambda k: goals_mod.speed(ok[k])[0], default=None)
    peer = f"{best}: {fig(best)}" if best else "none built"
    quick = f"{fast}: {goals_mod.speed(ok[fast])[1]}" if fast else "none"
    return f"| {name} | {prim} | {cells['float']['bytes'] / 1e6:.1f} | {fig('edgequant int8')} | {peer} | {quick} |"


def _fmt(v, spec: str = ".3f") -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return format(v, spec)


def render(results: dict) -> str:
    lines = ["# Real pretrained models: every method side by side (issue 18)", "",
             "Generated by `python -m benchmarks.real` (benchmarks/real/README.md). Each model's cells were built "
             "in one run: calibrated on the calibration split, `edgequant tune` choosing on the dev split, every "
             "figure on the test split (no photo, face, string or sentence in two splits). Metrics are against "
             "the float .tflite's outputs on the same inputs, except OCR exact match and CER (against the rendered "
             "strings). SQNR and cosine: the worst output. Latency: median of interleaved batch-1 rounds, 1 thread, "
             "as a ratio to float in the same rounds.", "", "## Goals", ""]
    lines += [f"- {line}" for line in goals_mod.lines(results.get("goals", []))]
    lines += ["", "## Summary", "", "int8: edgequant's default against the best int8 peer by output SQNR (its task metric "
              "beside); fastest: edgequant's fastest model within 1 point of float's task metric.", "",
              "| model | task metric | float MB | edgequant int8 | best int8 peer | fastest edgequant within 1 pt |",
              "|---|---|---:|---|---|---|"]
    lines += [summary_row(name, m) for name, m in results["models"].items()]
    for name, m in results["models"].items():
        lines += ["", f"## {m['title']} (`{name}`)", ""]
        if "error" in m:
            lines += [f"Not measured: {m['error']}", ""]
            continue
        s = m["split_sizes"]
        prim = m["primary"]
        lines += [f"{m['date']}; calibration {s['calibration']}, dev {s['dev']}, test {s['test']}; latency "
                  f"{m['sizes']['runs']} rounds; tune budget {m['sizes']['tune_budget']}; {m['seconds']:.0f} s."
                  + (" Rows marked (run DATE) were built in that earlier run and kept (this run rebuilt only the "
                     "others, `--methods`); their latency ratio is to float in that run's rounds."
                     if any(r.get("run") for r in m["cells"].values()) else ""), "",
                  f"| method | scheme | MB | x size | {prim} | extra | SQNR dB | cosine | x latency | build s |",
                  "|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
        for key, r in m["cells"].items():
            method = r["method"] + (f" (run {r['run']})" if r.get("run") else "")
            if "error" in r:
                lines.append(f"| {method} | {r['scheme']} | error: {r['error'].replace('|', '/')[:160]} "
                             f"| | | | | | | {r.get('seconds', '')} |")
                continue
            extra = {"classifier": lambda r: f"top-5 {r['top5_overlap']:.3f}",
                     "ocr": lambda r: f"CER {r['cer']:.3f}, = float text {r['float_text_agreement']:.2f}",
                     "sentence": lambda r: f"gap {r['gap']:.3f}"}.get(m["kind"], lambda r: "")(r)
            lines.append(f"| {method} | {r['scheme']} | {r['bytes'] / 1e6:.2f} | {_fmt(r.get('size_ratio'), '.2f')} "
                         f"| {_fmt(r[prim])} | {extra} | {_fmt(r['sqnr_db'], '.1f')} | {_fmt(r['cosine'], '.4f')} "
                         f"| {_fmt(r.get('latency_ratio'), '.2f')} | {_fmt(r.get('seconds'), '')} |")
        if m.get("analysis"):
            lines += ["", "edgequant analyze (dev split):", ""]
            for k, a in m["analysis"].items():
                text = a["error"] if "error" in a else "; ".join(a["findings"]) or "no layer or speed finding"
                lines.append(f"- {k}: {text}")
        notes = [(k, r["note"]) for k, r in m["cells"].items() if r.get("note")]
        if notes:
            lines += ["", "Recipes that ran:", ""] + [f"- {k}: {n}" for k, n in notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
