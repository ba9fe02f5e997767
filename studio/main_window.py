"""The studio window: viewer in the middle, portrait / generation / library docks, menus, toolbar, status bar.

Everything slow (loading the model, preparing a photo, generating, exporting) runs in a `Task` and reports to the
status bar; a user's mistake shows in the message bar above the viewer and never replaces the current avatar.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import (QColorDialog, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox,
                               QProgressBar, QToolBar, QVBoxLayout, QWidget)

from studio.library import Library
from studio.library_actions import LibraryActions
from studio.portrait_actions import PortraitActions
from studio.state import StudioState
from studio.text_actions import TextActions
from studio.widgets.generation_panel import GenerationPanel
from studio.widgets.library_panel import LibraryPanel
from studio.widgets.message_bar import MessageBar
from studio.widgets.portrait_panel import PortraitPanel
from studio.widgets.training_panel import TrainingPanel
from studio.widgets.viewer import AvatarViewer
from studio.worker import Task

MAX_RECENT = 8
THUMBNAIL_SIZE = 128
PREVIEW_INTERVAL_MS = 400


class MainWindow(PortraitActions, LibraryActions, TextActions, QMainWindow):
    def __init__(self, model: Path | None, library: Library, settings: QSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("RodinHD Studio")
        self.setAcceptDrops(True)
        self.state = StudioState()
        self.library = library
        self.settings = settings or QSettings("RodinHD", "Studio")
        self.pipeline = None
        self.tasks: dict[str, Task] = {}
        self._latest_preview = None
        self._preview_shown_at = 0.0
        self._build_widgets()
        self._build_actions()
        self._restore_layout()
        self.state.subscribe(self._on_state)
        self._update_enabled()
        if model is not None:
            self.load_model(model)
        else:
            self.message_bar.show_message("No model loaded: open one with File ▸ Open model…", "error")

    # ------------------------------------------------------------------------------------------ layout
    def _build_widgets(self) -> None:
        self.viewer = AvatarViewer(self.state)
        self.message_bar = MessageBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.viewer, 1)
        self.setCentralWidget(central)
        self.portrait_panel = PortraitPanel(self.state)
        self.generation_panel = GenerationPanel(self.state)
        self.library_panel = LibraryPanel(self.library)
        portrait_dock = self._dock("Portrait", self.portrait_panel, Qt.LeftDockWidgetArea)
        self._dock("Generation", self.generation_panel, Qt.RightDockWidgetArea)
        self._dock("Library", self.library_panel, Qt.RightDockWidgetArea)
        self._build_text_dock()
        self.tabifyDockWidget(portrait_dock, self.findChild(QDockWidget, "dock_text"))
        portrait_dock.raise_()
        # the training manager: a bottom dock, closed until asked for (View ▸ Training or the toolbar), so the
        # viewer keeps its room; float it for a window of its own. saveState() remembers where it was.
        self.training_panel = TrainingPanel(self.settings)
        self.training_dock = self._dock("Training", self.training_panel, Qt.BottomDockWidgetArea)
        self.training_dock.hide()
        self.training_dock.visibilityChanged.connect(self._size_training_dock)
        self.training_panel.message.connect(self.message_bar.show_message)
        self.training_panel.use_model_requested.connect(self.use_trained_model)
        self.status_label = QLabel("Ready")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.hide()
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self.portrait_panel.open_requested.connect(self.choose_portrait)
        self.portrait_panel.crop_requested.connect(self.choose_crop)
        self.portrait_panel.options_changed.connect(self.change_portrait_options)
        self.generation_panel.generate_requested.connect(self.generate)
        self.generation_panel.cancel_requested.connect(self.cancel)
        self.generation_panel.error.connect(lambda text: self.message_bar.show_message(text, "error"))
        self.library_panel.open_requested.connect(self.open_entry)
        self.library_panel.regenerate_requested.connect(self.regenerate_entry)
        self.library_panel.compare_requested.connect(self.compare_entries)
        self.library_panel.delete_requested.connect(self.delete_entry)
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.timeout.connect(self._show_latest_preview)

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot: Callable, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip or text)
        action.setToolTip(f"{tip or text} ({QKeySequence(shortcut).toString()})" if shortcut else (tip or text))
        action.triggered.connect(lambda *_: slot())
        return action

    def _build_actions(self) -> None:
        a = self.actions_by_name = {
            "open": self._action("&Open portrait…", self.choose_portrait, QKeySequence.Open, "Open a portrait photo"),
            "open_model": self._action("Open &model…", self.choose_model, None, "Load a model folder"),
            "export": self._action("&Export…", self.choose_export, "Ctrl+E", "Export the current avatar"),
            "quit": self._action("&Quit", self.close, QKeySequence.Quit, "Quit the studio"),
            "generate": self._action("&Generate", self.generate, "Ctrl+G", "Generate an avatar"),
            "cancel": self._action("&Cancel", self.cancel, Qt.Key_Escape, "Cancel the running work"),
            "front": self._action("&Front", lambda: self.state.view("front"), "1", "Front view"),
            "side": self._action("&Side", lambda: self.state.view("side"), "2", "Side view"),
            "back": self._action("&Back", lambda: self.state.view("back"), "3", "Back view"),
            "reset": self._action("&Reset camera", self.state.reset_camera, "0", "Reset the camera"),
            "turntable": self._action("&Turntable", self.toggle_turntable, "T", "Spin the avatar"),
            "background": self._action("Background &colour…", self.choose_background, None,
                                       "Viewer and export background colour"),
        }
        a["turntable"].setCheckable(True)
        a["quit"].setShortcuts([QKeySequence.Quit, QKeySequence("Ctrl+Q")])
        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        file_menu.addAction(a["open"])
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addAction(a["open_model"])
        file_menu.addAction(a["export"])
        file_menu.addSeparator()
        file_menu.addAction(a["quit"])
        generate_menu = menus.addMenu("&Generate")
        generate_menu.addActions([a["generate"], a["cancel"]])
        view_menu = menus.addMenu("&View")
        view_menu.addActions([a["front"], a["side"], a["back"], a["reset"], a["turntable"], a["background"]])
        view_menu.addSeparator()
        for dock in self.findChildren(QDockWidget):
            view_menu.addAction(dock.toggleViewAction())
        help_menu = menus.addMenu("&Help")
        help_menu.addAction(self._action("&About", self.about))
        toolbar = QToolBar("Main")
        toolbar.setObjectName("toolbar_main")
        toolbar.addActions([a["open"], a["generate"], a["cancel"], a["export"]])
        toolbar.addSeparator()
        toolbar.addActions([a["front"], a["side"], a["back"], a["reset"], a["turntable"]])
        toolbar.addSeparator()
        training = self.training_dock.toggleViewAction()
        training.setShortcut(QKeySequence("Ctrl+Shift+T"))
        training.setToolTip("Training runs: start, watch, stop, resume (Ctrl+Shift+T)")
        toolbar.addAction(training)
        self.addToolBar(toolbar)
        self._fill_recent()

    def _restore_layout(self) -> None:
        geometry, layout = self.settings.value("geometry"), self.settings.value("window_state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        if layout is not None:
            self.restoreState(layout)

    def _size_training_dock(self, visible: bool) -> None:
        """Opened docked with no room yet: give it about half the window's height."""
        dock = self.training_dock
        if visible and not dock.isFloating() and dock.height() < self.height() * 0.4:
            self.resizeDocks([dock], [self.height() // 2], Qt.Vertical)

    def closeEvent(self, event) -> None:
        self.training_panel.shutdown()  # runs keep training; the Training dock lists them again next time
        for task in list(self.tasks.values()):
            task.cancel()
            task.wait(10_000)
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        super().closeEvent(event)

    # ------------------------------------------------------------------------------------------ recent files
    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files") or []
        return [value] if isinstance(value, str) else list(value)

    def _remember(self, path: Path) -> None:
        files = [str(path)] + [f for f in self.recent_files() if f != str(path)]
        self.settings.setValue("recent_files", files[:MAX_RECENT])
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for name in self.recent_files():
            self.recent_menu.addAction(name, lambda checked=False, n=name: self.open_portrait(Path(n)))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    # ------------------------------------------------------------------------------------------ tasks
    def run_task(self, name: str, fn: Callable, on_success: Callable[[Any], None],
                 on_progress: Callable[[Any], None] | None = None, label: str = "",
                 on_done: Callable[[], None] | None = None) -> Task | None:
        """Start `fn(report)` in a worker unless a task of that name is running; outcomes go to the UI thread.
        Everything is connected before the thread starts (a fast task could otherwise finish unheard)."""
        if name in self.tasks:
            self.message_bar.show_message(f"{label or name} is already running", "info")
            return None
        task = Task(fn, name, self)
        self.tasks[name] = task
        task.succeeded.connect(on_success)
        if on_progress is not None:
            task.progressed.connect(on_progress)
        task.failed.connect(lambda text: self.message_bar.show_message(text, "error"))
        task.cancelled.connect(lambda: self.status_label.setText(f"{label or name} cancelled"))
        task.done.connect(lambda: self._task_done(name))
        if on_done is not None:
            task.done.connect(on_done)
        self.status_label.setText(f"{label or name}…")
        # no animated "busy" bar: on a software GL driver every animation frame recomposites the whole window
        # and takes CPU from the work itself; the bar appears when a task reports steps
        task.start()
        self._update_enabled()
        return task

    def _task_done(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        if task is not None:
            task.wait()
            task.deleteLater()
        if not self.tasks:
            self.progress.hide()
        if name == "generate":
            self.generation_panel.set_running(False)
            if self.viewer.showing_preview:  # cancelled or failed: back to the current avatar
                self.viewer.show_avatar(self.state.avatar)
        self._update_enabled()

    def busy(self) -> bool:
        return bool(self.tasks)

    def cancel(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        if self.viewer.turntable_running:
            self.toggle_turntable(False)

    def _update_enabled(self) -> None:
        generating = "generate" in self.tasks
        ready = (self.pipeline is not None and "model" not in self.tasks and "portrait" not in self.tasks
                 and (self.state.settings.unconditional or self.state.prepared is not None))
        self.generation_panel.set_running(generating, ready)
        self.actions_by_name["generate"].setEnabled(ready and not generating)
        self.actions_by_name["cancel"].setEnabled(bool(self.tasks) or self.viewer.turntable_running)
        self.actions_by_name["export"].setEnabled(self.state.avatar is not None)

    def _on_state(self, name: str) -> None:
        if name in ("prepared", "settings", "avatar"):
            self._update_enabled()

    # ------------------------------------------------------------------------------------------ model
    def load_model(self, path: Path) -> None:
        from engine.pipeline import AvatarPipeline

        def loaded(pipeline) -> None:
            self.pipeline = pipeline
            self.viewer.prepare_decoder(pipeline.decoder)
            self.status_label.setText(f"Model {Path(path).name} ({pipeline.model_hash()[:8]})")
            self._update_enabled()

        self.run_task("model", lambda report: AvatarPipeline.from_pretrained(path), loaded, label="Loading model")

    def use_trained_model(self, path: Path) -> None:
        """A model folder from the Training tab becomes the generation model."""
        self.message_bar.show_message(f"Loading the model {path}", "info")
        self.load_model(Path(path))

    def choose_model(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Model folder")
        if chosen:
            self.load_model(Path(chosen))

    # ------------------------------------------------------------------------------------------ generation
    def generate(self) -> None:
        from engine.portrait import portrait_hash

        if self.pipeline is None:
            self.message_bar.show_message("No model loaded: open one with File ▸ Open model…", "error")
            return
        unconditional = self.state.settings.unconditional
        prepared, source = self.state.prepared, self.state.portrait
        text = self.text_origins.get(source)  # the prompt, when the portrait came from text
        if not unconditional and prepared is None:
            self.message_bar.show_message("Open a portrait first (Ctrl+O or drop one on the window), or tick "
                                          "Unconditional", "error")
            return
        self.state.seed_for_next_run()
        kwargs = self.state.settings.pipeline_kwargs()
        pipeline, library = self.pipeline, self.library

        def job(report):
            callback = lambda progress: report(progress)  # noqa: E731 - False from report cancels the sampler
            if unconditional:
                avatar = pipeline.unconditional(callback=callback, **kwargs)
            else:
                avatar = pipeline(prepared.image, callback=callback, **kwargs)
                # as `rodinhd generate` records it: the source photo, its hash, and what preprocessing did
                avatar.metadata.update(input=str(source), input_hash=portrait_hash(source)[:16],
                                       preprocess=prepared.record())
                if text is not None:
                    avatar.metadata["text"] = text
            thumbnail = avatar.render_view(resolution=THUMBNAIL_SIZE)
            entry = library.add(avatar, thumbnail, None if unconditional else prepared.image)
            return avatar, entry

        task = self.run_task("generate", job, self._generated, self._generation_progress, label="Generating")
        if task is not None:
            self.generation_panel.set_running(True)
            self.message_bar.clear()

    def _generation_progress(self, progress) -> None:
        self._latest_preview = progress
        self.generation_panel.show_progress(progress.step, progress.total)
        self.status_label.setText(f"Generating: {progress.stage} step {progress.step}/{progress.total}")
        if not self._preview_timer.isActive():
            # only the newest preview is drawn, at most every PREVIEW_INTERVAL_MS: drawing takes CPU from sampling
            wait = PREVIEW_INTERVAL_MS - (time.perf_counter() - self._preview_shown_at) * 1000
            self._preview_timer.start(max(0, int(wait)))

    def _show_latest_preview(self) -> None:
        progress = self._latest_preview
        if progress is not None and self.pipeline is not None and "generate" in self.tasks:
            if not bool(progress.preview.isfinite().all()):  # a diverging sample: the pipeline's check reports it
                return
            self.viewer.show_planes(progress.preview, self.pipeline.decoder, preview=True)
            self._preview_shown_at = time.perf_counter()

    def _generated(self, result) -> None:
        avatar, entry = result
        self.state.set_avatar(avatar, entry.folder)
        self.library_panel.refresh()
        timing = avatar.metadata.get("timings", {}).get("total_s")
        self.status_label.setText(f"Generated seed {avatar.metadata.get('seed')} in {timing:.1f} s"
                                  if timing is not None else "Generated")

    # ------------------------------------------------------------------------------------------ export
    def choose_export(self) -> None:
        from studio.widgets.export_dialog import ExportDialog

        if self.state.avatar is None:
            self.message_bar.show_message("Nothing to export yet: generate or open an avatar", "error")
            return
        folder = Path(self.settings.value("export_folder") or Path.home())
        dialog = ExportDialog(folder, f"avatar_seed{self.state.avatar.metadata.get('seed', 0)}", self)
        if dialog.exec():
            request = dialog.request()
            self.settings.setValue("export_folder", str(request.path.parent))
            self.export_current(request.kind, request.path, **request.options)

    def export_current(self, kind: str, path: Path, **options) -> Task | None:
        """Write the current avatar as `kind` to `path` in a worker (progress in the status bar, Esc cancels)."""
        avatar = self.state.avatar
        if avatar is None:
            self.message_bar.show_message("Nothing to export yet: generate or open an avatar", "error")
            return None
        camera = self.state.camera.c2w()

        from engine.exports import export

        def job(report):
            extra = {"png": {"c2w": camera}, "sheet": {}, "safetensors": {}}.get(kind)
            if extra is None:  # turntables and meshes report progress; False from report cancels them
                extra = {"progress": lambda i, n: report((i, n))}
            started = time.perf_counter()
            export(avatar, Path(path), kind, **options, **extra)
            return Path(path), time.perf_counter() - started

        def progressed(step) -> None:
            self.progress.setRange(0, step[1])
            self.progress.setValue(step[0])
            self.progress.show()

        def written(result) -> None:
            out, seconds = result
            self.status_label.setText(f"Exported {out} in {seconds:.1f} s")
            self.message_bar.show_message(f"Exported {out}", "info")

        return self.run_task("export", job, written, progressed, label=f"Exporting {kind.upper()}")

    # ------------------------------------------------------------------------------------------ view
    def toggle_turntable(self, running: bool | None = None) -> None:
        running = not self.viewer.turntable_running if running is None else running
        self.viewer.set_turntable(running)
        self.actions_by_name["turntable"].setChecked(running)
        self._update_enabled()

    def choose_background(self) -> None:
        r, g, b = (round(c * 255) for c in self.state.background)
        colour = QColorDialog.getColor(QColor(r, g, b), self, "Background colour")
        if colour.isValid():
            self.state.set_background((colour.redF(), colour.greenF(), colour.blueF()))

    def about(self) -> None:
        QMessageBox.about(self, "RodinHD Studio", "Portrait → 3D avatar with cascaded triplane diffusion "
                          "(RodinHD, ECCV 2024). Open source: engine, training and this studio.")
