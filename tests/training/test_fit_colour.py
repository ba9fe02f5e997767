"""training.fit.colour: the coarse Lab layout distance between a fit's front view and a portrait, and the\nper-region (hair / skin / clothing) named-colour agreement."""
from __future__ import annotations

import numpy as np
import pytest

from fit_helpers import make_dataset

from training.fit.colour import (
    coarse_layout, colour_name, layout_error, likeness_report, portrait_rgb, region_agreement, summarise_regions,
)
from training.synth import palettes
from training.text.colours import srgb_to_lab


def image_with_block(rgb, size: int = 64) -> np.ndarray:
    image = np.ones((size, size, 3))
    image[16:48, 16:48] = rgb
    return image


def test_identical_images_have_no_layout_error():
    a = image_with_block((0.2, 0.3, 0.8))
    assert layout_error(a, a.copy()) == 0.0
    assert layout_error(np.ones((64, 64, 3)), np.ones((64, 64, 3))) == 0.0  # nothing to see on either


def test_layout_error_is_the_lab_distance_over_the_foreground_blocks():
    blue, green = (0.16, 0.32, 0.78), (0.16, 0.55, 0.22)
    expected = np.linalg.norm(srgb_to_lab(np.array(blue)) - srgb_to_lab(np.array(green)))
    assert layout_error(image_with_block(blue), image_with_block(green)) == pytest.approx(expected, rel=1e-9)
    lab, foreground = coarse_layout(image_with_block(blue))
    assert lab.shape == (8, 8, 3) and foreground.sum() == 16  # the 32² block covers 4×4 of the 8×8 blocks


def test_a_colour_nearer_the_own_block_is_closer():
    own = image_with_block((0.93, 0.80, 0.16))  # yellow
    near, far = image_with_block((0.90, 0.75, 0.20)), image_with_block((1.0, 0.57, 0.30))  # the old decoder's
    assert layout_error(own, near) < layout_error(own, far)


# ---- per-region agreement (hair / skin / clothing) ----------------------------------------------------------
def masks_and_image(hair_rgb, cloth_rgb, skin_rgb=(0.78, 0.56, 0.40), size: int = 64):
    image = np.ones((size, size, 3))
    masks = {r: np.zeros((size, size), bool) for r in ("hair", "skin", "cloth")}
    for region, rows, rgb in (("hair", slice(4, 16), hair_rgb), ("skin", slice(16, 36), skin_rgb),
                              ("cloth", slice(40, 60), cloth_rgb)):
        masks[region][rows, 16:48] = True
        image[rows, 16:48] = rgb
    return image, masks


def test_palette_colours_name_themselves():
    assert colour_name(np.array(palettes.CLOTH["yellow"]), "cloth") == "yellow"
    assert colour_name(np.array(palettes.HAIR_DYED["blue"]), "hair") == "blue"
    assert colour_name(np.array(palettes.skin_colour(0.9)), "skin") == "dark"
    assert colour_name(np.array((1.0, 0.57, 0.30)), "cloth") == "orange"  # what the old decoder made of yellow


def test_region_agreement_names_each_region_and_flags_the_wrong_one():
    portrait, masks = masks_and_image(palettes.HAIR_DYED["blue"], palettes.CLOTH["yellow"])
    fit, _ = masks_and_image(palettes.HAIR_DYED["blue"], (1.0, 0.57, 0.30))
    rows = region_agreement(fit, portrait, masks)
    assert rows["hair"] == {"portrait": "blue", "fit": "blue", "agree": True, "delta_e": 0.0}
    assert rows["cloth"]["portrait"] == "yellow" and rows["cloth"]["fit"] == "orange"
    assert not rows["cloth"]["agree"] and rows["cloth"]["delta_e"] > 30
    summary = summarise_regions({"a": {"regions": rows}})
    assert summary["region_agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["region_agreement_by_region"] == {"hair": 1.0, "skin": 1.0, "cloth": 0.0}


def test_a_region_the_fit_leaves_empty_disagrees_and_one_the_portrait_lacks_is_not_scored():
    portrait, masks = masks_and_image(palettes.HAIR_DYED["blue"], palettes.CLOTH["red"])
    fit = portrait.copy()
    fit[masks["hair"]] = 1.0  # white background where the hair should be
    rows = region_agreement(fit, portrait, masks)
    assert rows["hair"] == {"portrait": "blue", "fit": "none", "agree": False, "delta_e": None}
    assert summarise_regions({"a": {"regions": rows}})["region_delta_e"] == pytest.approx(0.0)
    bald = portrait.copy()
    bald[masks["hair"]] = 1.0
    assert set(region_agreement(portrait, bald, masks)) == {"skin", "cloth"}
    assert summarise_regions({"a": {"regions": {}}}) == {}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("colour") / "data", count=3)


def test_likeness_report_of_the_portraits_themselves_is_perfect_and_of_swapped_ones_is_not(synthetic):
    names = ["avatar_00000", "avatar_00001", "avatar_00002"]
    own = {n: portrait_rgb(synthetic / n) for n in names}
    report = likeness_report(synthetic, own)
    assert report["mean_delta_e"] == 0.0 and report["own_closest"] == 3
    assert report["region_agreement"] == 1.0 and report["region_delta_e"] == 0.0
    regions = {r for row in report["per_avatar"].values() for r in row["regions"]}
    assert {"skin", "cloth"} <= regions  # found by re-rendering each avatar with probe colours
    swapped = likeness_report(synthetic, {n: own[names[(i + 1) % 3]] for i, n in enumerate(names)})
    assert swapped["own_closest"] == 0 and swapped["mean_delta_e"] > 3


def test_a_dataset_without_attributes_gets_the_layout_measure_only(synthetic, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(synthetic, copy)
    (copy / "avatar_00001" / "attributes.json").unlink()
    names = ["avatar_00000", "avatar_00001"]
    report = likeness_report(copy, {n: portrait_rgb(copy / n) for n in names})
    assert report["own_closest"] == 2 and "region_agreement" not in report
    assert all("regions" not in row for row in report["per_avatar"].values())
