"""Seeded mutants of a .tflite, for the fuzz test (tests/test_fuzz.py) and `make fuzz`'s seed corpus.

Raw-byte mutations (byte and bit flips, truncation, random chunks that keep
the 8-byte header, a flatbuffer offset set to a wild value) and object-API
edits that produce a well-formed flatbuffer with bad contents (tensor
indices, shapes, types, quantization parameters): the second kind gets past
the parser into LiteRT's own checks and kernels, where the crashes are.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np

WILD_U32 = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x10000, 0xFFFF, 0, 1, 4)


def byte_flips(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def bit_flips(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        k = rng.randrange(len(out) * 8)
        out[k // 8] ^= 1 << (k % 8)
    return bytes(out)


def truncation(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.choice([rng.randrange(8, 64), rng.randrange(len(data)), len(data) - rng.randint(1, 64)])]


def header_kept_chunk(data: bytes, rng: random.Random) -> bytes:
    """The 8-byte header (root offset, 'TFL3') kept, one random chunk overwritten with random bytes."""
    out = bytearray(data)
    start = rng.randrange(8, len(out) - 1)
    size = min(len(out) - start, rng.randint(4, 512))
    out[start:start + size] = rng.randbytes(size)
    return bytes(out)


def offset_corruption(data: bytes, rng: random.Random) -> bytes:
    """One 4-byte-aligned word of the flatbuffer's tables (outside the big weight buffers) set to a wild value.

    The tables sit at both ends of a converter's output; a word there is often an offset or a length.
    """
    out = bytearray(data)
    span = min(len(out) // 2, 8192)
    pos = rng.choice([rng.randrange(0, span), rng.randrange(len(out) - span, len(out))]) & ~3
    out[pos:pos + 4] = int(rng.choice(WILD_U32)).to_bytes(4, "little")
    return bytes(out)


def _edit_model(data: bytes, rng: random.Random, edit: Callable[..., None]) -> bytes:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    edit(model, rng, schema)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _tensors(model) -> list:
    return [t for sg in model.subgraphs or [] for t in sg.tensors or []]


def _edit_indices(model, rng: random.Random, schema) -> None:
    sg = model.subgraphs[0]
    ops = sg.operators or []
    n = len(sg.tensors or [])
    for _ in range(rng.randint(1, 3)):
        target = rng.choice(["op_in", "op_out", "sg_in", "sg_out", "buffer", "opcode"])
        value = rng.choice([-1, -2, n, n + 7, 2**31 - 1, rng.randrange(max(1, n))])
        if target in ("op_in", "op_out") and ops:
            op = rng.choice(ops)
            lst = op.inputs if target == "op_in" else op.outputs
            if lst is not None and len(lst):
                lst[rng.randrange(len(lst))] = value
        elif target == "sg_in" and sg.inputs is not None and len(sg.inputs):
            sg.inputs[0] = value
        elif target == "sg_out" and sg.outputs is not None and len(sg.outputs):
            sg.outputs[0] = value
        elif target == "buffer" and sg.tensors:
            rng.choice(sg.tensors).buffer = rng.choice([len(model.buffers or []), 2**31 - 1, 0])
        elif target == "opcode" and ops:
            rng.choice(ops).opcodeIndex = rng.choice([len(model.operatorCodes or []), 2**31 - 1])


def _edit_shapes(model, rng: random.Random, schema) -> None:
    tensors = _tensors(model)
    for _ in range(rng.randint(1, 3)):
        t = rng.choice(tensors)
        shape = list(t.shape) if t.shape is not None else []
        choice = rng.randrange(4)
        if choice == 0 and shape:
            shape[rng.randrange(len(shape))] = rng.choice([0, -1, -7, 2**31 - 1, 65536, 3])
        elif choice == 1:
            shape = shape + [rng.choice([1, 2, 9])]
        elif choice == 2:
            shape = shape[:-1]
        else:
            shape = [rng.choice([1, 2, 1024, 2**20]) for _ in range(rng.randint(0, 6))]
        t.shape = np.array(shape, np.int32)
        if t.shapeSignature is not None and rng.random() < 0.5:
            t.shapeSignature = np.array([-1] + shape[1:], np.int32)


def _edit_types(model, rng: random.Random, schema) -> None:
    tensors = _tensors(model)
    for _ in range(rng.randint(1, 2)):
        rng.choice(tensors).type = rng.choice([rng.randrange(0, 20), 255, 17, 9, 3, 2, 7])


def _edit_quantization(model, rng: random.Random, schema) -> None:
    tensors = [t for t in _tensors(model) if t.quantization is not None] or _tensors(model)
    for _ in range(rng.randint(1, 3)):
        t = rng.choice(tensors)
        q = t.quantization or schema.QuantizationParametersT()
        size = len(q.scale) if q.scale is not None and len(q.scale) else 1
        choice = rng.randrange(6)
        if choice == 0:
            q.scale = np.array([rng.choice([0.0, -1.0, np.nan, np.inf, 1e-45, 1e38])] * size, np.float32)
        elif choice == 1:
            q.zeroPoint = np.array([rng.choice([-129, 256, 2**40, -(2**40), 7])] * size, np.int64)
        elif choice == 2:
            q.quantizedDimension = rng.choice([-1, 4, 7, 2**31 - 1])
        elif choice == 3:  # per-channel lengths that do not match each other or the tensor
            q.scale = np.ones(rng.choice([2, 3, 1000]), np.float32)
            q.zeroPoint = np.zeros(rng.choice([1, 5]), np.int64)
        elif choice == 4:
            q.scale, q.zeroPoint = None, None
        else:
            q.min = np.array([np.inf], np.float32)
            q.max = np.array([-np.inf], np.float32)
        t.quantization = q


OBJECT_EDITS = {"indices": _edit_indices, "shapes": _edit_shapes, "types": _edit_types,
                "quantization": _edit_quantization}
RAW = {"byte-flip": byte_flips, "bit-flip": bit_flips, "truncate": truncation, "chunk": header_kept_chunk,
       "offset": offset_corruption}
KINDS = tuple(RAW) + tuple(f"edit-{k}" for k in OBJECT_EDITS)


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    """One mutant of ``data`` of the given kind (an object-API edit falls back to a byte flip if it fails)."""
    if kind in RAW:
        return RAW[kind](data, rng)
    try:
        return _edit_model(data, rng, OBJECT_EDITS[kind.removeprefix("edit-")])
    except Exception:  # noqa: BLE001 - the object API itself can fail on an edit; any mutant will do
        return byte_flips(data, rng)


def mutants(models: dict[str, bytes], count: int, seed: int = 15) -> Iterator[tuple[str, str, bytes]]:
    """``count`` (model name, kind, mutant) triples, cycling kinds and models, reproducible from ``seed``."""
    rng = random.Random(seed)
    names = sorted(models)
    for k in range(count):
        kind = KINDS[k % len(KINDS)]
        name = names[(k // len(KINDS)) % len(names)]
        yield name, kind, mutate(models[name], kind, rng)


def find_crasher(data: bytes, limit: int = 16384) -> tuple[int, bytes] | None:
    """The first mutant with one uint32 set to 0xFFFFFFFF (among the first ``limit`` bytes and the last)
    that crashes LiteRT when loaded: the kind of file issue 15 found segfaulting in allocate_tensors."""
    return next(find_crashers(data, limit), None)


def find_crashers(data: bytes, limit: int = 16384) -> Iterator[tuple[int, bytes]]:
    """Every such mutant, in file order (see :func:`find_crasher`)."""
    from edgequant.errors import EdgequantError, ModelCrashError
    from edgequant.runtime import Runner

    span = min(limit, len(data))
    for pos in list(range(0, span, 4)) + list(range((len(data) - span) & ~3, len(data) - 3, 4)):
        out = bytearray(data)
        out[pos:pos + 4] = b"\xff\xff\xff\xff"
        crashes = 0
        for _ in range(3):  # a wild offset reads whatever memory it meets: keep the ones that always crash
            try:
                Runner(bytes(out), what="probe", isolate=True)
            except ModelCrashError:
                crashes += 1
                continue
            except EdgequantError:
                pass
            break
        if crashes == 3:
            yield pos, bytes(out)
