"""python -m benchmarks [--quick] [--models ...] [--schemes ...] [--methods ...] [--runs N] [--out DIR]"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import zoo
from benchmarks.methods import METHODS, SCHEMES
from benchmarks.report import markdown, summary_text, tuned_text
from benchmarks.run import QUICK_MODELS, QUICK_SCHEMES, run_benchmark
from edgequant._util import atomic_dir_file
from edgequant.report.html import write_report

RESULTS = Path(__file__).resolve().parent / "results"


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help=f"models {','.join(QUICK_MODELS)}; schemes {','.join(QUICK_SCHEMES)}")
    p.add_argument("--models", type=_list, help="comma-separated zoo models (default: all)")
    p.add_argument("--schemes", type=_list, help=f"comma-separated, from {','.join(SCHEMES)} (default: all)")
    p.add_argument("--methods", type=_list, default=list(METHODS), help="comma-separated (default: all)")
    p.add_argument("--runs", type=int, default=100, help="interleaved latency runs per variant")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for <name>.json and <name>.md")
    p.add_argument("--name", help="file name stem (default: latest, or quick with --quick)")
    p.add_argument("--cache", type=Path, default=zoo.DEFAULT_CACHE, help="where trained zoo models are kept")
    args = p.parse_args(argv)
    models = args.models or (list(QUICK_MODELS) if args.quick else list(zoo.ZOO))
    schemes = args.schemes or (list(QUICK_SCHEMES) if args.quick else list(SCHEMES))
    name = args.name or ("quick" if args.quick else "latest")
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        result = run_benchmark(models, schemes, args.methods, args.runs, args.cache,
                               log=lambda s: print(s, file=sys.stderr, flush=True))
    except KeyError as exc:
        print(f"benchmarks: error: {exc.args[0]}", file=sys.stderr)
        return 2
    atomic_dir_file(args.out / f"{name}.json", json.dumps(result, indent=1) + "\n")
    atomic_dir_file(args.out / f"{name}.md", markdown(result, command.strip()))
    # The same results as a page with a chart pair per model (docs/report.md).
    page = write_report(args.out / f"{name}.json", args.out / f"{name}.html", title=f"edgequant benchmark: {name}")
    print(summary_text(result))
    tuned = tuned_text(result)
    if tuned:
        print("\n".join(tuned))
    print(f"\nwrote {args.out / (name + '.md')}, {args.out / (name + '.json')} and {page.path} "
          f"in {result['meta']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
