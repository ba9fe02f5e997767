"""The portrait panel: drop or open a photo, see the source and the processed model input (face found, crop,
background removed), switch detection/matting, and override the crop by hand."""
from __future__ import annotations

from pathlib import Path

from PIL import Image
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from studio.state import StudioState

PREVIEW_SIZE = 160
DROP_HINT = "Drop a portrait here\nor press Ctrl+O"


def pil_to_pixmap(image: Image.Image, size: int = PREVIEW_SIZE) -> QPixmap:
    """A PIL image → QPixmap fitted into size×size (RGBA kept; a checkerless transparent background)."""
    rgba = image.convert("RGBA")
    rgba.thumbnail((size, size))
    data = rgba.tobytes()
    qimage = QImage(data, rgba.width, rgba.height, 4 * rgba.width, QImage.Format_RGBA8888)
    return QPixmap.fromImage(qimage.copy())  # copy: the QImage must not outlive `data`


def _preview_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setAlignment(Qt.AlignCenter)
    label.setMinimumSize(PREVIEW_SIZE, PREVIEW_SIZE)
    label.setFrameShape(QLabel.StyledPanel)
    return label


class PortraitPanel(QWidget):
    open_requested = Signal()
    crop_requested = Signal()
    options_changed = Signal(dict)

    def __init__(self, state: StudioState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.source_view = _preview_label(DROP_HINT)
        self.source_view.setToolTip("The photo as given")
        self.input_view = _preview_label("model input")
        self.input_view.setToolTip("What the model sees: face found, cropped, aligned, background removed")
        self.detect_box = QCheckBox("Detect and align the face")
        self.matte_box = QCheckBox("Remove the background")
        self.open_button = QPushButton("Open…")
        self.crop_button = QPushButton("Crop…")
        self.crop_button.setToolTip("Choose the square crop by hand (overrides face detection)")
        self.clear_crop_button = QPushButton("Automatic crop")
        self.info = QLabel("")
        self.info.setWordWrap(True)
        views = QHBoxLayout()
        views.addWidget(self.source_view)
        views.addWidget(self.input_view)
        buttons = QHBoxLayout()
        for button in (self.open_button, self.crop_button, self.clear_crop_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(views)
        layout.addWidget(self.detect_box)
        layout.addWidget(self.matte_box)
        layout.addLayout(buttons)
        layout.addWidget(self.info)
        layout.addStretch(1)
        self.open_button.clicked.connect(self.open_requested)
        self.crop_button.clicked.connect(self.crop_requested)
        self.clear_crop_button.clicked.connect(lambda: self.options_changed.emit({"crop": None}))
        self.detect_box.toggled.connect(lambda v: self.options_changed.emit({"detect": v}))
        self.matte_box.toggled.connect(lambda v: self.options_changed.emit({"matte": v}))
        state.subscribe(self._on_state)
        self._show_options()
        self._show_portrait()

    def _on_state(self, name: str) -> None:
        if name == "portrait":
            self._show_portrait()
        elif name == "prepared":
            self._show_prepared()
        elif name == "portrait_options":
            self._show_options()

    def _show_options(self) -> None:
        options = self.state.portrait_options
        for box, value in ((self.detect_box, options.detect), (self.matte_box, options.matte)):
            box.blockSignals(True)
            box.setChecked(value)
            box.blockSignals(False)
        self.clear_crop_button.setEnabled(options.crop is not None)

    def _show_portrait(self) -> None:
        path: Path | None = self.state.portrait
        self.crop_button.setEnabled(path is not None)
        if path is None:
            self.source_view.setPixmap(QPixmap())
            self.source_view.setText(DROP_HINT)
            return
        try:
            with Image.open(path) as image:
                self.source_view.setPixmap(pil_to_pixmap(image))
        except Exception:  # noqa: BLE001 - a photo PIL cannot show is reported by the preprocessing step
            self.source_view.setText(path.name)

    def _show_prepared(self) -> None:
        prepared = self.state.prepared
        if prepared is None:
            self.input_view.setPixmap(QPixmap())
            self.input_view.setText("model input")
            self.info.setText("")
            return
        self.input_view.setPixmap(pil_to_pixmap(prepared.image))
        self.info.setText(describe_preparation(prepared.record()))


def describe_preparation(record: dict) -> str:
    """A one-line account of what preprocessing did (for the panel and tooltips)."""
    parts = []
    face = record.get("face")
    if record.get("crop_source") == "manual" or record.get("manual_crop"):
        parts.append("manual crop")
    elif face:
        parts.append(f"face found ({record.get('faces_found', 1)} in photo)")
    else:
        parts.append("centre crop")
    angle = record.get("angle") or (record.get("crop") or {}).get("angle_degrees")
    if angle:
        parts.append(f"rolled {float(angle):+.1f}°")
    if record.get("matte"):
        parts.append(f"background removed ({record['matte']})")
    return " · ".join(parts)
