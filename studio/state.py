"""The studio's state without Qt: the portrait, the generation settings, the current avatar, the camera and the
history. Widgets bind to it both ways: they call its setters and subscribe to hear what changed, so every rule
(validation, seed handling, camera limits) lives here once and is tested without a display."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.avatar import Avatar
from engine.cameras import DEFAULT_ORBIT, look_at, orbit_position
from engine.errors import UserError
from engine.pipeline import DEFAULT_GUIDANCE, DEFAULT_STEPS, check_settings

MAX_SEED = 2**31 - 1
ELEVATION_LIMIT = 89.0
RADIUS_RANGE = (1.2, 8.0)
VIEW_PRESETS = {"front": (0.0, 0.0), "side": (90.0, 0.0), "back": (180.0, 0.0)}
PAN_LIMIT = 1.5  # the target stays near the bound box, so the head cannot be panned out of reach


@dataclass(frozen=True)
class GenerationSettings:
    guidance: float = DEFAULT_GUIDANCE
    steps: int = DEFAULT_STEPS
    sampler: str = "ddim"
    seed: int = 0
    seed_locked: bool = True
    stages: str = "cascade"
    unconditional: bool = False
    """Generate from the null condition (no portrait needed)."""

    def validate(self, max_steps: int = 1000) -> "GenerationSettings":
        check_settings(self.guidance, self.steps, self.sampler, self.stages, max_steps)
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"seed must be between 0 and {MAX_SEED} (got {self.seed})")
        return self

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `AvatarPipeline.__call__` (or `.unconditional`, which takes no guidance)."""
        kwargs = {"steps": self.steps, "sampler": self.sampler, "seed": self.seed, "stages": self.stages}
        return kwargs if self.unconditional else {"guidance": self.guidance, **kwargs}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "GenerationSettings":
        """The settings an avatar.json says it was made with (missing fields keep their defaults)."""
        known = {k: record[k] for k in ("guidance", "steps", "sampler", "seed", "stages") if k in record}
        return cls(**known, unconditional=record.get("mode") == "unconditional")


@dataclass(frozen=True)
class PortraitOptions:
    """How a dropped photo becomes the model input (engine.preprocess.prepare_portrait)."""

    detect: bool = True
    matte: bool = True
    crop: tuple[int, int, int] | None = None
    """A manual square crop (x, y, size) in source pixels; overrides detection."""

    def validate(self) -> "PortraitOptions":
        if self.crop is not None and (len(self.crop) != 3 or self.crop[2] < 8):
            raise UserError(f"a crop is (x, y, size) with size ≥ 8 pixels (got {self.crop})")
        return self


@dataclass(frozen=True)
class Camera:
    """An orbit around the head: azimuth/elevation in degrees, distance from the target."""

    azimuth: float = 0.0
    elevation: float = 0.0
    radius: float = DEFAULT_ORBIT.radius
    target: tuple[float, float, float] = DEFAULT_ORBIT.target

    def orbited(self, d_azimuth: float, d_elevation: float) -> "Camera":
        elevation = max(-ELEVATION_LIMIT, min(ELEVATION_LIMIT, self.elevation + d_elevation))
        return replace(self, azimuth=(self.azimuth + d_azimuth) % 360.0, elevation=elevation)

    def zoomed(self, factor: float) -> "Camera":
        if not math.isfinite(factor) or factor <= 0:
            return self
        lo, hi = RADIUS_RANGE
        return replace(self, radius=max(lo, min(hi, self.radius * factor)))

    def panned(self, right: float, up: float) -> "Camera":
        """Move the target along the view plane by fractions of the orbit radius (a drag across the viewer)."""
        if not (math.isfinite(right) and math.isfinite(up)):
            return self
        c2w = self.c2w()
        shift = (c2w[:3, 0] * right + c2w[:3, 1] * up) * self.radius
        target = np.clip(np.asarray(self.target) + shift, -PAN_LIMIT, PAN_LIMIT)
        return replace(self, target=tuple(float(v) for v in target))

    @classmethod
    def preset(cls, name: str) -> "Camera":
        if name not in VIEW_PRESETS:
            raise UserError(f"unknown view {name!r}; choose one of {', '.join(VIEW_PRESETS)}")
        azimuth, elevation = VIEW_PRESETS[name]
        return cls(azimuth, elevation)

    def c2w(self) -> np.ndarray:
        target = np.asarray(self.target)
        return look_at(orbit_position(self.azimuth, self.elevation, self.radius, target), target)


@dataclass
class HistoryEntry:
    avatar: Avatar
    portrait: Path | None
    settings: GenerationSettings
    folder: Path | None = None
    """Where the library keeps it (None when it was not saved)."""


Listener = Callable[[str], None]


@dataclass
class StudioState:
    """Setters validate, change one thing and tell every listener its name: "portrait", "prepared",
    "portrait_options", "settings", "avatar", "camera", "background" or "history". A rejected change raises
    UserError and leaves the state as it was."""

    portrait: Path | None = None
    prepared: Any = None
    """The model input made from `portrait` (engine.preprocess.PreparedPortrait), None until it is ready."""
    portrait_options: PortraitOptions = field(default_factory=PortraitOptions)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    avatar: Avatar | None = None
    camera: Camera = field(default_factory=Camera)
    history: list[HistoryEntry] = field(default_factory=list)
    max_history: int = 50
    _listeners: list[Listener] = field(default_factory=list, repr=False)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(name)` after each change; returns a function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _changed(self, name: str) -> None:
        for listener in list(self._listeners):
            listener(name)

    def set_portrait(self, path: str | Path | None, prepared: Any = None) -> None:
        """A new input photo (and, when already made, its prepared model input). A new photo drops the manual
        crop of the previous one."""
        if path is not None and not Path(path).is_file():
            raise UserError(f"{path}: no such portrait file")
        self.portrait = Path(path) if path is not None else None
        self.prepared = prepared
        if self.portrait_options.crop is not None:
            self.portrait_options = replace(self.portrait_options, crop=None)
            self._changed("portrait_options")
        self._changed("portrait")
        self._changed("prepared")

    def set_prepared(self, prepared: Any) -> None:
        self.prepared = prepared
        self._changed("prepared")

    def update_portrait_options(self, **changes: Any) -> PortraitOptions:
        options = replace(self.portrait_options, **changes).validate()
        if options != self.portrait_options:
            self.portrait_options = options
            self._changed("portrait_options")
        return options

    def set_background(self, rgb: tuple[float, float, float]) -> None:
        rgb = tuple(float(c) for c in rgb)
        if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
            raise UserError(f"a background colour is three values in [0, 1] (got {rgb})")
        if rgb != self.background:
            self.background = rgb
            self._changed("background")

    def update_settings(self, **changes: Any) -> GenerationSettings:
        settings = replace(self.settings, **changes).validate()
        if settings != self.settings:
            self.settings = settings
            self._changed("settings")
        return settings

    def seed_for_next_run(self, rng: random.Random | None = None) -> int:
        """The seed the next generation uses: the locked one, or a fresh random one (then shown in the UI)."""
        if not self.settings.seed_locked:
            self.update_settings(seed=(rng or random.Random()).randint(0, MAX_SEED))
        return self.settings.seed

    def set_avatar(self, avatar: Avatar, folder: Path | None = None) -> None:
        """A finished generation: becomes the current avatar and the newest history entry."""
        self.avatar = avatar
        self.history.append(HistoryEntry(avatar, self.portrait, self.settings, folder))
        del self.history[:-self.max_history]
        self._changed("avatar")
        self._changed("history")

    def reopen(self, index: int) -> None:
        """Make history entry `index` current again, with the portrait and settings it was made with."""
        if not -len(self.history) <= index < len(self.history):
            raise UserError(f"no history entry {index} (there are {len(self.history)})")
        entry = self.history[index]
        self.avatar, self.portrait, self.settings = entry.avatar, entry.portrait, entry.settings
        self.prepared = None  # made again from the entry's portrait by whoever shows it
        for name in ("avatar", "portrait", "prepared", "settings"):
            self._changed(name)

    def show_avatar(self, avatar: Avatar) -> None:
        """Display an avatar (a library entry, a preview) without making it a new history entry."""
        self.avatar = avatar
        self._changed("avatar")

    def orbit(self, d_azimuth: float, d_elevation: float) -> None:
        self._set_camera(self.camera.orbited(d_azimuth, d_elevation))

    def zoom(self, factor: float) -> None:
        self._set_camera(self.camera.zoomed(factor))

    def pan(self, right: float, up: float) -> None:
        self._set_camera(self.camera.panned(right, up))

    def view(self, name: str) -> None:
        self._set_camera(Camera.preset(name))

    def reset_camera(self) -> None:
        self._set_camera(Camera())

    def _set_camera(self, camera: Camera) -> None:
        if camera != self.camera:
            self.camera = camera
            self._changed("camera")
