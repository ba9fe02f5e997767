"""Sample every attribute of an avatar from a seeded generator, and describe it in one sentence.

Everything the geometry and shading need is decided here, so `attributes.json` fully describes an avatar and
the same seed always gives the same avatar.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from training.synth import palettes

EXPRESSIONS = ("neutral", "smile", "open_mouth", "closed_eyes")
HAIR_STYLES = ("bald", "buzz", "short", "side_part", "long_straight", "bob", "bun", "ponytail", "curly", "afro")
FACIAL_HAIR = ("none", "stubble", "moustache", "full_beard")
CLOTHING_CUTS = ("tshirt", "vneck", "shirt", "hoodie", "turtleneck", "tank", "jacket")
PATTERNS = ("solid", "stripes", "checks", "dots", "knit", "logo")
LOGOS = ("star", "circle", "heart", "bolt")
GLASSES = ("none", "round", "rectangular", "sunglasses")
HATS = ("none", "beanie", "cap")
EARRINGS = ("none", "studs", "hoops")
BROWS = ("straight", "arched", "thick", "thin")
PRESENTATIONS = ("feminine", "masculine", "neutral")

# Hair styles that leave room for a hat on top (big volumes would poke through).
HAT_COMPATIBLE = {"bald", "buzz", "short", "side_part", "long_straight", "bob", "curly"}


@dataclass(frozen=True)
class Face:
    width: float  # head scale factors around 1
    height: float
    depth: float
    jaw: float  # jaw width relative to the cheeks (0.75 narrow .. 1.05 square)
    chin: float  # chin length/protrusion
    cheeks: float
    nose_length: float
    nose_width: float
    nose_bridge: float
    mouth_width: float
    lip_fullness: float
    eye_spacing: float
    eye_size: float
    ear_size: float
    skin_tone: float  # continuous, 0 fair .. 1 deep
    skin_rgb: tuple[float, float, float]
    lip_rgb: tuple[float, float, float]
    eye_colour: str
    eye_rgb: tuple[float, float, float]
    brows: str
    expression: str


@dataclass(frozen=True)
class Hair:
    style: str
    colour: str
    rgb: tuple[float, float, float]
    dyed: bool
    length_scale: float
    curl: float  # 0 straight .. 1 tight curls
    part_side: float  # -1 left .. 1 right (side part / fringe direction)
    strand_count: int
    facial: str
    facial_rgb: tuple[float, float, float]
    brow_rgb: tuple[float, float, float]


@dataclass(frozen=True)
class Clothing:
    cut: str
    colour: str
    rgb: tuple[float, float, float]
    pattern: str
    colour2: str
    rgb2: tuple[float, float, float]
    rgb3: tuple[float, float, float]
    pattern_scale: float
    logo: str
    inner_rgb: tuple[float, float, float]  # shirt under a jacket, inside of a hood


@dataclass(frozen=True)
class Accessories:
    glasses: str
    glasses_colour: str
    glasses_rgb: tuple[float, float, float]
    hat: str
    hat_colour: str
    hat_rgb: tuple[float, float, float]
    earrings: str
    earrings_metal: str
    earrings_rgb: tuple[float, float, float]


@dataclass(frozen=True)
class AvatarAttributes:
    seed: int
    presentation: str
    face: Face
    hair: Hair
    clothing: Clothing
    accessories: Accessories

    def to_dict(self) -> dict:
        return asdict(self)


def _pick(rng: np.random.Generator, options, weights=None):
    weights = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    return options[int(rng.choice(len(options), p=weights))]


def _jitter(rgb, rng: np.random.Generator, amount: float) -> tuple[float, float, float]:
    scale = 1.0 + rng.uniform(-amount, amount)
    return tuple(round(float(np.clip(c * scale + rng.uniform(-amount, amount) * 0.3, 0.0, 1.0)), 4) for c in rgb)


def sample_face(rng: np.random.Generator, presentation: str) -> Face:
    masc = {"masculine": 1.0, "feminine": 0.0, "neutral": 0.5}[presentation]
    tone = float(rng.uniform(0.0, 1.0))
    skin = palettes.skin_colour(tone)
    lip_base = np.array(skin) * np.array([0.95, 0.62, 0.62]) + np.array([0.06, 0.0, 0.02])
    if masc < 0.5 and rng.random() < 0.5:  # lipstick
        lip_base = np.array(_pick(rng, [(0.72, 0.12, 0.18), (0.80, 0.40, 0.45), (0.55, 0.15, 0.25)]))
    eye_name = _pick(rng, list(palettes.EYES), [4, 3, 2, 2, 3, 1])
    u = lambda lo, hi: round(float(rng.uniform(lo, hi)), 4)  # noqa: E731
    return Face(
        width=u(0.92, 1.06) + 0.03 * masc, height=u(0.94, 1.06), depth=u(0.95, 1.05),
        jaw=u(0.78, 0.92) + 0.12 * masc, chin=u(0.0, 1.0), cheeks=u(0.0, 1.0),
        nose_length=u(0.8, 1.25), nose_width=u(0.8, 1.3), nose_bridge=u(0.6, 1.2),
        mouth_width=u(0.85, 1.15), lip_fullness=u(0.6, 1.3) - 0.2 * masc,
        eye_spacing=u(0.92, 1.08), eye_size=u(0.9, 1.12), ear_size=u(0.85, 1.15),
        skin_tone=round(tone, 4), skin_rgb=skin, lip_rgb=tuple(round(float(c), 4) for c in np.clip(lip_base, 0, 1)),
        eye_colour=eye_name, eye_rgb=_jitter(palettes.EYES[eye_name], rng, 0.08),
        brows=_pick(rng, BROWS, [3, 3, 2 + 2 * masc, 2 - masc]),
        expression=_pick(rng, EXPRESSIONS),
    )


def sample_hair(rng: np.random.Generator, presentation: str) -> Hair:
    masc = {"masculine": 1.0, "feminine": 0.0, "neutral": 0.5}[presentation]
    style_weights = [0.6 * masc + 0.1, 0.8 * masc + 0.3, 1.0, 1.0, 1.3 - masc, 1.2 - 0.8 * masc, 1.0 - 0.7 * masc,
                     1.0 - 0.7 * masc, 1.0, 0.8]
    style = _pick(rng, HAIR_STYLES, style_weights)
    dyed = bool(rng.random() < 0.18)
    palette = palettes.HAIR_DYED if dyed else palettes.HAIR_NATURAL
    colour = _pick(rng, list(palette))
    rgb = _jitter(palette[colour], rng, 0.1)
    facial = _pick(rng, FACIAL_HAIR, [1.0, 0.4, 0.3, 0.4]) if masc >= 1.0 else "none"
    if presentation == "neutral" and rng.random() < 0.15:
        facial = "stubble"
    natural_dark = palettes.HAIR_NATURAL["dark brown"]
    facial_rgb = rgb if not dyed else _jitter(natural_dark, rng, 0.1)
    curl = {"curly": 0.75, "afro": 1.0}.get(style, float(rng.uniform(0.0, 0.25)))
    return Hair(
        style=style, colour=colour, rgb=rgb, dyed=dyed, length_scale=round(float(rng.uniform(0.85, 1.2)), 4),
        curl=round(curl, 4), part_side=round(float(rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0)), 4),
        strand_count=int(rng.integers(3500, 5500)), facial=facial, facial_rgb=facial_rgb,
        brow_rgb=tuple(round(c * 0.8, 4) for c in (facial_rgb if style != "bald" else natural_dark)),
    )


def sample_clothing(rng: np.random.Generator) -> Clothing:
    names = list(palettes.CLOTH)
    colour = _pick(rng, names)
    colour2 = _pick(rng, [n for n in names if n != colour])
    third = _pick(rng, [n for n in names if n not in (colour, colour2)])
    inner = _pick(rng, ["white", "beige", "grey", "black", "blue"])
    return Clothing(
        cut=_pick(rng, CLOTHING_CUTS), colour=colour, rgb=_jitter(palettes.CLOTH[colour], rng, 0.06),
        pattern=_pick(rng, PATTERNS), colour2=colour2, rgb2=_jitter(palettes.CLOTH[colour2], rng, 0.06),
        rgb3=palettes.CLOTH[third], pattern_scale=round(float(rng.uniform(0.7, 1.4)), 4),
        logo=_pick(rng, LOGOS), inner_rgb=palettes.CLOTH[inner],
    )


def sample_accessories(rng: np.random.Generator, hair_style: str, presentation: str) -> Accessories:
    glasses = _pick(rng, GLASSES, [5, 1.3, 1.3, 0.6])
    frame = _pick(rng, list(palettes.FRAME))
    hat = _pick(rng, HATS, [6, 1, 1]) if hair_style in HAT_COMPATIBLE else "none"
    hat_colour = _pick(rng, list(palettes.CLOTH))
    ear_weights = [4, 1.5, 1.5] if presentation != "masculine" else [8, 1, 0.5]
    metal = _pick(rng, list(palettes.METAL))
    return Accessories(
        glasses=glasses, glasses_colour=frame, glasses_rgb=palettes.FRAME[frame],
        hat=hat, hat_colour=hat_colour, hat_rgb=_jitter(palettes.CLOTH[hat_colour], rng, 0.05),
        earrings=_pick(rng, EARRINGS, ear_weights), earrings_metal=metal, earrings_rgb=palettes.METAL[metal],
    )


def sample_attributes(seed: int) -> AvatarAttributes:
    """All attributes of the avatar with this seed (a pure function of the seed)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    presentation = _pick(rng, PRESENTATIONS, [0.45, 0.45, 0.1])
    face = sample_face(rng, presentation)
    hair = sample_hair(rng, presentation)
    clothing = sample_clothing(rng)
    accessories = sample_accessories(rng, hair.style, presentation)
    return AvatarAttributes(seed, presentation, face, hair, clothing, accessories)
