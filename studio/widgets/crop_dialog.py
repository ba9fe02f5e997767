"""Manual crop: drag a square on the photo (or type x, y, size); the result overrides face detection."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QSpinBox, QVBoxLayout, QWidget

from studio.widgets.portrait_panel import pil_to_pixmap

VIEW_SIZE = 480


class _CropCanvas(QWidget):
    """The photo scaled to fit, with the square drawn over it; dragging draws a new square from the press point."""

    def __init__(self, image: Image.Image, dialog: "CropDialog") -> None:
        super().__init__()
        self.pixmap = pil_to_pixmap(image, VIEW_SIZE)
        self.scale = self.pixmap.width() / image.width
        self.dialog = dialog
        self.setFixedSize(self.pixmap.size())
        self._anchor: QPointF | None = None

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.drawPixmap(0, 0, self.pixmap)
        x, y, size = self.dialog.crop()
        painter.setPen(QPen(QColor(255, 200, 0), 2))
        painter.drawRect(QRectF(x * self.scale, y * self.scale, size * self.scale, size * self.scale))

    def mousePressEvent(self, event) -> None:
        self._anchor = event.position()

    def mouseMoveEvent(self, event) -> None:
        if self._anchor is None:
            return
        delta = event.position() - self._anchor
        side = max(abs(delta.x()), abs(delta.y()))
        left = self._anchor.x() if delta.x() >= 0 else self._anchor.x() - side
        top = self._anchor.y() if delta.y() >= 0 else self._anchor.y() - side
        self.dialog.set_crop(round(left / self.scale), round(top / self.scale), round(side / self.scale))

    def mouseReleaseEvent(self, event) -> None:
        self._anchor = None


class CropDialog(QDialog):
    def __init__(self, path: Path, initial: tuple[int, int, int] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Crop {path.name}")
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGBA")
        side = min(image.size)
        initial = initial or ((image.width - side) // 2, (image.height - side) // 2, side)
        self.boxes = []
        form = QFormLayout()
        limit = 4 * max(image.size)  # a crop may reach past the photo (padded transparent)
        for label, value, low in (("x", initial[0], -limit), ("y", initial[1], -limit), ("size", initial[2], 8)):
            box = QSpinBox()
            box.setRange(low, limit)
            box.setValue(value)
            box.valueChanged.connect(lambda _: self.canvas.update())
            form.addRow(label, box)
            self.boxes.append(box)
        self.canvas = _CropCanvas(image, self)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.canvas, 0, Qt.AlignCenter)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def crop(self) -> tuple[int, int, int]:
        return tuple(box.value() for box in self.boxes)

    def set_crop(self, x: int, y: int, size: int) -> None:
        for box, value in zip(self.boxes, (x, y, max(8, size))):
            box.setValue(value)
