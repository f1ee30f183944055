"""ONNX sources: onnx -> (fixed shapes, onnxsim) -> onnx2torch -> FX passes -> litert-torch, checked with onnxruntime.

The route, in order, and why:
1. Constant nodes become initializers: Paddle exports keep conv weights as
   Constant nodes, which onnx2torch would turn into graph ops.
2. Input shapes are fixed (``--input-shape NAME=1,3,48,320``): conversion needs
   static shapes, so an unknown dimension without one is bad input.
3. An If whose condition depends on shapes only is replaced by the branch it takes.
4. onnxsim folds the shape arithmetic the fixed shapes made constant; then every
   op must have an onnx2torch converter (LSTM, If and Loop have none).
5. onnx2torch builds a torch.fx module; fxpass makes Reshape/Slice static and
   weights contiguous; litert-torch converts it (pytorch.convert_module).
6. The .tflite is checked against onnxruntime on the original ONNX model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgequant._util import quiet
from edgequant.errors import EngineError, InputError, UnsupportedError
from edgequant.frontends.torchenv import import_onnx2torch, require
from edgequant.types import FloatModel, SourceKind, SourceOptions

__all__ = ["load_onnx", "parse_input_shape", "fix_input_shapes"]


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=1,3,48,320`` -> ('NAME', (1, 3, 48, 320))."""
    name, sep, dims = str(text).rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(d <= 0 for d in shape):
        raise InputError(f"--input-shape: expected NAME=D1,D2,... with positive integers, found {text!r}")
    return name, shape


def _dims(value_info: Any) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?") for d in dims]


def _graph_inputs(model: Any) -> list[Any]:
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _describe(name: str, dims: list[int | str]) -> str:
    return f"{name} (" + ",".join(str(d) for d in dims) + ")"


def fix_input_shapes(model: Any, shapes: Mapping[str, tuple[int, ...]], what: str) -> dict[str, tuple[int, ...]]:
    """Write ``shapes`` into the model's inputs; every input must end up fully known."""
    inputs = _graph_inputs(model)
    names = [i.name for i in inputs]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise InputError(f"--input-shape names {', '.join(unknown)}, which {what} does not have: expected one of "
                         + "; ".join(_describe(i.name, _dims(i)) for i in inputs))
    fixed: dict[str, tuple[int, ...]] = {}
    missing = []
    for inp in inputs:
        dims = _dims(inp)
        if inp.name in shapes:
            shape = shapes[inp.name]
            if len(shape) != len(dims) or any(isinstance(d, int) and d != s for d, s in zip(dims, shape)):
                raise InputError(f"--input-shape {inp.name}: expected {len(dims)} dimensions matching "
                                 f"{_describe(inp.name, dims)}, found {','.join(map(str, shape))}")
            for dim, size in zip(inp.type.tensor_type.shape.dim, shape):
                dim.Clear()
                dim.dim_value = size
            fixed[inp.name] = shape
        elif all(isinstance(d, int) for d in dims):
            fixed[inp.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
        else:
            missing.append(_describe(inp.name, dims))
    if missing:
        raise InputError(f"{what} has unknown input dimensions, which conversion must fix: expected "
                         f"--input-shape NAME=D1,D2,... for {'; '.join(missing)}")
    return fixed


def _constants_to_initializers(model: Any, numpy_helper: Any) -> int:
    graph, kept, moved = model.graph, [], 0
    for node in graph.node:
        # A trailing omitted optional input ("" - a Clip without max) is the same as none; onnx2torch
        # looks the empty name up as a tensor and fails.
        while len(node.input) and node.input[-1] == "":
            node.input.pop()
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Constant" and not node.domain and set(attrs) == {"value"}:
            graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(attrs["value"].t), node.output[0]))
            moved += 1
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return moved


def _fold_constant_ifs(model: Any, shapes: Mapping[str, tuple[int, ...]], onnx: Any, ort: Any, what: str) -> int:
    """Replace each top-level If whose condition is the same on two random inputs (with the input shapes
    fixed, a condition on shapes only) by the nodes of the branch it takes; returns how many.

    onnx2torch has no If, and onnxsim fails on If branches that read outer values (SVTRv2's decoder).
    """
    graph = model.graph
    ifs = [n for n in graph.node if n.op_type == "If" and not n.domain]
    if not ifs:
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    conds = [n.input[0] for n in ifs]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(c, onnx.TensorProto.BOOL, None) for c in conds)
    elem = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in _graph_inputs(model)}
    session = _session(ort, probe.SerializeToString(), what)
    runs = []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        feed = {n: (rng.uniform(-1, 1, s) if np.dtype(elem[n]).kind == "f" else rng.integers(0, 2, s)).astype(elem[n])
                for n, s in shapes.items()}
        runs.append([bool(np.asarray(v).all()) for v in session.run(conds, feed)])
    taken = {id(n): a for n, a, b in zip(ifs, *runs) if a == b}
    nodes = []
    for node in graph.node:
        if id(node) not in taken:
            nodes.append(node)
            continue
        branch = next(a.g for a in node.attribute if a.name == ("then_branch" if taken[id(node)] else "else_branch"))
        rename = {o.name: node.output[k] for k, o in enumerate(branch.output)}
        graph.initializer.extend(branch.initializer)
        for inner in branch.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(inner)
            for field in (copy.input, copy.output):
                for k, name in enumerate(field):
                    field[k] = rename.get(name, name)
            nodes.append(copy)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(taken)


def _check_ops(model: Any, onnx2torch: Any, what: str) -> None:
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain or "": o.version for o in model.opset_import}
    for node in model.graph.node:
        domain = node.domain or ""
        try:
            get_converter(node.op_type, opsets.get(domain, opsets.get("", 1)), domain or "")
        except NotImplementedError:
            hint = " (LSTM: export the model with the LSTM unrolled, or convert it from PyTorch)" \
                if node.op_type in ("LSTM", "GRU", "RNN") else ""
            raise UnsupportedError(f"{what}: op {node.op_type} (node {node.name or node.output[0]!r}) cannot be "
                                   f"converted: expected ops onnx2torch converts, found {node.op_type}{hint}") from None


def load_onnx(path: Path, options: SourceOptions) -> FloatModel:
    """An .onnx file as a checked float .tflite."""
    onnx, ort, torch = require("onnx", "onnxruntime", "torch", what=path.name)
    onnx2torch = import_onnx2torch(path.name)
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load {path.name}: expected an ONNX model, found: {text}") from None
    what = path.name
    original = model.SerializeToString()
    moved = _constants_to_initializers(model, numpy_helper)
    shapes = fix_input_shapes(model, dict(options.input_shapes), what)
    folded = _fold_constant_ifs(model, shapes, onnx, ort, what)
    try:
        model = _simplify(model, what)
    except EngineError:
        _check_ops(model, onnx2torch, what)  # an op onnx2torch lacks is the clearer reason
        raise
    # Checked after onnxsim, which folds shape-only ops onnx2torch lacks (Size) once shapes are fixed.
    _check_ops(model, onnx2torch, what)
    # onnxsim writes what it folds back as Constant nodes; onnx2torch takes only initializers as static
    # operands (a Clip's bounds, a Reshape's shape).
    moved += _constants_to_initializers(model, numpy_helper)
    elem = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in _graph_inputs(model)}
    example = {name: torch.from_numpy(_example(shape, elem[name])) for name, shape in shapes.items()}
    try:
        with quiet():
            graph_module = onnx2torch.convert(model).eval()
    except Exception as exc:
        raise UnsupportedError(f"onnx2torch cannot convert {what}: {str(exc).strip()[:200]}") from None
    from edgequant.frontends.fxpass import fuse_gelu, make_contiguous, make_static

    args = tuple(example[i.name] for i in _graph_inputs(model))
    try:
        with quiet():
            reshapes, slices = make_static(graph_module, args)
    except Exception as exc:
        raise EngineError(f"making shapes static in {what} failed: {str(exc).strip()[:200]}") from None
    views = make_contiguous(graph_module)
    try:
        with quiet():
            gelus = fuse_gelu(graph_module)
    except Exception as exc:
        raise EngineError(f"fusing GELU in {what} failed: {str(exc).strip()[:200]}") from None
    session = _session(ort, original, what)
    output_names = [o.name for o in model.graph.output]

    def reference(inp: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: np.asarray(inp[name]).astype(elem[name], copy=False) for name in shapes}
        return dict(zip(output_names, session.run(output_names, feed)))

    from edgequant.frontends.pytorch import convert_module

    module = _Renamed(graph_module, list(example), output_names, torch)
    notes = [f"ONNX route: {moved} Constant nodes to initializers; input shapes "
             + "; ".join(f"{n} {tuple(s)}" for n, s in shapes.items())
             + (f"; {folded} If with a shape-only condition replaced by its branch" if folded else "")
             + f"; {reshapes} Reshape and {slices} Slice made static; {views} weight views stored contiguously"
             + (f"; {gelus} GELU (exported as x * (1 + erf(x / sqrt 2)) / 2) made one op again" if gelus else "")]
    return convert_module(module, example, source=path, kind=SourceKind.ONNX, options=options, what=what,
                          reference=reference, notes=notes)


def _example(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-1, 1, shape).astype(dtype)
    return rng.integers(0, 2, shape).astype(dtype)


def _simplify(model: Any, what: str) -> Any:
    (onnxsim,) = require("onnxsim", what=what)
    try:
        with quiet():
            simplified, ok = onnxsim.simplify(model)
    except Exception as exc:
        raise EngineError(f"onnxsim failed on {what}: {str(exc).strip()[:200]}") from None
    if not ok:
        raise EngineError(f"onnxsim could not check its simplification of {what}")
    return simplified


def _session(ort: Any, data: bytes, what: str) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(f"onnxruntime cannot load {what}: {str(exc).strip()[:200]}") from None


def _Renamed(graph_module: Any, input_names: list[str], output_names: list[str], torch: Any) -> Any:
    """The onnx2torch module taking the ONNX input names as keywords and returning outputs by ONNX name."""

    class Renamed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.graph_module = graph_module

        def forward(self, **inputs: Any) -> dict:
            out = self.graph_module(*[inputs[n] for n in input_names])
            out = out if isinstance(out, (tuple, list)) else (out,)
            return dict(zip(output_names, out))

    return Renamed().eval()
