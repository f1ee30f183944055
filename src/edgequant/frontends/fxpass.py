"""torch.fx passes run on an onnx2torch module before litert-torch converts it.

- Static shapes: onnx2torch's Reshape, Expand and Slice take their shape and indices
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
"""

from __future__ import annotations

import operator
from typing import Any

__all__ = ["make_static", "make_contiguous"]


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
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.slice import OnnxSlice, _get_slices

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
        node.replace_all_uses_with(new)
        graph.erase_node(node)
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    return counts[0], counts[1]


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
