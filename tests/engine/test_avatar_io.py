"""Self-contained avatar files: avatar.safetensors holds the fp16 planes, the fp32 decoder (config + hash) and
the metadata; Avatar.load rebuilds it with no model, refuses damaged, foreign and pickled files clearly."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avatar_helpers import random_avatar
from engine.avatar import DECODER_PREFIX, RECORD_FILE, TRIPLANE_FILE, Avatar
from engine.decoder import decoder_hash
from engine.errors import Cancelled, UserError
from engine.triplane import load_triplane, save_triplane

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def avatar():
    return random_avatar(0, metadata={"seed": 7, "mode": "portrait", "steps": 3, "timings": {"total_s": 1.5}})


def test_folder_round_trip_is_bit_exact_with_decoder_and_metadata(avatar, tmp_path):
    avatar.save(tmp_path / "a")
    again = Avatar.load(tmp_path / "a")
    assert again.planes.dtype == torch.float32
    assert torch.equal(again.planes, avatar.planes.half().float())  # fp16 storage, bit-exact
    assert decoder_hash(again.decoder) == decoder_hash(avatar.decoder)
    assert again.metadata == avatar.metadata
    assert again.triplane_hash() == avatar.triplane_hash()
    record = json.loads((tmp_path / "a" / RECORD_FILE).read_text())
    assert record["triplane_hash"] == avatar.triplane_hash() and record["decoder_hash"] == decoder_hash(avatar.decoder)
    with safe_open(str(tmp_path / "a" / TRIPLANE_FILE), framework="pt") as f:
        assert f.get_tensor("planes").dtype == torch.float16
        decoder_keys = [k for k in f.keys() if k.startswith(DECODER_PREFIX)]
        assert decoder_keys and all(f.get_tensor(k).dtype == torch.float32 for k in decoder_keys)
    # the rebuilt decoder renders exactly like the original
    reference = Avatar(avatar.planes.half().float(), avatar.decoder)
    kwargs = dict(resolution=16, samples=8)
    assert (again.render_view(30, 10, **kwargs) == reference.render_view(30, 10, **kwargs)).all()


def test_the_file_alone_carries_its_metadata(avatar, tmp_path):
    avatar.save_file(tmp_path / "lonely.safetensors")
    again = Avatar.load(tmp_path / "lonely.safetensors")
    assert again.metadata == avatar.metadata and torch.equal(again.planes, avatar.planes.half().float())


def test_a_record_of_another_avatar_is_not_used(avatar, tmp_path):
    avatar.save(tmp_path)
    other = random_avatar(1, metadata={"seed": 99})
    (tmp_path / RECORD_FILE).write_text(json.dumps(other.record()))
    assert Avatar.load(tmp_path).metadata == avatar.metadata  # from the file itself


def test_plain_triplane_loader_reads_avatar_files(avatar, tmp_path):
    path = avatar.save_file(tmp_path / "a.safetensors")
    planes, meta = load_triplane(path, decoder_hash(avatar.decoder))
    assert torch.equal(planes, avatar.planes.half().float()) and meta["extra"]["seed"] == 7
    with pytest.raises(UserError, match="decoder"):
        load_triplane(path, "0" * 16)


def test_old_files_without_a_decoder_need_one(avatar, tmp_path):
    path = tmp_path / TRIPLANE_FILE
    save_triplane(path, avatar.planes, decoder_hash(avatar.decoder), extra={"seed": 7})  # the old format
    with pytest.raises(UserError, match="does not hold its decoder.*--decoder"):
        Avatar.load(tmp_path)
    again = Avatar.load(tmp_path, decoder=avatar.decoder)
    assert again.metadata == {"seed": 7} and torch.equal(again.planes, avatar.planes.half().float())
    with pytest.raises(UserError, match="decoder given is"):
        Avatar.load(path, decoder=random_avatar(5).decoder)
    # saving it again makes it self-contained
    again.save(tmp_path / "new")
    assert decoder_hash(Avatar.load(tmp_path / "new").decoder) == decoder_hash(avatar.decoder)


def test_damaged_files_are_one_clear_error(avatar, tmp_path):
    path = avatar.save_file(tmp_path / "a.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable triplane file"):
        Avatar.load(tmp_path / "cut.safetensors")
    # decoder weights changed behind the recorded hash
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    name = next(k for k in tensors if k.startswith(DECODER_PREFIX))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, str(tmp_path / "tampered.safetensors"), metadata=meta)
    with pytest.raises(UserError, match="damaged avatar file.*hash"):
        Avatar.load(tmp_path / "tampered.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no avatar here"):
        Avatar.load(tmp_path / "empty")
    with pytest.raises(UserError, match="no such triplane file"):
        Avatar.load(tmp_path / "missing.safetensors")


def test_pickles_are_never_loaded(avatar, tmp_path, monkeypatch):
    torch.save({"planes": avatar.planes}, tmp_path / "avatar.pt")
    torch.save({"planes": avatar.planes}, tmp_path / "sneaky.safetensors")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load must not be called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(UserError, match="pickled checkpoints are not loaded"):
        Avatar.load(tmp_path / "avatar.pt")
    with pytest.raises(UserError, match="not a readable triplane file"):
        Avatar.load(tmp_path / "sneaky.safetensors")


def test_turntable_progress_can_cancel(avatar):
    calls = []

    def progress(i, n):
        calls.append((i, n))
        return i < 2

    with pytest.raises(Cancelled):
        avatar.turntable(5, resolution=16, samples=8, progress=progress)
    assert calls == [(1, 5), (2, 5)]
