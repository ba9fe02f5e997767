"""The gamut probe: avatars of a dataset seed whose clothing and hair between them show every palette colour.

Scanning the seed's avatars in index order (attributes only, nothing rendered), an avatar is kept when it shows a
colour not shown yet: a clothing colour as the main colour of a solid garment, or a hair colour on hair that
shows (not bald, buzz cut or under a hat). The kept indices are the dataset (`rodinhd synth --gamut`); its fits
show whether a frozen decoder can paint every colour the generator uses (docs/decoder_reach.md).
"""
from __future__ import annotations

from engine.errors import UserError
from training.synth import palettes
from training.synth.attributes import sample_attributes
from training.text.colours import hair_visible

SCAN_LIMIT = 20_000


def gamut_goals() -> set[str]:
    hair = {**palettes.HAIR_NATURAL, **palettes.HAIR_DYED}
    return {f"cloth={c}" for c in palettes.CLOTH} | {f"hair={h}" for h in hair}


def shown_colours(seed: int) -> set[str]:
    a = sample_attributes(seed)
    shown = {f"cloth={a.clothing.colour}"} if a.clothing.pattern == "solid" else set()
    if hair_visible({"style": a.hair.style, "hat": a.accessories.hat}):
        shown.add(f"hair={a.hair.colour}")
    return shown


def gamut_indices(dataset_seed: int) -> list[int]:
    """Indices (in order) of the avatars of `dataset_seed` that first show each palette colour."""
    from training.synth.writer import avatar_seed

    missing, picked = gamut_goals(), []
    for index in range(SCAN_LIMIT):
        new = shown_colours(avatar_seed(dataset_seed, index)) & missing
        if new:
            picked.append(index)
            missing -= new
        if not missing:
            return picked
    raise UserError(f"seed {dataset_seed}: no avatar among the first {SCAN_LIMIT} shows {sorted(missing)}")
