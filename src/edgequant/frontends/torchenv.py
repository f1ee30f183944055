"""The optional PyTorch stack (edgequant[torch]): imported here only, lazily, with one error when it is missing.

torch, litert-torch, onnx, onnxruntime, onnx2torch and onnxsim come with the extra.
litert-torch also installs ai-edge-quantizer (another import name, an older
release of the quantizer we drive as litert_quantizer); nothing here imports it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from edgequant._util import quiet
from edgequant.errors import InputError

__all__ = ["require", "import_onnx2torch", "EXTRA_HINT"]

EXTRA_HINT = "install edgequant[torch] (pip install 'edgequant[torch]')"

# onnx2torch's NMS and RoiAlign converters import torchvision at import time, and PyPI's torchvision
# does not import beside the CPU torch build we pin. Those two converters are left out: a model with
# NonMaxSuppression or RoiAlign is then refused as an unconvertible op, like LSTM.
_TORCHVISION_CONVERTERS = ("onnx2torch.node_converters.nms", "onnx2torch.node_converters.roialign")


def require(*names: str, what: str) -> list[Any]:
    """Import each module of the extra, or an InputError (exit 2) saying to install it."""
    modules = []
    for name in names:
        try:
            with quiet():
                modules.append(importlib.import_module(name))
        except ImportError as exc:
            missing = getattr(exc, "name", None) or name
            raise InputError(f"{what} needs the PyTorch extra: {EXTRA_HINT}; found no module {missing!r}") from None
    return modules


def import_onnx2torch(what: str) -> Any:
    """onnx2torch without its torchvision-based converters."""
    if "onnx2torch" not in sys.modules:
        for name in _TORCHVISION_CONVERTERS:
            sys.modules.setdefault(name, types.ModuleType(name))
    (module,) = require("onnx2torch", what=what)
    return module
