"""VGG16 feature distance from local torchvision-style weights: loading (.pth via weights_only, safetensors),
distance properties, and clear errors."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from engine.errors import UserError
from engine.metrics.perceptual import PerceptualDistance
from engine.metrics.vgg import VGG_NAME, VGGPerceptualDistance, perceptual_distance, vgg16_features


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files carry the classifier too: ignored
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(state, path)
    return path


def test_distance_properties(weights):
    dist = VGGPerceptualDistance(weights)
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(dist(a, a), torch.zeros(2), atol=1e-6)
    assert torch.allclose(dist(a, b), dist(b, a), atol=1e-6)
    assert (dist(a, b) > 0).all()
    assert dist.NAME == VGG_NAME and "LPIPS form" in VGG_NAME
    assert not any(p.requires_grad for p in dist.parameters())


def test_safetensors_copy_gives_the_same_distance(weights, tmp_path):
    state = torch.load(weights, weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "vgg16.safetensors"))
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert torch.equal(VGGPerceptualDistance(weights)(x, y), VGGPerceptualDistance(tmp_path / "vgg16.safetensors")(x, y))


def test_factory_falls_back_to_the_substitute(weights):
    assert isinstance(perceptual_distance(""), PerceptualDistance)
    assert isinstance(perceptual_distance(weights), VGGPerceptualDistance)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="no such VGG16 weights file"):
        VGGPerceptualDistance(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable VGG16 checkpoint"):
        VGGPerceptualDistance(tmp_path / "junk.pth")
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="no 'features"):
        VGGPerceptualDistance(tmp_path / "other.pth")
