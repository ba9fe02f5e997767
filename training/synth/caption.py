"""One sentence describing an avatar, for the text→portrait model (e.g. "a smiling woman with long curly
auburn hair and round glasses, wearing a green striped sweater")."""
from __future__ import annotations

from training.synth import palettes
from training.synth.attributes import AvatarAttributes

_NOUN = {"feminine": "woman", "masculine": "man", "neutral": "person"}
_EXPRESSION = {"neutral": "", "smile": "smiling ", "open_mouth": "surprised ", "closed_eyes": ""}
_HAIR = {
    "buzz": "{a} buzz cut", "short": "short {c} hair", "side_part": "side-parted {c} hair",
    "long_straight": "long straight {c} hair", "bob": "{a} bob", "bun": "{c} hair in a bun",
    "ponytail": "{a} ponytail", "curly": "curly {c} hair", "afro": "{a} afro",
}
_FACIAL = {"stubble": "stubble", "moustache": "a moustache", "full_beard": "a full beard"}
_CUT = {"tshirt": "t-shirt", "vneck": "v-neck top", "shirt": "collared shirt", "hoodie": "hoodie",
        "turtleneck": "turtleneck sweater", "tank": "tank top", "jacket": "jacket"}
_PATTERN = {"solid": "", "stripes": "striped ", "checks": "checked ", "dots": "polka-dot ", "knit": "knitted ",
            "logo": ""}
_GLASSES = {"round": "round glasses", "rectangular": "rectangular glasses", "sunglasses": "sunglasses"}
_HATS = {"beanie": "beanie", "cap": "cap"}


def with_article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def describe(a: AvatarAttributes) -> str:
    face, hair, cloth, acc = a.face, a.hair, a.clothing, a.accessories
    subject = with_article(f"{_EXPRESSION[face.expression]}{_NOUN[a.presentation]}")
    features = []
    if hair.style == "bald":
        features.append("a bald head")
    else:
        features.append(_HAIR[hair.style].format(c=hair.colour, a=with_article(hair.colour)))
    if hair.facial in _FACIAL:
        features.append(_FACIAL[hair.facial])
    if acc.glasses in _GLASSES:
        features.append(_GLASSES[acc.glasses])
    if acc.hat in _HATS:
        features.append(with_article(f"{acc.hat_colour} {_HATS[acc.hat]}"))
    if acc.earrings != "none":
        features.append(f"{acc.earrings_metal} {'stud' if acc.earrings == 'studs' else 'hoop'} earrings")
    sentence = f"{subject} with {palettes.skin_name(face.skin_tone)} skin, {face.eye_colour} eyes"
    sentence += "".join(f", {f}" for f in features[:-1]) + f" and {features[-1]}" if features else ""
    if face.expression == "closed_eyes":
        sentence += ", eyes closed"
    garment = _CUT[cloth.cut]
    if cloth.pattern == "logo":
        garment += " with " + with_article(f"{cloth.colour2} {cloth.logo} logo")
    pattern = _PATTERN[cloth.pattern]
    two_tone = f" and {cloth.colour2}" if cloth.pattern in ("stripes", "checks", "dots") else ""
    sentence += ", wearing " + with_article(f"{cloth.colour}{two_tone} {pattern}{garment}")
    return sentence
