"""torch.fx passes run on an onnx2torch module before litert-torch converts it.

- Static shapes: onnx2torch's Reshape, Expand, Resize, Squeeze/Unsqueeze and Split (opset 13), Tile and
  Slice take their shape, sizes, axes, split sizes, repeats and indices
  as tensors, so torch.export stops on them (GuardOnDataDependentSymNode).
  With the input shapes fixed, every such tensor has one value: the pass runs
  the module once and writes those values into the graph as Python constants.
- Contiguous weights: onnx2torch turns each ONNX Gemm (transB=1) into an
  nn.Linear whose weight is a transposed view of the initializer (strides
  (1, out)). litert-torch 0.10.0 lowered such a Linear wrongly when it sits
  between a transpose + reshape and a reshape back, as in PP-OCRv4's
  attention (probabilities 0.5-0.76 off; the same Linear was exact as the
  graph's last op, and a contiguous copy of the weight fixed it). The pass
  stores every parameter and buffer contiguously, which costs only a copy.
- GELU: PyTorch exports GELU to ONNX as x * (1 + erf(x / sqrt 2)) * 0.5, and
  litert-torch lowers that erf to a chain of about 25 element-wise ops (a
  clamped rational polynomial), one pass over the tensor each. The pass puts
  back one GELU, which LiteRT runs as a single op (a lookup table at int8).
"""

from __future__ import annotations

import inspect
import math
import operator
from typing import Any

__all__ = ["make_static", "make_contiguous", "fuse_gelu"]


def _record_values(gm: Any, args: tuple) -> dict[str, Any]:
    import torch

    values: dict[str, Any] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            values[n.name] = out
            return out

    with torch.no_grad():
        Recorder(gm).run(*args)
    return values


def _value(arg: Any, values: dict[str, Any]) -> Any:
    import torch

    return values[arg.name] if isinstance(arg, torch.fx.Node) else arg


def make_static(gm: Any, args: tuple) -> tuple[int, int]:
    """Replace onnx2torch Reshape and Slice modules by static torch ops; returns (reshapes, slices) replaced."""
    import torch
    from onnx2torch.node_converters.expand import OnnxExpand
    from onnx2torch.node_converters.gather import OnnxGather
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.resize import OnnxResize
    from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes
    from onnx2torch.node_converters.tile import OnnxTile
    from onnx2torch.node_converters.unsqueeze import OnnxUnsqueezeDynamicAxes
    from onnx2torch.node_converters.slice import OnnxSlice, _get_slices
    from onnx2torch.node_converters.split import OnnxSplit13

    values = _record_values(gm, args)
    graph = gm.graph
    counts = [0, 0]
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        if isinstance(module, OnnxReshape):
            with graph.inserting_before(node):
                new = graph.call_function(torch.reshape, (node.args[0], tuple(values[node.name].shape)))
            counts[0] += 1
        elif isinstance(module, OnnxExpand):
            # Expand takes its target shape as a tensor too (a mask broadcast over heads, positions).
            with graph.inserting_before(node):
                new = graph.call_function(torch.broadcast_to, (node.args[0], tuple(values[node.name].shape)))
            counts[0] += 1
        elif isinstance(module, (OnnxSqueezeDynamicAxes, OnnxUnsqueezeDynamicAxes)):
            # Squeeze/Unsqueeze with axes as an input tensor (opset 13): a reshape to the recorded shape.
            with graph.inserting_before(node):
                new = graph.call_function(torch.reshape, (node.args[0], tuple(values[node.name].shape)))
            counts[0] += 1
        elif isinstance(module, OnnxTile):
            repeats = tuple(int(v) for v in torch.as_tensor(_value(node.args[1], values)).tolist())
            with graph.inserting_before(node):
                new = graph.call_function(torch.tile, (node.args[0], repeats))
            counts[0] += 1
        elif isinstance(module, OnnxSplit13):
            # split sizes as a tensor: .tolist() became a data-dependent scalar litert-torch cannot lower.
            sizes = [int(t.shape[module.axis]) for t in values[node.name]]
            with graph.inserting_before(node):
                new = graph.call_function(torch.split, (node.args[0], sizes), {"dim": module.axis})
            counts[0] += 1
        elif (isinstance(module, OnnxGather) and getattr(node.args[1], "op", None) == "get_attr"
              and torch.as_tensor(_value(node.args[1], values)).dim() <= 1):
            # Constant indices (SVTRv2 picks one token): indexing with a 0-d tensor became a data-dependent
            # scalar litert-torch cannot lower; a select on a Python int, or index_select, does not.
            indices = torch.as_tensor(_value(node.args[1], values))
            axis = module._axis % (values[node.name].dim() + 1) if indices.dim() == 0 else module._axis
            with graph.inserting_before(node):
                new = (graph.call_function(torch.select, (node.args[0], axis, int(indices)))
                       if indices.dim() == 0 else
                       graph.call_function(torch.index_select, (node.args[0], axis, node.args[1])))
            counts[0] += 1
        elif isinstance(module, OnnxResize):
            # Resize takes its sizes or scales as a tensor (DINOv2's position-embedding interpolation).
            new = _static_resize(graph, node, module, values)
            counts[0] += 1
        elif isinstance(module, OnnxSlice):
            extra = [_value(a, values) for a in node.args[1:]] + [None] * (5 - len(node.args))
            flip, pos, neg = _get_slices(*extra[:4])
            new = node.args[0]
            with graph.inserting_before(node):
                if flip:
                    new = graph.call_function(torch.flip, (new, [int(d) for d in flip]))
                for part in (pos, neg):
                    if part:
                        index = tuple(_plain_slice(s) for s in part)
                        new = graph.call_function(operator.getitem, (new, index))
            counts[1] += 1
        else:
            continue
        if isinstance(new, torch.fx.Node):
            values[new.name] = values[node.name]  # later nodes may read the replacement's value
        node.replace_all_uses_with(new)
        graph.erase_node(node)
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    return counts[0], counts[1]


def _static_resize(graph: Any, node: Any, module: Any, values: dict[str, Any]) -> Any:
    """F.interpolate with the Python sizes or scales the module was given (as onnx2torch's forward computes
    them: the batch and channel entries dropped), so export sees no tensor-valued size."""
    import torch
    from onnx2torch.node_converters.resize import _onnx_mode_to_torch_mode

    bound = inspect.signature(module.forward).bind(*node.args, **node.kwargs).arguments
    scales, sizes = (_value(bound.get(k), values) for k in ("scales", "sizes"))
    # The output's rank is the input's (the input node may already be a replaced one, with no value recorded).
    mode = _onnx_mode_to_torch_mode(module.onnx_mode, values[node.name].dim() - 2)
    kwargs: dict[str, Any] = {"mode": mode, "align_corners": module.align_corners}
    if sizes is not None and torch.as_tensor(sizes).numel():
        kwargs["size"] = tuple(int(v) for v in torch.as_tensor(sizes).tolist()[2:])
    else:
        kwargs["scale_factor"] = tuple(float(v) for v in torch.as_tensor(scales).tolist()[2:])
    with graph.inserting_before(node):
        return graph.call_function(torch.nn.functional.interpolate, (node.args[0],), kwargs)


def _plain_slice(s: Any) -> Any:
    """A slice of Python ints (ONNX gives numpy or tensor scalars, which torch.export would trace)."""
    if not isinstance(s, slice):
        return s

    def plain(v: Any) -> int | None:
        return None if v is None else int(v)

    return slice(plain(s.start), plain(s.stop), plain(s.step))


def make_contiguous(module: Any) -> int:
    """Store every parameter and buffer of ``module`` contiguously; returns how many were views."""
    changed = 0
    for sub in module.modules():
        for store in (sub._parameters, sub._buffers):
            for name, tensor in list(store.items()):
                if tensor is not None and not tensor.is_contiguous():
                    tensor.data = tensor.data.contiguous()
                    changed += 1
    return changed


def fuse_gelu(gm: Any) -> int:
    """Replace every exported exact GELU, x * (1 + erf(x / sqrt 2)) * 0.5 in any order of the products, by
    torch.nn.functional.gelu(x) (twice that where the 0.5 is missing: onnxsim folds it into a following
    layer); returns how many were replaced. Only patterns whose intermediate values
    nothing else reads are replaced, so the function of the graph is unchanged."""
    import torch
    from onnx2torch.node_converters.activations import OnnxErf
    from onnx2torch.node_converters.binary_math_operations import (_TORCH_FUNCTION_FROM_ONNX_TYPE as functions,
                                                                   OnnxBinaryMathOperation)

    graph = gm.graph
    erfs = [n for n in graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), OnnxErf)]
    if not erfs:
        return 0

    def binary(node: Any, name: str) -> bool:
        if getattr(node, "op", None) != "call_module":
            return False
        module = gm.get_submodule(node.target)
        return (isinstance(module, OnnxBinaryMathOperation) and module.broadcast is None
                and module.math_op_function is functions[name])

    def constant(arg: Any, wanted: float) -> bool:
        """A literal or a stored constant (get_attr) equal to ``wanted``; read from the module, so no run."""
        if isinstance(arg, torch.fx.Node):
            if arg.op != "get_attr":
                return False
            arg = operator.attrgetter(arg.target)(gm)
        value = torch.as_tensor(arg)
        return value.numel() == 1 and abs(float(value) - wanted) <= 1e-5 * max(abs(wanted), 1.0)

    def other(node: Any, known: Any) -> Any:
        a, b = node.args[:2]
        return b if a is known else a if b is known else None

    def only_user(node: Any) -> Any:
        users = list(node.users)
        return users[0] if len(users) == 1 else None

    fused = 0
    for erf in erfs:
        scaled = erf.args[0]
        if binary(scaled, "Div") and constant(scaled.args[1], math.sqrt(2.0)):
            x = scaled.args[0]
        elif binary(scaled, "Mul") and any(constant(a, 1 / math.sqrt(2.0)) for a in scaled.args[:2]):
            x = scaled.args[0] if constant(scaled.args[1], 1 / math.sqrt(2.0)) else scaled.args[1]
        else:
            continue
        plus = only_user(erf)
        if not (binary(plus, "Add") and constant(other(plus, erf), 1.0)) or len(scaled.users) != 1:
            continue
        first = only_user(plus)
        if not binary(first, "Mul"):
            continue
        factor = other(first, plus)
        twice = False
        if factor is x:  # (x * (1 + erf)) * 0.5, or no 0.5 where onnxsim folded it into the next layer
            last = only_user(first)
            ok = binary(last, "Mul") and constant(other(last, first), 0.5)
            if not ok:
                last, ok, twice = first, True, True
        elif constant(factor, 0.5):  # ((1 + erf) * 0.5) * x
            last = only_user(first)
            ok = binary(last, "Mul") and other(last, first) is x
        elif binary(factor, "Mul") and len(factor.users) == 1 and x in factor.args[:2] \
                and constant(other(factor, x), 0.5):  # (x * 0.5) * (1 + erf)
            last, ok = first, True
        else:
            ok = False
        if not ok:
            continue
        with graph.inserting_before(last):
            gelu = graph.call_function(torch.nn.functional.gelu, (x,))
            if twice:
                gelu = graph.call_function(torch.mul, (gelu, 2.0))
        last.replace_all_uses_with(gelu)
        fused += 1
    if fused:
        graph.eliminate_dead_code()
        graph.lint()
        gm.recompile()
    return fused
