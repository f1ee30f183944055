"""Stage: rewrite. The graph rewriters, behind one small Protocol and one registry.

Adding an engine means writing a class with the ``Engine`` shape and listing
it in ``ENGINES``; nothing else in the code base names engines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from edgequant._util import Progress
from edgequant.errors import UnsupportedError
from edgequant.types import CalibrationInput, EngineName, FloatModel, IOType, Precision, Scheme, parse_enum

__all__ = ["Engine", "ENGINES", "get_engine", "engines_for", "check_supported", "resolve_engine", "AUTO_ORDER"]


class Engine(Protocol):
    """Turns a float model into a quantized .tflite for one scheme."""

    name: EngineName
    # Every scheme the engine can produce, and the model I/O types it can give
    # a full-integer model; stated as data so the docs table and the errors
    # come from the same place as the behaviour.
    schemes: frozenset[Scheme]
    io_types: frozenset[IOType]
    # True when the engine computes activation ranges itself from samples, so
    # edgequant's observers and saved statistics do not apply to it.
    calibrates_itself: bool
    # The per-layer precisions a recipe can give single ops (empty: none, the
    # whole model gets the scheme).
    layer_precisions: frozenset[Precision]

    def check_precisions(self, model: FloatModel, scheme: Scheme, precisions: Mapping[str, Precision],
                         label: Callable[[str], str]) -> None:
        """Refuse per-layer precisions this model's ops cannot take; ``label(name)`` begins the error."""
        ...

    def rewrite(self, model: FloatModel, scheme: Scheme, io: IOType,
                calibration: CalibrationInput | None, progress: Progress,
                precisions: Mapping[str, Precision] | None = None) -> tuple[bytes, tuple[str, ...]]:
        """Return the quantized flatbuffer and notes stating the defaults it applied.

        ``precisions`` maps float tensor names to the precision of the op that writes them.
        """
        ...


# Schemes whose model can have integer inputs and outputs.
FULL_INTEGER = (Scheme.INT8, Scheme.W4A8)


def _registry() -> dict[EngineName, Engine]:
    from edgequant.engines.litert import LiteRTEngine
    from edgequant.engines.tflite_converter import TFLiteConverterEngine

    return {EngineName.LITERT: LiteRTEngine(), EngineName.TFLITE_CONVERTER: TFLiteConverterEngine()}


ENGINES: dict[EngineName, Engine] = _registry()


# What ``--engine auto`` tries, in order: LiteRT Quantizer first (it works on any float .tflite and takes
# edgequant's own ranges), TensorFlow's converter where only it can build the scheme.
AUTO_ORDER = (EngineName.LITERT, EngineName.TFLITE_CONVERTER)


def get_engine(name: EngineName | str) -> Engine:
    """The engine registered under ``name``; unknown names list the supported ones."""
    engine = parse_enum(EngineName, name, "engine")
    if engine not in ENGINES:
        raise UnsupportedError(f"engine {engine.value} is chosen per scheme and model (resolve_engine): expected one "
                               f"of {', '.join(n.value for n in ENGINES)}")
    return ENGINES[engine]


def resolve_engine(name: EngineName | str, scheme: Scheme, io: IOType, model: FloatModel) -> tuple[Engine, str | None]:
    """The engine for ``name``; ``auto`` picks the first of AUTO_ORDER that can build ``scheme`` with ``io`` for
    this model's source, and says which (the note)."""
    engine = parse_enum(EngineName, name, "engine")
    if engine is not EngineName.AUTO:
        return get_engine(engine), None
    for candidate in AUTO_ORDER:
        eng = ENGINES[candidate]
        if scheme in eng.schemes and (io is IOType.FLOAT or io in eng.io_types) and \
                (not eng.calibrates_itself or model.kind.has_tensorflow_graph):
            return eng, f"engine auto: {candidate.value} (the first of {', '.join(n.value for n in AUTO_ORDER)} " \
                        f"that builds {scheme.value} for a {model.kind.value} source)"
    raise UnsupportedError(f"engine auto: no engine builds scheme {scheme.value} with {io.value} I/O for a "
                           f"{model.kind.value} source")


def engines_for(scheme: Scheme) -> list[EngineName]:
    return [name for name, eng in ENGINES.items() if scheme in eng.schemes]


def check_supported(engine: Engine, scheme: Scheme, io: IOType) -> None:
    """Fail with an error that names the engine that can, when this one cannot."""
    if scheme not in engine.schemes:
        able = engines_for(scheme)
        hint = f"use --engine {able[0].value}" if able else "no engine supports it yet"
        raise UnsupportedError(f"engine {engine.name.value} cannot produce scheme {scheme.value}: {hint}")
    if io is not IOType.FLOAT:
        if scheme not in FULL_INTEGER:
            names = " or ".join(s.value for s in FULL_INTEGER)
            raise UnsupportedError(f"--io {io.value} needs a full-integer scheme ({names}), found --scheme {scheme.value}")
        if io not in engine.io_types:
            able = [n.value for n, e in ENGINES.items() if io in e.io_types]
            raise UnsupportedError(f"engine {engine.name.value} cannot give {io.value} model I/O: use --engine {' or '.join(able)}")
