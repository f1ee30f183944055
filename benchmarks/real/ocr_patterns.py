"""Where PP-OCRv4's int8 reads differently from float: exact match by line ending, on development lines only.

    python -m benchmarks.real.ocr_patterns [--lines 160] [--suffixes '|| 7|| 4|| 12|| ok||-7']

real.md's test split appends " 7" to every test string that also occurs in another split (so that no
test string is seen in calibration or tuning), and edgequant's int8 reads a share of those lines
without the space. This benchmark asks whether that is one pattern or the model's int8 reading in
general: it renders the same dev strings with several endings (the dev split's fonts, noise and blur;
no test string, no test image) and measures, for each ending, the share of lines each model reads
exactly as float does, and its output SQNR against float; then each model's batch-1 latency as a
ratio to float's, in interleaved rounds.

Models, all from the benchmark's cached float .tflite and its 16 calibration lines:
- int8: edgequant's default (float islands, since the model has attention; auto observer and transforms);
- int8, depthwise int8: the same islands with the 14 depthwise convolutions int8, the plan before
  depthwise convs joined the islands (a recipe setting each one's precision to int8);
- int8, islands off: the same with ``float_islands=False``, every op integer (the peers' layout);
- w4a8 and dynamic: edgequant's defaults.
Writes benchmarks/results/ocr-patterns.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.real import write_results

RESULTS = Path(__file__).resolve().parents[1] / "results"
SUFFIXES = ("", " 7", " 4", " 12", " ok", "-7")


def _variants(tflite: bytes) -> dict[str, dict]:
    """Variant name -> quantize keywords. The depthwise-int8 variant's recipe sets those ops' precision, which
    the float-island plan then leaves as set."""
    from edgequant.engines.litert import layer_ops

    depthwise = {name: {"precision": "int8"} for name, op in layer_ops(tflite).items() if op == "DEPTHWISE_CONV_2D"}
    return {
        "int8": {"scheme": "int8"},
        "int8, depthwise int8": {"recipe": {"version": 2, "scheme": "int8", "tensors": depthwise},
                                 "float_islands": True},
        "int8, islands off": {"scheme": "int8", "float_islands": False},
        "w4a8": {"scheme": "w4a8"},
        "dynamic": {"scheme": "dynamic"},
    }


def _markdown(result: dict) -> str:
    names = list(result["variants"])
    lines = ["# PP-OCRv4 recognizer: exact match with float by line ending (dev lines only)", "",
             f"{result['lines']} dev strings, each rendered with every ending; calibration: "
             f"{result['calibration']} lines of the calibration split. Cells: the share of lines read exactly as "
             "float reads them / output SQNR against float (dB). `python -m benchmarks.real.ocr_patterns`, "
             f"{result['date']}, {result['seconds']:.0f} s.", "",
             "| ending | float reads the truth | " + " | ".join(names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for row in result["rows"]:
        cells = " | ".join(f"{row[n]['agreement']:.3f} / {row[n]['sqnr_db']:.1f}" for n in names)
        lines.append(f"| {row['suffix']!r} | {row['float_truth']:.3f} | {cells} |")
    mean = " | ".join(f"{np.mean([r[n]['agreement'] for r in result['rows']]):.3f}" for n in names)
    lines += [f"| mean over endings | | {mean} |"]
    if "latency" in result:
        lat = " | ".join(f"{result['latency'][n]:.2f}x" for n in names)
        lines.append(f"| latency (x float, median of {result['runs']} interleaved batch-1 rounds) | | {lat} |")
    lines.append("")
    for n in names:
        lines.append(f"- {n}: {result['variants'][n]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.ocr_patterns", description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, default=160)
    p.add_argument("--suffixes", default="|".join(SUFFIXES), help="endings separated by |")
    p.add_argument("--runs", type=int, default=30, help="interleaved latency rounds")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    import edgequant as eq
    from benchmarks.real import data
    from benchmarks.real.cells import SameText
    from benchmarks.real.models import MODELS, text_lines
    from benchmarks.real.real import float_model
    from benchmarks.real.score import decode_text
    from edgequant.evaluate import fidelity
    from edgequant.evaluate.latency import measure_interleaved
    from edgequant.runtime import Runner

    started = time.time()
    spec = MODELS["ppocr_rec"]
    charset = spec.charset()
    same_text = SameText(tuple(charset))  # what tune's task score for the recognizers measures
    ftfl, _ = float_model(spec, False)
    calibration = spec.make_split("calibration", 16).inputs
    built, notes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "float.tflite"
        source.write_bytes(ftfl)
        for name, kw in _variants(ftfl).items():
            q = eq.quantize(source, calibration=calibration, **kw)
            built[name] = q.tflite
            notes[name] = q.recipe.summary()
            print(f"built {name}", file=sys.stderr, flush=True)
    runners = {name: Runner(tfl, what=name) for name, tfl in built.items()}
    reference = Runner(ftfl, what="float")
    strings = data.text_strings("dev", args.lines)
    rows = []
    for suffix in args.suffixes.split("|"):
        truth = [s + suffix for s in strings]
        x = {"x": text_lines(truth, "dev", 48, 320, keep_aspect=True)}
        ref = reference.predict_output(x)
        read = decode_text(ref, charset)
        row = {"suffix": suffix, "float_truth": float(np.mean([a == b for a, b in zip(read, truth)]))}
        for name, runner in runners.items():
            out = runner.predict_output(x)
            row[name] = {"agreement": float(same_text({"y": out}, {"y": ref}).mean()),
                         "sqnr_db": float(fidelity(out, ref).sqnr_db)}
        rows.append(row)
        print(f"ending {suffix!r} done", file=sys.stderr, flush=True)
    # Latency last, on an idle interpreter each: interleaved batch-1 rounds, as a ratio to float's.
    timed = measure_interleaved([reference, *runners.values()], {"x": x["x"][:1]}, runs=args.runs)
    latency = {name: t.median_ms / timed[0].median_ms for name, t in zip(runners, timed[1:])}
    result = {"lines": args.lines, "calibration": 16, "variants": notes, "rows": rows, "latency": latency,
              "runs": args.runs,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": time.time() - started}
    write_results(args.out, "ocr-patterns", result, _markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
