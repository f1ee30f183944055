"""Export: the trained simulation as an integer .tflite that computes what the simulation computed.

    kernels onto the grid -> folded float .tflite -> pair tensors again -> learned ranges as the
    calibration result -> litert engine (ops without a simulated twin kept float) -> check stored weights

The folded Keras graph is converted with its kernels already on the engine's grid, so the
engine's own rounding reproduces exactly the simulated integers (checked afterwards, as for
AdaRound). Each learned activation range goes to litert-quantizer as that tensor's
calibration result, from which it derives the simulated scale and zero point. Tensors with
no learned range (the fixed-scale SOFTMAX output, tensors inside float layers) get min-max
ranges from one calibration pass of the exported float graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgequant.calibrate import MIN_SCALE, collect_stats, compute_ranges
from edgequant.engines.litert import rewrite_keeping_float
from edgequant.errors import EngineError
from edgequant.frontends import inspect_float_tflite
from edgequant.qat.graph import FoldedGraph
from edgequant.qat.match import match, plan_quantizers
from edgequant.qat.sim import Simulation, weight_bits
from edgequant.transforms import stored_mismatches
from edgequant.types import CalibrationInput, Scheme, SourceKind

__all__ = ["snap_weights", "export", "tflite_layout"]


def tflite_layout(kind: str, kernel: np.ndarray) -> np.ndarray:
    """A Keras kernel in the layout the converter stores it: CONV_2D [out, kh, kw, in], FULLY_CONNECTED
    [out, in], DEPTHWISE_CONV_2D [1, kh, kw, in * multiplier]."""
    if kind == "Conv2D":
        return np.transpose(kernel, (3, 0, 1, 2))
    if kind == "Dense":
        return kernel.T
    kh, kw, c, mult = kernel.shape
    return kernel.reshape(1, kh, kw, c * mult)


def snap_weights(graph: FoldedGraph, sim: Simulation, scheme: Scheme) -> dict[int, np.ndarray]:
    """Put every simulated kernel onto its grid in place; returns the integers (tflite layout) by node id."""
    from edgequant.qat.fakequant import weight_grid

    integers = {}
    for node in graph.weighted_nodes():
        wrapper = sim.wrappers[id(node)]
        kernel = np.asarray(node.op.kernel.numpy(), np.float32)
        q, scale = weight_grid(kernel, weight_bits(scheme, node.weighted or ""), wrapper.reduce_axes)
        node.op.kernel.assign(q.astype(np.float32) * scale)  # float32 product, as the engine dequantizes
        integers[id(node)] = tflite_layout(node.weighted or "", q)
    return integers


def _weight_tensors(tflite: bytes, graph: FoldedGraph) -> dict[int, tuple[int, str]]:
    """The .tflite constant (index, name) holding each weighted node's kernel, found by value in the
    converter's layout."""
    from edgequant.graph.edit import GraphEditor

    ed = GraphEditor(tflite, "folded float model")
    consts = [t for t in range(len(ed.model.subgraphs[0].tensors))
              if ed.is_constant(t) and ed.tensor_dtype(t) == "float32"]
    found = {}
    for node in graph.weighted_nodes():
        want = tflite_layout(node.weighted or "", np.asarray(node.op.kernel.numpy(), np.float32))
        for t in consts:
            if ed.tensor_shape(t) == want.shape and np.array_equal(ed.read_constant(t), want):
                found[id(node)] = (t, ed.tensor_name(t))
                break
    return found


def export(graph: FoldedGraph, sim: Simulation, scheme: Scheme, calib_x: np.ndarray,
           source: Path) -> tuple[bytes, tuple[str, ...], list[str]]:
    """The integer .tflite, the tensors whose ops were kept float, and notes on what was done."""
    from edgequant.frontends.keras import convert_keras_model

    integers = snap_weights(graph, sim, scheme)
    floats = inspect_float_tflite(convert_keras_model(graph.model, "the folded QAT graph"), source, SourceKind.KERAS)
    m = match(graph, floats.tflite, calib_x)
    points, keep_float, notes = plan_quantizers(graph, m)
    fallback, _ = compute_ranges(collect_stats(floats.tflite, calib_x), "minmax", 8)
    ranges: dict[str, tuple[float, float]] = {}
    learned = widened = 0
    for t in m.activations:
        name = m.names[t]
        key = m.key_of.get(t)
        point = points.get(key) if key is not None else None
        root = point.shared_with if point is not None and point.kind == "shared" else key
        quantizer = sim.quantizers.get(root) if root is not None and point is not None else None
        if quantizer is not None and hasattr(quantizer, "range"):
            lo, hi = quantizer.range()
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            if hi - lo < MIN_SCALE * 255:
                hi, widened = lo + MIN_SCALE * 255, widened + 1
            ranges[name] = (lo, hi)
            learned += 1
        elif name in fallback:
            ranges[name] = fallback[name]
    notes.append(f"{learned} activation ranges from training, {len(ranges) - learned} from min-max over "
                 f"{len(calib_x)} samples (tensors without a learned range: fixed-scale outputs, float layers)")
    if widened:
        notes.append(f"{widened} learned range(s) narrower than {MIN_SCALE * 255:.2g} widened (scale floor {MIN_SCALE:g})")
    calib = CalibrationInput(None, ranges, len(calib_x), "ranges learned in quantization-aware training")
    quantized = rewrite_keeping_float(floats, scheme, calib, tuple(keep_float))
    # Kernels of ops kept float stay float: only the others must hold the simulated integers.
    kept = {t for op in m.ops if any(m.names.get(o) in set(keep_float) for o in op.outputs) for t in op.inputs}
    found = _weight_tensors(floats.tflite, graph)
    grid = {found[i][1]: v for i, v in integers.items() if i in found and found[i][0] not in kept}
    missing = sum(1 for i in integers if i not in found)
    bad = stored_mismatches(quantized, grid)
    if bad:
        raise EngineError(f"litert-quantizer stored other weights than the simulated ones for {len(bad)} of "
                          f"{len(grid)} kernels (first: {bad[0]}): its weight grid differs from the simulated one")
    notes.append(f"checked: the exported model stores exactly the simulated weights ({len(grid)} kernels, "
                 f"{sum(v.size for v in grid.values()):,} values)"
                 + (f"; {missing} kernel(s) not found by value in the converted graph" if missing else ""))
    return quantized, tuple(keep_float), notes
