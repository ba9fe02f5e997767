"""Named colour palettes (sRGB 0..1) used by attribute sampling and captions."""
from __future__ import annotations

HAIR_NATURAL = {
    "black": (0.05, 0.045, 0.04),
    "dark brown": (0.17, 0.10, 0.06),
    "brown": (0.32, 0.19, 0.10),
    "light brown": (0.52, 0.36, 0.21),
    "blonde": (0.84, 0.68, 0.42),
    "platinum blonde": (0.92, 0.88, 0.76),
    "auburn": (0.50, 0.18, 0.08),
    "red": (0.68, 0.24, 0.09),
    "grey": (0.56, 0.55, 0.53),
    "white": (0.90, 0.90, 0.88),
}
HAIR_DYED = {
    "pink": (0.93, 0.42, 0.66),
    "blue": (0.15, 0.35, 0.85),
    "green": (0.18, 0.62, 0.30),
    "purple": (0.50, 0.22, 0.72),
    "teal": (0.10, 0.58, 0.58),
}
EYES = {
    "brown": (0.33, 0.18, 0.08),
    "dark brown": (0.16, 0.09, 0.05),
    "hazel": (0.50, 0.40, 0.18),
    "green": (0.25, 0.50, 0.28),
    "blue": (0.28, 0.48, 0.78),
    "grey": (0.52, 0.56, 0.60),
}
CLOTH = {
    "red": (0.78, 0.12, 0.12),
    "blue": (0.16, 0.32, 0.78),
    "navy": (0.08, 0.12, 0.32),
    "green": (0.16, 0.55, 0.22),
    "yellow": (0.93, 0.80, 0.16),
    "orange": (0.93, 0.46, 0.10),
    "purple": (0.45, 0.20, 0.62),
    "pink": (0.94, 0.55, 0.70),
    "teal": (0.08, 0.52, 0.52),
    "black": (0.06, 0.06, 0.07),
    "white": (0.93, 0.93, 0.91),
    "grey": (0.50, 0.50, 0.50),
    "brown": (0.40, 0.25, 0.14),
    "beige": (0.82, 0.74, 0.58),
}
METAL = {"gold": (0.85, 0.65, 0.25), "silver": (0.78, 0.78, 0.80)}
FRAME = {"black": (0.05, 0.05, 0.05), "tortoiseshell": (0.35, 0.18, 0.07), "gold": (0.80, 0.62, 0.25),
         "silver": (0.72, 0.72, 0.74), "red": (0.65, 0.10, 0.10), "clear": (0.80, 0.80, 0.82)}

# Skin: a continuous tone parameter t in [0, 1] mapped through these anchors (light → deep).
SKIN_ANCHORS = [
    (0.0, (0.98, 0.85, 0.76)),
    (0.25, (0.91, 0.72, 0.58)),
    (0.5, (0.78, 0.56, 0.40)),
    (0.75, (0.55, 0.36, 0.24)),
    (1.0, (0.30, 0.19, 0.12)),
]
SKIN_NAMES = [(0.2, "fair"), (0.4, "light"), (0.6, "medium"), (0.8, "tan"), (1.01, "dark")]


def skin_colour(tone: float) -> tuple[float, float, float]:
    """Interpolate the skin anchors at `tone` in [0, 1]."""
    for (t0, c0), (t1, c1) in zip(SKIN_ANCHORS, SKIN_ANCHORS[1:]):
        if tone <= t1:
            a = (tone - t0) / (t1 - t0)
            return tuple(round(x0 + a * (x1 - x0), 4) for x0, x1 in zip(c0, c1))  # type: ignore[return-value]
    return SKIN_ANCHORS[-1][1]


def skin_name(tone: float) -> str:
    return next(name for limit, name in SKIN_NAMES if tone < limit)
