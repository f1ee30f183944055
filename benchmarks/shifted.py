"""python -m benchmarks.shifted [--models ...] [--scheme int8] [--methods ...]

Top-1 change against float on a held-out set nine times larger than the benchmark's: the 450
held-out digits plus eight copies shifted by one pixel (up, down, left, right and diagonals),
4,050 images none of which any model trained on. On 450 images one prediction is 0.22 points,
and the peers' own accuracy moves by one image between builds; here one image is 0.025 points.

It also counts the images whose top-1 differs from the float model's: the change that
quantization makes, before it happens to land on right or wrong answers.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks import zoo
from benchmarks.methods import get_method
from benchmarks.run import benchmark_calibration

__all__ = ["shifted_heldout", "main"]

PEERS = ("tf-converter", "litert-quantizer", "edgequant")


def shifted_heldout(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images and their eight one-pixel shifts (wrapping at the edge, where digits have only
    background), with the labels repeated: (9N, ...) and (9N,)."""
    copies = [x] + [np.roll(np.roll(x, dy, axis=1), dx, axis=2)
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    return np.concatenate(copies), np.tile(y, len(copies))


def main(argv: list[str] | None = None) -> int:
    import edgequant
    from edgequant.runtime import Runner
    from edgequant.train import split_digits

    p = argparse.ArgumentParser(prog="python -m benchmarks.shifted", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(zoo.ZOO), help="comma-separated zoo models (default: all)")
    p.add_argument("--scheme", default="int8")
    p.add_argument("--methods", default=",".join(PEERS))
    args = p.parse_args(argv)
    _, test = split_digits(zoo.SEED)
    images, labels = shifted_heldout(test.x.astype(np.float32), test.y)
    n = len(test.x)
    print(f"{args.scheme}: top-1 change in points on {len(images):,} images (held-out {n} only in brackets); "
          "'differ' = images whose top-1 differs from float's")
    for name in args.models.split(","):
        model = zoo.load(name)
        x = images[..., 0] if zoo.get_spec(name).input_kind == zoo.ROWS else images
        x = np.ascontiguousarray(x, dtype=np.float32)
        calib = benchmark_calibration(model)
        ref = Runner(edgequant.convert(model.keras_path).tflite, 1, "float").predict_output(x).argmax(axis=1)
        cells = [f"{name:<15s} float {np.mean(ref == labels) * 100:6.2f}%"]
        for method in args.methods.split(","):
            q = get_method(method).build(model.keras_path, args.scheme, calib)
            out = Runner(q, 1, method).predict_output(x).argmax(axis=1)
            delta = (np.mean(out == labels) - np.mean(ref == labels)) * 100
            held = (np.mean(out[:n] == labels[:n]) - np.mean(ref[:n] == labels[:n])) * 100
            cells.append(f"{method} {delta:+.3f} ({held:+.2f}) differ {int(np.sum(out != ref))}")
        print(" | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
