"""Triplanes: one avatar as three axis-aligned feature planes [3, C, R, R] (planes XY, XZ, YZ, in that order).

Axis mapping (tested): plane k is indexed [channel, row, column]; for plane XY the column coordinate is x and
the row coordinate is y; for XZ column = x, row = z; for YZ column = y, row = z. Coordinates span the bound
[-1, 1] with align_corners=True (the first and last rows/columns sit exactly on ±1), as in the authors' code.
(EG3D shipped XY, XZ, ZX; the test in tests/engine/test_triplane.py pins ours down.)

Files: safetensors with the planes in fp16 and metadata naming the decoder (its hash) they were fitted with.
Self-contained avatar files (engine.avatar) also hold the decoder's tensors ("decoder." prefix) and config.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from engine.errors import UserError
from engine.io import atomic_write

PLANE_AXES = ((0, 1), (0, 2), (1, 2))  # (column axis, row axis) of planes XY, XZ, YZ
Aggregate = Literal["mean", "sum", "concat"]
FORMAT = "rodinhd-triplane"


def plane_coordinates(points: torch.Tensor) -> torch.Tensor:
    """Points [..., 3] in [-1, 1] → grid_sample coordinates [3, ..., 2] (x = column, y = row) per plane."""
    return torch.stack([points[..., list(axes)] for axes in PLANE_AXES])


def sample_triplane(planes: torch.Tensor, points: torch.Tensor, aggregate: Aggregate = "mean",
                    clamp: bool = True) -> torch.Tensor:
    """Bilinear features of `planes [3, C, R, R]` at `points [N, 3]` → [N, C] ([N, 3C] for concat).

    Values are clamped to [-1, 1] first (as the authors do) so diffusion and fitting agree on the range.
    """
    if planes.dim() != 4 or planes.shape[0] != 3:
        raise ValueError(f"planes must be [3, C, R, R], got {list(planes.shape)}")
    if clamp:
        planes = planes.clamp(-1.0, 1.0)
    grid = plane_coordinates(points).unsqueeze(1)  # [3, 1, N, 2]
    feats = F.grid_sample(planes, grid.to(planes.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    return _aggregate(feats[:, :, 0].transpose(1, 2), aggregate)  # from [3, N, C]


def _aggregate(feats: torch.Tensor, aggregate: Aggregate) -> torch.Tensor:
    """Per-plane features [3, N, C] → [N, C] (mean, sum) or [N, 3C] (concat)."""
    if aggregate == "mean":
        return feats.mean(0)
    if aggregate == "sum":
        return feats.sum(0)
    return feats.permute(1, 0, 2).reshape(feats.shape[1], -1)


def sample_triplanes(planes: torch.Tensor, points: torch.Tensor, index: torch.Tensor, aggregate: Aggregate = "mean",
                     clamp: bool = True) -> torch.Tensor:
    """Like `sample_triplane` for a batch of triplanes `[K, 3, C, R, R]`: point n is looked up in triplane
    `index[n]`. One grid_sample over all K·3 planes: each triplane's points are padded to the largest count."""
    if planes.dim() != 5 or planes.shape[1] != 3:
        raise ValueError(f"planes must be [K, 3, C, R, R], got {list(planes.shape)}")
    count, channels = planes.shape[0], planes.shape[2]
    if clamp:
        planes = planes.clamp(-1.0, 1.0)
    if not len(points):
        width = channels * (3 if aggregate == "concat" else 1)
        return planes.new_zeros(0, width)
    order = torch.argsort(index, stable=True)
    ordered = index[order]
    per_plane = torch.bincount(ordered, minlength=count)
    position = torch.arange(len(points), device=points.device) - (torch.cumsum(per_plane, 0) - per_plane)[ordered]
    padded = points.new_zeros(count, int(per_plane.max()), 3)
    padded[ordered, position] = points[order]
    grid = plane_coordinates(padded).transpose(0, 1).reshape(count * 3, 1, padded.shape[1], 2)
    feats = F.grid_sample(planes.reshape(count * 3, channels, *planes.shape[-2:]), grid.to(planes.dtype),
                          mode="bilinear", padding_mode="zeros", align_corners=True)  # [K·3, C, 1, M]
    feats = feats.reshape(count, 3, channels, -1).permute(0, 3, 1, 2)[ordered, position]  # [N, 3, C], sorted
    aggregated = _aggregate(feats.transpose(0, 1), aggregate)
    return aggregated.new_zeros(aggregated.shape).index_copy(0, order, aggregated)


def init_triplane(channels: int, resolution: int, std: float = 0.1, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """A fresh triplane [3, C, R, R], N(0, std²) like the authors' initialisation."""
    return torch.randn(3, channels, resolution, resolution, generator=generator).mul_(std).to(device)


def total_variation(planes: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring texels of every plane (smoothness regulariser)."""
    dx = planes[..., :, 1:] - planes[..., :, :-1]
    dy = planes[..., 1:, :] - planes[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def save_triplane(path: Path, planes: torch.Tensor, decoder_hash: str, extra: dict | None = None,
                  tensors: dict[str, torch.Tensor] | None = None, metadata: dict[str, str] | None = None) -> None:
    """Write `planes` as fp16 safetensors (atomic), recording the decoder hash and any extra metadata.

    `tensors` are stored beside the planes as they are (a self-contained avatar keeps its decoder there under a
    "decoder." prefix, fp32); `metadata` adds string entries to the file's header. Readers that only want the
    planes (`load_triplane`) ignore both.
    """
    if planes.dim() != 4 or planes.shape[0] != 3:
        raise ValueError(f"planes must be [3, C, R, R], got {list(planes.shape)}")
    meta = {**(metadata or {}), "format": FORMAT, "decoder_hash": decoder_hash, "extra": json.dumps(extra or {})}
    stored = {name: t.detach().to("cpu").contiguous() for name, t in (tensors or {}).items()}
    if "planes" in stored:
        raise ValueError("the extra tensors may not be called 'planes'")
    stored["planes"] = planes.detach().to("cpu", torch.float16).contiguous()
    atomic_write(Path(path), lambda tmp: save_file(stored, str(tmp), metadata=meta))


def triplane_hash(planes: torch.Tensor) -> str:
    """A short content hash of a triplane as it is stored (fp16): the same before saving and after loading."""
    stored = planes.detach().to("cpu", torch.float16).contiguous()
    h = hashlib.sha256(json.dumps(list(stored.shape)).encode())
    h.update(stored.view(torch.int16).numpy().tobytes())
    return h.hexdigest()[:16]


def _read(path: Path, prefix: str | None) -> tuple[torch.Tensor, dict, dict[str, torch.Tensor]]:
    """(planes as stored, header metadata, the tensors named `prefix`… with the prefix removed)."""
    path = Path(path)
    if path.suffix in (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin"):
        raise UserError(f"{path}: pickled checkpoints are not loaded; triplanes are .safetensors files")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a triplane file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            planes = f.get_tensor("planes")
            extra = {} if prefix is None else {k[len(prefix):]: f.get_tensor(k) for k in f.keys()
                                                if k.startswith(prefix)}
    except FileNotFoundError:
        raise UserError(f"{path}: no such triplane file") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise UserError(f"{path}: not a readable triplane file ({exc})") from exc
    if meta.get("format") != FORMAT or planes.dim() != 4 or planes.shape[0] != 3:
        raise UserError(f"{path}: not a RodinHD triplane (format {meta.get('format')!r}, shape {list(planes.shape)})")
    try:
        meta["extra"] = json.loads(meta.get("extra", "{}"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: damaged metadata ({exc.msg})") from exc
    return planes, meta, extra


def load_triplane(path: Path, expect_decoder_hash: str | None = None, device: str | torch.device = "cpu",
                  ) -> tuple[torch.Tensor, dict]:
    """Read a triplane file → (planes float32 [3, C, R, R], metadata). Refuses a decoder-hash mismatch.

    Works for plain triplane files and self-contained avatar files alike (their decoder tensors are ignored).
    """
    planes, meta, _ = _read(path, None)
    if expect_decoder_hash is not None and meta.get("decoder_hash") != expect_decoder_hash:
        raise UserError(f"{path}: fitted with decoder {meta.get('decoder_hash')}, but the decoder given is "
                        f"{expect_decoder_hash}; a triplane only renders correctly with its own decoder")
    return planes.to(device, torch.float32), meta


def load_triplane_with(path: Path, prefix: str, device: str | torch.device = "cpu",
                       ) -> tuple[torch.Tensor, dict, dict[str, torch.Tensor]]:
    """Like `load_triplane` (no hash check), also returning the tensors stored under `prefix` (prefix removed)."""
    planes, meta, extra = _read(path, prefix)
    return planes.to(device, torch.float32), meta, extra
