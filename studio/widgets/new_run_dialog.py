"""New run: kind, preset, input folders, the kind's hyper-parameters (a form generated from its config class),
device, processes and output folder. Launch checks everything first; problems are listed in the dialog and
nothing starts."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from studio.launch_command import LaunchInvalid, LaunchPlan, LaunchRequest, form_fields, plan_launch
from studio.run_kinds import KINDS
from studio.widgets.config_form_widget import ConfigFormWidget


class NewRunDialog(QDialog):
    """`launch(plan)` starts the run and returns an error text, or None when it started."""

    def __init__(self, runs_folder: Path, launch: Callable[[LaunchPlan], str | None], settings=None,
                 parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New training run")
        self.resize(640, 720)
        self.runs_folder = Path(runs_folder)
        self.launch = launch
        self.settings = settings
        self.input_edits: dict[str, QLineEdit] = {}
        self.kind_box = QComboBox()
        for spec in KINDS.values():
            self.kind_box.addItem(spec.label, spec.key)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.preset_box = QComboBox()
        self.inputs = QWidget()
        self.inputs_layout = QFormLayout(self.inputs)
        self.inputs_layout.setContentsMargins(0, 0, 0, 0)
        self.avatars_edit = QLineEdit()
        self.avatars_edit.setPlaceholderText("all")
        self.avatars_edit.setToolTip("Use the first K avatars of the dataset (blank: all)")
        self.device_box = QComboBox()
        self.device_box.setEditable(True)
        self.device_box.addItems(_devices())
        self.device_box.setToolTip("torch device: cpu, cuda (each process its own GPU) or cuda:N")
        self.processes_box = QSpinBox()
        self.processes_box.setRange(1, 64)
        self.processes_box.setToolTip("More than one runs the command under torchrun (fit stage 2 shards the "
                                      "avatars; base/upsample train with DDP)")
        self.out_edit = QLineEdit()
        out_row = _with_browse(self.out_edit, lambda: self._browse(self.out_edit, "Output folder"))
        self.form = ConfigFormWidget()
        self.errors = QLabel()
        self.errors.setObjectName("launch_errors")
        self.errors.setWordWrap(True)
        self.errors.setStyleSheet("color: #c0392b;")
        self.errors.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Cancel)
        self.launch_button = self.buttons.addButton("Launch", QDialogButtonBox.AcceptRole)
        self.buttons.accepted.connect(self.try_launch)
        self.buttons.rejected.connect(self.reject)
        top = QFormLayout()
        top.addRow("Kind", self.kind_box)
        top.addRow("", self.note)
        top.addRow("Preset", self.preset_box)
        top.addRow(self.inputs)
        top.addRow("Avatars", self.avatars_edit)
        top.addRow("Device", self.device_box)
        top.addRow("Processes", self.processes_box)
        top.addRow("Output folder", out_row)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.form, 1)
        layout.addWidget(self.errors)
        layout.addWidget(self.buttons)
        self.kind_box.currentIndexChanged.connect(self._kind_changed)
        self.preset_box.currentIndexChanged.connect(self._preset_changed)
        self._kind_changed()

    # ------------------------------------------------------------------------------------------------ kind
    def set_kind(self, key: str) -> None:
        self.kind_box.setCurrentIndex(self.kind_box.findData(key))

    def kind(self) -> str:
        return self.kind_box.currentData()

    def _kind_changed(self) -> None:
        spec = KINDS[self.kind()]
        self.note.setText(spec.note)
        self.preset_box.blockSignals(True)
        self.preset_box.clear()
        self.preset_box.addItems(list(spec.presets))
        self.preset_box.blockSignals(False)
        self._build_inputs(spec)
        self.avatars_edit.setEnabled(spec.avatars)
        self.device_box.setEnabled(spec.device)
        self.device_box.setToolTip("" if spec.device else f"a {spec.label} run has no device option")
        self.processes_box.setEnabled(spec.distributed)
        if not spec.distributed:
            self.processes_box.setValue(1)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.out_edit.setText(str(self.runs_folder / f"{spec.key}-{stamp}"))
        self._preset_changed()

    def _preset_changed(self) -> None:
        spec = KINDS[self.kind()]
        try:
            config = spec.make_config(self.preset_box.currentText() or spec.presets[0])
        except Exception as exc:  # noqa: BLE001 - a config module that cannot load: say so, keep the dialog
            self.form.set_fields([])
            self.errors.setText(f"Cannot read the {spec.label} settings: {exc}")
            return
        self.form.set_fields(form_fields(spec, config))
        self.errors.clear()

    def _build_inputs(self, spec) -> None:
        while self.inputs_layout.rowCount():
            self.inputs_layout.removeRow(0)
        self.input_edits = {}
        for source in spec.inputs:
            edit = QLineEdit(self._remembered(source.flag))
            edit.setToolTip(source.tip)
            edit.setObjectName(f"input_{source.flag.strip('-')}")
            self.input_edits[source.flag] = edit
            row = _with_browse(edit, lambda e=edit, label=source.label: self._browse(e, label))
            self.inputs_layout.addRow(source.label, row)

    # ---------------------------------------------------------------------------------------------- launch
    def request(self) -> LaunchRequest:
        return LaunchRequest(kind=self.kind(), out=self.out_edit.text(), preset=self.preset_box.currentText(),
                             inputs={flag: edit.text() for flag, edit in self.input_edits.items()},
                             values=self.form.values(), device=self.device_box.currentText(),
                             processes=self.processes_box.value(), avatars=self.avatars_edit.text())

    def try_launch(self) -> bool:
        try:
            plan = plan_launch(self.request())
        except LaunchInvalid as exc:
            self.errors.setText("\n".join(f"• {e}" for e in exc.errors))
            return False
        self.errors.clear()
        problem = self.launch(plan)
        if problem:
            self.errors.setText(f"• {problem}")
            return False
        for flag, edit in self.input_edits.items():
            self._remember(flag, edit.text())
        self.accept()
        return True

    # ----------------------------------------------------------------------------------------------- helpers
    def _browse(self, edit: QLineEdit, title: str) -> None:
        chosen = QFileDialog.getExistingDirectory(self, title, edit.text() or str(self.runs_folder))
        if chosen:
            edit.setText(chosen)

    def _remembered(self, flag: str) -> str:
        return str(self.settings.value(f"training/input{flag}") or "") if self.settings is not None else ""

    def _remember(self, flag: str, text: str) -> None:
        if self.settings is not None and text.strip():
            self.settings.setValue(f"training/input{flag}", text.strip())


def _with_browse(edit: QLineEdit, browse) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    button = QPushButton("Browse…")
    button.clicked.connect(browse)
    layout.addWidget(button)
    return row


def _devices() -> list[str]:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(count)] if count else [])
