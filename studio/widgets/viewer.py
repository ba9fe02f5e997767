"""The live viewer: a QOpenGLWidget that ray-marches the current avatar with moderngl (engine.render.gl).

While the camera moves it shows the fast path (the baked σ/RGB volume, rendered at reduced resolution); once the
camera rests it refines to the exact render (the decoder in GLSL, identical to the torch renderer) a band of rows
per event-loop turn, so the UI never waits on a whole exact frame. Any change (camera, avatar, size, background)
makes the refinement in flight stale: it restarts, and the stale frame is never shown (nerfstudio's viewer does
the same: low resolution in motion, full when idle).

Mouse: left drag orbits, right or middle drag pans, the wheel zooms. The camera itself lives in StudioState.
"""
from __future__ import annotations

import math
import time

import numpy as np
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtOpenGLWidgets import QOpenGLWidget

from engine.assets import shader_source
from engine.cameras import DEFAULT_FOV_DEGREES
from engine.render.occupancy import OccupancyGrid
from studio.state import StudioState

ORBIT_DEGREES_PER_PIXEL = 0.4
ZOOM_PER_WHEEL_NOTCH = 0.9
IDLE_BEFORE_REFINE_MS = 150
MOTION_SCALE = 0.5  # the fast path renders at this fraction of the widget's pixels
TILE_BUDGET_S = 0.05  # aim for one exact band per event-loop turn to take about this long
TURNTABLE_DEGREES_PER_FRAME = 2.0
PREVIEW_GRID, PREVIEW_BAKE = 8, 32  # x0 previews: everything counts as occupied, a 32³ baked volume


class AvatarViewer(QOpenGLWidget):
    frame_shown = Signal(str)  # "exact", "fast" or "empty", after each paint

    def __init__(self, state: StudioState, parent=None) -> None:
        from engine.render.gl import unbind_current_egl

        unbind_current_egl()  # a headless context left current by earlier work would block this widget's context
        super().__init__(parent)
        self.state = state
        self.setMinimumSize(256, 256)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setToolTip("Left drag: orbit · right/middle drag: pan · wheel: zoom")
        self.ctx = self.renderer = None
        self.gl_error: str | None = None
        self._pending = None  # (planes, decoder, preview, occupancy) waiting for the GL context
        self._warm_decoder = None
        self._has_avatar = False
        self._avatar_version = 0
        self._last_pos: QPointF | None = None
        self._moving = False
        self.refine_enabled = True
        self._exact = _Refinement()
        self._fast_target = None
        self.last_mode = "empty"
        self._idle = _single_shot(self, IDLE_BEFORE_REFINE_MS, self._start_refining)
        self._tick = QTimer(self)
        self._tick.timeout.connect(self._refine_step)
        self._turntable = QTimer(self)
        self._turntable.setInterval(33)
        self._turntable.timeout.connect(lambda: self.state.orbit(TURNTABLE_DEGREES_PER_FRAME, 0.0))
        state.subscribe(self._on_state)

    # ------------------------------------------------------------------------------------------ state
    def _on_state(self, name: str) -> None:
        if name == "avatar":
            self.show_avatar(self.state.avatar)
        elif name in ("camera", "background"):
            self._invalidate()

    def show_avatar(self, avatar) -> None:
        """Display an Avatar (or nothing) with its own empty-space grid: computed once per avatar (the worker's
        thumbnail render has usually made it already)."""
        if avatar is None:
            self.show_planes(None, None)
        else:
            self.show_planes(avatar.planes, avatar.decoder, occupancy=avatar.occupancy())

    @property
    def showing_preview(self) -> bool:
        return not self.refine_enabled

    def show_planes(self, planes, decoder, preview: bool = False, occupancy=None) -> None:
        """Display a triplane (the final avatar, or an x0 preview while generating: previews never refine).
        `occupancy`: its empty-space grid if already known (else the renderer computes it)."""
        self._pending = (planes, decoder, preview, occupancy)
        self.refine_enabled = not preview
        self._avatar_version += 1
        self._invalidate()

    def prepare_decoder(self, decoder) -> None:
        """Compile the exact shader for a model's decoder now (at model load) rather than at the first preview:
        on a software GL driver that takes seconds, once per decoder."""
        self._warm_decoder = decoder
        self.update()

    def _invalidate(self) -> None:
        self._exact.cancel()
        self._tick.stop()
        self.update()
        if self.refine_enabled:
            self._idle.start()

    # ------------------------------------------------------------------------------------------ GL
    def initializeGL(self) -> None:
        import moderngl

        from engine.render.gl import TriplaneGLRenderer

        try:
            self.ctx = moderngl.create_context()
            self.renderer = TriplaneGLRenderer(self.ctx)
            self._display = _Display(self.ctx)
        except Exception as exc:  # noqa: BLE001 - no usable GL: say so in the UI instead of dying
            self.gl_error = f"OpenGL 3.3 is not available for the viewer ({exc})"
            self.ctx = self.renderer = None

    def paintGL(self) -> None:
        if self.ctx is None:
            return
        self._upload_pending()
        screen = self.ctx.detect_framebuffer(self.defaultFramebufferObject())
        key = self._key()
        if self._exact.ready_for(key):
            self._display.show(screen, self._exact.texture)
            mode = "exact"
        elif self._has_avatar:
            self._display.show(screen, self._render_fast())
            mode = "fast"
        else:
            screen.use()
            self.ctx.clear(*self.state.background, 1.0)
            mode = "empty"
        self.last_mode = mode
        self.frame_shown.emit(mode)

    def _upload_pending(self) -> None:
        if self._warm_decoder is not None:
            import torch

            decoder, self._warm_decoder = self._warm_decoder, None
            self.renderer.set_avatar(torch.zeros(3, decoder.config.channels, 4, 4), decoder, bake_resolution=8)
            self.renderer.clear_avatar()
            self._has_avatar = False
            if self._pending is None and self.state.avatar is not None:
                avatar = self.state.avatar
                self._pending = (avatar.planes, avatar.decoder, False, avatar.occupancy())
        if self._pending is None:
            return
        planes, decoder, preview, occupancy = self._pending
        self._pending = None
        if planes is None:
            self.renderer.clear_avatar()
            self._has_avatar = False
        elif preview:
            # previews only use the fast path: no density grid, a coarse bake (cheap while sampling runs)
            self.renderer.set_avatar(planes, decoder, OccupancyGrid.full(PREVIEW_GRID), PREVIEW_BAKE)
            self._has_avatar = True
        else:
            self.renderer.set_avatar(planes, decoder, occupancy)
            self._has_avatar = True

    def _pixels(self, scale: float = 1.0) -> tuple[int, int]:
        ratio = self.devicePixelRatioF() * scale
        return max(1, round(self.width() * ratio)), max(1, round(self.height() * ratio))

    def _key(self) -> tuple:
        return (self.state.camera, self.state.background, self._avatar_version, self._pixels())

    def _render_fast(self):
        width, height = self._pixels(MOTION_SCALE if self._moving or not self.refine_enabled else 1.0)
        self._fast_target = _ensure_target(self.ctx, self._fast_target, width, height)
        self._draw(self._fast_target, width, height, "fast")
        return self._fast_target.texture

    def _draw(self, target, width: int, height: int, mode: str) -> None:
        self.renderer.render(self.state.camera.c2w(), width, height, mode=mode, fov_degrees=_fov_x(width, height),
                             background=self.state.background, framebuffer=target.fbo)

    # ------------------------------------------------------------------------------------------ refinement
    def _start_refining(self) -> None:
        if self.ctx is None or not self._has_avatar or not self.refine_enabled or self._moving:
            return
        width, height = self._pixels()
        self.makeCurrent()
        target = _ensure_target(self.ctx, self._exact.target, width, height)
        self.doneCurrent()
        self._exact.begin(self._key(), target, height)
        self._tick.start(0)

    def _refine_step(self) -> None:
        """Render the next band of exact rows; show the frame when the last band is in."""
        job = self._exact
        if job.key != self._key() or self.ctx is None:
            job.cancel()
            self._tick.stop()
            return
        self.makeCurrent()
        width, height = job.target.size
        y, rows = job.next_band()
        started = time.perf_counter()
        job.target.fbo.scissor = (0, y, width, rows)
        self._draw(job.target, width, height, "exact")
        job.target.fbo.scissor = None
        self.ctx.finish()
        job.band_done(time.perf_counter() - started)
        self.doneCurrent()
        if job.complete:
            self._tick.stop()
            self.update()

    def refined(self) -> bool:
        """True once the exact frame for the current camera is on screen (tests and --screenshot wait on it)."""
        return self._exact.ready_for(self._key()) and self.last_mode == "exact"

    # ------------------------------------------------------------------------------------------ mouse
    def mousePressEvent(self, event) -> None:
        self._last_pos = event.position()
        self._moving = True
        self._idle.stop()

    def mouseMoveEvent(self, event) -> None:
        if self._last_pos is None:
            return
        delta = event.position() - self._last_pos
        self._last_pos = event.position()
        if event.buttons() & Qt.LeftButton:
            self.state.orbit(-delta.x() * ORBIT_DEGREES_PER_PIXEL, delta.y() * ORBIT_DEGREES_PER_PIXEL)
        elif event.buttons() & (Qt.RightButton | Qt.MiddleButton):
            span = 2.0 * math.tan(math.radians(DEFAULT_FOV_DEGREES) / 2) / max(1, self.height())
            self.state.pan(-delta.x() * span, delta.y() * span)

    def mouseReleaseEvent(self, event) -> None:
        self._last_pos = None
        self._moving = False
        self._invalidate()

    def wheelEvent(self, event) -> None:
        notches = event.angleDelta().y() / 120.0
        if notches:
            self.state.zoom(ZOOM_PER_WHEEL_NOTCH ** notches)

    def set_turntable(self, running: bool) -> None:
        self._moving = running
        if running:
            self._turntable.start()
        else:
            self._turntable.stop()
            self._invalidate()

    @property
    def turntable_running(self) -> bool:
        return self._turntable.isActive()


def _fov_x(width: int, height: int) -> float:
    """The horizontal field of view that keeps the rig's 40° across the shorter side (the head never crops)."""
    half = math.tan(math.radians(DEFAULT_FOV_DEGREES) / 2)
    return math.degrees(2 * math.atan(half * max(1.0, width / height)))


def _single_shot(parent, ms: int, slot) -> QTimer:
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(ms)
    timer.timeout.connect(slot)
    return timer


class _Target:
    """An offscreen colour texture + framebuffer the viewer renders into and then displays."""

    def __init__(self, ctx, width: int, height: int) -> None:
        self.size = (width, height)
        # float like the renderer's own targets: llvmpipe compiles a shader variant per framebuffer format
        self.texture = ctx.texture((width, height), 4, dtype="f4")
        self.fbo = ctx.framebuffer(color_attachments=[self.texture])

    def release(self) -> None:
        self.fbo.release()
        self.texture.release()


def _ensure_target(ctx, target: _Target | None, width: int, height: int) -> _Target:
    if target is not None and target.size == (width, height):
        return target
    if target is not None:
        target.release()
    return _Target(ctx, width, height)


class _Refinement:
    """Book-keeping of one exact frame rendered in bands of rows; the band height adapts to the time budget."""

    def __init__(self) -> None:
        self.key = None
        self.target: _Target | None = None
        self.next_row = 0
        self.height = 0
        self.rows = 16
        self.complete = False

    def begin(self, key, target: _Target, height: int) -> None:
        self.key, self.target, self.height = key, target, height
        self.next_row, self.complete = 0, False

    def cancel(self) -> None:
        self.key, self.complete = None, False

    def next_band(self) -> tuple[int, int]:
        rows = min(self.rows, self.height - self.next_row)
        return self.next_row, rows

    def band_done(self, seconds: float) -> None:
        done = min(self.rows, self.height - self.next_row)
        self.next_row += done
        self.complete = self.next_row >= self.height
        per_row = seconds / max(1, done)
        self.rows = int(max(4, min(self.height, TILE_BUDGET_S / max(per_row, 1e-6))))

    def ready_for(self, key) -> bool:
        return self.complete and self.key == key

    @property
    def texture(self):
        return self.target.texture


class _Display:
    """Draws a texture over the whole widget (linear filtering scales the low-resolution motion frames)."""

    def __init__(self, ctx) -> None:
        import moderngl

        self.ctx = ctx
        self.program = ctx.program(vertex_shader=shader_source("display.vert"),
                                   fragment_shader=shader_source("display.frag"))
        quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], dtype="f4")
        self.vbo = ctx.buffer(quad.tobytes())
        self.vao = ctx.vertex_array(self.program, [(self.vbo, "2f", "in_position")])
        self.mode = moderngl.TRIANGLE_STRIP

    def show(self, screen, texture) -> None:
        import moderngl

        screen.use()
        self.ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND)
        texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        texture.use(0)
        self.program["frame"].value = 0
        self.vao.render(self.mode)
