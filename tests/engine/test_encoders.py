"""engine.encoders: pyramid shapes and strides (Eq. 7), frozen + deterministic, save/load round trips, load errors."""
from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors import safe_open
from safetensors.torch import save_file

from engine.config import ConfigError
from engine.encoders import (
    MobileNetEncoder, MobileNetEncoderConfig, PortraitEncoder, VAEEncoder, VAEEncoderConfig, build_encoder,
    load_encoder,
)
from engine.encoders.vae import pyramid_blocks
from engine.errors import UserError
from engine.weights import state_hash

TINY_AE = {"block_out_channels": (16, 32, 32, 32), "down_block_types": ("DownEncoderBlock2D",) * 4,
           "up_block_types": ("UpDecoderBlock2D",) * 4, "latent_channels": 4, "sample_size": 64,
           "norm_num_groups": 8, "layers_per_block": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mobilenet() -> MobileNetEncoder:
    return build_encoder(MobileNetEncoderConfig(image_size=64))


@pytest.fixture(scope="module")
def autoencoder() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(**TINY_AE).eval()


@pytest.fixture(scope="module")
def vae_encoder(autoencoder) -> VAEEncoder:
    return VAEEncoder.from_autoencoder(autoencoder, image_size=64)


def images(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_shapes(encoder: PortraitEncoder, out: dict[str, torch.Tensor], batch: int) -> None:
    shapes = encoder.feature_shapes()
    assert set(out) == set(shapes) == {"y1", "y2", "y3", "global"}
    s = encoder.image_size
    for key, stride in (("y1", 2), ("y2", 4), ("y3", 8)):
        c, size = shapes[key]
        assert size == s // stride
        assert out[key].shape == (batch, c, size, size)
    assert out["global"].shape == (batch, *shapes["global"])


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------ shapes
def test_mobilenet_pyramid_channels_and_strides(mobilenet):
    out = mobilenet(images())
    assert_shapes(mobilenet, out, 2)
    assert [mobilenet.feature_shapes()[k][0] for k in ("y1", "y2", "y3", "global")] == [16, 24, 32, 1280]
    assert all(v.dim() > 0 for v in mobilenet.state_dict().values())  # byte-view hashing needs no 0-d tensors
    assert state_hash(dict(mobilenet.state_dict()))


def test_inputs_are_resized_to_image_size():
    encoder = MobileNetEncoder(MobileNetEncoderConfig(image_size=128), weights=None)
    out = encoder(torch.rand(1, 3, 256, 256))
    assert out["y1"].shape == (1, 16, 64, 64) and out["y3"].shape == (1, 32, 16, 16)


def test_vae_pyramid_taps_the_right_down_blocks(autoencoder, vae_encoder):
    """y1/y2/y3 = outputs of down blocks 0, 1, 3 (strides 2, 4, 8 for 4 blocks); global = mid block mean."""
    x = images()
    out = vae_encoder(x)
    assert_shapes(vae_encoder, out, 2)
    assert vae_encoder.feature_shapes() == {"y1": (16, 32), "y2": (32, 16), "y3": (32, 8), "global": (32,)}
    seen: dict[str, torch.Tensor] = {}
    modules = {"y1": autoencoder.encoder.down_blocks[0], "y2": autoencoder.encoder.down_blocks[1],
               "y3": autoencoder.encoder.down_blocks[3], "global": autoencoder.encoder.mid_block}
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: seen.__setitem__(k, o)) for k, m in modules.items()]
    with torch.no_grad():
        posterior = autoencoder.encode(x * 2 - 1).latent_dist
    for hook in hooks:
        hook.remove()
    seen["global"] = seen["global"].mean(dim=(2, 3))
    for key in out:
        torch.testing.assert_close(out[key], seen[key], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(vae_encoder.latent_mean(x), posterior.mean, rtol=1e-5, atol=1e-5)


def test_pyramid_blocks_for_deeper_vaes_and_too_shallow_ones():
    assert pyramid_blocks(4) == {"y1": 0, "y2": 1, "y3": 3}
    assert pyramid_blocks(5) == {"y1": 0, "y2": 1, "y3": 2}
    shallow = {**TINY_AE, "block_out_channels": (16, 32, 32), "down_block_types": ("DownEncoderBlock2D",) * 3}
    with pytest.raises(ConfigError, match="down blocks"):
        VAEEncoderConfig(image_size=64, autoencoder=shallow)
    with pytest.raises(ConfigError, match="image_size"):
        MobileNetEncoderConfig(image_size=100)


# ----------------------------------------------------------------------------------------- frozen, determ.
def test_frozen_and_deterministic(mobilenet, vae_encoder):
    x = images(seed=1)
    for encoder in (mobilenet, vae_encoder):
        encoder.train()
        assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
        with torch.enable_grad():
            first = encoder(x)
        assert not any(v.requires_grad for v in first.values())
        assert_same(first, encoder(x))


# -------------------------------------------------------------------------------------------- round trips
def test_mobilenet_round_trip_fp16(mobilenet, tmp_path):
    mobilenet.save(tmp_path / "enc")
    weights = tmp_path / "enc" / "model.safetensors"
    assert weights.stat().st_size < 5_000_000  # fp16 backbone, no classifier
    with safe_open(str(weights), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    assert json.loads((tmp_path / "enc" / "config.json").read_text()) == {"kind": "mobilenet_v2", "image_size": 64}
    x = images(seed=2)
    a, b = load_encoder(tmp_path / "enc"), load_encoder(tmp_path / "enc")
    assert isinstance(a, MobileNetEncoder) and a.image_size == 64
    assert_same(a(x), b(x))
    reference = mobilenet(x)
    for key, value in a(x).items():  # fresh weights are pre-rounded to fp16, so this is exact in practice
        torch.testing.assert_close(value, reference[key], rtol=1e-4, atol=1e-4)


def test_vae_round_trip_keeps_only_encoder_weights(vae_encoder, tmp_path):
    vae_encoder.save(tmp_path / "enc")
    with safe_open(str(tmp_path / "enc" / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith(("encoder.", "quant_conv.")) for k in keys)
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["kind"] == "autoencoder_kl" and config["image_size"] == 64
    assert config["autoencoder"]["block_out_channels"] == [16, 32, 32, 32]
    loaded = load_encoder(tmp_path / "enc")
    assert isinstance(loaded, VAEEncoder)
    x = images(seed=3)
    assert_same(loaded(x), vae_encoder(x))


def test_vae_from_diffusers_folders(autoencoder, vae_encoder, tmp_path):
    autoencoder.save_pretrained(tmp_path / "vae", safe_serialization=True)
    x = images(seed=4)
    assert_same(VAEEncoder.from_autoencoder_folder(tmp_path / "vae", image_size=64)(x), vae_encoder(x))
    pipeline = tmp_path / "pipeline"
    autoencoder.save_pretrained(pipeline / "vae", safe_serialization=True)  # a pipeline folder holding vae/
    assert VAEEncoder.from_autoencoder_folder(pipeline, image_size=64).feature_shapes()["y3"] == (32, 8)
    autoencoder.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    with pytest.raises(UserError, match="refusing to unpickle"):
        VAEEncoder.from_autoencoder_folder(tmp_path / "pickled")
    with pytest.raises(UserError, match="no such folder"):
        VAEEncoder.from_autoencoder_folder(tmp_path / "absent")


# ------------------------------------------------------------------------------------------------ errors
def test_load_errors(vae_encoder, tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        load_encoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="missing config.json"):
        load_encoder(tmp_path / "empty")
    strange = tmp_path / "strange"
    strange.mkdir()
    (strange / "config.json").write_text(json.dumps({"kind": "clip_vit", "image_size": 64}))
    with pytest.raises(UserError, match="unknown portrait encoder kind 'clip_vit'"):
        load_encoder(strange)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"kind": "mobilenet_v2", "image_size": 64}))
    (pickled / "model.pt").write_bytes(b"not unpickled")
    with pytest.raises(UserError, match="refusing to unpickle model.pt"):
        load_encoder(pickled)
    bad_config = tmp_path / "bad_config"
    bad_config.mkdir()
    (bad_config / "config.json").write_text(json.dumps({"kind": "mobilenet_v2", "image_size": 100}))
    with pytest.raises(UserError, match="invalid portrait encoder config"):
        load_encoder(bad_config)


def test_weights_that_do_not_match_the_config(vae_encoder, tmp_path):
    folder = tmp_path / "enc"
    vae_encoder.save(folder)
    config = json.loads((folder / "config.json").read_text())
    config["autoencoder"]["block_out_channels"] = [8, 32, 32, 32]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="weights do not match the config"):
        load_encoder(folder)
    save_file({"features.0.0.weight": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"kind": "mobilenet_v2", "image_size": 64}))
    with pytest.raises(UserError, match="weights do not match the config"):
        load_encoder(tmp_path)
