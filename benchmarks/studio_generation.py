"""What live x0 previews cost: one generation in the real studio window (worker thread + previews drawn by the GL
viewer on the UI thread) against the same `AvatarPipeline` call without a window, in the same process.

    xvfb-run -a .venv/bin/python benchmarks/studio_generation.py [--model assets/models/default]
        [--portrait assets/portraits/astronaut.png] [--runs 3]

Also prints how long the viewer takes to show the exact frame after the avatar arrives (bands of rows, at the
window's size) and the preparation time of the portrait.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "assets" / "models" / "default")
    p.add_argument("--portrait", type=Path, default=ROOT / "assets" / "portraits" / "astronaut.png")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size", default="1280x800")
    p.add_argument("--no-previews", action="store_true", help="do not draw x0 previews (what they cost)")
    p.add_argument("--no-progress", action="store_true", help="no per-step progress in the window either")
    args = p.parse_args()

    from studio.app import set_gl_format, wait_until  # also sets GALLIVM_PERF before any GL context

    set_gl_format()
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from engine.pipeline import AvatarPipeline
    from studio.library import Library
    from studio.main_window import MainWindow

    app = QApplication([])
    with tempfile.TemporaryDirectory() as scratch:
        window = MainWindow(args.model, Library(Path(scratch) / "lib"),
                            QSettings(str(Path(scratch) / "s.ini"), QSettings.IniFormat))
        window.resize(*(int(v) for v in args.size.split("x")))
        if args.no_progress:
            window._generation_progress = lambda progress: None
        if args.no_previews:  # the viewer ignores previews (the slot itself stays connected)
            show = window.viewer.show_planes
            window.viewer.show_planes = lambda planes, decoder, preview=False: None if preview else show(
                planes, decoder)
        window.show()
        wait_until(app, lambda: window.pipeline is not None and not window.busy(), 600)
        started = time.perf_counter()
        window.open_portrait(args.portrait)
        wait_until(app, lambda: not window.busy(), 600)
        prepare_s = time.perf_counter() - started
        prepared = window.state.prepared.image
        pipe = AvatarPipeline.from_pretrained(args.model)
        plain, studio, refine = [], [], []
        for run in range(args.runs):
            t0 = time.perf_counter()
            pipe(prepared, seed=run)
            plain.append(time.perf_counter() - t0)
            window.state.update_settings(seed=run)
            t0 = time.perf_counter()
            window.generate()
            wait_until(app, lambda: not window.busy(), 600)
            studio.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            wait_until(app, window.viewer.refined, 600)
            refine.append(time.perf_counter() - t0)
        window.close()
    plain_s, studio_s = statistics.median(plain), statistics.median(studio)
    print(f"model {args.model.name}, portrait {args.portrait.name}, window {args.size}, {args.runs} runs (median)")
    print(f"portrait preparation in the studio: {prepare_s:.2f} s")
    print(f"pipeline alone (baseline):          {plain_s:.2f} s")
    kind = "without previews" if args.no_previews else "with previews"
    print(f"studio generate ({kind}):{' ' * (17 - len(kind))}{studio_s:.2f} s   ratio {studio_s / plain_s:.2f}×")
    print(f"exact frame shown after:            {statistics.median(refine):.2f} s")


if __name__ == "__main__":
    main()
