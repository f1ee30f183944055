"""paraphrase-MiniLM-L3-v2's weights, by BERT name and in Keras layout, read from its ONNX file.

The ONNX export (opset 17, from sentence-transformers) keeps the BERT names on
embeddings, biases and LayerNorm parameters, e.g.
``model.0.auto_model.encoder.layer.0.attention.self.query.bias``. The eight Linear
weights of each layer are anonymous initializers (``onnx::MatMul_470`` ...), stored
as MatMul's right operand, i.e. (in, out): already transposed from PyTorch's
(out, in) and already a Keras Dense kernel. Each gets its BERT name here from the
node that reads it: MatMul ``/model/model.0/auto_model/encoder/layer.0/attention/self/query/MatMul``
gives ``encoder.layer.0.attention.self.query.kernel``. Names below drop the
``model.0.auto_model.`` prefix.

Structure read from the graph (and rebuilt in minilm.py): 12 heads of 32 (scores
divided by sqrt(32) = 5.657), attention mask added as (1 - mask) * -3.4e38,
LayerNorm epsilon 1e-12, exact GELU (x/sqrt(2) -> Erf), token type ids all zero
(a constant zero buffer), positions 0..seq-1, and mean pooling
sum(h * mask) / max(sum(mask), 1e-9) (output "461").

The file is parsed with a few lines of protobuf wire format, so that the
``onnx`` package is not needed to rebuild the model; the test compares this reader
with ``onnx.numpy_helper`` when ``onnx`` is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PREFIX = "model.0.auto_model."
ONNX_FLOAT = 1
LAYERS = 3


@dataclass(frozen=True)
class Node:
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview):
    """(field number, wire type, value) of one protobuf message; value is an int or a memoryview."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _tensor(buf: memoryview) -> tuple[str, np.ndarray]:
    # TensorProto: dims=1, data_type=2, float_data=4, name=8, raw_data=9.
    dims: list[int] = []
    name, dtype, raw, floats = "", 0, None, []
    for field, wire, value in _fields(buf):
        if field == 1:
            if wire == 2:  # packed dims
                pos = 0
                while pos < len(value):
                    d, pos = _varint(value, pos)
                    dims.append(d)
            else:
                dims.append(value)
        elif field == 2:
            dtype = value
        elif field == 4:
            floats.append(np.frombuffer(value, "<f4"))  # packed (wire 2) or one float (wire 5)
        elif field == 8:
            name = bytes(value).decode()
        elif field == 9:
            raw = value
    if dtype != ONNX_FLOAT:
        raise ValueError(f"initializer {name} has ONNX dtype {dtype}, expected float32 (1)")
    data = np.frombuffer(raw, "<f4") if raw is not None else np.concatenate(floats) if floats else np.zeros(0, "f4")
    return name, data.reshape(dims).astype(np.float32)


def _node(buf: memoryview) -> Node:
    # NodeProto: input=1, output=2, op_type=4.
    ins, outs, op = [], [], ""
    for field, _, value in _fields(buf):
        if field == 1:
            ins.append(bytes(value).decode())
        elif field == 2:
            outs.append(bytes(value).decode())
        elif field == 4:
            op = bytes(value).decode()
    return Node(op, tuple(ins), tuple(outs))


def read_onnx(path: Path) -> tuple[dict[str, np.ndarray], list[Node]]:
    """The float initializers by name, and the graph's nodes, of an ONNX file (ModelProto.graph = 7)."""
    buf = memoryview(Path(path).read_bytes())
    initializers: dict[str, np.ndarray] = {}
    nodes: list[Node] = []
    for field, _, graph in _fields(buf):
        if field != 7:
            continue
        for gfield, _, value in _fields(graph):  # GraphProto: node=1, initializer=5
            if gfield == 1:
                nodes.append(_node(value))
            elif gfield == 5:
                name, array = _tensor(value)
                initializers[name] = array
    return initializers, nodes


def bert_weights(path: Path) -> dict[str, np.ndarray]:
    """BERT-named weights in Keras layout; Linear weights as ``<module>.kernel`` of shape (in, out)."""
    initializers, nodes = read_onnx(path)
    weights = {k[len(PREFIX):]: v for k, v in initializers.items() if k.startswith(PREFIX)}
    marker = "/model/model.0/auto_model/"
    for node in nodes:
        if node.op_type != "MatMul" or len(node.inputs) != 2 or node.inputs[1] not in initializers:
            continue
        module = node.outputs[0].split(marker, 1)[1].rsplit("/", 1)[0]  # encoder/layer.0/attention/self/query
        weights[module.replace("/", ".") + ".kernel"] = initializers[node.inputs[1]]
    missing = [n for n in expected_names() if n not in weights]
    if missing:
        raise ValueError(f"{path.name}: no weight for {', '.join(missing[:4])} ({len(missing)} missing)")
    return weights


def expected_names() -> list[str]:
    names = [f"embeddings.{t}_embeddings.weight" for t in ("word", "position", "token_type")]
    names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense", "intermediate.dense", "output.dense"):
            names += [p + m + ".kernel", p + m + ".bias"]
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            names += [p + ln + ".weight", p + ln + ".bias"]
    return names
