"""The library: every generated avatar as a thumbnail; open it, regenerate it with the same seed and settings,
compare two side by side, or delete it."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from studio.library import Library, LibraryEntry

THUMB = 96


class LibraryPanel(QWidget):
    open_requested = Signal(object)  # LibraryEntry
    regenerate_requested = Signal(object)
    compare_requested = Signal(object, object)
    delete_requested = Signal(object)

    def __init__(self, library: Library, parent=None) -> None:
        super().__init__(parent)
        self.library = library
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setResizeMode(QListWidget.Adjust)
        self.list.setSelectionMode(QListWidget.ExtendedSelection)
        self.list.setMovement(QListWidget.Static)
        self.list.itemDoubleClicked.connect(lambda item: self.open_requested.emit(item.data(Qt.UserRole)))
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self.open_button = QPushButton("Open")
        self.regenerate_button = QPushButton("Regenerate")
        self.regenerate_button.setToolTip("Generate again from the same input, seed and settings")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Select two avatars to see them side by side")
        self.delete_button = QPushButton("Delete")
        self.open_button.clicked.connect(lambda: self._emit_single(self.open_requested))
        self.regenerate_button.clicked.connect(lambda: self._emit_single(self.regenerate_requested))
        self.compare_button.clicked.connect(self._compare)
        self.delete_button.clicked.connect(lambda: self._emit_single(self.delete_requested))
        buttons = QHBoxLayout()
        for button in (self.open_button, self.regenerate_button, self.compare_button, self.delete_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for entry in self.library.entries():
            item = QListWidgetItem(entry.label())
            if entry.thumbnail is not None:
                item.setIcon(QIcon(QPixmap(str(entry.thumbnail))))
            item.setToolTip(f"{entry.name}\n{entry.summary()}")
            item.setData(Qt.UserRole, entry)
            self.list.addItem(item)
        self._update_buttons()

    def selected(self) -> list[LibraryEntry]:
        return [item.data(Qt.UserRole) for item in self.list.selectedItems()]

    def _update_buttons(self) -> None:
        count = len(self.selected())
        for button in (self.open_button, self.regenerate_button, self.delete_button):
            button.setEnabled(count == 1)
        self.compare_button.setEnabled(count == 2)

    def _emit_single(self, signal) -> None:
        chosen = self.selected()
        if len(chosen) == 1:
            signal.emit(chosen[0])

    def _compare(self) -> None:
        chosen = self.selected()
        if len(chosen) == 2:
            self.compare_requested.emit(chosen[0], chosen[1])
