"""The shipped text → portrait model (assets/models/text_default) loads as recorded and follows clothing colours."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.text import TextPortraitPipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")
MODEL = Path(__file__).resolve().parents[2] / "assets" / "models" / "text_default"


@pytest.fixture(scope="module")
def pipe() -> TextPortraitPipeline:
    return TextPortraitPipeline.from_pretrained(MODEL)


def test_loads_as_recorded(pipe):
    index = json.loads((MODEL / "model_index.json").read_text())
    assert pipe.model_hash() == index["model_hash"]
    assert pipe.resolution == 64 and pipe.default_guidance == index["guidance_default"] == 2.5
    assert sum(p.numel() for p in pipe.unet.parameters()) == index["training"]["parameters"]


@pytest.mark.parametrize("colour, channel", [("red", 0), ("green", 1), ("blue", 2)])
def test_clothing_follows_the_prompt(pipe, colour, channel):
    image = pipe(f"a man with fair skin, short black hair, wearing a {colour} t-shirt", n=1, steps=15, seed=0)[0]
    chest = np.asarray(image, np.float64)[52:62, 16:48].reshape(-1, 3).mean(0)  # the t-shirt below the neck
    assert chest.argmax() == channel and chest[channel] > np.delete(chest, channel).max() + 20, chest.round()
