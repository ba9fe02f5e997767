"""`rodinhd-studio`: the desktop app.

    rodinhd-studio [--model DIR] [--portrait FILE] [--library DIR] [--screenshot PATH]

`--screenshot PATH` shows the window, generates from `--portrait` if given, waits for the exact frame in the viewer,
saves the window as a PNG and exits (how the README picture is made; works under Xvfb).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Mesa's software rasteriser (llvmpipe) spends 10-16 s optimising the generated decoder shader; unoptimised it
# compiles in ~4 s and draws as fast (benchmarks/viewer.py). Read at the first GL context; GPU drivers ignore it.
os.environ.setdefault("GALLIVM_PERF", "nopt")

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "models" / "default"
SCREENSHOT_TIMEOUT_S = 600


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rodinhd-studio", description="RodinHD Studio: portrait → 3D avatar, live.")
    p.add_argument("--model", type=Path, default=None,
                   help=f"model folder (default: the shipped model, {DEFAULT_MODEL})")
    p.add_argument("--portrait", type=Path, help="open this portrait at start")
    p.add_argument("--library", type=Path, help="library folder (default: the user's app-data folder)")
    p.add_argument("--screenshot", type=Path, metavar="PATH",
                   help="save the window to PATH (PNG) — after generating, if --portrait is given — and exit")
    p.add_argument("--size", default="1280x800", help="window size for --screenshot, WxH")
    return p.parse_args(argv)


def set_gl_format() -> None:
    """The viewer needs a 3.3 core context; the default format must be set before the QApplication exists."""
    from PySide6.QtGui import QSurfaceFormat

    fmt = QSurfaceFormat()
    fmt.setVersion(3, 3)
    fmt.setProfile(QSurfaceFormat.CoreProfile)
    fmt.setDepthBufferSize(24)
    QSurfaceFormat.setDefaultFormat(fmt)


def default_library() -> Path:
    from PySide6.QtCore import QStandardPaths

    if os.environ.get("RODINHD_LIBRARY"):
        return Path(os.environ["RODINHD_LIBRARY"])
    return Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)) / "library"


def create_window(model: Path | None, library_root: Path, settings=None):
    from studio.library import Library
    from studio.main_window import MainWindow

    return MainWindow(model, Library(library_root), settings)


def wait_until(app, predicate, timeout_s: float) -> bool:
    """Run the event loop until `predicate()` holds or the time is up."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        app.processEvents()
        time.sleep(0.01)
    return True


def take_screenshot(app, window, portrait: Path | None, path: Path) -> int:
    """Generate (if a portrait is given), wait for the refined frame, save the window; 0 on success."""
    if not wait_until(app, lambda: not window.busy(), SCREENSHOT_TIMEOUT_S):
        return _fail("the model did not load in time")
    if window.pipeline is None:
        return _fail(window.message_bar.text() or "no model loaded")
    if portrait is not None:
        window.open_portrait(portrait)
        wait_until(app, lambda: not window.busy(), SCREENSHOT_TIMEOUT_S)
        if window.state.prepared is None:
            return _fail(window.message_bar.text() or f"{portrait}: could not be prepared")
        window.generate()
        wait_until(app, lambda: not window.busy(), SCREENSHOT_TIMEOUT_S)
        if window.state.avatar is None:
            return _fail(window.message_bar.text() or "generation failed")
    if window.state.avatar is not None and not wait_until(app, window.viewer.refined, SCREENSHOT_TIMEOUT_S):
        return _fail("the viewer did not finish its exact frame")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    if not window.grab().save(str(tmp), "PNG"):
        return _fail(f"could not write {path}")
    tmp.replace(path)
    print(f"wrote {path}")
    return 0


def _fail(message: str) -> int:
    print(f"rodinhd-studio: error: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_gl_format()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("RodinHD")
    app.setApplicationName("Studio")
    app.setStyle("Fusion")  # Fusion follows the system's light/dark scheme on every platform
    model = args.model or (DEFAULT_MODEL if DEFAULT_MODEL.is_dir() else None)
    if args.portrait is not None and not args.portrait.is_file():
        return _fail(f"{args.portrait}: no such portrait file")
    if args.screenshot:
        return screenshot_session(app, model, args)
    window = create_window(model, args.library or default_library())
    window.show()
    if args.portrait is not None:
        window.open_portrait(args.portrait)
    return app.exec()


def screenshot_session(app, model: Path | None, args) -> int:
    """A window with throw-away settings (a screenshot never changes the user's saved layout or recent files)."""
    import tempfile

    from PySide6.QtCore import QSettings

    with tempfile.TemporaryDirectory() as scratch:
        settings = QSettings(str(Path(scratch) / "studio.ini"), QSettings.IniFormat)
        window = create_window(model, args.library or Path(scratch) / "library", settings)
        window.resize(*_size(args.size))
        window.show()
        code = take_screenshot(app, window, args.portrait, args.screenshot)
        window.close()
        return code


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"rodinhd-studio: error: --size must be WxH, e.g. 1280x800 (got {text!r})") from None
    return max(640, width), max(480, height)


if __name__ == "__main__":
    sys.exit(main())
