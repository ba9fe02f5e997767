"""The Training dock: the runs under a runs folder (kept in QSettings "runs_folder"), polled every second so runs
started from the command line appear too; New run, Stop, Resume, Open folder, Delete and Use this model; the
selected run's curves, samples and log below.

Every run is its own process (studio.run_processes): the studio never waits on one, and a run that crashes or is
killed only changes what its row shows.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import QProcess, QProcessEnvironment, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMessageBox, QPushButton, QSplitter, QVBoxLayout,
                               QWidget)

from studio.launch_command import LaunchPlan
from studio.model_from_run import ModelChoice, model_choice
from studio.run_processes import RunProcesses, child_environment
from studio.runs_model import RunRow, RunsWatcher
from studio.widgets.new_run_dialog import NewRunDialog
from studio.widgets.run_details import RunDetails
from studio.widgets.run_table import RunTable

POLL_MS = 1000
SETTINGS_KEY = "runs_folder"


class TrainingPanel(QWidget):
    message = Signal(str, str)             # text, level (info | error), for the window's message bar
    use_model_requested = Signal(object)   # Path of a model folder the pipeline can load

    def __init__(self, settings, parent=None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.processes = RunProcesses()
        self.watcher = RunsWatcher(Path(settings.value(SETTINGS_KEY) or Path.cwd() / "runs"))
        self.new_run_dialog: NewRunDialog | None = None
        self.builder: QProcess | None = None
        self.folder_label = QLabel()
        self.folder_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        change = QPushButton("Change…")
        change.setToolTip("Choose the folder that holds (or will hold) your runs")
        change.clicked.connect(self.choose_runs_folder)
        self.buttons = {name: QPushButton(text) for name, text in (
            ("new", "New run…"), ("stop", "Stop"), ("resume", "Resume"), ("open", "Open folder"),
            ("delete", "Delete"), ("use", "Use this model"))}
        handlers = {"new": self.new_run, "stop": self.stop_selected, "resume": self.resume_selected,
                    "open": self.open_selected, "delete": self.delete_selected, "use": self.use_selected}
        for name, button in self.buttons.items():
            button.clicked.connect(lambda *_, h=handlers[name]: h())
        self.buttons["new"].setToolTip("Start a training run in its own process")
        self.buttons["stop"].setToolTip("Ask the run to save a checkpoint and exit (killed after 20 s)")
        self.buttons["use"].setToolTip("Make a finished base run (plus, Ctrl+click, its upsample run) the "
                                       "generation model")
        top = QHBoxLayout()
        top.addWidget(QLabel("Runs folder:"))
        top.addWidget(self.folder_label, 1)
        top.addWidget(change)
        actions = QHBoxLayout()
        for button in self.buttons.values():
            actions.addWidget(button)
        actions.addStretch(1)
        self.table = RunTable()
        self.details = RunDetails()
        self.splitter = QSplitter(Qt.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.details)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(actions)
        layout.addWidget(self.splitter, 1)
        self.table.current_run_changed.connect(lambda _: self._show_current())
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        self._show_folder()
        self.poll(force=True)

    # ------------------------------------------------------------------------------------------------ polling
    def poll(self, force: bool = False) -> None:
        """Reap our processes; while the tab is visible (or when forced), re-read what changed and show it."""
        ended = self.processes.tick()
        if not (force or ended or self.isVisible()):
            return
        self._show_folder()
        self.table.show_rows(self.watcher.rows())
        self._show_current()
        for folder in ended:  # say how the runs this studio started ended
            row = self.table.rows.get(folder)
            if row is not None and row.state == "failed":
                self.message.emit(f"Run {row.name} failed: {row.reason}", "error")
            elif row is not None and row.state in ("finished", "stopped"):
                self.message.emit(f"Run {row.name} {row.state}", "info")

    def resizeEvent(self, event) -> None:
        """Docked at the bottom (wide and low): list and details side by side; floating or tall: stacked."""
        super().resizeEvent(event)
        orientation = Qt.Horizontal if self.width() > 1.8 * self.height() else Qt.Vertical
        if orientation != self.splitter.orientation():
            self.splitter.setOrientation(orientation)
            self.splitter.setSizes([2, 3] if orientation == Qt.Horizontal else [1, 3])

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.poll(force=True)

    def shutdown(self) -> None:
        """The window closes: stop polling. Runs keep going (each in its own session) and are listed next time."""
        self.timer.stop()

    def current_row(self) -> RunRow | None:
        path = self.table.current_path()
        return self.table.rows.get(path) if path is not None else None

    def _show_current(self) -> None:
        row = self.current_row()
        self.details.show_run(row)
        selected = self.table.selected_paths()
        self.buttons["stop"].setEnabled(row is not None and row.active and row.pid is not None)
        self.buttons["resume"].setEnabled(row is not None and row.resume is not None)
        self.buttons["resume"].setToolTip(f"Cannot resume: {row.resume_block}" if row is not None and row.resume_block
                                          else "Start the run again where it stopped (--resume)")
        self.buttons["open"].setEnabled(row is not None)
        self.buttons["delete"].setEnabled(row is not None and not row.active and not row.extra.get("process_alive"))
        self.buttons["use"].setEnabled(bool(selected) and (self.builder is None
                                                           or self.builder.state() == QProcess.NotRunning))

    # ------------------------------------------------------------------------------------------- runs folder
    def runs_folder(self) -> Path:
        return self.watcher.root

    def set_runs_folder(self, folder: Path) -> None:
        self.settings.setValue(SETTINGS_KEY, str(folder))
        self.watcher = RunsWatcher(Path(folder))
        self._show_folder()
        self.poll(force=True)

    def choose_runs_folder(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Runs folder", str(self.runs_folder()))
        if chosen:
            self.set_runs_folder(Path(chosen))

    def _show_folder(self) -> None:
        root = self.runs_folder()
        note = "" if root.is_dir() else ("  (not a folder: choose another)" if root.exists()
                                         else "  (does not exist yet: created by the first run)")
        self.folder_label.setText(f"{root}{note}")

    # -------------------------------------------------------------------------------------------------- runs
    def new_run(self) -> NewRunDialog:
        self.new_run_dialog = NewRunDialog(self.runs_folder(), self.launch, self.settings, self)
        self.new_run_dialog.open()  # window-modal, not blocking the event loop: polling goes on
        return self.new_run_dialog

    def launch(self, plan: LaunchPlan) -> str | None:
        """Start a planned run; an error text when it could not start."""
        try:
            self.processes.start(plan.out, plan.argv, plan.kind, plan.total)
        except OSError as exc:
            return f"could not start the run: {exc}"
        self.message.emit(f"Started {plan.out.name}", "info")
        self.poll(force=True)
        self.table.select_path(plan.out)
        return None

    def stop_selected(self) -> None:
        row = self.current_row()
        if row is not None and row.active:
            self.message.emit(self.processes.stop(row.path, row.pid), "info")
            self.poll(force=True)

    def resume_selected(self) -> None:
        row = self.current_row()
        if row is None or row.resume is None:
            return
        launch = row.launch or {}
        try:
            self.processes.start(row.path, row.resume, launch.get("kind") or row.kind or "?", launch.get("total"),
                                 Path(launch["cwd"]) if launch.get("cwd") else row.resume_cwd)
        except OSError as exc:
            self.message.emit(f"Could not resume {row.name}: {exc}", "error")
            return
        self.message.emit(f"Resumed {row.name}", "info")
        self.poll(force=True)

    def open_selected(self) -> None:
        row = self.current_row()
        if row is not None and not QDesktopServices.openUrl(QUrl.fromLocalFile(str(row.path))):
            self.message.emit(f"Could not open {row.path} (no file manager?)", "error")

    def delete_selected(self) -> None:
        row = self.current_row()
        if row is None:
            return
        fresh = self.watcher.row(row.path)
        if fresh.active or self.processes.is_running(row.path):
            self.message.emit(f"{row.name} is running: stop it before deleting it", "error")
            return
        answer = QMessageBox.question(self, "Delete run", f"Delete the run folder {row.path} and everything in it?")
        if answer != QMessageBox.Yes:
            return
        try:
            shutil.rmtree(row.path)
        except OSError as exc:
            self.message.emit(f"Could not delete {row.path}: {exc}", "error")
        self.poll(force=True)

    # ------------------------------------------------------------------------------------------ use the model
    def use_selected(self) -> None:
        chosen = [(p, self.table.rows[p].kind) for p in self.table.selected_paths() if p in self.table.rows]
        choice = model_choice(chosen)
        if choice.action == "load":
            self.use_model_requested.emit(choice.model)
        elif choice.action == "build":
            self._build_model(choice)
        else:
            self.message.emit(choice.message, "error")

    def _build_model(self, choice: ModelChoice) -> None:
        """`rodinhd model build` in a QProcess (seconds); the model is renamed into place only when complete."""
        shutil.rmtree(choice.building, ignore_errors=True)  # a build that was interrupted earlier
        process = QProcess(self)
        environment = QProcessEnvironment()
        for key, value in child_environment().items():
            environment.insert(key, value)
        process.setProcessEnvironment(environment)
        process.setProcessChannelMode(QProcess.MergedChannels)
        process.finished.connect(lambda code, status: self._model_built(process, choice, code, status))
        process.errorOccurred.connect(lambda error: self._model_build_error(process, error))
        self.builder = process
        self.message.emit(f"Building a model from {choice.model.parent.name} (rodinhd model build)…", "info")
        process.start(choice.argv[0], choice.argv[1:])
        self._show_current()

    def _model_built(self, process: QProcess, choice: ModelChoice, code: int, status) -> None:
        output = bytes(process.readAll()).decode("utf-8", errors="replace").strip().splitlines()
        if status == QProcess.NormalExit and code == 0 and (choice.building / "model_index.json").is_file():
            choice.building.replace(choice.model)
            self.use_model_requested.emit(choice.model)
        else:
            shutil.rmtree(choice.building, ignore_errors=True)
            reason = output[-1] if output else f"exit code {code}"
            self.message.emit(f"Could not build a model from {choice.model.parent.name}: {reason}", "error")
        self.builder = None
        self._show_current()

    def _model_build_error(self, process: QProcess, error) -> None:
        if error == QProcess.FailedToStart:
            self.message.emit(f"Could not start rodinhd model build: {process.errorString()}", "error")
            self.builder = None
            self._show_current()
