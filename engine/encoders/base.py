"""`PortraitEncoder`: the frozen image encoder E that turns a portrait into the diffusion model's condition.

Every encoder gives the multi-scale pyramid of the paper's Eq. 7 plus one pooled vector:

    forward(images [B, 3, H, W] in [0, 1]) → {"y1": [B, c1, S/2, S/2], "y2": [B, c2, S/4, S/4],
                                              "y3": [B, c3, S/8, S/8], "global": [B, g]}

with S = `image_size` (inputs of another size are resized to S×S inside). Encoders are frozen: always in eval mode,
no parameter requires a gradient, and forward runs under `torch.no_grad`. A saved encoder is a component folder
(`config.json` with a "kind" + `model.safetensors`, see engine.weights); `engine.encoders.load_encoder` reads one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ConfigError, ConfigMixin
from engine.errors import UserError
from engine.weights import save_component

FEATURE_KEYS = ("y1", "y2", "y3", "global")
SCALE_STRIDES = {"y1": 2, "y2": 4, "y3": 8}
WHAT = "portrait encoder"


class PortraitEncoder(nn.Module):
    """Base class: subclasses set `KIND`, build their layers, and implement `feature_shapes`, `_encode` (images
    already at `image_size`), `weights_to_save` and `from_folder`."""

    KIND: ClassVar[str] = ""

    def __init__(self, config: ConfigMixin) -> None:
        super().__init__()
        self.config = config

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        """{"y1": (c1, S/2), "y2": (c2, S/4), "y3": (c3, S/8), "global": (g,)} for S = image_size."""
        raise NotImplementedError

    def _encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images `[B, 3, H, W]` in `[0, 1]` → the feature dict described in the module docstring."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W], got shape {tuple(images.shape)}")
        x = resize_square(images.to(self.device, torch.float32), self.image_size)
        return self._encode(x)

    def freeze(self) -> "PortraitEncoder":
        """No gradients, eval mode (BatchNorm/GroupNorm statistics never change); called by every constructor."""
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "PortraitEncoder":
        """Stays in eval mode: a frozen encoder must give the same features while its owner trains."""
        return super().train(False)

    # ------------------------------------------------------------------------------------------- saving
    def component_config(self) -> dict[str, Any]:
        """What config.json holds: the kind plus the config's fields."""
        return {"kind": self.KIND, **self.config.to_dict()}

    def weights_to_save(self) -> dict[str, torch.Tensor]:
        return dict(self.state_dict())

    def save(self, folder: str | Path) -> str:
        """Write the component folder (config.json + model.safetensors); returns the weights' content hash."""
        return save_component(Path(folder), self.component_config(), self.weights_to_save())

    @classmethod
    def from_folder(cls, folder: Path, data: dict[str, Any]) -> "PortraitEncoder":
        """Build from a component folder whose config.json (already read) is `data`."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"kind={self.KIND!r}, image_size={self.image_size}"


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """`[B, 3, H, W]` → `[B, 3, size, size]` (bilinear, antialiased so downscales do not alias); unchanged when
    already that size. Non-square inputs are stretched: pass square crops (engine.portrait.load_portrait)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def config_from_component(config_cls: type, data: dict[str, Any], folder: Path) -> Any:
    """The encoder config stored in config.json (everything but "kind"), with problems as a UserError."""
    fields = {k: v for k, v in data.items() if k != "kind"}
    try:
        return config_cls.from_dict(fields)
    except (ConfigError, TypeError) as exc:
        raise UserError(f"{folder}: invalid {WHAT} config ({exc})") from exc


def check_image_size(image_size: int, minimum: int = 8) -> None:
    """The pyramid needs S divisible by 8 (y3 at S/8)."""
    if image_size < minimum or image_size % 8:
        raise ConfigError(f"image_size must be a multiple of 8 and ≥ {minimum} (got {image_size})")


__all__ = ["FEATURE_KEYS", "SCALE_STRIDES", "PortraitEncoder", "check_image_size", "config_from_component",
           "resize_square"]
