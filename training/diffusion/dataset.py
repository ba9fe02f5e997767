"""What diffusion training reads: fitted triplanes (a stage-1 or stage-2 fit run folder), the portraits and
views of the same avatars (the dataset folder), and the frozen decoder the triplanes were fitted with."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.decoder import TriplaneDecoder, decoder_hash, load_decoder
from engine.errors import UserError
from engine.portrait import load_portrait
from engine.triplane import load_triplane
from training.data.format import TRAIN_TRANSFORMS, ViewSet, read_transforms

PORTRAIT_FILE = "portrait.png"


def triplane_files(triplanes: Path) -> list[Path]:
    """The `*.safetensors` triplanes of a fit run folder (its triplanes/ subfolder) or of a folder of them."""
    triplanes = Path(triplanes)
    folder = triplanes / "triplanes" if (triplanes / "triplanes").is_dir() else triplanes
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UserError(f"{triplanes}: no fitted triplanes (expected a fit run folder with triplanes/*.safetensors;"
                        " make one with rodinhd fit --stage 2)")
    return files


def fit_decoder(triplanes: Path) -> TriplaneDecoder:
    from training.fit.stage2_run import decoder_folder

    return load_decoder(decoder_folder(Path(triplanes)))


def downsample(planes: torch.Tensor, resolution: int) -> torch.Tensor:
    """[..., 3, C, R, R] → [..., 3, C, r, r] by area averaging (how low-resolution training triplanes are made)."""
    *lead, three, c, size, _ = planes.shape
    if size == resolution:
        return planes
    if size % resolution:
        raise UserError(f"cannot make {resolution}² triplanes from {size}² ones (not a divisor)")
    flat = planes.reshape(-1, c, size, size)
    return F.avg_pool2d(flat, size // resolution).reshape(*lead, three, c, resolution, resolution)


def plane_statistics(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per plane and channel mean and std over avatars and texels: [N, 3, C, R, R] → ([3, C], [3, C])."""
    return planes.mean(dim=(0, 3, 4)), planes.std(dim=(0, 3, 4))


class TriplaneSet:
    """Fitted avatars: names, raw triplanes [N, 3, C, R, R] (float32), portraits and views on demand."""

    def __init__(self, data: Path, triplanes: Path, limit: int | None = None, exclude: tuple[str, ...] = ()):
        self.data = Path(data)
        self.decoder = fit_decoder(triplanes)
        expected = decoder_hash(self.decoder)
        files = [f for f in triplane_files(triplanes) if f.stem not in set(exclude)][:limit]
        missing = [f.stem for f in files if not (self.data / f.stem / PORTRAIT_FILE).is_file()]
        if missing:
            raise UserError(f"{self.data}: no portrait for fitted avatar(s) {', '.join(missing[:5])}; "
                            "--data must be the dataset the triplanes were fitted on")
        if not files:
            raise UserError(f"{triplanes}: no triplanes left to train on")
        self.names = [f.stem for f in files]
        self.planes = torch.stack([load_triplane(f, expected)[0] for f in files])
        if self.planes.shape[2] != self.decoder.config.channels:
            raise UserError(f"{triplanes}: triplanes have {self.planes.shape[2]} channels, the decoder expects "
                            f"{self.decoder.config.channels}")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def resolution(self) -> int:
        return int(self.planes.shape[-1])

    def folder(self, index: int) -> Path:
        return self.data / self.names[index]

    def portraits(self, size: int) -> torch.Tensor:
        """[N, 3, size, size] in [0, 1]."""
        return torch.stack([load_portrait(self.folder(i) / PORTRAIT_FILE, size) for i in range(len(self))])

    def at_resolution(self, resolution: int) -> torch.Tensor:
        return downsample(self.planes, resolution)

    def views(self, index: int) -> ViewSet:
        return _views(self.folder(index))

    def view_image(self, index: int, view: int, size: int) -> torch.Tensor:
        """Training view `view` of avatar `index` over white, box-resized to size² → [size, size, 3] float."""
        frame = self.views(index).frames[view]
        image = Image.open(self.folder(index) / frame.file_path).convert("RGBA")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BOX)
        rgba = torch.from_numpy(np.asarray(image).copy()).float() / 255.0
        return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])

    def image_size(self, index: int) -> int:
        frame = self.views(index).frames[0]
        with Image.open(self.folder(index) / frame.file_path) as image:
            return image.size[0]


@lru_cache(maxsize=4096)
def _views(folder: Path) -> ViewSet:
    return read_transforms(folder / TRAIN_TRANSFORMS)
