"""Attribute sampling covers every option, and captions describe what was sampled."""
from __future__ import annotations

import json
import re

import pytest

from training.synth import attributes as A
from training.synth.caption import describe

SEEDS = range(200)


@pytest.fixture(scope="module")
def sampled():
    return [A.sample_attributes(s) for s in SEEDS]


@pytest.mark.parametrize("options, get", [
    (A.HAIR_STYLES, lambda a: a.hair.style),
    (A.EXPRESSIONS, lambda a: a.face.expression),
    (A.FACIAL_HAIR, lambda a: a.hair.facial),
    (A.CLOTHING_CUTS, lambda a: a.clothing.cut),
    (A.PATTERNS, lambda a: a.clothing.pattern),
    (A.GLASSES, lambda a: a.accessories.glasses),
    (A.HATS, lambda a: a.accessories.hat),
    (A.EARRINGS, lambda a: a.accessories.earrings),
    (A.PRESENTATIONS, lambda a: a.presentation),
    (A.BROWS, lambda a: a.face.brows),
    (A.LOGOS, lambda a: a.clothing.logo),
], ids=["hair", "expression", "facial_hair", "cut", "pattern", "glasses", "hat", "earrings", "presentation",
        "brows", "logo"])
def test_every_option_appears_and_nothing_else(sampled, options, get):
    seen = {get(a) for a in sampled}
    assert seen == set(options), f"missing {set(options) - seen}, unexpected {seen - set(options)}"


def test_combination_rules_hold(sampled):
    for a in sampled:
        if a.accessories.hat != "none":
            assert a.hair.style in A.HAT_COMPATIBLE, a.seed
        if a.presentation == "feminine":
            assert a.hair.facial == "none", a.seed


def test_skin_tone_spans_the_range(sampled):
    tones = [a.face.skin_tone for a in sampled]
    assert all(0.0 <= t <= 1.0 for t in tones)
    assert min(tones) < 0.1 and max(tones) > 0.9


def test_colours_are_valid_rgb(sampled):
    for a in sampled:
        for rgb in (a.face.skin_rgb, a.face.lip_rgb, a.face.eye_rgb, a.hair.rgb, a.clothing.rgb, a.clothing.rgb2,
                    a.accessories.glasses_rgb, a.accessories.hat_rgb):
            assert len(rgb) == 3 and all(0.0 <= c <= 1.0 for c in rgb), (a.seed, rgb)


def test_captions_are_varied_and_describe_the_avatar(sampled):
    captions = [describe(a) for a in sampled]
    assert len(set(captions)) > 190
    for a, caption in zip(sampled, captions):
        assert caption.startswith(("a ", "an ")) and "\n" not in caption and "  " not in caption, caption
        if a.hair.style == "bald":
            assert "bald" in caption, caption
        else:
            assert a.hair.colour in caption, caption
        assert a.face.eye_colour in caption and a.clothing.colour in caption, caption
        if a.accessories.glasses != "none":
            assert "glasses" in caption or "sunglasses" in caption, caption
        else:
            assert "glasses" not in caption, caption
        if a.accessories.hat != "none":
            assert a.accessories.hat in caption, caption
        noun = {"feminine": "woman", "masculine": "man", "neutral": "person"}[a.presentation]
        assert f"{noun} with" in caption, caption


def test_caption_articles_agree():
    """'a' before a consonant sound, 'an' before a vowel, in every phrase of the caption."""
    captions = [describe(A.sample_attributes(s)) for s in range(400)]
    wrong = sorted({m for c in captions for m in re.findall(r"\ba [aeiou]\w*|\ban [^aeiou\W]\w*", c)})
    assert wrong == []


def test_attributes_to_dict_is_json_serialisable_and_complete(sampled):
    for a in sampled[:20]:
        data = a.to_dict()
        again = json.loads(json.dumps(data))
        assert again["seed"] == a.seed
        assert again["hair"]["style"] == a.hair.style
        assert again["face"]["skin_tone"] == a.face.skin_tone
        assert set(again) == {"seed", "presentation", "face", "hair", "clothing", "accessories"}


def test_sampling_is_a_pure_function_of_the_seed():
    assert A.sample_attributes(123) == A.sample_attributes(123)
    assert describe(A.sample_attributes(123)) == describe(A.sample_attributes(123))
    a, b = A.sample_attributes(123).to_dict(), A.sample_attributes(124).to_dict()
    assert {k: v for k, v in a.items() if k != "seed"} != {k: v for k, v in b.items() if k != "seed"}
