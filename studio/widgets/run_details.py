"""The selected run in detail: live curves, sample previews and the log, each refreshed from what changed.
Each poll refreshes only the visible tab; a tab catches up when it is shown."""
from __future__ import annotations

from PySide6.QtWidgets import QTabWidget

from studio.metrics_series import MetricsFollower
from studio.runs_model import METRIC_FILES, RunRow
from studio.widgets.log_view import LogView
from studio.widgets.metrics_plot import MetricsPlot
from studio.widgets.samples_view import SamplesView


class RunDetails(QTabWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.plot = MetricsPlot()
        self.samples = SamplesView()
        self.log = LogView()
        self.addTab(self.plot, "Curves")
        self.addTab(self.samples, "Samples")
        self.addTab(self.log, "Log")
        self.row: RunRow | None = None  # the last row shown: a tab brought to the front is refreshed with it
        self.follower: MetricsFollower | None = None
        self.currentChanged.connect(lambda _: self._refresh(self.currentWidget()))

    def show_run(self, row: RunRow | None) -> None:
        """Show `row` (None: nothing selected); called again every poll with the row's fresh state. A newly
        selected run is loaded into every tab (so none shows the previous run); afterwards only the visible tab
        is refreshed: the samples' folder scan and the log's re-read cost nothing while they are hidden."""
        changed = row is None or self.row is None or row.path != self.row.path
        if changed:
            self.plot.clear()
            self.follower = None
        self.row = row
        for widget in ((self.plot, self.samples, self.log) if changed else (self.currentWidget(),)):
            self._refresh(widget)

    def _refresh(self, widget) -> None:
        row = self.row
        if widget is self.plot:
            if row is None:
                return
            if self.follower is None or not self.follower.path.exists():
                # the metrics file may only appear once the run has started
                path = next((row.path / n for n in METRIC_FILES if (row.path / n).exists()), None)
                self.follower = MetricsFollower(path) if path is not None else None
            if self.follower is not None and self.follower.poll():
                self.plot.set_records(self.follower.records)
        elif widget is self.samples:
            samples = row.path / "samples" if row is not None else None
            self.samples.set_folder(samples if samples is not None and samples.is_dir() else None)
        elif widget is self.log:
            self.log.show_run(row)
