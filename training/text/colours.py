"""The colour-following measure for text → portrait: does the hair (clothing) region of a 64² portrait show the
hair (clothing) colour named in the prompt?

  * region masks in the 64² training framing, from the generator itself: each calibration avatar is re-rendered
    with its hair (clothing main colour) swapped for a probe colour; the pixels that change are that avatar's hair
    (clothing) pixels. Averaged over avatars this gives P(hair | pixel) and P(cloth | pixel); the region is where
    P ≥ `threshold` (hair: over non-bald, hatless avatars);
  * reference colour of every name: the median over calibration portraits with that name of the region's median
    colour (so shading/lighting of the renderer is included, not the raw palette rgb);
  * dominant colour of a region = nearest reference (CIE Lab distance) to the median of the region's pixels.

    calib = calibrate(load_portrait_set(["data/text3k"]), n=400)   # → ColourMeasure (saved as JSON)
    calib.classify(image_uint8_64x64x3) -> {"hair": "blonde", "cloth": "red"}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from training.synth import palettes

HAIR_NAMES = list(palettes.HAIR_NATURAL) + list(palettes.HAIR_DYED)
CLOTH_NAMES = list(palettes.CLOTH)
PROBE_HAIR = (0.0, 1.0, 0.0)
PROBE_CLOTH = (1.0, 0.0, 1.0)
PROBE_SKIN = (0.0, 0.2, 1.0)
REGIONS = ("hair", "skin", "cloth")
BACKGROUND = 0.95  # pixels with every channel above this are background (portraits are composited over white)
MIN_PIXELS = 8


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (…, 3) → CIE Lab (D65)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


@dataclass
class ColourMeasure:
    hair_mask: np.ndarray  # [R, R] bool
    cloth_mask: np.ndarray
    hair_refs: dict[str, tuple[float, float, float]]  # name → sRGB 0..1
    cloth_refs: dict[str, tuple[float, float, float]]
    info: dict

    def region_colour(self, image: np.ndarray, which: str) -> np.ndarray:
        img = np.asarray(image, dtype=np.float64)
        img = img / 255.0 if img.max() > 1.5 else img
        mask = self.hair_mask if which == "hair" else self.cloth_mask
        pixels = img[mask]
        fg = pixels[pixels.min(-1) < BACKGROUND]  # the white background showing through is not the region's colour
        return np.median(fg if len(fg) >= MIN_PIXELS else pixels, axis=0)

    def nearest(self, rgb: np.ndarray, which: str) -> str:
        refs = self.hair_refs if which == "hair" else self.cloth_refs
        names = list(refs)
        d = np.linalg.norm(srgb_to_lab(np.array([refs[n] for n in names])) - srgb_to_lab(rgb), axis=-1)
        return names[int(np.argmin(d))]

    def classify(self, image: np.ndarray) -> dict[str, str]:
        """image: [R, R, 3] uint8 (or float 0..1) over white → {"hair": name, "cloth": name}."""
        return {w: self.nearest(self.region_colour(image, w), w) for w in ("hair", "cloth")}

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"hair_mask": self.hair_mask.astype(int).tolist(),
                                          "cloth_mask": self.cloth_mask.astype(int).tolist(),
                                          "hair_refs": self.hair_refs, "cloth_refs": self.cloth_refs,
                                          "info": self.info}))

    @classmethod
    def load(cls, path: Path) -> "ColourMeasure":
        d = json.loads(Path(path).read_text())
        return cls(np.array(d["hair_mask"], bool), np.array(d["cloth_mask"], bool),
                   {k: tuple(v) for k, v in d["hair_refs"].items()}, {k: tuple(v) for k, v in d["cloth_refs"].items()},
                   d["info"])


def hair_visible(meta: dict) -> bool:
    """Hair with volume and no hat (a buzz cut is a thin paint on the scalp; bald has no hair colour)."""
    return meta.get("style") not in ("bald", "buzz", "") and meta.get("hat", "none") == "none"


def cloth_single(meta: dict) -> bool:
    """Clothing whose main colour dominates (two-tone stripes/checks/dots are ambiguous)."""
    return meta.get("pattern") in ("solid", "knit", "logo")


def probe_masks(seeds: list[int], resolution: int = 64, render_resolution: int = 128,
                threshold: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """Per-avatar hair and clothing pixel masks ([N, R, R] bool each) by re-rendering with probe colours."""
    masks = region_masks(seeds, resolution, render_resolution, threshold, regions=("hair", "cloth"))
    return masks["hair"], masks["cloth"]


def region_masks(seeds: list[int], resolution: int = 64, render_resolution: int = 128, threshold: float = 0.12,
                 regions: tuple[str, ...] = REGIONS) -> dict[str, np.ndarray]:
    """Per-avatar region masks in the portrait framing ({region: [N, R, R] bool}): each avatar is re-rendered
    with one region's colour swapped for a probe colour, and the pixels that change are that region."""
    from PIL import Image

    from training.synth.attributes import sample_attributes
    from training.synth.cameras import view_set
    from training.synth.config import SynthConfig
    from training.synth.gl_renderer import SceneRenderer
    from training.synth.scene import build_scene

    config = SynthConfig(views=1, test_views=0, resolution=render_resolution)
    frame = view_set(config, "train")
    c2w, fov = frame.frames[0].c2w, frame.camera_angle_x
    renderer = SceneRenderer(render_resolution, config.supersample)

    def shot(attrs) -> np.ndarray:
        renderer.load(build_scene(attrs))
        rgba = renderer.render(c2w, fov).astype(np.float32) / 255.0
        rgb = rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]
        img = Image.fromarray(np.round(rgb * 255).astype(np.uint8)).resize((resolution, resolution),
                                                                           Image.Resampling.BOX)
        return np.asarray(img, np.float32) / 255.0

    probes = {"hair": lambda a: replace(a, hair=replace(a.hair, rgb=PROBE_HAIR)),
              "cloth": lambda a: replace(a, clothing=replace(a.clothing, rgb=PROBE_CLOTH)),
              "skin": lambda a: replace(a, face=replace(a.face, skin_rgb=PROBE_SKIN))}
    masks: dict[str, list[np.ndarray]] = {r: [] for r in regions}
    for seed in seeds:
        attrs = sample_attributes(seed)
        base = shot(attrs)
        for region in regions:
            masks[region].append(np.abs(shot(probes[region](attrs)) - base).max(-1) > threshold)
    return {r: np.stack(m) if m else np.zeros((0, resolution, resolution), bool) for r, m in masks.items()}


def calibrate(data, n: int = 120, hair_threshold: float = 0.6, cloth_threshold: float = 0.5,
              seed: int = 0) -> ColourMeasure:
    """Masks from `n` calibration avatars (their attributes.json seeds), references from all of `data`."""
    seeds_all = [m.get("seed") for m in data.meta]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))[:n]
    hair_m, cloth_m = probe_masks([int(seeds_all[i]) for i in order], data.images.shape[1])
    vis = np.array([hair_visible(data.meta[i]) for i in order])
    p_hair = hair_m[vis].mean(0)
    p_cloth = cloth_m.mean(0)
    hair_mask = (p_hair >= hair_threshold) & (p_cloth < 0.2)
    cloth_mask = (p_cloth >= cloth_threshold) & (p_hair < 0.2)
    measure = ColourMeasure(hair_mask, cloth_mask, {}, {}, {})
    hair_cols, cloth_cols = {}, {}
    for img, h, c, m in zip(data.images, data.hair, data.cloth, data.meta):
        if h and hair_visible(m):
            hair_cols.setdefault(h, []).append(measure.region_colour(img, "hair"))
        if c and cloth_single(m):
            cloth_cols.setdefault(c, []).append(measure.region_colour(img, "cloth"))
    measure.hair_refs = {k: tuple(float(x) for x in np.median(v, 0)) for k, v in sorted(hair_cols.items())}
    measure.cloth_refs = {k: tuple(float(x) for x in np.median(v, 0)) for k, v in sorted(cloth_cols.items())}
    measure.info = {"calibration_avatars": int(n), "hair_threshold": hair_threshold,
                    "cloth_threshold": cloth_threshold, "hair_pixels": int(hair_mask.sum()),
                    "cloth_pixels": int(cloth_mask.sum()),
                    "hair_examples": {k: len(v) for k, v in hair_cols.items()},
                    "cloth_examples": {k: len(v) for k, v in cloth_cols.items()}}
    return measure


def solid_measure(resolution: int = 64) -> ColourMeasure:
    """A measure without calibration (palette colours as references, fixed boxes): for tests and fallbacks."""
    r = resolution
    hair = np.zeros((r, r), bool)
    hair[r // 16: r // 4, r // 3: 2 * r // 3] = True
    cloth = np.zeros((r, r), bool)
    cloth[13 * r // 16:, r // 8: 7 * r // 8] = True
    return ColourMeasure(hair, cloth, {k: tuple(v) for k, v in {**palettes.HAIR_NATURAL, **palettes.HAIR_DYED}.items()},
                         {k: tuple(v) for k, v in palettes.CLOTH.items()}, {"calibrated": False})
