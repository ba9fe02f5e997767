"""Which avatars stage 1 trains the shared decoder on.

`first` takes the first K avatars of the dataset. `cover` picks K that together cover the synthetic palette,
patterns and hairstyles: the decoder is frozen afterwards, so it can only paint what stage 1 showed it
(docs/decoder_reach.md). Greedy and deterministic: each pick is the avatar whose attribute values are rarest
among those already picked (score Σ 1 / (1 + times the value was picked)), ties to the lower index.
"""
from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from training.data.format import ATTRIBUTES_FILE, read_attributes

METHODS = ("first", "cover")


def cover_features(attributes: dict) -> set[str]:
    """The attribute values an avatar brings to the decoder: colours, pattern, cut, hairstyle, skin, extras."""
    hair, cloth = attributes.get("hair", {}), attributes.get("clothing", {})
    face, extras = attributes.get("face", {}), attributes.get("accessories", {})
    features = {f"hair.style={hair.get('style')}", f"hair.colour={hair.get('colour')}",
                f"cloth.colour={cloth.get('colour')}", f"cloth.pattern={cloth.get('pattern')}",
                f"cloth.cut={cloth.get('cut')}", f"skin={min(int(face.get('skin_tone', 0.0) * 5), 4)}",
                f"glasses={extras.get('glasses')}", f"hat={extras.get('hat')}", f"facial={hair.get('facial')}"}
    if cloth.get("pattern") not in (None, "solid"):
        features.add(f"cloth.colour={cloth.get('colour2')}")  # a two-tone pattern shows its second colour too
    return features


def cover_attributes(folder: Path) -> dict:
    if not Path(folder).is_dir():
        raise UserError(f"{folder}: avatar folder missing (run 'rodinhd data check')")
    attributes = read_attributes(folder)
    if attributes is None:
        raise UserError(f"{folder}: no {ATTRIBUTES_FILE} — '--select cover' needs a synthetic dataset "
                        "(rodinhd synth); use '--select first' for imported data")
    return attributes


def cover_selection(features: list[set[str]], count: int) -> list[int]:
    """Indices of `count` items chosen greedily so their feature values are as evenly covered as possible."""
    picked: list[int] = []
    seen: dict[str, int] = {}
    remaining = list(range(len(features)))
    for _ in range(min(count, len(features))):
        best = max(remaining, key=lambda i: (sum(1.0 / (1 + seen.get(f, 0)) for f in features[i]), -i))
        remaining.remove(best)
        picked.append(best)
        for f in features[best]:
            seen[f] = seen.get(f, 0) + 1
    return sorted(picked)


def choose_avatars(avatars: list[Path], count: int | None, method: str = "first", pool: int | None = None
                   ) -> list[Path]:
    """`count` of the first `pool` avatars (all when None) by `method`, in dataset order."""
    if method not in METHODS:
        raise UserError(f"--select must be one of {', '.join(METHODS)} (got {method!r})")
    if pool is not None:
        if pool < 1 or pool > len(avatars):
            raise UserError(f"--pool {pool}: the dataset has {len(avatars)} avatars")
        avatars = avatars[:pool]
    if count and count > len(avatars):
        raise UserError(f"--avatars {count}: only {len(avatars)} to choose from")
    if method == "first" or not count:
        return avatars[:count] if count else avatars
    return [avatars[i] for i in cover_selection([cover_features(cover_attributes(a)) for a in avatars], count)]


def coverage(avatars: list[Path]) -> dict[str, int]:
    """How many distinct values of each attribute the chosen avatars show (logged by stage 1)."""
    kinds: dict[str, set[str]] = {}
    for folder in avatars:
        attributes = read_attributes(folder)
        if attributes is None:
            return {}
        for feature in cover_features(attributes):
            key, value = feature.split("=", 1)
            kinds.setdefault(key, set()).add(value)
    return {k: len(v) for k, v in sorted(kinds.items())}
