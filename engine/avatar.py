"""`Avatar`: a generated (or fitted) triplane with the decoder that renders it and the record of how it was made.

    avatar = pipeline(portrait, seed=3)
    image = avatar.render_view(azimuth=30, elevation=10, resolution=256)     # [H, W, 4] float in [0, 1]
    avatar.save("out/avatar_0")                                             # avatar.safetensors + avatar.json
"""
from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from engine.cameras import DEFAULT_FOV_DEGREES, DEFAULT_ORBIT, look_at, orbit_position
from engine.decoder import TriplaneDecoder, decoder_hash
from engine.io import atomic_write_json
from engine.render import RenderConfig, density_occupancy, render_image
from engine.render.occupancy import OccupancyGrid
from engine.triplane import save_triplane

TRIPLANE_FILE = "avatar.safetensors"
RECORD_FILE = "avatar.json"


def orbit_camera(azimuth: float, elevation: float, radius: float = DEFAULT_ORBIT.radius) -> np.ndarray:
    """Camera-to-world matrix on the dataset rig's orbit (azimuth 0, elevation 0 = the portrait's view)."""
    target = np.asarray(DEFAULT_ORBIT.target)
    return look_at(orbit_position(azimuth, elevation, radius, target), target)


def versions() -> dict[str, str]:
    """Library versions that can change a result; written into every avatar.json."""
    import diffusers

    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "numpy": np.__version__}


@dataclass
class Avatar:
    planes: torch.Tensor  # [3, C, R, R] float32
    decoder: TriplaneDecoder
    metadata: dict[str, Any] = field(default_factory=dict)
    _occupancy: OccupancyGrid | None = field(default=None, repr=False)

    @property
    def resolution(self) -> int:
        return int(self.planes.shape[-1])

    def occupancy(self) -> OccupancyGrid:
        """Empty-space grid from the avatar's own density (computed once)."""
        if self._occupancy is None:
            self._occupancy = density_occupancy(self.planes, self.decoder, samples_per_cell=2)
        return self._occupancy

    @torch.no_grad()
    def render(self, c2w: np.ndarray, resolution: int = 256, samples: int = 64, background: str = "white",
               fov_degrees: float = DEFAULT_FOV_DEGREES) -> np.ndarray:
        """[H, W, 4] float32 RGBA in [0, 1] (rgb composited over `background`, premultiplied if transparent)."""
        config = RenderConfig(samples=samples, background=background)
        camera = torch.as_tensor(np.asarray(c2w), dtype=torch.float32, device=self.planes.device)
        out = render_image(self.planes, self.decoder, camera, math.radians(fov_degrees), resolution, resolution,
                           config, self.occupancy())
        return torch.cat([out.rgb, out.alpha[..., None]], -1).clamp(0, 1).cpu().numpy()

    def render_view(self, azimuth: float = 0.0, elevation: float = 0.0, **kwargs: Any) -> np.ndarray:
        return self.render(orbit_camera(azimuth, elevation), **kwargs)

    def turntable(self, frames: int = 36, elevation: float = 10.0, progress: Callable[[int, int], Any] | None = None,
                  **kwargs: Any) -> list[np.ndarray]:
        """`frames` views around the head at one elevation (for GIF/MP4)."""
        images = []
        for i in range(frames):
            images.append(self.render_view(360.0 * i / frames, elevation, **kwargs))
            if progress is not None:
                progress(i + 1, frames)
        return images

    def record(self) -> dict[str, Any]:
        """What goes into avatar.json: the metadata plus the decoder hash and shape."""
        return {**self.metadata, "decoder_hash": decoder_hash(self.decoder),
                "triplane_shape": list(self.planes.shape), "versions": versions()}

    def save(self, folder: Path) -> Path:
        """Write `folder/avatar.safetensors` (fp16 triplane) and `folder/avatar.json`; returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_triplane(folder / TRIPLANE_FILE, self.planes, decoder_hash(self.decoder),
                      extra={"seed": self.metadata.get("seed")})
        atomic_write_json(folder / RECORD_FILE, self.record())
        return folder
