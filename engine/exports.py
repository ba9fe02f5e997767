"""Everything an avatar can be exported as, shared by the studio's export dialog and `rodinhd export`.

    export_view(avatar, "out/front.png", azimuth=30, resolution=512)       # one view (transparent → RGBA)
    export_sheet(avatar, "out/sheet.png", views=8, columns=4)               # a grid of orbit views
    export_turntable(avatar, "out/turn.mp4", frames=36)                     # .gif or .mp4 by the suffix
    export_mesh(avatar, "out/head.glb", grid=128)                           # .glb / .obj / .ply, vertex colours
    export_triplane(avatar, "out/avatar.safetensors")                       # self-contained avatar file

Every export writes its file atomically (temp file + rename; a cancelled or failed export leaves nothing), creates
the folder, refuses bad settings with one UserError, and writes `avatar.json` beside the file: the avatar's record
plus an "exports" mapping {file name: {kind, parameters}}, merged with an avatar.json already there when that
one belongs to the same avatar (same triplane hash), replaced otherwise.
"""
from __future__ import annotations

import io
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from engine.avatar import orbit_camera
from engine.cameras import DEFAULT_ORBIT, is_rigid, orbit_views
from engine.errors import Cancelled, UserError
from engine.frames import to_uint8
from engine.io import atomic_write
from engine.mesh import MESH_DENSITY_THRESHOLD, MESH_SUFFIXES, avatar_mesh, check_grid, check_threshold, write_mesh

MAX_VIEW_RESOLUTION = 1024
MIN_RESOLUTION = 16
MAX_TURNTABLE_RESOLUTION = 2048
MAX_SHEET_VIEWS = 64
MAX_FRAMES = 720
MAX_FPS = 60
MAX_SAMPLES = 1024
BACKGROUNDS = ("white", "black", "transparent")

Progress = Callable[[int, int], Any]


class ExportKind(NamedTuple):
    description: str
    suffix: str  # the default file suffix


EXPORT_KINDS: dict[str, ExportKind] = {
    "png": ExportKind("one view of the avatar (PNG image)", ".png"),
    "sheet": ExportKind("a grid of views around the head (PNG image)", ".png"),
    "gif": ExportKind("turntable animation (GIF)", ".gif"),
    "mp4": ExportKind("turntable video (MP4, H.264)", ".mp4"),
    "glb": ExportKind("mesh with vertex colours (glTF binary, for 3D viewers and engines)", ".glb"),
    "obj": ExportKind("mesh with vertex colours (Wavefront OBJ)", ".obj"),
    "ply": ExportKind("mesh with vertex colours (PLY)", ".ply"),
    "safetensors": ExportKind("self-contained avatar (triplane + decoder): opens again without the model",
                              ".safetensors"),
}


@dataclass
class MeshInfo:
    vertices: int
    faces: int
    path: Path


def _path(path: str | Path, suffixes: tuple[str, ...], what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{path}: a {what} is written as {' or '.join(suffixes)} (got {path.suffix or 'no suffix'!r})")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file name")
    return path


def _check(name: str, value: float, lo: float, hi: float) -> None:
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and lo <= value <= hi):
        raise UserError(f"{name} must be between {lo:g} and {hi:g} (got {value})")


def _check_background(background: str, allowed: tuple[str, ...] = BACKGROUNDS) -> None:
    if background not in allowed:
        raise UserError(f"background must be one of {', '.join(allowed)} (got {background!r})")


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def _finish(avatar, path: Path, kind: str, parameters: dict[str, Any]) -> Path:
    avatar.write_record(path.parent, {path.name: {"kind": kind, "parameters": parameters}})
    return path


def export_view(avatar, path: str | Path, *, azimuth: float = 0.0, elevation: float = 0.0,
                radius: float | None = None, c2w: np.ndarray | None = None, resolution: int = 512,
                background: str = "white", samples: int = 64) -> Path:
    """One view as a PNG: on the orbit (azimuth, elevation, radius; 0, 0 = the portrait's view) or from a
    camera-to-world matrix `c2w` (OpenGL axes). A transparent background gives an RGBA PNG."""
    path = _path(path, (".png",), "view")
    _check("resolution", resolution, MIN_RESOLUTION, MAX_VIEW_RESOLUTION)
    _check("samples", samples, 2, MAX_SAMPLES)
    _check_background(background)
    if c2w is not None:
        c2w = np.asarray(c2w, dtype=np.float64)
        if not is_rigid(c2w):
            raise UserError("c2w must be a 4×4 rigid camera-to-world matrix")
        parameters: dict[str, Any] = {"c2w": c2w.round(6).tolist()}
    else:
        radius = DEFAULT_ORBIT.radius if radius is None else radius
        _check("azimuth", azimuth, -360.0, 360.0)
        _check("elevation", elevation, -90.0, 90.0)
        _check("radius", radius, 0.1, 100.0)
        c2w = orbit_camera(azimuth, elevation, radius)
        parameters = {"azimuth": azimuth, "elevation": elevation, "radius": radius}
    rgba = avatar.render(c2w, resolution=int(resolution), samples=int(samples), background=background)
    _write_png(path, to_uint8(rgba, background))
    return _finish(avatar, path, "png", {**parameters, "resolution": int(resolution), "background": background,
                                         "samples": int(samples)})


def export_sheet(avatar, path: str | Path, *, views: int = 8, columns: int = 4, resolution: int = 256,
                 background: str = "white", progress: Progress | None = None) -> Path:
    """One PNG grid of `views` orbit views (engine.cameras.orbit_views: view 0 frontal), `columns` per row,
    each `resolution` pixels square; empty cells of the last row are background."""
    path = _path(path, (".png",), "sheet")
    _check("views", views, 1, MAX_SHEET_VIEWS)
    _check("columns", columns, 1, MAX_SHEET_VIEWS)
    _check("resolution", resolution, MIN_RESOLUTION, MAX_VIEW_RESOLUTION)
    _check_background(background)
    views, columns, resolution = int(views), min(int(columns), int(views)), int(resolution)
    rows = math.ceil(views / columns)
    channels = 4 if background == "transparent" else 3
    fill = {"white": 255, "black": 0, "transparent": 0}[background]
    sheet = np.full((rows * resolution, columns * resolution, channels), fill, np.uint8)
    angles = orbit_views(DEFAULT_ORBIT, views)
    for i, (azimuth, elevation) in enumerate(angles):
        image = to_uint8(avatar.render(orbit_camera(azimuth, elevation), resolution=resolution,
                                       background=background), background)
        row, col = divmod(i, columns)
        sheet[row * resolution:(row + 1) * resolution, col * resolution:(col + 1) * resolution] = image
        if progress is not None and progress(i + 1, views) is False:
            raise Cancelled("sheet export cancelled")
    _write_png(path, sheet)
    return _finish(avatar, path, "sheet", {"views": views, "columns": columns, "resolution": resolution,
                                           "background": background,
                                           "angles": [[round(a, 3), round(e, 3)] for a, e in angles]})


def export_turntable(avatar, path: str | Path, *, frames: int = 36, elevation: float = 10.0, resolution: int = 256,
                     fps: int = 12, background: str = "white", progress: Progress | None = None) -> Path:
    """A 360° turntable at `elevation`, as .gif or .mp4 (H.264, even resolution) by the suffix.
    `progress(i, n)` after each frame; returning False cancels (Cancelled) and writes nothing."""
    import imageio.v3 as iio

    path = _path(path, (".gif", ".mp4"), "turntable")
    fmt = path.suffix.lower()[1:]
    _check("frames", frames, 1, MAX_FRAMES)
    _check("elevation", elevation, -90.0, 90.0)
    _check("resolution", resolution, MIN_RESOLUTION, MAX_TURNTABLE_RESOLUTION)
    _check("fps", fps, 1, MAX_FPS)
    _check_background(background, ("white", "black"))
    if fmt == "mp4" and int(resolution) % 2:
        raise UserError(f"an MP4 turntable needs an even resolution (got {resolution})")
    rendered = avatar.turntable(int(frames), float(elevation), progress=progress, resolution=int(resolution),
                                background=background)
    images = [to_uint8(f, background) for f in rendered]
    if fmt == "gif":
        duration = 1000.0 / fps  # ms per frame
        atomic_write(path, lambda tmp: iio.imwrite(tmp, images, extension=".gif", duration=duration, loop=0))
    else:
        atomic_write(path, lambda tmp: iio.imwrite(tmp, images, extension=".mp4", fps=fps, codec="libx264",
                                                   macro_block_size=2))
    return _finish(avatar, path, fmt, {"frames": int(frames), "elevation": float(elevation),
                                       "resolution": int(resolution), "fps": fps, "background": background})


def export_mesh(avatar, path: str | Path, *, grid: int = 128, threshold: float | None = None,
                progress: Progress | None = None) -> MeshInfo:
    """Marching-cubes mesh of the avatar's density with vertex colours, as .glb / .obj / .ply by the suffix
    (engine.mesh: threshold default MESH_DENSITY_THRESHOLD, floaters under 5 % of the largest part dropped).
    `progress(i, n)` per chunk of the density grid; returning False cancels and writes nothing."""
    path = _path(path, MESH_SUFFIXES, "mesh")
    check_grid(grid)
    threshold = MESH_DENSITY_THRESHOLD if threshold is None else float(threshold)
    check_threshold(threshold)
    mesh = avatar_mesh(avatar, int(grid), threshold, progress)
    write_mesh(mesh, path)
    _finish(avatar, path, path.suffix.lower()[1:], {"grid": int(grid), "threshold": threshold,
                                                   "vertices": len(mesh.vertices), "faces": len(mesh.faces)})
    return MeshInfo(len(mesh.vertices), len(mesh.faces), path)


def export_triplane(avatar, path: str | Path) -> Path:
    """The self-contained avatar file (fp16 triplane + fp32 decoder + metadata): `Avatar.load(path)` opens it."""
    path = _path(path, (".safetensors",), "self-contained avatar")
    avatar.save_file(path)
    return _finish(avatar, path, "safetensors", {"triplane_shape": list(avatar.planes.shape)})


def kind_for(path: str | Path) -> str:
    """The export kind a file name asks for (.png → a single view; a sheet must be asked for by name)."""
    suffix = Path(path).suffix.lower()
    for kind, info in EXPORT_KINDS.items():
        if info.suffix == suffix:
            return kind
    raise UserError(f"{path}: unknown export format {suffix or '(no suffix)'!r}; use one of "
                    f"{', '.join(sorted({k.suffix for k in EXPORT_KINDS.values()}))}")


def export(avatar, path: str | Path, kind: str | None = None, **options: Any) -> Path | MeshInfo:
    """Dispatch on `kind` (default: from the suffix); `options` are the chosen export's keyword arguments."""
    kind = kind_for(path) if kind is None else kind
    if kind not in EXPORT_KINDS:
        raise UserError(f"unknown export kind {kind!r}; choose one of {', '.join(EXPORT_KINDS)}")
    suffix = Path(path).suffix.lower()
    if suffix != EXPORT_KINDS[kind].suffix:
        raise UserError(f"{path}: a {kind} export is written as {EXPORT_KINDS[kind].suffix} (got {suffix!r})")
    if kind == "png":
        return export_view(avatar, path, **options)
    if kind == "sheet":
        return export_sheet(avatar, path, **options)
    if kind in ("gif", "mp4"):
        return export_turntable(avatar, path, **options)
    if kind in ("glb", "obj", "ply"):
        return export_mesh(avatar, path, **options)
    return export_triplane(avatar, path, **options)
