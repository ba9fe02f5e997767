"""The upsampler's image-level loss (paper Eq. 6): render random patches of the predicted triplane with the
frozen decoder and compare them with the ground-truth views — pixel L2 plus a perceptual distance (the
MobileNetV2 feature distance, our LPIPS substitute)."""
from __future__ import annotations

import torch

from engine.metrics.vgg import perceptual_distance
from engine.render import RenderConfig, pixel_rays, render_rays
from training.diffusion.dataset import TriplaneSet


class PatchLoss:
    def __init__(self, data: TriplaneSet, patch: int, scales: tuple[float, ...], samples: int,
                 perceptual_weight: float, device: torch.device, vgg16_weights: str = "") -> None:
        self.data, self.patch, self.scales, self.device = data, patch, scales, device
        self.decoder = data.decoder.to(device).requires_grad_(False)
        self.render = RenderConfig(samples=samples, background="white")
        self.perceptual_weight = perceptual_weight
        self.perceptual = perceptual_distance(vgg16_weights).to(device) if perceptual_weight > 0 else None
        self.full_size = data.image_size(0)

    def __call__(self, planes: torch.Tensor, indices: list[int], generator: torch.Generator,
                 ) -> dict[str, torch.Tensor]:
        """planes [B, 3, C, R, R] (differentiable) of the avatars `indices` → {"pixel", "perceptual"} means."""
        preds, targets = [], []
        for planes_b, index in zip(planes, indices):
            pred, target = self._one_patch(planes_b, index, generator)
            preds.append(pred)
            targets.append(target)
        pred, target = torch.stack(preds), torch.stack(targets)  # [B, 3, p, p]
        losses = {"pixel": (pred - target).square().mean()}
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(pred, target).mean()
        return losses

    def _one_patch(self, planes: torch.Tensor, index: int, generator: torch.Generator):
        views = self.data.views(index)
        view = int(torch.randint(len(views.frames), (), generator=generator))
        scale = self.scales[int(torch.randint(len(self.scales), (), generator=generator))]
        size = max(self.patch, int(round(self.full_size * scale)))
        top = int(torch.randint(size - self.patch + 1, (), generator=generator))
        left = int(torch.randint(size - self.patch + 1, (), generator=generator))
        image = self.data.view_image(index, view, size)[top:top + self.patch, left:left + self.patch]
        v, u = torch.meshgrid(torch.arange(self.patch, dtype=torch.float32) + top + 0.5,
                              torch.arange(self.patch, dtype=torch.float32) + left + 0.5, indexing="ij")
        c2w = torch.tensor(views.frames[view].c2w, dtype=torch.float32)
        rays = pixel_rays(c2w, views.camera_angle_x, size, size, u.reshape(-1), v.reshape(-1))
        rays = type(rays)(rays.origins.to(self.device), rays.directions.to(self.device))
        out = render_rays(planes, self.decoder, rays, self.render, perturb=True, generator=generator)
        pred = out.rgb.reshape(self.patch, self.patch, 3).permute(2, 0, 1)
        return pred, image.permute(2, 0, 1).to(self.device)

