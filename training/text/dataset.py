"""Text → portrait training data: frontal portraits (over white, downsampled) + captions + named colours, cached
once as a .npz, and the frozen MiniLM hidden states of every distinct caption cached once per dataset.

    data = load_portrait_set(["data/text3k"], resolution=64)      # PortraitSet (uint8 images, captions, colours)
    cond = encode_captions(data.captions)                            # CaptionCache (fp16 hidden, int64 masks)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.errors import UserError

CACHE_NAME = ".text_portraits_{res}.npz"


@dataclass
class PortraitSet:
    images: np.ndarray  # [N, R, R, 3] uint8, composited over white
    captions: list[str]
    ids: list[str]
    hair: list[str]  # hair colour name ("" when bald)
    cloth: list[str]  # main clothing colour name
    meta: list[dict]  # small per-avatar facts used by the evaluation (style, hat, pattern)

    def __len__(self) -> int:
        return len(self.captions)

    def subset(self, idx) -> "PortraitSet":
        idx = list(idx)
        return PortraitSet(self.images[idx], [self.captions[i] for i in idx], [self.ids[i] for i in idx],
                           [self.hair[i] for i in idx], [self.cloth[i] for i in idx], [self.meta[i] for i in idx])


def portrait_array(path: Path, resolution: int) -> np.ndarray:
    """RGBA portrait → RGB uint8 over white at resolution² (box-filtered in linear-ish straight RGB)."""
    img = Image.open(path).convert("RGBA")
    rgba = np.asarray(img).astype(np.float32) / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
    out = Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")
    if out.size != (resolution, resolution):
        out = out.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(out, dtype=np.uint8)


def _avatar_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "portrait.png").is_file()
                  and (p / "caption.txt").is_file())


def _facts(attributes: dict) -> tuple[str, str, dict]:
    hair, cloth, acc = attributes.get("hair", {}), attributes.get("clothing", {}), attributes.get("accessories", {})
    style = hair.get("style", "")
    meta = {"seed": attributes.get("seed"), "style": style, "hat": acc.get("hat", "none"), "pattern": cloth.get("pattern", "solid"),
            "cut": cloth.get("cut", ""), "colour2": cloth.get("colour2", "")}
    return ("" if style == "bald" else hair.get("colour", "")), cloth.get("colour", ""), meta


def load_portrait_set(roots, resolution: int = 64, limit: int | None = None, cache: bool = True) -> PortraitSet:
    """Every avatar with a portrait and caption under each root (a dataset folder). Cached per root."""
    parts = []
    for root in [Path(r) for r in roots]:
        if not root.is_dir():
            raise UserError(f"{root}: no such dataset folder")
        dirs = _avatar_dirs(root)
        cache_file = root / CACHE_NAME.format(res=resolution)
        key = hashlib.sha1("\n".join(d.name for d in dirs).encode()).hexdigest()
        if cache and cache_file.is_file():
            z = np.load(cache_file, allow_pickle=False)
            if str(z["key"]) == key:
                info = json.loads(str(z["info"]))
                parts.append(PortraitSet(z["images"], info["captions"], info["ids"], info["hair"], info["cloth"],
                                         info["meta"]))
                continue
        images, captions, ids, hair, cloth, meta = [], [], [], [], [], []
        for d in dirs:
            images.append(portrait_array(d / "portrait.png", resolution))
            captions.append((d / "caption.txt").read_text().strip())
            attrs = json.loads((d / "attributes.json").read_text()) if (d / "attributes.json").is_file() else {}
            h, c, m = _facts(attrs)
            ids.append(f"{root.name}/{d.name}")
            hair.append(h), cloth.append(c), meta.append(m)
        if not images:
            raise UserError(f"{root}: no avatars with portrait.png and caption.txt")
        part = PortraitSet(np.stack(images), captions, ids, hair, cloth, meta)
        if cache:
            info = json.dumps({"captions": captions, "ids": ids, "hair": hair, "cloth": cloth, "meta": meta})
            tmp = cache_file.with_name(cache_file.name + ".tmp.npz")
            np.savez(tmp, images=part.images, key=np.array(key), info=np.array(info))
            tmp.replace(cache_file)
        parts.append(part)
    merged = PortraitSet(np.concatenate([p.images for p in parts]), sum((p.captions for p in parts), []),
                         sum((p.ids for p in parts), []), sum((p.hair for p in parts), []),
                         sum((p.cloth for p in parts), []), sum((p.meta for p in parts), []))
    return merged.subset(range(min(limit, len(merged)))) if limit else merged


# ------------------------------------------------------------------------------------------------ text encoder
def get_text_encoder(max_tokens: int = 77):
    """The one MiniLM encoder (engine.text.encoder.TextEncoder); `encode(prompts) -> (hidden fp32, mask int64)`."""
    from engine.text.encoder import TextEncoder

    return TextEncoder(max_tokens=max_tokens)


@dataclass
class CaptionCache:
    texts: list[str]
    hidden: torch.Tensor  # [U, L, 384] float16 (frozen encoder: computed once)
    mask: torch.Tensor  # [U, L] int64
    index: dict[str, int]

    def lookup(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.tensor([self.index[c] for c in captions])
        return self.hidden[rows].float(), self.mask[rows]


def encode_captions(captions, max_tokens: int = 77, batch: int = 64, encoder=None) -> CaptionCache:
    """Hidden states of every distinct caption (and of "" — the unconditional), computed once."""
    encoder = encoder or get_text_encoder(max_tokens)
    texts = sorted(set(captions) | {""})
    hidden, masks = [], []
    for i in range(0, len(texts), batch):
        h, m = encoder.encode(texts[i:i + batch])
        hidden.append(h.to(torch.float16)), masks.append(m)
    return CaptionCache(texts, torch.cat(hidden), torch.cat(masks), {t: i for i, t in enumerate(texts)})
