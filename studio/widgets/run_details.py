"""The selected run in detail: live curves, sample previews and the log, each refreshed from what changed."""
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
        self.row: RunRow | None = None
        self.follower: MetricsFollower | None = None

    def show_run(self, row: RunRow | None) -> None:
        """Show `row` (None: nothing selected); called again every poll with the row's fresh state."""
        if row is None or self.row is None or row.path != self.row.path:
            self.plot.clear()
            self.follower = None
        self.row = row
        if row is None:
            self.samples.set_folder(None)
            self.log.show_run(None)
            return
        if self.follower is None or not self.follower.path.exists():
            # the metrics file may only appear once the run has started
            path = next((row.path / n for n in METRIC_FILES if (row.path / n).exists()), None)
            self.follower = MetricsFollower(path) if path is not None else None
        if self.follower is not None and self.follower.poll():
            self.plot.set_records(self.follower.records)
        self.samples.set_folder(row.path / "samples" if (row.path / "samples").is_dir() else None)
        self.log.show_run(row)
