"""Export options: what to write (view PNG, multi-view sheet, turntable GIF/MP4, mesh GLB/OBJ/PLY, the avatar
file), its size and where. The export itself runs in a worker (studio.main_window)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLineEdit, QPushButton, QSpinBox, QVBoxLayout)

from engine.exports import EXPORT_KINDS, MAX_VIEW_RESOLUTION

# which options each kind takes (the rest are hidden)
OPTIONS = {"png": ("resolution", "background"), "sheet": ("resolution", "background"),
           "gif": ("resolution", "frames", "background"), "mp4": ("resolution", "frames", "background"),
           "glb": ("grid",), "obj": ("grid",), "ply": ("grid",), "safetensors": ()}


@dataclass
class ExportRequest:
    kind: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)


class ExportDialog(QDialog):
    def __init__(self, folder: Path, stem: str, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export avatar")
        self.kind = QComboBox()
        for kind, info in EXPORT_KINDS.items():
            self.kind.addItem(f"{kind.upper()} — {info.description}", kind)
        self.resolution = _spin(16, MAX_VIEW_RESOLUTION, 512)
        self.frames = _spin(2, 720, 36)
        self.grid = _spin(32, 512, 128)
        self.background = QComboBox()
        self.background.addItems(["white", "black", "transparent"])
        self.path = QLineEdit(str(Path(folder) / stem))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        where = QHBoxLayout()
        where.addWidget(self.path, 1)
        where.addWidget(browse)
        self.form = QFormLayout()
        self.form.addRow("Format", self.kind)
        self.form.addRow("Resolution", self.resolution)
        self.form.addRow("Frames", self.frames)
        self.form.addRow("Mesh grid", self.grid)
        self.form.addRow("Background", self.background)
        self.form.addRow("File", where)
        buttons = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(buttons)
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self._kind_changed()

    def _kind_changed(self) -> None:
        kind = self.kind.currentData()
        for name in ("resolution", "frames", "grid", "background"):
            self.form.setRowVisible(getattr(self, name), name in OPTIONS.get(kind, ()))
        self.path.setText(str(Path(self.path.text()).with_suffix(_suffix(kind))))

    def _browse(self) -> None:
        kind = self.kind.currentData()
        chosen, _ = QFileDialog.getSaveFileName(self, "Export to", self.path.text(), f"*{_suffix(kind)}")
        if chosen:
            self.path.setText(str(Path(chosen).with_suffix(_suffix(kind))))

    def request(self) -> ExportRequest:
        kind = self.kind.currentData()
        values = {"resolution": self.resolution.value(), "frames": self.frames.value(), "grid": self.grid.value(),
                  "background": self.background.currentText()}
        return ExportRequest(kind, Path(self.path.text()), {k: values[k] for k in OPTIONS.get(kind, ())})


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box


def _suffix(kind: str) -> str:
    return EXPORT_KINDS[kind].suffix
