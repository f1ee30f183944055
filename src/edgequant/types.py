"""The names and hand-offs shared by every stage.

Stages pass frozen dataclasses, never loose dicts, so a field that one stage
renames breaks at import time rather than in a user's JSON. Every result type
has ``to_dict()`` giving plain JSON-ready values (enums as strings, paths as
strings, infinities as None).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.errors import UnsupportedError

if TYPE_CHECKING:
    # Named for annotations only: recipe/ imports this module, so a runtime import would be a cycle.
    from edgequant.recipe import Recipe

__all__ = [
    "Scheme",
    "EngineName",
    "IOType",
    "Precision",
    "SourceKind",
    "Layout",
    "SourceOptions",
    "parse_enum",
    "Record",
    "TensorSpec",
    "Signature",
    "UNNAMED",
    "FloatModel",
    "Dataset",
    "QuantizedModel",
    "CalibrationInput",
    "SizeInfo",
    "Latency",
    "Fidelity",
    "PairedTop1",
    "Evaluation",
    "Finding",
    "Variant",
    "PrebuiltVariant",
    "CompareResult",
]


class Scheme(str, enum.Enum):
    """What is stored in low precision and what the kernels compute in."""

    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"
    INT16X8 = "int16x8"
    WEIGHT_ONLY_INT8 = "weight-only-int8"
    WEIGHT_ONLY_INT4 = "weight-only-int4"
    W4A8 = "w4a8"

    @property
    def needs_calibration(self) -> bool:
        # Only schemes with integer activations need activation ranges.
        return self in (Scheme.INT8, Scheme.INT16X8, Scheme.W4A8)

    @property
    def float_kernels(self) -> bool:
        """Whether every op runs the float model's own XNNPACK kernel on the CPU: LiteRT expands these
        schemes' weights to float32 when it loads the model (analyze shows float32 compute in XNNPACK for each
        op), so their latency ratio to float is 1 and a measured 0.86x or 1.05x is timing noise."""
        return self in (Scheme.FP16, Scheme.WEIGHT_ONLY_INT8)


class EngineName(str, enum.Enum):
    """The graph rewriters edgequant can drive; ``auto`` picks one per scheme and source (engines.resolve_engine)."""

    AUTO = "auto"
    LITERT = "litert"
    TFLITE_CONVERTER = "tflite-converter"


class IOType(str, enum.Enum):
    """The dtype of a full-integer model's inputs and outputs."""

    FLOAT = "float"
    INT8 = "int8"
    UINT8 = "uint8"


class Precision(str, enum.Enum):
    """What one layer computes in, set per layer by a recipe (docs/recipe.md, version 2).

    The names are the schemes' names, for one op: ``int8`` is 8-bit weights and
    activations, ``int16x8`` 16-bit activations with 8-bit weights, ``w4a8``
    4-bit weights with 8-bit activations; ``float`` leaves the op unquantized.
    """

    FLOAT = "float"
    INT8 = "int8"
    INT16X8 = "int16x8"
    W4A8 = "w4a8"

    @property
    def activation_bits(self) -> int | None:
        """Bits of the op's output activation; None for float."""
        return {Precision.INT8: 8, Precision.W4A8: 8, Precision.INT16X8: 16}.get(self)

    @property
    def weight_bits(self) -> int | None:
        """Bits of the op's weights; None for float."""
        return {Precision.INT8: 8, Precision.INT16X8: 8, Precision.W4A8: 4}.get(self)


class SourceKind(str, enum.Enum):
    """The kind of model file a frontend loaded."""

    KERAS = "keras"
    H5 = "h5"
    SAVED_MODEL = "saved_model"
    TFLITE = "tflite"
    PYTORCH = "pytorch"  # a net.py:build function, or a torch.export .pt2
    ONNX = "onnx"

    @property
    def has_tensorflow_graph(self) -> bool:
        """Whether TensorFlow's converter can rebuild from this source (Keras and SavedModel only)."""
        return self in (SourceKind.KERAS, SourceKind.H5, SourceKind.SAVED_MODEL)


class Layout(str, enum.Enum):
    """The tensor layout of a converted PyTorch or ONNX model's 4-D inputs and outputs."""

    NCHW = "nchw"  # as exported: channels first, PyTorch's and ONNX's own layout
    NHWC = "nhwc"  # channels last, as other LiteRT vision models take


@dataclasses.dataclass(frozen=True)
class SourceOptions:
    """What converting a PyTorch or ONNX source needs beyond its path (other sources ignore it).

    ``input_shapes`` fixes unknown ONNX dimensions, by input name; ``check_inputs``
    are the user's input sets ({name: array} each, in the source's layout) for the
    conversion check, which otherwise runs on generated inputs.
    """

    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    layout: Layout = Layout.NCHW
    check_inputs: tuple[Any, ...] = dataclasses.field(default=(), repr=False)
    # Every source: which of a .tflite's signatures to use (default: the only one, else serving_default).
    signature: str | None = None


def parse_enum(enum_type: type[enum.Enum], value: Any, what: str) -> Any:
    """Turn a user's string into an enum member, or fail listing what is supported."""
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)
    except ValueError:
        names = ", ".join(m.value for m in enum_type)  # type: ignore[attr-defined]
        raise UnsupportedError(f"unknown {what} {value!r}: expected one of {names}") from None


def _plain(value: Any) -> Any:
    """Convert a value to something json.dumps accepts, without losing meaning."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return _plain(value.item())
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    return value


class Record:
    """Mixin: ``to_dict()`` for frozen dataclasses, skipping fields marked ``json=False``."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata.get("json", True):
                out[f.name] = _plain(getattr(self, f.name))
        return out


_NOJSON = {"json": False}


def _dims(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join("?" if d < 0 else str(d) for d in shape) + ")"


@dataclasses.dataclass(frozen=True)
class TensorSpec(Record):
    """One model input or output as the model declares it: name, shape (-1 where unknown) and dtype.

    ``quantized`` marks an integer tensor that stands for float values (a scale
    and zero point): a full-integer model's I/O, which takes and gives floats
    through edgequant's conversion. Other integer tensors (token ids, masks) are
    integers in their own right.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantized: bool = False

    @property
    def is_float(self) -> bool:
        """Takes or gives float values: a float tensor, or a quantized integer one."""
        return np.dtype(self.dtype).kind == "f" or self.quantized

    @property
    def is_integer(self) -> bool:
        """Holds integers in their own right (token ids, masks, indices), never quantized."""
        return np.dtype(self.dtype).kind in "iub" and not self.quantized

    def describe(self) -> str:
        return f"{self.name} {self.dtype} {_dims(self.shape)}"


@dataclasses.dataclass(frozen=True)
class Signature(Record):
    """A model's inputs and outputs by name: what every frontend reports and every stage reads.

    ``key`` is the LiteRT signature key the model is run through
    (``serving_default`` for models edgequant gave a default signature).
    """

    key: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise UnsupportedError(f"unknown input {name!r}: expected one of {', '.join(self.input_names)}")

    def output(self, name: str) -> TensorSpec:
        for t in self.outputs:
            if t.name == name:
                return t
        raise UnsupportedError(f"unknown output {name!r}: expected one of {', '.join(self.output_names)}")

    def single_input(self, what: str = "this step") -> TensorSpec:
        """The only input, for the steps that handle one (qat's Keras graph walker); else an error naming them."""
        if len(self.inputs) != 1:
            raise UnsupportedError(f"{what} needs a model with one input, found {len(self.inputs)}: "
                                   f"{', '.join(self.input_names)}")
        return self.inputs[0]

    def describe(self) -> str:
        return ("inputs: " + "; ".join(t.describe() for t in self.inputs)
                + " | outputs: " + "; ".join(t.describe() for t in self.outputs))


def the_only(named: Any, expected: str, error: type[Exception] = UnsupportedError) -> Any:
    """The one value of a mapping by name (a data set's inputs, a model's outputs); else ``error`` naming them.

    ``expected`` says what the caller needed, e.g. "data for one input".
    """
    if len(named) != 1:
        raise error(f"expected {expected}, found {len(named)}: {', '.join(named)}")
    return next(iter(named.values()))


# The name a bare array (a .npy, or the array 'x' of a .npz) takes before it meets the model: it then
# feeds the model's one input, whatever that input is called.
UNNAMED = "x"


@dataclasses.dataclass(frozen=True, eq=False)
class FloatModel(Record):
    """A loaded model as a float .tflite, its signature, and where it came from.

    The tflite-converter engine rebuilds from ``source`` (it needs the
    TensorFlow graph, not the flatbuffer); every other stage uses ``tflite``.
    """

    source: Path
    kind: SourceKind
    tflite: bytes = dataclasses.field(repr=False, metadata=_NOJSON)
    signature: Signature
    unsafe: bool = False
    notes: tuple[str, ...] = ()

    # The single-input view, for the steps that handle one input (they fail loudly on several).
    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.signature.single_input().shape

    @property
    def input_dtype(self) -> str:
        return self.signature.single_input().dtype

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.signature.outputs[0].shape


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset(Record):
    """Model inputs by name (each batch first, all with the same batch) and optional integer labels.

    A bare array is accepted in place of the mapping and named :data:`UNNAMED`
    until it is matched against a model's one input.
    """

    inputs: Any = dataclasses.field(repr=False, metadata=_NOJSON)  # Mapping[str, np.ndarray]
    y: np.ndarray | None = dataclasses.field(repr=False, metadata=_NOJSON)
    source: str

    def __post_init__(self) -> None:
        if isinstance(self.inputs, np.ndarray):
            object.__setattr__(self, "inputs", {UNNAMED: self.inputs})
        else:
            object.__setattr__(self, "inputs", dict(self.inputs))

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0]) if self.inputs else 0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.inputs)

    @property
    def x(self) -> np.ndarray:
        """The one input array, for the steps that handle one input; an error naming them otherwise."""
        return the_only(self.inputs, "data for one input (this step takes one)")

    @property
    def has_labels(self) -> bool:
        return self.y is not None

    def take(self, index: Any, source: str | None = None) -> Dataset:
        """The samples at ``index`` (a slice or integer array) of every input and the labels."""
        return Dataset({k: v[index] for k, v in self.inputs.items()}, None if self.y is None else self.y[index],
                       self.source if source is None else source)

    def without_labels(self) -> Dataset:
        return Dataset(self.inputs, None, self.source)


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationInput:
    """What a static scheme's engine gets: the samples, and edgequant's ranges for them.

    ``ranges`` maps tensor names to (lo, hi) chosen by an edgequant observer;
    an engine that calibrates by itself (TensorFlow's converter) uses ``x``,
    the samples as named inputs (input name -> array, batch first).
    """

    x: Any = dataclasses.field(repr=False)  # Mapping[str, np.ndarray] | None
    ranges: dict[str, tuple[float, float]] | None = dataclasses.field(repr=False)
    samples: int
    description: str = ""
    observer: str | None = None
    repairs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, eq=False)
class QuantizedModel(Record):
    """What an engine produced, with the defaults it applied stated as notes.

    ``recipe`` is the plan that ran (observer and transforms resolved); saved,
    it quantizes the same model to the same bytes again.
    """

    scheme: Scheme
    engine: EngineName
    io: IOType
    tflite: bytes = dataclasses.field(repr=False, metadata=_NOJSON)
    path: Path | None
    seconds: float
    calibration_samples: int
    notes: tuple[str, ...] = ()
    recipe: Recipe | None = None


@dataclasses.dataclass(frozen=True)
class SizeInfo(Record):
    """Bytes on disk, and how much of that is constant tensors (weights, biases)."""

    total_bytes: int
    weight_bytes: int
    weight_bytes_by_dtype: dict[str, int]


@dataclasses.dataclass(frozen=True)
class Latency(Record):
    """Latency of one batch-1 inference in LiteRT, in milliseconds."""

    median_ms: float
    p90_ms: float
    runs: int
    warmup: int
    threads: int


@dataclasses.dataclass(frozen=True)
class Fidelity(Record):
    """How close a model's outputs are to a reference model's on the same inputs.

    ``sqnr_db`` is +inf when the outputs are bit-identical and -inf when the
    reference is all zeros but the outputs are not; both are None in JSON.
    """

    sqnr_db: float
    cosine: float
    max_abs_error: float
    samples: int


@dataclasses.dataclass(frozen=True)
class PairedTop1(Record):
    """Two models' top-1 on the same labelled samples, compared sample by sample.

    Only the samples where exactly one of the two is right can tell them apart:
    ``a_only`` are right for A alone, ``b_only`` for B alone. ``p_value`` is
    the exact McNemar test (two-sided binomial on those samples, p = 1/2): the
    chance of a split at least this uneven if both models were equally good.
    """

    a_only: int
    b_only: int
    p_value: float
    samples: int


@dataclasses.dataclass(frozen=True)
class Evaluation(Record):
    """Everything ``evaluate`` measured on one model.

    ``fidelity`` is the worst output's (lowest SQNR), named by ``worst_output``;
    ``outputs`` holds the fidelity of every output by name. Top-1 is read from
    ``label_output``.
    """

    path: Path | None
    size: SizeInfo
    input_dtype: str
    output_dtype: str
    samples: int
    accuracy: float | None
    fidelity: Fidelity | None
    latency: Latency | None
    notes: tuple[str, ...] = ()
    outputs: dict[str, Fidelity] = dataclasses.field(default_factory=dict)
    worst_output: str | None = None
    label_output: str | None = None


@dataclasses.dataclass(frozen=True)
class Finding(Record):
    """One plain-language finding of ``analyze``, tied to the number it rests on.

    ``value`` and ``unit`` are that number (e.g. 2.6 "x float latency", 11.0
    "dB"); ``source`` says how it was measured, so a reader can check it.
    ``kind`` is a stable key (docs/analyze.md lists them); ``severity`` is
    "warning" for something worth acting on, "info" otherwise.
    """

    kind: str
    severity: str
    message: str
    value: float | None
    unit: str
    source: str


@dataclasses.dataclass(frozen=True)
class Variant(Record):
    """One row of a comparison; the schema is documented in docs/compare-json.md."""

    scheme: str
    engine: str
    io: str
    path: str | None
    size_bytes: int | None
    weight_bytes: int | None
    size_ratio: float | None
    accuracy: float | None
    accuracy_delta: float | None
    sqnr_db: float | None
    cosine: float | None
    max_abs_error: float | None
    latency_ms_median: float | None
    latency_ms_p90: float | None
    speedup: float | None
    quantize_seconds: float | None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None
    # Filled by compare(analyze=True): the top findings of edgequant.analyze for this variant.
    findings: tuple[Finding, ...] = ()
    # Size after gzip (level 9): what pruning saves shows only here, not in size_bytes.
    gzip_bytes: int | None = None
    # Models with several outputs: sqnr_db/cosine/max_abs_error above are the worst output's (lowest SQNR),
    # named here; ``outputs`` has every output's figures by name.
    worst_output: str | None = None
    outputs: dict[str, Fidelity] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.scheme if self.scheme == "float" else f"{self.scheme}/{self.engine}"


@dataclasses.dataclass(frozen=True, eq=False)
class PrebuiltVariant:
    """A model built outside compare's (scheme, engine) pairs (the demo's QAT and pruned rows), measured
    with the others. ``scheme`` and ``engine`` label its row, e.g. "int8" and "qat"."""

    scheme: str
    engine: str
    tflite: bytes = dataclasses.field(repr=False)
    seconds: float
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CompareResult(Record):
    """The float model and every requested variant, measured in one process."""

    model: str
    data: str
    samples: int
    calibration_samples: int
    threads: int
    latency_runs: int
    float: Variant
    variants: tuple[Variant, ...]
    skipped: tuple[dict[str, str], ...] = ()
    out_dir: str | None = None
    warnings: tuple[str, ...] = ()
    provenance: Any = None  # edgequant.provenance.Provenance: command, inputs by hash, versions, machine

    @property
    def failed(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.error is not None)
