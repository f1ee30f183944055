"""One exception tree for the whole library.

Every error carries the exit code the CLI returns for it, so the CLI never has
to guess: 2 for bad input (the user can fix it), 1 for a failed step or check.
Messages are one line and say what was expected and what was found.
"""

from __future__ import annotations

__all__ = [
    "EdgequantError",
    "InputError",
    "UnsafeModelError",
    "UnsupportedError",
    "EngineError",
    "ModelRunError",
    "ModelCrashError",
]


class EdgequantError(Exception):
    """Base of every error edgequant raises on purpose."""

    exit_code: int = 1


class InputError(EdgequantError):
    """A file, data set, shape, dtype or option the user gave is not usable."""

    exit_code = 2


class UnsafeModelError(InputError):
    """A Keras model needs unsafe deserialization (for example a Lambda layer)."""


class UnsupportedError(InputError):
    """A scheme, engine, op or format that edgequant (or the chosen engine) cannot handle."""


class EngineError(EdgequantError):
    """A quantization engine failed on input that passed our checks."""

    exit_code = 1


class ModelRunError(InputError):
    """A model loaded but LiteRT failed to run it (resize, allocate, invoke or reading a tensor).

    Bad input when the model is the user's; the pipeline turns it into an
    EngineError when the model is one an engine produced.
    """


class ModelCrashError(EdgequantError):
    """LiteRT killed (a signal) or hung the worker process running a model: a failed step, exit 1.

    edgequant itself, and the other models (each in its own worker), carry on.
    """

    exit_code = 1
