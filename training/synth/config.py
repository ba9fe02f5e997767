"""Configuration of the procedural avatar generator (`rodinhd synth`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from engine.cameras import DEFAULT_FOV_DEGREES, DEFAULT_ORBIT
from engine.config import ConfigError, ConfigMixin


@dataclass
class SynthConfig(ConfigMixin):
    """Options of `rodinhd synth`. Every field is written to `synth_config.json` beside the data."""

    count: int = 16
    """Number of avatars."""
    views: int = 64
    """Training views per avatar on the orbit; view 0 is the frontal portrait (the paper renders 300)."""
    test_views: int = 8
    """Held-out views per avatar for evaluation, on a shifted spiral disjoint from the training views."""
    resolution: int = 256
    """Square image size in pixels (the paper renders 1024)."""
    seed: int = 0
    """Dataset seed; avatar i uses a seed derived from (seed, i), so the same seed always gives the same files."""
    workers: int = 1
    """Parallel worker processes (each with its own GL context). Does not change the output."""
    fov_degrees: float = DEFAULT_FOV_DEGREES
    """Horizontal field of view of every camera."""
    radius: float = DEFAULT_ORBIT.radius
    """Camera distance from the orbit target."""
    target_y: float = DEFAULT_ORBIT.target[1]
    """Height of the point all cameras look at (the avatar's bust fits in the unit cube)."""
    elevation_min: float = DEFAULT_ORBIT.elevation_min
    """Lowest camera elevation in degrees (full 360° azimuth)."""
    elevation_max: float = DEFAULT_ORBIT.elevation_max
    """Highest camera elevation in degrees."""
    supersample: int = 2
    """Anti-aliasing: render k× larger and average k×k blocks (gives soft, true alpha at edges and strands)."""
    gamut: bool = False
    """The gamut probe instead of the first `count` avatars: the seed's first avatars that between them show every
    palette colour on solid clothing and on visible hair (training/synth/gamut.py; `count` is then ignored)."""

    PRESETS: ClassVar[dict] = {
        "tiny": {"views": 64, "test_views": 8, "resolution": 256},
        "paper": {"views": 300, "test_views": 20, "resolution": 1024},
    }

    def validate(self) -> None:
        checks = [
            (self.count >= 1, f"count must be at least 1 (got {self.count})"),
            (self.views >= 1, f"views must be at least 1 (got {self.views})"),
            (self.test_views >= 0, f"test_views cannot be negative (got {self.test_views})"),
            (32 <= self.resolution <= 1024 and self.resolution % 8 == 0,
             f"resolution must be a multiple of 8 between 32 and 1024 (got {self.resolution})"),
            (self.workers >= 1, f"workers must be at least 1 (got {self.workers})"),
            (0.0 < self.fov_degrees < 120.0, f"fov_degrees must be in (0, 120) (got {self.fov_degrees})"),
            (self.radius > 1.2, f"radius must exceed 1.2 so the camera stays outside the avatar (got {self.radius})"),
            (-89.0 <= self.elevation_min <= self.elevation_max <= 89.0,
             "elevations must satisfy -89 <= elevation_min <= elevation_max <= 89"),
            (self.supersample in (1, 2, 3, 4), f"supersample must be 1..4 (got {self.supersample})"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def indices(self) -> list[int]:
        """The avatar indices of the dataset."""
        if self.gamut:
            from training.synth.gamut import gamut_indices

            return gamut_indices(self.seed)
        return list(range(self.count))

    def output_key(self) -> dict:
        """The fields that decide the files of each avatar (count and workers do not)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("count", "workers")}
