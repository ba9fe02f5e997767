"""Live curves of a run (pyqtgraph): one small plot per picked metric (losses, PSNR, learning rate, … — whatever
numeric keys the run logs), x axes linked; for stage-1 fitting, the forgetting monitor: the held-out PSNR of each
early avatar after every visit (`psnr/<avatar>`, the paper's Fig. 2)."""
from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QListWidget, QListWidgetItem, QSplitter, QVBoxLayout,
                               QWidget)

from studio.metrics_series import curve_keys, default_picks, forgetting_keys, series

FORGETTING = "forgetting"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


class MetricsPlot(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.records: list[dict[str, Any]] = []
        self.picked: set[str] | None = None   # None: not chosen by the user yet (defaults apply)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.plots: dict[str, pg.PlotItem] = {}
        self.keys_list = QListWidget()
        self.keys_list.setMaximumWidth(140)
        self.keys_list.setToolTip("Tick the metrics to plot")
        self.keys_list.itemChanged.connect(self._pick_changed)
        self.log_y = QCheckBox("log y")
        self.log_y.setToolTip("Logarithmic value axes (losses)")
        self.log_y.toggled.connect(lambda on: [p.setLogMode(y=on) for k, p in self.plots.items() if k != FORGETTING])
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        self.forgetting = pg.GraphicsLayoutWidget()  # beside the metrics, shown when the run logs psnr/<avatar>
        self.forgetting.setBackground("w")
        self.forgetting.hide()
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.graphics)
        self.splitter.addWidget(self.forgetting)
        side = QVBoxLayout()
        side.addWidget(self.keys_list, 1)
        side.addWidget(self.log_y)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(side)
        layout.addWidget(self.splitter, 1)

    def clear(self) -> None:
        self.records, self.picked = [], None
        self.keys_list.clear()
        self._rebuild([])

    def set_records(self, records: list[dict[str, Any]]) -> None:
        """Show these records (the whole metrics file so far); curves are updated, plots rebuilt only when the
        set of shown metrics changes."""
        self.records = records
        keys = curve_keys(records)
        self._sync_key_list(keys)
        shown = [k for k in keys if k in (self.picked if self.picked is not None else set(default_picks(keys)))]
        forgetting = forgetting_keys(records)
        wanted = shown + ([FORGETTING] if forgetting else [])
        if wanted != list(self.plots):
            self._rebuild(shown, forgetting)
        for key in shown:
            self.curves[key].setData(*series(records, key))
        for key in forgetting:
            if key not in self.curves:  # an avatar seen for the first time
                self._add_forgetting_curve(key, len(self.curves))
            self.curves[key].setData(*series(records, key))

    def curve_length(self, key: str) -> int:
        """Points of one curve (tests wait on it)."""
        curve = self.curves.get(key)
        if curve is None:
            return 0
        x, _ = curve.getData()
        return 0 if x is None else len(x)

    # --------------------------------------------------------------------------------------------- internals
    def _sync_key_list(self, keys: list[str]) -> None:
        have = [self.keys_list.item(i).text() for i in range(self.keys_list.count())]
        if have == keys:
            return
        picked = self.picked if self.picked is not None else set(default_picks(keys))
        self.keys_list.blockSignals(True)
        self.keys_list.clear()
        for key in keys:
            item = QListWidgetItem(key)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if key in picked else Qt.Unchecked)
            self.keys_list.addItem(item)
        self.keys_list.blockSignals(False)

    def _pick_changed(self, _item) -> None:
        self.picked = {self.keys_list.item(i).text() for i in range(self.keys_list.count())
                       if self.keys_list.item(i).checkState() == Qt.Checked}
        self.set_records(self.records)

    def _rebuild(self, shown: list[str], forgetting: list[str] = ()) -> None:
        self.graphics.clear()
        self.forgetting.clear()
        self.plots, self.curves = {}, {}
        first = None
        columns = 2 if len(shown) > 2 else 1
        for index, key in enumerate(shown):
            plot = self.graphics.addPlot(row=index // columns, col=index % columns)
            plot.setTitle(key, size="9pt")
            plot.showGrid(x=True, y=True, alpha=0.3)
            plot.setLogMode(y=self.log_y.isChecked())
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            self.plots[key] = plot
            self.curves[key] = plot.plot(pen=pg.mkPen(PALETTE[index % len(PALETTE)], width=1.5))
        if forgetting:
            plot = self.forgetting.addPlot()
            plot.setTitle("forgetting: PSNR", size="9pt")
            self.forgetting.setToolTip("Held-out PSNR of each early avatar after every visit (the paper's Fig. 2): "
                                       "a falling curve is an avatar the shared decoder is forgetting")
            plot.showGrid(x=True, y=True, alpha=0.3)
            plot.addLegend(offset=(5, 5))
            plot.setLabel("bottom", "step")
            self.plots[FORGETTING] = plot
            for key in forgetting:
                self._add_forgetting_curve(key, len(self.curves))
        if bool(forgetting) != self.forgetting.isVisibleTo(self):
            self.forgetting.setVisible(bool(forgetting))
            self.splitter.setSizes([1000, 1000])  # half each

    def _add_forgetting_curve(self, key: str, index: int) -> None:
        plot = self.plots[FORGETTING]
        self.curves[key] = plot.plot(pen=pg.mkPen(PALETTE[index % len(PALETTE)], width=1.5), symbol="o",
                                     symbolSize=5, symbolBrush=PALETTE[index % len(PALETTE)],
                                     name=key.split("/", 1)[1])
