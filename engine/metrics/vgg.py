"""VGG16 feature distance from a user's local torchvision VGG16 weights (`vgg16-397923af.pth` or a safetensors
copy). Same form as the MobileNetV2 substitute — unit-normalised activations at relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3, equal weights — so it is LPIPS-VGG *without* LPIPS's learned linear layers: report it as
`VGG_NAME`, never as LPIPS. Nothing here downloads; the .pth is read with `torch.load(weights_only=True)`."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engine.errors import UserError

from .image import as_image_batch
from .mobilenet import IMAGENET_MEAN, IMAGENET_STD
from .perceptual import feature_distance

VGG_NAME = "VGG16 feature distance (LPIPS form without learned weights)"
# torchvision's vgg16().features: channels per conv, "M" = max-pool
LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in `features`


def vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
            channels = item
    return nn.Sequential(*layers)


def load_vgg16_state(path: Path) -> dict[str, torch.Tensor]:
    """The `features.*` tensors of a torchvision VGG16 checkpoint (.pth via weights_only, or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such VGG16 weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise UserError(f"{path}: not a readable VGG16 checkpoint ({str(exc).splitlines()[0]})") from exc
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise UserError(f"{path}: no 'features.*' tensors; expected torchvision's vgg16 weights")
    return features


class VGGPerceptualDistance(nn.Module):
    """forward(pred, target): images [B, 3, H, W] in [0, 1] → distance [B]; frozen, always in eval mode."""

    NAME = VGG_NAME

    def __init__(self, weights: Path) -> None:
        super().__init__()
        self.features = vgg16_features()
        try:
            self.features.load_state_dict(load_vgg16_state(weights))
        except RuntimeError as exc:
            raise UserError(f"{weights}: not VGG16 weights ({str(exc).splitlines()[0]})") from exc
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGPerceptualDistance":
        return super().train(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target, unbatched = as_image_batch(pred, target)
        b = pred.shape[0]
        h = (torch.cat([pred, target]) - self.mean) / self.std
        taps = []
        for i, layer in enumerate(self.features[: TAPS[-1] + 1]):
            h = layer(h)
            if i in TAPS:
                taps.append(h)
        out = feature_distance(taps, b)
        return out[0] if unbatched else out


def perceptual_distance(vgg16_weights: str | Path | None = None) -> nn.Module:
    """VGG16 feature distance when the user has local VGG16 weights, else the MobileNetV2 substitute. The
    returned module's `NAME` says which one it is (print it beside every figure)."""
    if vgg16_weights:
        return VGGPerceptualDistance(Path(vgg16_weights))
    from .perceptual import PerceptualDistance

    return PerceptualDistance()
