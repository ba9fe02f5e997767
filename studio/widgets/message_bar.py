"""A dismissible message line above the viewer: errors and notices without modal dialogs (nothing blocks, and
headless tests can read what the user would see)."""
from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

STYLES = {"error": "background:#f8d7da; color:#58151c;", "info": "background:#d1e7dd; color:#0a3622;"}


class MessageBar(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.level = ""
        self.history: list[tuple[str, str]] = []
        self.hide()

    def show_message(self, text: str, level: str = "info") -> None:
        self.level = level
        self.history.append((level, text))
        self.label.setText(text)
        self.setStyleSheet(f"QWidget {{ {STYLES.get(level, '')} }}")
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() or self.level else ""

    def clear(self) -> None:
        self.level = ""
        self.label.setText("")
        self.hide()
