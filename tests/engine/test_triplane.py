"""engine.triplane: the axis mapping of planes XY, XZ, YZ (pinned down explicitly: EG3D shipped a wrong one),
aggregation, clamping, total variation, and the fp16 safetensors file with its decoder hash."""
from __future__ import annotations

import json

import pytest
import torch

from engine.errors import UserError
from engine.triplane import (
    PLANE_AXES, init_triplane, load_triplane, plane_coordinates, sample_triplane, save_triplane, total_variation,
)

R = 9  # odd on purpose: the centre texel sits exactly on 0
C = 6  # channels 0,1 for XY; 2,3 for XZ; 4,5 for YZ (every other channel of a plane is 0)


def coordinate_planes(resolution: int = R) -> torch.Tensor:
    """A triplane whose features are the coordinates themselves, so sampling must return them exactly.

    plane XY: channel 0 = x (a ramp along columns), channel 1 = y (a ramp along rows)
    plane XZ: channel 2 = x (columns),               channel 3 = z (rows)
    plane YZ: channel 4 = y (columns),               channel 5 = z (rows)
    With align_corners=True, column j sits at -1 + 2j/(R-1), so bilinear interpolation of a ramp is exact.
    """
    ramp = torch.linspace(-1.0, 1.0, resolution)
    cols = ramp[None, :].expand(resolution, resolution)  # value depends on the column only
    rows = ramp[:, None].expand(resolution, resolution)  # value depends on the row only
    planes = torch.zeros(3, C, resolution, resolution)
    planes[0, 0], planes[0, 1] = cols, rows  # XY
    planes[1, 2], planes[1, 3] = cols, rows  # XZ
    planes[2, 4], planes[2, 5] = cols, rows  # YZ
    return planes


def random_points(n: int = 200, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=g) * 2 - 1


# ---- axis mapping ------------------------------------------------------------------------------------------
def test_plane_axes_are_xy_xz_yz_in_that_order():
    assert PLANE_AXES == ((0, 1), (0, 2), (1, 2))
    p = random_points(5)
    coords = plane_coordinates(p)
    assert coords.shape == (3, 5, 2)
    torch.testing.assert_close(coords[0], p[:, [0, 1]])  # XY: column = x, row = y
    torch.testing.assert_close(coords[1], p[:, [0, 2]])  # XZ: column = x, row = z
    torch.testing.assert_close(coords[2], p[:, [1, 2]])  # YZ: column = y, row = z


def test_each_plane_returns_the_coordinates_it_spans():
    p = random_points()
    x, y, z = p.unbind(-1)
    feats = sample_triplane(coordinate_planes(), p, aggregate="concat")
    assert feats.shape == (len(p), 3 * C)
    xy, xz, yz = feats[:, :C], feats[:, C:2 * C], feats[:, 2 * C:]
    atol = 1e-5
    # plane XY
    torch.testing.assert_close(xy[:, 0], x, atol=atol, rtol=0)
    torch.testing.assert_close(xy[:, 1], y, atol=atol, rtol=0)
    # plane XZ
    torch.testing.assert_close(xz[:, 2], x, atol=atol, rtol=0)
    torch.testing.assert_close(xz[:, 3], z, atol=atol, rtol=0)
    # plane YZ
    torch.testing.assert_close(yz[:, 4], y, atol=atol, rtol=0)
    torch.testing.assert_close(yz[:, 5], z, atol=atol, rtol=0)
    # channels a plane does not fill stay zero
    assert xy[:, 2:].abs().max() == 0 and xz[:, [0, 1, 4, 5]].abs().max() == 0 and yz[:, :4].abs().max() == 0


def test_row_zero_is_minus_one_and_column_zero_is_minus_one():
    """A single hot texel at [row 0, column R-1] of plane XY is seen at x = +1, y = -1 (and nowhere else)."""
    planes = torch.zeros(3, 4, R, R)
    planes[0, 0, 0, R - 1] = 1.0
    pts = torch.tensor([[1.0, -1.0, 0.3], [-1.0, 1.0, 0.3], [-1.0, -1.0, 0.3], [1.0, 1.0, 0.3]])
    feats = sample_triplane(planes, pts, aggregate="concat")[:, 0]
    torch.testing.assert_close(feats, torch.tensor([1.0, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize("plane, free_axis", [(0, 2), (1, 1), (2, 0)])
def test_a_plane_ignores_the_axis_it_does_not_span(plane, free_axis):
    """XY ignores z, XZ ignores y, YZ ignores x."""
    g = torch.Generator().manual_seed(plane)
    planes = torch.rand(3, 4, R, R, generator=g) * 2 - 1  # arbitrary content
    p = random_points(64, seed=plane)
    q = p.clone()
    q[:, free_axis] = torch.rand(64, generator=g) * 2 - 1
    a = sample_triplane(planes, p, aggregate="concat").reshape(64, 3, 4)
    b = sample_triplane(planes, q, aggregate="concat").reshape(64, 3, 4)
    torch.testing.assert_close(a[:, plane], b[:, plane], atol=0, rtol=0)
    others = [k for k in range(3) if k != plane]
    assert (a[:, others] - b[:, others]).abs().max() > 1e-3  # the other planes do see that axis


# ---- aggregation -------------------------------------------------------------------------------------------
def test_mean_sum_and_concat_aggregation():
    p = random_points(50)
    x, y, z = p.unbind(-1)
    planes = coordinate_planes()
    concat = sample_triplane(planes, p, aggregate="concat")
    mean = sample_triplane(planes, p, aggregate="mean")
    total = sample_triplane(planes, p, aggregate="sum")
    assert concat.shape == (50, 3 * C) and mean.shape == (50, C) and total.shape == (50, C)
    expected_sum = torch.stack([x, y, x, z, y, z], -1)  # each channel is filled by exactly one plane
    torch.testing.assert_close(total, expected_sum, atol=1e-5, rtol=0)
    torch.testing.assert_close(mean, expected_sum / 3, atol=1e-5, rtol=0)
    torch.testing.assert_close(total, concat.reshape(50, 3, C).sum(1), atol=1e-6, rtol=0)
    assert sample_triplane(planes, p).shape == (50, C)  # default: mean (the authors')
    torch.testing.assert_close(sample_triplane(planes, p), mean)


def test_sample_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match=r"\[3, C, R, R\]"):
        sample_triplane(torch.zeros(2, 4, R, R), random_points(3))


# ---- clamping ----------------------------------------------------------------------------------------------
def test_values_are_clamped_to_unit_range_unless_asked_not_to():
    planes = torch.full((3, 4, R, R), 5.0)
    planes[1] = -7.0
    p = random_points(10)
    clamped = sample_triplane(planes, p, aggregate="concat").reshape(10, 3, 4)
    torch.testing.assert_close(clamped[:, 0], torch.ones(10, 4))
    torch.testing.assert_close(clamped[:, 1], -torch.ones(10, 4))
    raw = sample_triplane(planes, p, aggregate="concat", clamp=False).reshape(10, 3, 4)
    torch.testing.assert_close(raw[:, 0], torch.full((10, 4), 5.0))
    torch.testing.assert_close(raw[:, 1], torch.full((10, 4), -7.0))


def test_clamp_does_not_change_in_range_values_and_passes_gradients():
    planes = (torch.rand(3, 4, R, R) * 1.8 - 0.9).requires_grad_()
    p = random_points(32)
    a = sample_triplane(planes, p)
    b = sample_triplane(planes, p, clamp=False)
    torch.testing.assert_close(a, b)
    a.sum().backward()
    assert planes.grad is not None and planes.grad.abs().sum() > 0


# ---- init / total variation --------------------------------------------------------------------------------
def test_init_triplane_shape_scale_and_seed():
    a = init_triplane(8, 16, std=0.1, generator=torch.Generator().manual_seed(3))
    b = init_triplane(8, 16, std=0.1, generator=torch.Generator().manual_seed(3))
    assert a.shape == (3, 8, 16, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert 0.07 < float(a.std()) < 0.13


def test_total_variation_is_zero_for_constant_planes_and_positive_otherwise():
    assert float(total_variation(torch.full((3, 4, 8, 8), 0.3))) == 0.0
    ramp = coordinate_planes(8)
    assert float(total_variation(ramp)) > 0
    assert float(total_variation(init_triplane(4, 8))) > float(total_variation(ramp))


# ---- files -------------------------------------------------------------------------------------------------
def test_save_load_round_trip_in_fp16(tmp_path):
    planes = init_triplane(8, 16, std=0.5, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "a.safetensors"
    save_triplane(path, planes, "abcd1234abcd1234", {"avatar": "a", "psnr": 30.5})
    loaded, meta = load_triplane(path, expect_decoder_hash="abcd1234abcd1234")
    assert loaded.dtype == torch.float32 and loaded.shape == planes.shape
    torch.testing.assert_close(loaded, planes, atol=1e-3, rtol=1e-3)  # fp16 storage
    torch.testing.assert_close(loaded, planes.half().float(), atol=0, rtol=0)
    assert meta["decoder_hash"] == "abcd1234abcd1234"
    assert meta["extra"] == {"avatar": "a", "psnr": 30.5}
    # fp16 on disk: half the bytes of fp32 (plus a small header)
    assert path.stat().st_size < planes.numel() * 2 + 1024
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_load_without_an_expected_hash_still_reports_it(tmp_path):
    path = tmp_path / "a.safetensors"
    save_triplane(path, torch.zeros(3, 4, 8, 8), "feedfacefeedface")
    _, meta = load_triplane(path)
    assert meta["decoder_hash"] == "feedfacefeedface" and meta["extra"] == {}


def test_load_with_the_wrong_decoder_hash_names_both(tmp_path):
    path = tmp_path / "a.safetensors"
    save_triplane(path, torch.zeros(3, 4, 8, 8), "1111111111111111")
    with pytest.raises(UserError) as err:
        load_triplane(path, expect_decoder_hash="2222222222222222")
    assert "1111111111111111" in str(err.value) and "2222222222222222" in str(err.value)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_pickled_checkpoints_are_refused(tmp_path, suffix):
    path = tmp_path / f"planes{suffix}"
    torch.save({"planes": torch.zeros(3, 4, 8, 8)}, path)
    with pytest.raises(UserError, match="safetensors"):
        load_triplane(path)


def test_corrupt_missing_and_foreign_files_are_user_errors(tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00\x01 this is not a safetensors file" * 10)
    with pytest.raises(UserError, match="corrupt.safetensors"):
        load_triplane(corrupt)
    truncated = tmp_path / "truncated.safetensors"
    save_triplane(truncated, torch.zeros(3, 4, 8, 8), "x")
    truncated.write_bytes(truncated.read_bytes()[:-100])
    with pytest.raises(UserError):
        load_triplane(truncated)
    with pytest.raises(UserError, match="no such"):
        load_triplane(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"planes": torch.zeros(3, 4, 8, 8)}, str(foreign))  # right tensor, no format metadata
    with pytest.raises(UserError, match="not a RodinHD triplane"):
        load_triplane(foreign)
    wrong_shape = tmp_path / "wrong.safetensors"
    save_file({"planes": torch.zeros(2, 4, 8, 8)}, str(wrong_shape), metadata={"format": "rodinhd-triplane"})
    with pytest.raises(UserError):
        load_triplane(wrong_shape)


def test_save_refuses_a_wrong_shape(tmp_path):
    with pytest.raises(ValueError):
        save_triplane(tmp_path / "a.safetensors", torch.zeros(4, 8, 8), "x")
    assert not list(tmp_path.iterdir())


def test_extra_metadata_is_json(tmp_path):
    path = tmp_path / "a.safetensors"
    save_triplane(path, torch.zeros(3, 4, 8, 8), "h", {"nested": {"k": [1, 2]}})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata()
    assert raw["format"] == "rodinhd-triplane" and json.loads(raw["extra"]) == {"nested": {"k": [1, 2]}}
