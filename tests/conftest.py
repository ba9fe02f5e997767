"""Fixtures shared by every test package."""
from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on a busy 2-core machine two threads stall each other (steps up to 100×
    slower), and results stay bit-reproducible. Use with `pytestmark = pytest.mark.usefixtures(...)`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# llvmpipe: skip LLVM's optimiser for the generated decoder shaders (compiles ~3× faster, draws as fast; see
# studio/app.py). Must be set before the first GL context of the test process.
os.environ.setdefault("GALLIVM_PERF", "nopt")


@pytest.fixture(autouse=True, scope="module")
def _no_egl_context_left_current():
    """Headless GL tests leave their EGL context current on the main thread; the studio's windowed (GLX) contexts
    in later modules could then never be made current. Unbind after every module."""
    yield
    from engine.render.gl.context import unbind_current_egl

    unbind_current_egl()
