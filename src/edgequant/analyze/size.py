"""Where a model's bytes go: every constant tensor, its dtype and the ops that read it.

Totals per dtype come from graph.read_graph (the same figures compare and eval
report); the per-tensor list is read from the same flatbuffer, counting each
stored buffer once even when several tensors share it, and inline and
offset-addressed buffers (litert-quantizer writes large ones after the
flatbuffer) alike.
"""

from __future__ import annotations

from edgequant.analyze.records import SizeBreakdown, WeightTensor
from edgequant.graph import read_graph
from edgequant.graph.submodel import GraphModel

__all__ = ["size_breakdown"]


def _tensors(g: GraphModel) -> list[WeightTensor]:
    consumers = g.consumers()
    seen: set[int] = set()
    out = []
    for t in range(len(g.sg.tensors or [])):
        buffer = g.sg.tensors[t].buffer
        if buffer in seen:
            continue
        data = g.constant_bytes(t)
        if data is None:
            continue
        seen.add(buffer)
        stored_shape = g.sg.tensors[t].shape
        out.append(WeightTensor(name=g.tensor_name(t), dtype=g.tensor_dtype(t),
                                shape=tuple(int(d) for d in (stored_shape if stored_shape is not None else [])),
                                bytes=len(data), consumers=tuple(f"{g.op_names[c]}#{c}" for c in consumers.get(t, []))))
    return sorted(out, key=lambda w: w.bytes, reverse=True)


def size_breakdown(fg: GraphModel, qg: GraphModel) -> SizeBreakdown:
    """Bytes of the quantized file per dtype and per constant tensor (largest first), with the float totals."""
    q_summary, f_summary = read_graph(qg.tflite, "quantized model"), read_graph(fg.tflite, "reference model")
    return SizeBreakdown(total_bytes=len(qg.tflite), weight_bytes=q_summary.weight_bytes,
                         weight_bytes_by_dtype=dict(sorted(q_summary.weight_bytes_by_dtype.items())),
                         float_total_bytes=len(fg.tflite), float_weight_bytes=f_summary.weight_bytes,
                         tensors=tuple(_tensors(qg)))
