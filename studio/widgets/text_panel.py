"""Text → portrait: a prompt (with the LoRA's trigger phrase), N candidate portraits in a grid, pick one and it
becomes the portrait input. The text model folder and an optional LoRA (with its scale) are chosen here; the work
itself runs in the main window's workers."""
from __future__ import annotations


from PIL import Image
from PySide6.QtCore import QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QPlainTextEdit, QPushButton, QSlider, QSpinBox, QVBoxLayout,
                               QWidget)

from studio.widgets.portrait_panel import pil_to_pixmap

CANDIDATE_ICON = 96
LORA_SCALE_STEPS = 100  # slider steps per unit of LoRA scale
TRIGGER_HELP = ("The trigger phrase is the words a LoRA was finetuned with (the paper's frontal-avatar style): "
                "put it in the prompt to switch that style on.")


class TextPanel(QWidget):
    generate_requested = Signal()
    cancel_requested = Signal()
    use_requested = Signal(int)  # index of the chosen candidate
    choose_model_requested = Signal()
    choose_lora_requested = Signal()
    clear_lora_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.candidates: list[Image.Image] = []
        self.trigger: str | None = None
        self.model_label = QLabel("no text model")
        self.model_label.setWordWrap(True)
        model_button = QPushButton("Text model…")
        model_button.clicked.connect(self.choose_model_requested)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("a smiling woman with long red hair, wearing a blue t-shirt")
        self.prompt.setMaximumHeight(70)
        self.trigger_button = QPushButton("Insert trigger")
        self.trigger_button.setToolTip(TRIGGER_HELP)
        self.trigger_button.clicked.connect(self.insert_trigger)
        self.negative = QLineEdit()
        self.negative.setPlaceholderText("negative prompt (optional)")
        self.count = _spin(1, 16, 4)
        self.steps = _spin(1, 1000, 25)
        self.seed = _spin(0, 2**31 - 1, 0)
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setValue(5.0)
        self.guidance.setSingleStep(0.5)
        self.guidance_edited = False  # the user set the guidance: a model's default no longer replaces it
        self.guidance.valueChanged.connect(self._guidance_changed)
        self.lora_label = QLabel("no LoRA")
        lora_button = QPushButton("LoRA…")
        lora_button.clicked.connect(self.choose_lora_requested)
        self.clear_lora_button = QPushButton("None")
        self.clear_lora_button.clicked.connect(self.clear_lora_requested)
        self.lora_scale = QSlider(Qt.Horizontal)
        self.lora_scale.setRange(0, 2 * LORA_SCALE_STEPS)
        self.lora_scale.setValue(LORA_SCALE_STEPS)
        self.lora_scale.setToolTip("LoRA scale: 0 = off, 1 = as trained, up to 2")
        self.generate_button = QPushButton("Make portraits")
        self.cancel_button = QPushButton("Cancel")
        self.generate_button.clicked.connect(self.generate_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.grid = QListWidget()
        self.grid.setViewMode(QListWidget.IconMode)
        self.grid.setIconSize(QSize(CANDIDATE_ICON, CANDIDATE_ICON))
        self.grid.setResizeMode(QListWidget.Adjust)
        self.grid.setMovement(QListWidget.Static)
        self.grid.itemDoubleClicked.connect(lambda item: self.use_requested.emit(item.data(Qt.UserRole)))
        self.use_button = QPushButton("Use as portrait")
        self.use_button.setToolTip("The chosen candidate becomes the portrait input (double-click does the same)")
        self.use_button.clicked.connect(self._use_selected)
        self._layout(model_button, lora_button)
        self.set_running(False)

    def _layout(self, model_button: QPushButton, lora_button: QPushButton) -> None:
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_label, 1)
        model_row.addWidget(model_button)
        lora_row = QHBoxLayout()
        lora_row.addWidget(self.lora_label, 1)
        lora_row.addWidget(lora_button)
        lora_row.addWidget(self.clear_lora_button)
        form = QFormLayout()
        form.addRow("Negative", self.negative)
        form.addRow("Candidates", self.count)
        form.addRow("Steps", self.steps)
        form.addRow("Guidance", self.guidance)
        form.addRow("Seed", self.seed)
        form.addRow("LoRA scale", self.lora_scale)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(model_row)
        layout.addWidget(self.prompt)
        layout.addWidget(self.trigger_button)
        layout.addLayout(form)
        layout.addLayout(lora_row)
        layout.addLayout(buttons)
        layout.addWidget(self.grid, 1)
        layout.addWidget(self.use_button)

    def settings(self) -> dict:
        """What `TextPortraitPipeline.__call__` takes, from the widgets."""
        return {"prompt": self.prompt.toPlainText().strip(), "negative_prompt": self.negative.text().strip(),
                "n": self.count.value(), "steps": self.steps.value(), "guidance": self.guidance.value(),
                "seed": self.seed.value()}

    def set_default_guidance(self, value: float, force: bool = False) -> None:
        """Show a model's default guidance, unless the user has set one (`force`: a model was just chosen, its
        default wins and the box counts as unedited again)."""
        if self.guidance_edited and not force:
            return
        with QSignalBlocker(self.guidance):
            self.guidance.setValue(value)
        self.guidance_edited = False

    def _guidance_changed(self, _value: float) -> None:
        self.guidance_edited = True

    def lora_scale_value(self) -> float:
        return self.lora_scale.value() / LORA_SCALE_STEPS

    def show_model(self, name: str, trigger: str | None) -> None:
        self.model_label.setText(name)
        self.trigger = trigger
        self.trigger_button.setEnabled(bool(trigger))
        self.trigger_button.setText(f"Insert “{trigger}”" if trigger else "Insert trigger")

    def show_lora(self, text: str | None, trigger: str | None = None) -> None:
        self.lora_label.setText(text or "no LoRA")
        self.clear_lora_button.setEnabled(text is not None)
        if trigger:
            self.show_model(self.model_label.text(), trigger)

    def insert_trigger(self) -> None:
        """Put the trigger phrase at the start of the prompt (once)."""
        if not self.trigger:
            return
        text = self.prompt.toPlainText().strip()
        if self.trigger not in text:
            self.prompt.setPlainText(f"{self.trigger}, {text}" if text else self.trigger)

    def show_candidates(self, images: list[Image.Image]) -> None:
        self.candidates = list(images)
        self.grid.clear()
        for index, image in enumerate(self.candidates):
            item = QListWidgetItem(QIcon(pil_to_pixmap(image, CANDIDATE_ICON)), f"#{index + 1}")
            item.setData(Qt.UserRole, index)
            self.grid.addItem(item)
        if self.candidates:
            self.grid.setCurrentRow(0)
        self.use_button.setEnabled(bool(self.candidates))

    def show_previews(self, images: list[Image.Image]) -> None:
        """The candidates' current estimates while sampling: pictures only, nothing to pick until the run ends."""
        self.candidates = []
        if self.grid.count() != len(images):
            self.grid.clear()
            for index in range(len(images)):
                self.grid.addItem(QListWidgetItem(f"#{index + 1}"))
        for index, image in enumerate(images):
            item = self.grid.item(index)
            item.setIcon(QIcon(pil_to_pixmap(image, CANDIDATE_ICON)))
            item.setData(Qt.UserRole, None)
        self.use_button.setEnabled(False)

    def _use_selected(self) -> None:
        item = self.grid.currentItem()
        if item is not None and item.data(Qt.UserRole) is not None:
            self.use_requested.emit(item.data(Qt.UserRole))

    def set_running(self, running: bool) -> None:
        self.generate_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.use_button.setEnabled(not running and bool(self.candidates))


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box
