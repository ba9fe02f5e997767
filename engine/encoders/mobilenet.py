"""`MobileNetEncoder` (kind "mobilenet_v2"): the ImageNet MobileNetV2 feature pyramid as the portrait encoder.

y1 = stage s2 (16 ch, S/2), y2 = s4 (24 ch, S/4), y3 = s8 (32 ch, S/8), global = s32 (1280 ch) averaged over space.
Built fresh it takes the ImageNet weights from the registry package (engine.metrics.mobilenet); saved, the folder
holds the whole backbone in fp16 (torchvision key names, `features.*`), so a model folder needs nothing else.
Fresh weights are rounded to fp16 precision at build time, so a saved and reloaded encoder gives exactly the
features the diffusion model was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from engine.config import ConfigMixin
from engine.encoders.base import SCALE_STRIDES, WHAT, PortraitEncoder, check_image_size, config_from_component
from engine.metrics.mobilenet import STAGE_CHANNELS, MobileNetV2Features, Weights
from engine.weights import load_state_into, load_weights

KIND = "mobilenet_v2"
SAVE_DTYPE = torch.float16
_STAGE_OF = {"y1": "s2", "y2": "s4", "y3": "s8"}
_GLOBAL_STAGE = "s32"


@dataclass
class MobileNetEncoderConfig(ConfigMixin):
    image_size: int = 128
    """Side S of the square image the network sees; y1/y2/y3 are S/2, S/4, S/8 (a multiple of 8, ≥ 32)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {"image_size": 128}}

    def validate(self) -> None:
        check_image_size(self.image_size, minimum=32)


class MobileNetEncoder(PortraitEncoder):
    """Frozen ImageNet MobileNetV2 pyramid; see the module docstring. `weights`: "imagenet" (registry package),
    a torchvision checkpoint path, or None (random; used when weights come from a saved folder next)."""

    KIND: ClassVar[str] = KIND

    def __init__(self, config: MobileNetEncoderConfig | None = None, weights: Weights = "imagenet") -> None:
        super().__init__(config or MobileNetEncoderConfig())
        self.backbone = MobileNetV2Features(weights, stages=(*_STAGE_OF.values(), _GLOBAL_STAGE))
        self.backbone.net.classifier = nn.Identity()  # the ImageNet head is unused; keep it out of the weights
        if weights is not None:
            round_to_save_precision(self.backbone.net)
        counters_as_vectors(self.backbone.net)
        self.freeze()

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {key: (STAGE_CHANNELS[stage], self.image_size // SCALE_STRIDES[key])
                                              for key, stage in _STAGE_OF.items()}
        shapes["global"] = (STAGE_CHANNELS[_GLOBAL_STAGE],)
        return shapes

    def _encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stages = self.backbone(x)
        out = {key: stages[stage] for key, stage in _STAGE_OF.items()}
        out["global"] = stages[_GLOBAL_STAGE].mean(dim=(2, 3))
        return out

    def weights_to_save(self) -> dict[str, torch.Tensor]:
        """The backbone (`features.*`, torchvision names) in fp16: ~4.4 MB. BatchNorm's `num_batches_tracked`
        counters are left out: eval-mode BatchNorm never reads them (and they are 0-d integer tensors)."""
        return {k: v.to(SAVE_DTYPE) for k, v in self.backbone.net.state_dict().items() if v.is_floating_point()}

    @classmethod
    def from_folder(cls, folder: Path, data: dict[str, Any]) -> "MobileNetEncoder":
        config = config_from_component(MobileNetEncoderConfig, data, folder)
        encoder = cls(config, weights=None)
        tensors = {k: v.float() for k, v in load_weights(folder, what=WHAT).items()}
        counters = {k: v for k, v in encoder.backbone.net.state_dict().items() if not v.is_floating_point()}
        load_state_into(encoder.backbone.net, {**counters, **tensors}, folder)
        return encoder.freeze()


def counters_as_vectors(module: nn.Module) -> None:
    """BatchNorm's 0-d `num_batches_tracked` counters → shape [1]: byte-view hashing of a state dict
    (engine.weights.state_hash, AvatarPipeline.model_hash) cannot view a 0-d int64 tensor. Eval-mode BatchNorm
    never reads the counter."""
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d) and layer.num_batches_tracked is not None:
            layer.num_batches_tracked = layer.num_batches_tracked.reshape(1)


@torch.no_grad()
def round_to_save_precision(module: nn.Module) -> None:
    """Round floating parameters and buffers to the fp16 grid in place (kept as fp32), so saving is lossless."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            tensor.copy_(tensor.to(SAVE_DTYPE).to(tensor.dtype))


__all__ = ["KIND", "MobileNetEncoder", "MobileNetEncoderConfig"]
