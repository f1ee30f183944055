"""Converting MobileNetV2 from PyTorch: litert-torch alone vs edgequant convert (with its check), side by side.

    python -m benchmarks.real.speed [--repeats N]

Both run in this process on the same module, alternating, after one warm-up
conversion each (first-call imports and tracing caches are not counted). The
ratio is edgequant / litert-torch; issue 16 asks for at most 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real.speed", description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import litert_torch

    import edgequant as eq
    from benchmarks.real.mobilenet_v2 import build
    from edgequant._util import quiet

    module, example = build()
    spec = f"{Path(__file__).with_name('mobilenet_v2.py')}:build"

    def alone() -> None:
        with tempfile.TemporaryDirectory() as tmp, quiet():
            litert_torch.convert(module, example).export(str(Path(tmp) / "m.tflite"))

    def edgequant() -> None:
        eq.convert(spec)

    times: dict[str, list[float]] = {"litert-torch": [], "edgequant": []}
    for k in range(args.repeats + 1):
        for name, fn in (("litert-torch", alone), ("edgequant", edgequant)):
            start = time.perf_counter()
            fn()
            if k:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    a, e = (statistics.median(times[n]) for n in ("litert-torch", "edgequant"))
    print(f"MobileNetV2 from PyTorch, median of {args.repeats}: litert-torch alone {a:.1f} s, "
          f"edgequant convert (load, convert, check) {e:.1f} s, ratio {e / a:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
