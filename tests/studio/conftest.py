"""Qt tests run for real under Xvfb (pytest-xvfb); the viewer needs a 3.3 core GL format before the QApplication
exists, and nothing may touch the user's settings or library."""
from __future__ import annotations

import os

import pytest

from studio.app import set_gl_format

os.environ.setdefault("HF_HUB_OFFLINE", "1")
set_gl_format()


@pytest.fixture
def qsettings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "studio.ini"), QSettings.IniFormat)
