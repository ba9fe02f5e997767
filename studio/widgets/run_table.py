"""The list of runs: name, kind, status, progress (a bar), start time, latest metrics. Rows are updated in place
(keyed by run folder) so the selection survives every poll."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QHeaderView, QStyle, QStyledItemDelegate,
                               QStyleOptionProgressBar, QTableWidget, QTableWidgetItem)

from studio.runs_model import RunRow

COLUMNS = ("Name", "Kind", "Status", "Progress", "Started", "Latest metrics")
PROGRESS_COLUMN = 3
STATE_COLOURS = {"running": "#2471a3", "starting": "#2471a3", "finished": "#1e8449", "failed": "#c0392b",
                 "stopped": "#b9770e"}


class ProgressDelegate(QStyledItemDelegate):
    """Paints (step, total) from the item's UserRole as a progress bar (no widget per row to create or update)."""

    def paint(self, painter, option, index) -> None:
        step, total = index.data(Qt.UserRole) or (None, None)
        bar = QStyleOptionProgressBar()
        bar.rect = QRect(option.rect.adjusted(2, 3, -2, -3))
        bar.minimum, bar.maximum = 0, max(1, int(total or 0)) if total else 0
        bar.progress = int(step or 0) if total else 0
        bar.text = index.data(Qt.DisplayRole) or ""
        bar.textVisible = True
        bar.state = option.state
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.CE_ProgressBar, bar, painter)


class RunTable(QTableWidget):
    current_run_changed = Signal(object)  # Path | None

    def __init__(self, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().hide()
        self.setItemDelegateForColumn(PROGRESS_COLUMN, ProgressDelegate(self))
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Interactive)
        header.setStretchLastSection(True)
        for column, width in enumerate((180, 90, 80, 120, 120)):
            self.setColumnWidth(column, width)
        self.rows: dict[Path, RunRow] = {}
        self._order: list[Path] = []
        self.itemSelectionChanged.connect(lambda: self.current_run_changed.emit(self.current_path()))

    def show_rows(self, rows: list[RunRow]) -> None:
        order = [row.path for row in rows]
        selected = set(self.selected_paths())
        if order != self._order:  # runs appeared or went: rebuild, keeping the selection
            self.blockSignals(True)
            self.setRowCount(len(rows))
            for r in range(len(rows)):
                for c in range(len(COLUMNS)):
                    self.setItem(r, c, QTableWidgetItem())
            self._order = order
            self.clearSelection()
            for r, path in enumerate(order):
                if path in selected:
                    self.selectRow(r)
            self.blockSignals(False)
        self.rows = {row.path: row for row in rows}
        for r, row in enumerate(rows):
            self._fill(r, row)
        if set(self.selected_paths()) != selected:
            self.current_run_changed.emit(self.current_path())

    def _fill(self, r: int, row: RunRow) -> None:
        total = row.total if isinstance(row.total, int) and row.total > 0 else None
        progress = f"{row.step if row.step is not None else 0}/{total if total else '?'}"
        texts = (row.name, row.kind_label, row.state, progress, _short_time(row.started), row.metrics_text())
        for c, text in enumerate(texts):
            item = self.item(r, c)
            if item.text() != text:
                item.setText(text)
        self.item(r, 0).setToolTip(str(row.path))
        status = self.item(r, 2)
        status.setForeground(QBrush(QColor(STATE_COLOURS.get(row.state, "#7f8c8d"))))
        status.setToolTip(row.reason or row.state)
        self.item(r, PROGRESS_COLUMN).setData(Qt.UserRole, (row.step, total))

    def selected_paths(self) -> list[Path]:
        rows = sorted({index.row() for index in self.selectionModel().selectedRows()})
        return [self._order[r] for r in rows if r < len(self._order)]

    def current_path(self) -> Path | None:
        paths = self.selected_paths()
        return paths[0] if paths else None

    def select_path(self, path: Path) -> None:
        if path in self._order:
            self.clearSelection()
            self.selectRow(self._order.index(path))

    def state_of(self, name: str) -> str | None:
        """The shown state of the run called `name` (tests, and the status bar)."""
        row = next((row for row in self.rows.values() if row.name == name), None)
        return row.state if row else None


def _short_time(stamp: str | None) -> str:
    return stamp.replace("T", " ")[:16] if stamp else "-"
