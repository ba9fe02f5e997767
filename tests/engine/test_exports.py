"""engine.exports: PNG view/sheet, GIF/MP4 turntables, GLB/OBJ/PLY meshes with vertex colours, the avatar file;
clear refusals, cancellation that leaves nothing, and the avatar.json merge rule."""
from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import trimesh
from PIL import Image

from avatar_helpers import random_avatar, sphere_avatar, sphere_radius_at
from engine.avatar import Avatar, orbit_camera
from engine.decoder import decoder_hash
from engine.errors import Cancelled, UserError
from engine.exports import (EXPORT_KINDS, MAX_VIEW_RESOLUTION, MeshInfo, export, export_mesh, export_sheet,
                            export_triplane, export_turntable, export_view)
from engine.mesh import MESH_DENSITY_THRESHOLD, avatar_mesh

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sphere():
    return sphere_avatar()


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_export_kinds_cover_every_format():
    assert set(EXPORT_KINDS) == {"png", "sheet", "gif", "mp4", "glb", "obj", "ply", "safetensors"}
    assert all(k.suffix.startswith(".") and k.description for k in EXPORT_KINDS.values())
    assert MAX_VIEW_RESOLUTION == 1024


def test_view_png_sizes_modes_and_camera(sphere, tmp_path):
    path = export_view(sphere, tmp_path / "sub" / "front.png", resolution=40, samples=16)
    image = np.asarray(Image.open(path))
    assert image.shape == (40, 40, 3)
    assert image[0, 0].tolist() == [255, 255, 255] and abs(int(image[20, 20, 0]) - 128) <= 2  # grey sphere
    rgba = np.asarray(Image.open(export_view(sphere, tmp_path / "t.png", resolution=32, background="transparent",
                                             azimuth=45, elevation=20, samples=16)))
    assert rgba.shape == (32, 32, 4) and rgba[0, 0, 3] == 0 and rgba[16, 16, 3] == 255
    same = export_view(sphere, tmp_path / "c2w.png", c2w=orbit_camera(0, 0), resolution=40, samples=16)
    assert (np.asarray(Image.open(same)) == image).all()
    record = json.loads((tmp_path / "avatar.json").read_text())
    assert record["exports"]["t.png"] == {"kind": "png", "parameters": {
        "azimuth": 45, "elevation": 20, "radius": 2.85, "resolution": 32, "background": "transparent",
        "samples": 16}}


def test_sheet_is_one_grid_image(sphere, tmp_path):
    image = Image.open(export_sheet(sphere, tmp_path / "sheet.png", views=5, columns=3, resolution=24))
    assert image.size == (72, 48) and image.mode == "RGB"
    assert np.asarray(image)[24:, 48:].min() == 255  # the empty sixth cell is background


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_turntables_hold_every_frame(sphere, tmp_path, suffix):
    seen = []
    path = export_turntable(sphere, tmp_path / f"turn{suffix}", frames=4, resolution=32, fps=8,
                            progress=lambda i, n: seen.append((i, n)))
    frames = iio.imread(path, index=None)
    assert frames.shape[:3] == (4, 32, 32) and seen[-1] == (4, 4)
    assert frames[0, 16, 16].mean() < frames[0, 0, 0].mean()  # the grey sphere on white


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_meshes_reload_with_vertex_colours_inside_the_box(sphere, tmp_path, suffix):
    info = export_mesh(sphere, tmp_path / f"head{suffix}", grid=32)
    assert isinstance(info, MeshInfo) and info.path == tmp_path / f"head{suffix}"
    mesh = trimesh.load(info.path, force="mesh", process=False)
    assert len(mesh.vertices) == info.vertices and len(mesh.faces) == info.faces > 100
    assert mesh.visual.kind == "vertex"
    colours = np.asarray(mesh.visual.vertex_colors)
    assert np.abs(colours[:, :3].astype(int) - 128).max() <= 1  # the decoder's grey, not a default colour
    assert np.abs(np.asarray(mesh.vertices)).max() <= 1.0
    assert json.loads((tmp_path / "avatar.json").read_text())["exports"][info.path.name]["kind"] == suffix[1:]


def test_sphere_density_gives_the_analytic_sphere(sphere):
    mesh = avatar_mesh(sphere, grid=32)
    centre, radius = np.array([0.15, -0.1, 0.05]), sphere_radius_at(MESH_DENSITY_THRESHOLD)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.is_watertight
    assert np.allclose(tm.center_mass, centre, atol=0.01)
    distances = np.linalg.norm(mesh.vertices - centre, axis=1)
    assert abs(distances.mean() - radius) < 0.01 and distances.std() < 0.01
    assert tm.volume == pytest.approx(4 / 3 * math.pi * radius ** 3, rel=0.05)  # positive: faces wind outward
    outward = ((mesh.vertices - centre) * mesh.normals).sum(1)
    assert (outward > 0).all()
    # a sphere cut by the box is closed where it meets the box, and stays inside it
    big = avatar_mesh(sphere_avatar(centre=(0.3, 0.0, 0.0), radius=0.9), grid=32)
    assert trimesh.Trimesh(big.vertices, big.faces, process=False).is_watertight
    assert big.vertices.max() <= 1.0 and big.vertices[:, 0].max() == pytest.approx(1.0)


def test_floaters_are_dropped(sphere):
    import torch

    from engine.mesh import extract_mesh

    def density(points):  # a big ball and a small one far away
        big = 100 * (0.5 - (points - torch.tensor([-0.3, 0, 0])).norm(dim=-1)).clamp(min=0)
        small = 100 * (0.08 - (points - torch.tensor([0.7, 0.7, 0.7])).norm(dim=-1)).clamp(min=0)
        return big + small

    def colour(points, directions):
        return torch.full_like(points, 0.25)

    both = extract_mesh(density, colour, grid=48, threshold=1.0, min_component=0)
    one = extract_mesh(density, colour, grid=48, threshold=1.0)
    assert len(one.vertices) < len(both.vertices) and one.vertices[:, 0].max() < 0.3
    assert (one.colors[:, :3] == 64).all()


def test_triplane_export_reopens_without_the_model(sphere, tmp_path):
    path = export_triplane(sphere, tmp_path / "me.safetensors")
    again = Avatar.load(path)
    assert decoder_hash(again.decoder) == decoder_hash(sphere.decoder) and again.metadata == sphere.metadata
    assert Avatar.load(tmp_path / "me.safetensors").triplane_hash() == sphere.triplane_hash()


def test_dispatch_by_suffix(sphere, tmp_path):
    assert export(sphere, tmp_path / "a.png", resolution=16, samples=8) == tmp_path / "a.png"
    assert isinstance(export(sphere, tmp_path / "a.ply", grid=16), MeshInfo)
    assert export(sphere, tmp_path / "s.png", "sheet", views=2, resolution=16) == tmp_path / "s.png"
    with pytest.raises(UserError, match="unknown export format"):
        export(sphere, tmp_path / "a.jpg")
    with pytest.raises(UserError, match="written as .glb"):
        export(sphere, tmp_path / "a.obj", "glb")


@pytest.mark.parametrize("call, message", [
    (lambda a, d: export_view(a, d / "v.jpg"), "written as .png"),
    (lambda a, d: export_view(a, d / "v.png", resolution=8), "resolution must be between 16 and 1024"),
    (lambda a, d: export_view(a, d / "v.png", resolution=1025), "resolution must be between 16 and 1024"),
    (lambda a, d: export_view(a, d / "v.png", background="pink"), "background must be one of"),
    (lambda a, d: export_view(a, d / "v.png", c2w=np.eye(3)), "rigid"),
    (lambda a, d: export_sheet(a, d / "s.png", views=0), "views must be between"),
    (lambda a, d: export_turntable(a, d / "t.webm"), "written as .gif or .mp4"),
    (lambda a, d: export_turntable(a, d / "t.gif", frames=0), "frames must be between"),
    (lambda a, d: export_turntable(a, d / "t.gif", background="transparent"), "background must be one of"),
    (lambda a, d: export_turntable(a, d / "t.mp4", resolution=33), "even resolution"),
    (lambda a, d: export_mesh(a, d / "m.stl"), "written as .glb or .obj or .ply"),
    (lambda a, d: export_mesh(a, d / "m.glb", grid=8), "grid must be between 16 and 512"),
    (lambda a, d: export_mesh(a, d / "m.glb", threshold=-1), "positive density"),
    (lambda a, d: export_mesh(a, d / "m.glb", grid=16, threshold=1e9), "nothing above the threshold"),
    (lambda a, d: export_triplane(a, d / "a.pt"), "written as .safetensors"),
])
def test_bad_settings_are_one_clear_error_and_write_nothing(sphere, tmp_path, call, message):
    with pytest.raises(UserError, match=message):
        call(sphere, tmp_path)
    assert files(tmp_path) == []


@pytest.mark.parametrize("call", [
    lambda a, d, p: export_turntable(a, d / "t.gif", frames=4, resolution=16, progress=p),
    lambda a, d, p: export_turntable(a, d / "t.mp4", frames=4, resolution=16, progress=p),
    lambda a, d, p: export_sheet(a, d / "s.png", views=4, resolution=16, progress=p),
    lambda a, d, p: export_mesh(a, d / "m.glb", grid=32, progress=p),
])
def test_cancel_leaves_no_file(sphere, tmp_path, call):
    calls = []

    def progress(i, n):
        calls.append(i)
        return False

    with pytest.raises(Cancelled):
        call(sphere, tmp_path, progress)
    assert calls == [1] and files(tmp_path) == []


def test_mesh_progress_reports_every_chunk(tmp_path, monkeypatch):
    import engine.mesh

    monkeypatch.setattr(engine.mesh, "CHUNK_POINTS", 16 * 16 * 4)  # 4 x-slices per chunk of a 16³ grid
    seen = []
    engine.mesh.avatar_mesh(sphere_avatar(), grid=16, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_avatar_json_merges_for_the_same_avatar_and_is_replaced_for_another(sphere, tmp_path):
    export_view(sphere, tmp_path / "a.png", resolution=16, samples=8)
    export_sheet(sphere, tmp_path / "b.png", views=2, resolution=16)
    record = json.loads((tmp_path / "avatar.json").read_text())
    assert set(record["exports"]) == {"a.png", "b.png"} and record["exports"]["b.png"]["kind"] == "sheet"
    assert record["triplane_hash"] == sphere.triplane_hash() and record["mode"] == "test-sphere"
    export_view(sphere, tmp_path / "a.png", resolution=24, samples=8)  # same name again: the entry is updated
    record = json.loads((tmp_path / "avatar.json").read_text())
    assert record["exports"]["a.png"]["parameters"]["resolution"] == 24 and "b.png" in record["exports"]
    other = random_avatar(3)
    export_view(other, tmp_path / "c.png", resolution=16, samples=8)
    record = json.loads((tmp_path / "avatar.json").read_text())
    assert set(record["exports"]) == {"c.png"} and record["triplane_hash"] == other.triplane_hash()
    # saving the avatar into its folder keeps what was exported from it
    sphere.save(tmp_path / "s")
    export_view(sphere, tmp_path / "s" / "front.png", resolution=16, samples=8)
    sphere.save(tmp_path / "s")
    assert set(json.loads((tmp_path / "s" / "avatar.json").read_text())["exports"]) == {"front.png"}
