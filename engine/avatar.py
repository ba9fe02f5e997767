"""`Avatar`: a generated (or fitted) triplane with the decoder that renders it and the record of how it was made.

    avatar = pipeline(portrait, seed=3)
    image = avatar.render_view(azimuth=30, elevation=10, resolution=256)     # [H, W, 4] float in [0, 1]
    avatar.save("out/avatar_0")                                             # avatar.safetensors + avatar.json
    again = Avatar.load("out/avatar_0")                                     # no model needed

Files are self-contained: avatar.safetensors holds the fp16 planes, the decoder's tensors (fp32, "decoder." prefix),
its config and hash, and the avatar's metadata (all in the safetensors header, never pickled). avatar.json beside it
is the human-readable record (plus the "exports" written from it, see engine.exports).
"""
from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from engine.cameras import DEFAULT_FOV_DEGREES, DEFAULT_ORBIT, look_at, orbit_position
from engine.config import ConfigError
from engine.decoder import DecoderConfig, TriplaneDecoder, decoder_hash
from engine.errors import Cancelled, UserError
from engine.io import atomic_write_json
from engine.render import RenderConfig, density_occupancy, render_image
from engine.render.occupancy import OccupancyGrid
from engine.triplane import load_triplane_with, save_triplane, triplane_hash

TRIPLANE_FILE = "avatar.safetensors"
RECORD_FILE = "avatar.json"
DECODER_PREFIX = "decoder."  # the decoder's tensors inside a self-contained avatar file
DECODER_CONFIG_KEY = "decoder_config"  # its config (JSON) in the file's header
# record() entries computed from the avatar itself (never taken from a file's metadata)
DERIVED_KEYS = ("decoder_hash", "triplane_hash", "triplane_shape", "versions", "exports")


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
        """`frames` views around the head at one elevation (for GIF/MP4). `progress(i, n)` after each frame;
        returning False from it cancels (engine.errors.Cancelled)."""
        images = []
        for i in range(frames):
            images.append(self.render_view(360.0 * i / frames, elevation, **kwargs))
            if progress is not None and progress(i + 1, frames) is False:
                raise Cancelled("turntable cancelled")
        return images

    def triplane_hash(self) -> str:
        """Content hash of the planes as stored (fp16): tells whether avatar.json belongs to this avatar."""
        return triplane_hash(self.planes)

    def record(self) -> dict[str, Any]:
        """What goes into avatar.json: the metadata plus the decoder hash, triplane hash and shape."""
        return {**self.metadata, "decoder_hash": decoder_hash(self.decoder), "triplane_hash": self.triplane_hash(),
                "triplane_shape": list(self.planes.shape), "versions": versions()}

    def save(self, folder: Path) -> Path:
        """Write `folder/avatar.safetensors` (self-contained) and `folder/avatar.json`; returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.save_file(folder / TRIPLANE_FILE)
        self.write_record(folder)
        return folder

    def save_file(self, path: Path) -> Path:
        """One self-contained .safetensors file: fp16 planes + fp32 decoder (config and hash) + metadata."""
        path = Path(path)
        tensors = {DECODER_PREFIX + name: t.detach().to("cpu", torch.float32)
                   for name, t in self.decoder.state_dict().items()}
        metadata = json.loads(json.dumps(self.metadata, default=str))  # JSON-able, as avatar.json
        save_triplane(path, self.planes, decoder_hash(self.decoder), extra=metadata, tensors=tensors,
                      metadata={DECODER_CONFIG_KEY: json.dumps(self.decoder.config.to_dict(), sort_keys=True)})
        return path

    def write_record(self, folder: Path, exports: dict[str, dict] | None = None) -> dict[str, Any]:
        """Write `folder/avatar.json`: record() plus an "exports" mapping {file name: {kind, parameters}}.

        An avatar.json already there is merged with (its exports kept) when it belongs to this avatar (same
        triplane hash); otherwise it is replaced. Returns what was written.
        """
        folder = Path(folder)
        record = self.record()
        previous = _read_record(folder / RECORD_FILE)
        merged = {}
        if previous is not None and previous.get("triplane_hash") == record["triplane_hash"]:
            merged = dict(previous.get("exports") or {})
        merged.update(exports or {})
        if merged:
            record["exports"] = merged
        atomic_write_json(folder / RECORD_FILE, record)
        return record

    @classmethod
    def load(cls, path: str | Path, decoder: TriplaneDecoder | None = None,
             device: str | torch.device = "cpu") -> "Avatar":
        """Open an avatar: a folder holding avatar.safetensors (+ avatar.json), or the .safetensors file itself.

        Self-contained files rebuild their own decoder (its hash is checked against the recorded one). Files
        written before decoders were stored need `decoder=` (the model's decoder); a given decoder must have the
        recorded hash (it is used as given, not moved to `device`). The metadata comes from avatar.json beside the file when that record belongs to this
        avatar, else from the file itself.
        """
        path = Path(path)
        file = path / TRIPLANE_FILE if path.is_dir() else path
        if path.is_dir() and not file.is_file():
            raise UserError(f"{path}: no avatar here (expected {TRIPLANE_FILE})")
        planes, meta, tensors = load_triplane_with(file, DECODER_PREFIX, device)
        recorded = meta.get("decoder_hash")
        if decoder is not None:
            given = decoder_hash(decoder)
            if given != recorded:
                raise UserError(f"{file}: made with decoder {recorded}, but the decoder given is {given}; an "
                                f"avatar only renders correctly with its own decoder")
        else:
            decoder = _stored_decoder(file, meta, tensors).to(device)
        if planes.shape[1] != decoder.config.channels:
            raise UserError(f"{file}: {planes.shape[1]} channels, but the decoder expects {decoder.config.channels}")
        avatar = cls(planes, decoder, {})
        avatar.metadata = _metadata(file, meta, avatar)
        return avatar


def _stored_decoder(file: Path, meta: dict, tensors: dict[str, torch.Tensor]) -> TriplaneDecoder:
    if not tensors or DECODER_CONFIG_KEY not in meta:
        raise UserError(f"{file}: this file does not hold its decoder (a plain triplane, or an avatar saved by an "
                        f"older version); give the decoder it was made with (rodinhd: --decoder MODEL; Python: "
                        f"Avatar.load(path, decoder=...)); saving the avatar again makes it self-contained")
    try:
        decoder = TriplaneDecoder(DecoderConfig.from_dict(json.loads(meta[DECODER_CONFIG_KEY])))
        decoder.load_state_dict({k: v.float() for k, v in tensors.items()})
    except (ConfigError, json.JSONDecodeError, TypeError, RuntimeError) as exc:
        raise UserError(f"{file}: damaged avatar file: its decoder cannot be rebuilt "
                        f"({str(exc).splitlines()[0]})") from exc
    if decoder_hash(decoder) != meta.get("decoder_hash"):
        raise UserError(f"{file}: damaged avatar file: its decoder's hash {decoder_hash(decoder)} is not the "
                        f"recorded {meta.get('decoder_hash')}")
    return decoder.eval()


def _read_record(path: Path) -> dict | None:
    """avatar.json as a dict, or None when missing or unreadable (it is then simply rewritten)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _metadata(file: Path, meta: dict, avatar: Avatar) -> dict[str, Any]:
    """The avatar's metadata: from avatar.json beside the file if it describes this avatar, else the file's own."""
    record = _read_record(file.parent / RECORD_FILE)
    if record is not None:
        if "triplane_hash" in record:
            ours = record["triplane_hash"] == avatar.triplane_hash()
        else:  # written before triplane hashes: the decoder and the shape must at least agree
            ours = (record.get("decoder_hash") == meta.get("decoder_hash")
                    and record.get("triplane_shape") == list(avatar.planes.shape))
        if ours:
            return {k: v for k, v in record.items() if k not in DERIVED_KEYS}
    extra = meta.get("extra")
    return {k: v for k, v in extra.items() if k not in DERIVED_KEYS} if isinstance(extra, dict) else {}
