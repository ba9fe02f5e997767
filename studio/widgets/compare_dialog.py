"""Two avatars side by side from the same camera, each with the settings it was made with."""
from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtWidgets import QDialog, QGridLayout, QLabel

from engine.frames import to_uint8
from studio.widgets.portrait_panel import pil_to_pixmap

COMPARE_SIZE = 320


class CompareDialog(QDialog):
    def __init__(self, images: list[np.ndarray], captions: list[str], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare avatars")
        layout = QGridLayout(self)
        self.views = []
        for column, (image, caption) in enumerate(zip(images, captions)):
            view = QLabel()
            view.setPixmap(pil_to_pixmap(Image.fromarray(to_uint8(image, "white")), COMPARE_SIZE))
            text = QLabel(caption)
            text.setWordWrap(True)
            layout.addWidget(view, 0, column)
            layout.addWidget(text, 1, column)
            self.views.append(view)
