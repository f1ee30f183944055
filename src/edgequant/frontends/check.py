"""The conversion check: the converted .tflite must compute what its source computes.

litert-torch can miscompile silently (a real PP-OCRv4 recognizer came out with
probabilities 0.5-0.76 off), so every PyTorch and ONNX conversion runs the
.tflite in LiteRT and the source (torch, or onnxruntime for ONNX) on the same
inputs, output by output.

Tolerance (float outputs): max |tflite - source| <= ATOL + RTOL * max |source|,
per output. Float32 conversions that are right land near 1e-5 of that scale
(MobileNetV2 logits 2e-5, PP-OCRv4 probabilities 3e-6); a miscompiled op lands
far above it. Integer and boolean outputs must be equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from edgequant.errors import EngineError
from edgequant.runtime import open_interpreter
from edgequant.types import TensorSpec

__all__ = ["ATOL", "RTOL", "CheckResult", "generated_inputs", "check_conversion"]

ATOL = 1e-4
RTOL = 1e-3

# Inputs are {name: array with batch first}, in the layout the .tflite takes.
Inputs = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The worst output of the check and how many input sets were run."""

    samples: int
    worst_output: str
    max_abs_diff: float
    tolerance: float

    def describe(self) -> str:
        return (f"checked against the source on {self.samples} input set(s): largest output difference "
                f"{self.max_abs_diff:.2g} (output {self.worst_output!r}, tolerance {self.tolerance:.2g})")


def generated_inputs(specs: Sequence[TensorSpec], count: int = 2, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded inputs of each spec's dtype: floats uniform in [-1, 1], integers 0 or 1, booleans random.

    Integers stay 0 or 1 because they must be valid token ids and attention masks alike: a mask of 5
    pushes a transformer's large negative fill of masked scores to inf, and the source gives NaN.
    """
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        one = {}
        for spec in specs:
            shape = tuple(1 if d < 0 else d for d in spec.shape)
            kind = np.dtype(spec.dtype).kind
            if kind == "f":
                one[spec.name] = rng.uniform(-1, 1, shape).astype(spec.dtype)
            elif kind == "b":
                one[spec.name] = rng.integers(0, 2, shape).astype(bool)
            else:
                one[spec.name] = rng.integers(0, 2, shape).astype(spec.dtype)
        sets.append(one)
    return sets


def _run_tflite(interp, key: str, inputs: Inputs) -> dict[str, np.ndarray]:
    runner = interp.get_signature_runner(key)
    details = runner.get_input_details()
    feed = {name: np.asarray(inputs[name]).astype(details[name]["dtype"], copy=False) for name in details}
    return {k: np.asarray(v) for k, v in runner(**feed).items()}


def check_conversion(tflite: bytes, inputs: Sequence[Inputs],
                     reference: Callable[[Inputs], Mapping[str, np.ndarray]], what: str) -> CheckResult:
    """Run ``tflite`` and ``reference`` on every input set; an EngineError (exit 1) names the first bad output."""
    interp = open_interpreter(tflite, what=f"{what} (converted)")
    keys = list(interp.get_signature_list())
    key = "serving_default" if "serving_default" in keys else keys[0]
    worst = ("", 0.0, 0.0)
    for inp in inputs:
        got = _run_tflite(interp, key, inp)
        want = reference(inp)
        missing = sorted(set(want) - set(got))
        if missing:
            raise EngineError(f"conversion check of {what}: expected outputs {', '.join(sorted(want))} in the "
                              f".tflite, found {', '.join(sorted(got))}")
        for name, ref in want.items():
            ref = np.asarray(ref)
            out = got[name]
            if out.shape != ref.shape:
                raise EngineError(f"conversion check of {what}: output {name!r} expected shape {ref.shape}, "
                                  f"found {out.shape} in the .tflite")
            if ref.dtype.kind in "fc":
                diff = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
                tol = ATOL + RTOL * (float(np.max(np.abs(ref))) if ref.size else 0.0)
            else:
                diff = float(np.max(np.abs(out.astype(np.int64) - ref.astype(np.int64)))) if ref.size else 0.0
                tol = 0.0
            if not np.isfinite(diff) or diff > tol:
                raise EngineError(
                    f"conversion check of {what} failed: output {name!r} differs from the source by up to "
                    f"{diff:.3g} (expected at most {tol:.3g}); the converter miscompiled it, so no model was "
                    "written")
            if diff / max(tol, 1e-30) >= worst[1] / max(worst[2], 1e-30):
                worst = (name, diff, tol)
    return CheckResult(len(inputs), worst[0], worst[1], worst[2])
