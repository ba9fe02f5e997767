"""TriplaneGLRenderer: ray-marches a triplane avatar with moderngl, for live viewing (Qt-free).

Two paths, both drawn as one full-viewport triangle into any framebuffer:
  - exact: the decoder compiled into GLSL; reproduces engine.render.render_image with
    RenderConfig(samples, importance=0) and the avatar's occupancy grid (stratified midpoint samples, the same
    rays, box, occupancy lookup, triplane sampling, decoder and compositing). One liberty: a ray stops once its
    transmittance is below 1e-5, which changes no output by more than that.
  - fast: σ and rgb baked once per avatar into a volume (by the exact shader, colour seen from the front), then
    ray-marched with hardware trilinear filtering; 96 samples per ray by default.

Compiled exact programs are kept per decoder hash, so another avatar from the same model does not recompile.
Drawing turns blending and depth testing off (the output is the finished pixel, alpha included).
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import moderngl
import numpy as np
import torch

from engine.cameras import DEFAULT_FOV_DEGREES, focal_from_fov
from engine.decoder import TriplaneDecoder, decoder_hash
from engine.render.gl.shader import exact_fragment_source, fast_fragment_source, vertex_source
from engine.render.occupancy import OccupancyGrid
from engine.render.volume import density_occupancy

MODES = ("exact", "fast")
DEFAULT_SAMPLES = {"exact": 64, "fast": 96}
MAX_SIZE = 4096
MAX_SAMPLES = 1024
BAKE_RESOLUTIONS = (8, 256)
FRONTAL_DIRECTION = (0.0, 0.0, -1.0)  # the view direction of a camera on +Z looking at the avatar
PLANES_UNIT, OCCUPANCY_UNIT, VOLUME_UNIT = 0, 1, 2


@dataclass
class _Program:
    program: moderngl.Program
    vao: moderngl.VertexArray  # no buffers (fullscreen.vert makes its own vertices)

    def release(self) -> None:
        self.vao.release()
        self.program.release()


@dataclass
class _AvatarTextures:
    exact: _Program  # owned by the program cache
    planes: moderngl.TextureArray  # RGBA32F
    occupancy: moderngl.Texture3D  # R8
    occupancy_bound: float
    volume: moderngl.Texture3D | None = None  # RGBA32F (rgb, σ), once baked

    def release(self) -> None:
        for texture in (self.planes, self.occupancy, self.volume):
            if texture is not None:
                texture.release()


class TriplaneGLRenderer:
    """Renders one avatar at a time into a moderngl context (standalone, or the one Qt made current)."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._fast = self._compile(fast_fragment_source())
        self._programs: dict[str, _Program] = {}
        self._avatar: _AvatarTextures | None = None
        self._offscreen = None  # (framebuffer, texture) reused by render_array while the size stays the same
        self.compiles = 0
        """Exact programs compiled so far (a cached decoder does not add one)."""
        self.timings: dict[str, float] = {}
        """Seconds spent by the last set_avatar: occupancy_s, compile_s (~0 when cached), upload_s, bake_s.
        compile_s is the driver's link step; llvmpipe (and other drivers) generate the code at the first draw,
        which is the bake's."""

    @property
    def has_avatar(self) -> bool:
        return self._avatar is not None

    # ------------------------------------------------------------------------------------------ avatar
    def set_avatar(self, planes: torch.Tensor, decoder: TriplaneDecoder, occupancy: OccupancyGrid | None = None,
                   bake_resolution: int = 64) -> None:
        """Show `planes [3, C, R, R]` decoded by `decoder`; `occupancy` None → the avatar's own density grid."""
        _check_planes(planes, decoder)
        _check_int("bake_resolution", bake_resolution, *BAKE_RESOLUTIONS)
        timings = {}
        started = time.perf_counter()
        if occupancy is None:  # as Avatar.occupancy() builds it
            occupancy = density_occupancy(planes, decoder, samples_per_cell=2)
        _check_occupancy(occupancy)
        timings["occupancy_s"] = time.perf_counter() - started
        exact = self._exact_program(decoder, timings)
        self.clear_avatar()
        started = time.perf_counter()
        self._avatar = _AvatarTextures(exact, self._planes_texture(planes), self._occupancy_texture(occupancy),
                                       float(occupancy.bound))
        timings["upload_s"] = time.perf_counter() - started
        started = time.perf_counter()
        self._avatar.volume = self._bake(bake_resolution)
        timings["bake_s"] = time.perf_counter() - started
        self.timings = timings

    def clear_avatar(self) -> None:
        if self._avatar is not None:
            self._avatar.release()
            self._avatar = None

    def _exact_program(self, decoder: TriplaneDecoder, timings: dict[str, float]) -> _Program:
        key = decoder_hash(decoder)
        started = time.perf_counter()
        if key not in self._programs:
            self._programs[key] = self._compile(exact_fragment_source(decoder))
            self.compiles += 1
        timings["compile_s"] = time.perf_counter() - started
        return self._programs[key]

    def _compile(self, fragment_shader: str) -> _Program:
        program = self.ctx.program(vertex_shader=vertex_source(), fragment_shader=fragment_shader)
        return _Program(program, self.ctx.vertex_array(program, []))

    def _planes_texture(self, planes: torch.Tensor):
        """Layer p·C/4 + g holds channels 4g..4g+3 of plane p (RGBA), texel (column, row); clamped like
        sample_triplane clamps."""
        channels, resolution = planes.shape[1], planes.shape[-1]
        layers = planes.detach().to("cpu", torch.float32).clamp(-1.0, 1.0)
        layers = layers.reshape(3, channels // 4, 4, resolution, resolution).permute(0, 1, 3, 4, 2)
        texture = self.ctx.texture_array((resolution, resolution, 3 * channels // 4), 4,
                                         layers.contiguous().numpy().tobytes(), dtype="f4")
        texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
        return texture

    def _occupancy_texture(self, occupancy: OccupancyGrid):
        """Texel (x, y, z) = occupied[ix, iy, iz]: GL stores x fastest, so the grid goes in as [iz, iy, ix]."""
        size = occupancy.size
        cells = occupancy.occupied.permute(2, 1, 0).to("cpu", torch.uint8).mul(255).contiguous().numpy()
        texture = self.ctx.texture3d((size, size, size), 1, cells.tobytes(), dtype="f1")
        texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
        return texture

    def _bake(self, size: int):
        """The fast path's volume, drawn by the exact shader as stacks of z slices (rows iy + size·iz) and read
        back in the order a 3D texture is stored (x fastest, then y, then z)."""
        per_pass = max(1, min(size, self.ctx.info["GL_MAX_TEXTURE_SIZE"] // size))
        target_texture = self.ctx.texture((size, size * per_pass), 4, dtype="f4")
        target = self.ctx.framebuffer(color_attachments=[target_texture])
        data = bytearray()
        uniforms = {"u_mode": 1, "u_volume_size": size, "u_bake_direction": FRONTAL_DIRECTION}
        with _caller_framebuffer_kept(self.ctx):
            for first in range(0, size, per_pass):
                rows = size * min(per_pass, size - first)
                self._draw(self._avatar.exact, target, size, rows, {**uniforms, "u_first_slice": first})
                data += target.read(viewport=(0, 0, size, rows), components=4, dtype="f4")
        target.release()
        target_texture.release()
        volume = self.ctx.texture3d((size, size, size), 4, bytes(data), dtype="f4")
        volume.filter = (moderngl.LINEAR, moderngl.LINEAR)
        volume.repeat_x = volume.repeat_y = volume.repeat_z = False
        return volume

    # ------------------------------------------------------------------------------------------ drawing
    def render(self, c2w, width: int, height: int, *, mode: str = "exact", fov_degrees: float = DEFAULT_FOV_DEGREES,
               samples: int | None = None, background=(1.0, 1.0, 1.0), framebuffer=None) -> None:
        """Draw the view from `c2w [4, 4]` into `framebuffer` (None → the context's current one), viewport
        (0, 0, width, height): rgb = Σw·rgb + (1 − α)·background, a = α. `fov_degrees` is horizontal.
        `samples` None → 64 for exact (the torch renderer's default), 96 for fast."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        uniforms = {**_camera_uniforms(c2w, width, height, fov_degrees),
                    "u_samples": _check_int("samples", DEFAULT_SAMPLES[mode] if samples is None else samples,
                                            2, MAX_SAMPLES),
                    "u_background": _check_background(background)}
        target = framebuffer if framebuffer is not None else self.ctx.fbo or self.ctx.detect_framebuffer()
        if self._avatar is None:
            target.viewport = (0, 0, width, height)
            target.use()
            target.clear(*uniforms["u_background"], 0.0, viewport=(0, 0, width, height))
            return
        program = self._avatar.exact if mode == "exact" else self._fast
        self._draw(program, target, width, height, {**uniforms, "u_mode": 0})

    def render_array(self, c2w, width: int, height: int, **kwargs) -> np.ndarray:
        """render() into an offscreen RGBA32F framebuffer → [H, W, 4] float32 in [0, 1], row 0 = top."""
        _check_size(width, height)
        target = self._offscreen_target(width, height)
        with _caller_framebuffer_kept(self.ctx):
            self.render(c2w, width, height, framebuffer=target, **kwargs)
            pixels = np.frombuffer(target.read(components=4, dtype="f4"), np.float32).reshape(height, width, 4)
        return np.clip(pixels[::-1], 0.0, 1.0)  # GL rows run bottom-up

    def _offscreen_target(self, width: int, height: int):
        if self._offscreen is None or self._offscreen[0].size != (width, height):
            self._release_offscreen()
            texture = self.ctx.texture((width, height), 4, dtype="f4")
            self._offscreen = (self.ctx.framebuffer(color_attachments=[texture]), texture)
        return self._offscreen[0]

    def _draw(self, program: _Program, target, width: int, height: int, uniforms: dict) -> None:
        textures = {"u_planes": (self._avatar.planes, PLANES_UNIT),
                    "u_occupancy": (self._avatar.occupancy, OCCUPANCY_UNIT),
                    "u_volume": (self._avatar.volume, VOLUME_UNIT)}
        values = {**uniforms, "u_occupancy_bound": self._avatar.occupancy_bound,
                  **{name: unit for name, (_, unit) in textures.items()}}
        for name, value in values.items():
            if name in program.program:  # the compiler drops uniforms a program does not use
                program.program[name].value = value
        for texture, unit in textures.values():
            if texture is not None:
                texture.use(unit)
        target.viewport = (0, 0, width, height)
        target.use()
        self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST)
        program.vao.render(moderngl.TRIANGLES, vertices=3)

    # ------------------------------------------------------------------------------------------ cleanup
    def _release_offscreen(self) -> None:
        if self._offscreen is not None:
            for item in self._offscreen:
                item.release()
            self._offscreen = None

    def release(self) -> None:
        """Free every GL object this renderer made (the context itself stays the caller's)."""
        self.clear_avatar()
        self._release_offscreen()
        for program in [*self._programs.values(), self._fast]:
            program.release()
        self._programs = {}


@contextmanager
def _caller_framebuffer_kept(ctx):
    """Draws into the renderer's own framebuffers leave the caller's current one (ctx.fbo) as it was."""
    previous = ctx.fbo
    try:
        yield
    finally:
        if previous is None or isinstance(previous.mglo, moderngl.InvalidObject):
            ctx.fbo = None  # none yet (standalone context), or the caller has released it since
        else:
            previous.use()


def _camera_uniforms(c2w, width: int, height: int, fov_degrees: float) -> dict:
    _check_size(width, height)
    matrix = np.asarray(c2w.detach().cpu() if isinstance(c2w, torch.Tensor) else c2w, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise ValueError(f"c2w must be a finite 4×4 camera-to-world matrix (got shape {list(matrix.shape)})")
    if not 0.0 < float(fov_degrees) < 180.0:
        raise ValueError(f"fov_degrees must be between 0 and 180 (got {fov_degrees})")
    return {"u_rotation": tuple(matrix[:3, :3].T.ravel()),  # GLSL matrices are column-major
            "u_origin": tuple(matrix[:3, 3]),
            "u_focal": focal_from_fov(math.radians(float(fov_degrees)), width),
            "u_size": (float(width), float(height))}


def _check_planes(planes, decoder: TriplaneDecoder) -> None:
    if not isinstance(decoder, TriplaneDecoder):
        raise ValueError(f"decoder must be an engine.decoder.TriplaneDecoder (got {type(decoder).__name__})")
    if not isinstance(planes, torch.Tensor) or planes.dim() != 4 or planes.shape[0] != 3 \
            or planes.shape[2] != planes.shape[3] or planes.shape[2] < 2:
        shape = list(planes.shape) if isinstance(planes, torch.Tensor) else type(planes).__name__
        raise ValueError(f"planes must be a tensor [3, C, R, R] with R ≥ 2 (got {shape})")
    if planes.shape[1] != decoder.config.channels:
        raise ValueError(f"planes have {planes.shape[1]} channels but the decoder reads {decoder.config.channels}")
    if not torch.isfinite(planes).all():
        raise ValueError("planes contain NaN or infinite values")


def _check_occupancy(occupancy: OccupancyGrid) -> None:
    grid = occupancy.occupied
    if grid.dim() != 3 or len(set(grid.shape)) != 1 or grid.dtype != torch.bool or not occupancy.bound > 0:
        raise ValueError(f"occupancy must be a cubic bool grid with a positive bound (got {list(grid.shape)}, "
                         f"{grid.dtype}, bound {occupancy.bound})")


def _check_size(width: int, height: int) -> None:
    _check_int("width", width, 1, MAX_SIZE)
    _check_int("height", height, 1, MAX_SIZE)


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high} (got {value!r})")
    return int(value)


def _check_background(background) -> tuple[float, float, float]:
    values = tuple(float(v) for v in background)
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"background must be three floats in [0, 1] (got {background!r})")
    return values
