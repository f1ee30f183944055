"""torchvision's MobileNetV2, written out so that its ImageNet state dict loads with every key matched.

Also a MODEL for edgequant: ``edgequant convert benchmarks/real/mobilenet_v2.py:build -o m.tflite``.
Input: NCHW float32, RGB scaled to [0, 1] then normalized with ImageNet's mean and std (see ``preprocess``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _make_divisible(v, divisor=8, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, k=1))
        layers += [ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                   [6, 320, 1, 1]]
        cin, last = 32, 1280
        features = [ConvBNReLU(3, cin, stride=2)]
        for t, c, n, s in setting:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(ConvBNReLU(cin, last, k=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 RGB images (N, 224, 224, 3) -> the NCHW float32 batch the model takes."""
    x = (images.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def build(weights: str | Path | None = None) -> tuple[nn.Module, tuple[torch.Tensor]]:
    """The pretrained model (weights read with torch.load(weights_only=True), strict) and an example input."""
    try:
        from benchmarks.real.fetch import path
    except ImportError:  # run as edgequant's net.py:build: this file's folder is on sys.path
        from fetch import path  # type: ignore[no-redef]

    model = MobileNetV2()
    state = torch.load(weights or path("mobilenet_v2"), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval(), (torch.zeros(1, 3, 224, 224),)
