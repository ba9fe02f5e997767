"""Where the project's assets (shaders, sample portraits, the default model) live."""
from __future__ import annotations

import os
from pathlib import Path

ASSETS_DIR = Path(os.environ.get("RODINHD_ASSETS", Path(__file__).resolve().parents[1] / "assets"))


def asset_path(*parts: str) -> Path:
    path = ASSETS_DIR.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"asset {'/'.join(parts)} not found under {ASSETS_DIR} (set RODINHD_ASSETS?)")
    return path


def shader_source(name: str) -> str:
    return asset_path("shaders", name).read_text()
