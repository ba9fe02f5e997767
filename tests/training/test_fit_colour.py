"""training.fit.colour: the coarse Lab layout distance between a fit's front view and a portrait."""
from __future__ import annotations

import numpy as np
import pytest

from training.fit.colour import coarse_layout, layout_error
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
