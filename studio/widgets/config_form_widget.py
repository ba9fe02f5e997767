"""A form generated from a run config's fields (studio.config_form): one row per field, the preset's value as the
default, the field's docstring as the tooltip; nested configs in their own group boxes."""
from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QScrollArea,
                               QVBoxLayout, QWidget)

from studio.config_form import FieldSpec, format_value


class ConfigFormWidget(QScrollArea):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.fields: list[FieldSpec] = []
        self.editors: dict[str, QWidget] = {}
        self.set_fields([])

    def set_fields(self, fields: list[FieldSpec]) -> None:
        """Rebuild the form for `fields` (their defaults become the shown values)."""
        self.fields, self.editors = list(fields), {}
        body = QWidget()
        column = QVBoxLayout(body)
        groups: dict[str, QFormLayout] = {}
        for spec in self.fields:
            if spec.group not in groups:
                box = QGroupBox(spec.group or "Hyper-parameters")
                groups[spec.group] = QFormLayout(box)
                column.addWidget(box)
            editor = self._editor(spec)
            label = QLabel(spec.name)
            label.setToolTip(spec.tooltip())
            groups[spec.group].addRow(label, editor)
            self.editors[spec.path] = editor
        if not self.fields:
            column.addWidget(QLabel("No settings for this kind."))
        column.addStretch(1)
        self.setWidget(body)

    def _editor(self, spec: FieldSpec) -> QWidget:
        if spec.type == "bool":
            editor = QCheckBox()
            editor.setChecked(bool(spec.default))
        elif spec.type == "choice":
            editor = QComboBox()
            editor.addItems([str(c) for c in spec.choices])
            editor.setCurrentText(str(spec.default))
        else:
            editor = QLineEdit(format_value(spec, spec.default))
            editor.setPlaceholderText(format_value(spec, spec.default))
        editor.setObjectName(f"field_{spec.path}")
        editor.setToolTip(spec.tooltip())
        return editor

    def values(self) -> dict[str, Any]:
        """{field path: text (or bool)} as entered; parsing and checking is studio.config_form's job."""
        out: dict[str, Any] = {}
        for path, editor in self.editors.items():
            if isinstance(editor, QCheckBox):
                out[path] = editor.isChecked()
            elif isinstance(editor, QComboBox):
                out[path] = editor.currentText()
            else:
                out[path] = editor.text()
        return out

    def set_value(self, path: str, value: Any) -> None:
        """Set one field as a user would (tests, and restoring a previous launch)."""
        editor = self.editors[path]
        if isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QComboBox):
            editor.setCurrentText(str(value))
        else:
            editor.setText(str(value))
