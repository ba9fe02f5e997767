"""The studio library: entries are complete or absent, newest first, reload bit-exactly, and are removed only
from inside the library."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.avatar import Avatar
from engine.decoder import DecoderConfig, TriplaneDecoder
from engine.errors import UserError
from studio.library import TEMP_PREFIX, Library, LibraryEntry

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def avatar(seed: int) -> Avatar:
    torch.manual_seed(seed)
    decoder = TriplaneDecoder(DecoderConfig(channels=4, hidden=8, geo_features=4))
    planes = torch.randn(3, 4, 8, 8).clamp(-1, 1)
    return Avatar(planes, decoder, {"seed": seed, "mode": "portrait", "guidance": 2.0, "steps": 5,
                                    "stages": "base", "sampler": "ddim"})


def test_add_list_load_remove(tmp_path):
    library = Library(tmp_path / "lib")
    assert library.entries() == []
    thumb = np.random.default_rng(0).random((16, 16, 4)).astype(np.float32)
    first = library.add(avatar(1), thumb, Image.new("RGBA", (32, 32), (10, 20, 30, 255)))
    second = library.add(avatar(2))
    names = [e.name for e in library.entries()]
    assert set(names) == {first.name, second.name} and len(names) == 2
    assert first.thumbnail is not None and first.model_input is not None and second.thumbnail is None
    assert "seed 1" in first.summary() and "guidance 2.0" in first.summary()
    loaded = library.load(first)
    original = avatar(1)
    assert torch.equal(loaded.planes, original.planes.half().float())
    assert loaded.metadata["seed"] == 1
    library.remove(second)
    assert [e.name for e in library.entries()] == [first.name]
    with pytest.raises(UserError, match="not in the library"):
        library.remove(LibraryEntry(tmp_path, {}))


def test_half_written_and_broken_entries_are_not_listed(tmp_path):
    library = Library(tmp_path)
    good = library.add(avatar(3))
    (tmp_path / f"{TEMP_PREFIX}crashed").mkdir()
    (tmp_path / f"{TEMP_PREFIX}crashed" / "avatar.safetensors").write_bytes(b"partial")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "avatar.safetensors").write_bytes(b"x")
    (broken / "avatar.json").write_text("{not json")
    (tmp_path / "stray.txt").write_text("hi")
    assert [e.name for e in library.entries()] == [good.name]


def test_same_second_entries_get_unique_names(tmp_path):
    library = Library(tmp_path)
    names = {library.add(avatar(4)).name for _ in range(3)}
    assert len(names) == 3


def test_labels_show_time_and_seed(tmp_path):
    entry = Library(tmp_path).add(avatar(5))
    stamp = entry.name.split("-")[1]
    assert entry.label() == f"{stamp[:2]}:{stamp[2:4]} · seed 5"
    assert LibraryEntry(tmp_path / "odd", {"seed": 2}).label() == "seed 2"
