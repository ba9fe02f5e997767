"""A headless OpenGL 3.3 context for moderngl: EGL first (no display needed), then the platform default."""
from __future__ import annotations

import moderngl

from engine.errors import UserError

REQUIRED_VERSION = 330


class GLUnavailable(UserError):
    """No OpenGL 3.3 context can be made on this machine (no GPU driver and no Mesa llvmpipe)."""


def standalone_context():
    """A moderngl context without a window. Raises GLUnavailable naming why each backend failed."""
    failures = []
    for backend in ("egl", None):
        kwargs = {"backend": backend} if backend else {}
        try:
            return moderngl.create_standalone_context(require=REQUIRED_VERSION, **kwargs)
        except Exception as exc:  # noqa: BLE001 - backends fail differently (ImportError, ValueError, ...)
            failures.append(f"{backend or 'default'}: {_first_line(exc)}")
    raise GLUnavailable(f"no OpenGL 3.3 context could be created ({'; '.join(failures)}); the GL renderer needs "
                        "a GPU driver or Mesa's llvmpipe with EGL")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _egl():
    """libEGL through ctypes with the three calls used here, or None when the library is absent."""
    import ctypes

    try:
        egl = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return None
    egl.eglGetCurrentContext.restype = ctypes.c_void_p
    egl.eglGetCurrentDisplay.restype = ctypes.c_void_p
    egl.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
    return egl


def egl_context_current() -> bool:
    """Whether an EGL context is current on this thread."""
    egl = _egl()
    return bool(egl is not None and egl.eglGetCurrentContext())


def unbind_current_egl() -> bool:
    """Make no EGL context current on this thread (True if one was). A standalone EGL context left current blocks
    a later windowed GLX context on the same thread (libglvnd refuses the switch: Qt then reports "Failed to make
    context current"), so a process that renders headless and then opens a window must unbind first."""
    egl = _egl()
    if egl is None or not egl.eglGetCurrentContext():
        return False
    return bool(egl.eglMakeCurrent(egl.eglGetCurrentDisplay(), None, None, None))
