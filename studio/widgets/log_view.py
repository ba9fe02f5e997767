"""A run's log: the tail of log.txt (the run's own log) or of launch.log (the process output: progress bars,
tracebacks), never more than the last 500 lines, and for a failed run its failure reason in red above it."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QTextCursor
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from studio.run_processes import OUTPUT_FILE
from studio.runs_model import RunRow, tail_lines

MAX_LINES = 500
SOURCES = (("Run log (log.txt)", "log.txt"), ("Process output (launch.log)", OUTPUT_FILE))


class LogView(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.source = QComboBox()
        for label, name in SOURCES:
            self.source.addItem(label, name)
        self.source.currentIndexChanged.connect(lambda _: self._reload(force=True))
        self.reason = QLabel()
        self.reason.setObjectName("failure_reason")
        self.reason.setWordWrap(True)
        self.reason.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.reason.setStyleSheet("color: #c0392b; font-weight: bold;")
        self.reason.hide()
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.text.setFont(QFont("monospace"))
        top = QHBoxLayout()
        top.addWidget(self.source)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.reason)
        layout.addWidget(self.text, 1)
        self.folder: Path | None = None
        self._stamp: tuple | None = None

    def show_run(self, row: RunRow | None) -> None:
        folder = row.path if row is not None else None
        if folder != self.folder:
            self.folder = folder
            # a run the studio launched that never made a log.txt (it failed early): show its output instead
            if folder is not None and not (folder / "log.txt").exists() and (folder / OUTPUT_FILE).exists():
                self.source.blockSignals(True)
                self.source.setCurrentIndex(1)
                self.source.blockSignals(False)
        failed = row is not None and row.state == "failed"
        self.reason.setVisible(failed)
        self.reason.setText(f"Failed: {row.reason or 'no reason recorded'}" if failed else "")
        self._reload()

    def _reload(self, force: bool = False) -> None:
        path = self.folder / self.source.currentData() if self.folder is not None else None
        try:
            stat = path.stat() if path is not None else None
            stamp = (path, stat.st_mtime_ns, stat.st_size) if stat else (path,)
        except OSError:
            stamp = (path,)
        if stamp == self._stamp and not force:
            return
        self._stamp = stamp
        lines = tail_lines(path, MAX_LINES) if path is not None else []
        self.text.setPlainText("\n".join(lines) if lines else "(nothing logged yet)")
        self.text.moveCursor(QTextCursor.End)
        self.text.ensureCursorVisible()
