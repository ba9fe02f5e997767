"""The newest sample images a run wrote into samples/, refreshed when new ones appear."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from studio.runs_model import newest_images

THUMB = 160
SHOWN = 6


class SamplesView(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.folder: Path | None = None
        self.shown: list[tuple[Path, int]] = []  # (file, mtime_ns): reloaded only when this changes
        self.caption = QLabel("No samples yet")
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setResizeMode(QListWidget.Adjust)
        self.list.setMovement(QListWidget.Static)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.list, 1)

    def set_folder(self, folder: Path | None) -> None:
        if folder != self.folder:
            self.folder, self.shown = folder, []
            self.list.clear()
        self.refresh()

    def refresh(self) -> None:
        images = newest_images(self.folder, SHOWN) if self.folder is not None else []
        stamped = [(p, _mtime_ns(p)) for p in images]
        if stamped == self.shown:
            return
        self.shown = stamped
        self.list.clear()
        for path, _ in stamped:
            pixmap = QPixmap(str(path))
            if pixmap.isNull():  # still being written, or not an image after all: try again next poll
                self.shown = []
                continue
            item = QListWidgetItem(QIcon(pixmap.scaled(THUMB, THUMB, Qt.KeepAspectRatio, Qt.SmoothTransformation)),
                                   path.name)
            item.setToolTip(str(path))
            self.list.addItem(item)
        self.caption.setText(f"Newest {len(stamped)} sample(s) in {self.folder}" if stamped else "No samples yet")


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
