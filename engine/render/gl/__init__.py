"""OpenGL (moderngl) ray-marching of triplane avatars for live viewing: an exact path that reproduces the torch
renderer and a fast path through a baked volume. Qt-free: the studio's widget hands in its own context."""
from engine.render.gl.context import GLUnavailable, standalone_context, unbind_current_egl
from engine.render.gl.renderer import TriplaneGLRenderer

__all__ = ["GLUnavailable", "TriplaneGLRenderer", "standalone_context", "unbind_current_egl"]
