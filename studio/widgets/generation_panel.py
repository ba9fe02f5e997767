"""Generation settings bound both ways to StudioState.settings: guidance (slider + box), steps, sampler, seed with
lock/randomise, base-only vs cascade, unconditional; Generate / Cancel and a progress bar."""
from __future__ import annotations

import random

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QProgressBar,
                               QPushButton, QSlider, QSpinBox, QVBoxLayout, QWidget)

from engine.diffusion.sampling import SAMPLERS
from engine.errors import UserError
from engine.pipeline import GUIDANCE_RANGE, STAGES
from studio.state import MAX_SEED, StudioState

SLIDER_STEPS_PER_UNIT = 10  # the slider moves guidance in 0.1 steps; the box takes any value
SLIDER_MAX_GUIDANCE = 10.0  # the slider's useful range; the box accepts up to GUIDANCE_RANGE[1]
STAGE_LABELS = {"cascade": "Full cascade (base + upsample)", "base": "Base only (fast, low resolution)"}


class GenerationPanel(QWidget):
    generate_requested = Signal()
    cancel_requested = Signal()
    error = Signal(str)

    def __init__(self, state: StudioState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self._updating = False
        self._build()
        self._connect()
        state.subscribe(self._on_state)
        self._show_settings()
        self.set_running(False)

    def _build(self) -> None:
        self.guidance_slider = QSlider(Qt.Horizontal)
        self.guidance_slider.setRange(0, int(SLIDER_MAX_GUIDANCE * SLIDER_STEPS_PER_UNIT))
        self.guidance_slider.setToolTip("Classifier-free guidance: higher follows the portrait more closely")
        self.guidance_box = QDoubleSpinBox()
        self.guidance_box.setRange(*GUIDANCE_RANGE)
        self.guidance_box.setSingleStep(0.1)
        self.guidance_box.setDecimals(2)
        guidance = QHBoxLayout()
        guidance.addWidget(self.guidance_slider, 1)
        guidance.addWidget(self.guidance_box)
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, 1000)
        self.steps_box.setToolTip("Sampling steps per stage (10 is the paper's DDIM setting)")
        self.sampler_box = QComboBox()
        self.sampler_box.addItems(list(SAMPLERS))
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, MAX_SEED)
        self.seed_lock = QCheckBox("Lock")
        self.seed_lock.setToolTip("Locked: every run uses this seed. Unlocked: a new random seed per run")
        self.randomise = QPushButton("Randomise")
        seed = QHBoxLayout()
        seed.addWidget(self.seed_box, 1)
        seed.addWidget(self.seed_lock)
        seed.addWidget(self.randomise)
        self.stages_box = QComboBox()
        for stage in STAGES:
            self.stages_box.addItem(STAGE_LABELS[stage], stage)
        self.unconditional = QCheckBox("Unconditional (no portrait)")
        self.generate_button = QPushButton("Generate")
        self.generate_button.setToolTip("Generate an avatar (Ctrl+G)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running generation (Esc)")
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.cancel_button)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        form = QFormLayout()
        form.addRow("Guidance", guidance)
        form.addRow("Steps", self.steps_box)
        form.addRow("Sampler", self.sampler_box)
        form.addRow("Seed", seed)
        form.addRow("Stages", self.stages_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.unconditional)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addStretch(1)

    def _connect(self) -> None:
        self.guidance_slider.valueChanged.connect(lambda v: self._set(guidance=v / SLIDER_STEPS_PER_UNIT))
        self.guidance_box.valueChanged.connect(lambda v: self._set(guidance=round(v, 2)))
        self.steps_box.valueChanged.connect(lambda v: self._set(steps=v))
        self.sampler_box.currentTextChanged.connect(lambda v: self._set(sampler=v))
        self.seed_box.valueChanged.connect(lambda v: self._set(seed=v))
        self.seed_lock.toggled.connect(lambda v: self._set(seed_locked=v))
        self.randomise.clicked.connect(lambda: self._set(seed=random.randint(0, MAX_SEED)))
        self.stages_box.currentIndexChanged.connect(lambda i: self._set(stages=self.stages_box.itemData(i)))
        self.unconditional.toggled.connect(lambda v: self._set(unconditional=v))
        self.generate_button.clicked.connect(self.generate_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)

    def _set(self, **changes) -> None:
        """A widget changed: push it into the state; a refused value snaps the widgets back."""
        if self._updating:
            return
        try:
            self.state.update_settings(**changes)
        except UserError as exc:
            self.error.emit(str(exc))
            self._show_settings()

    def _on_state(self, name: str) -> None:
        if name == "settings":
            self._show_settings()

    def _show_settings(self) -> None:
        s = self.state.settings
        self._updating = True
        try:
            self.guidance_slider.setValue(round(min(s.guidance, SLIDER_MAX_GUIDANCE) * SLIDER_STEPS_PER_UNIT))
            self.guidance_box.setValue(s.guidance)
            self.steps_box.setValue(s.steps)
            self.sampler_box.setCurrentText(s.sampler)
            self.seed_box.setValue(s.seed)
            self.seed_lock.setChecked(s.seed_locked)
            self.stages_box.setCurrentIndex(max(0, self.stages_box.findData(s.stages)))
            self.unconditional.setChecked(s.unconditional)
            for widget in (self.guidance_slider, self.guidance_box):
                widget.setEnabled(not s.unconditional)
        finally:
            self._updating = False

    def set_running(self, running: bool, can_generate: bool = True) -> None:
        self.generate_button.setEnabled(not running and can_generate)
        self.cancel_button.setEnabled(running)
        if not running:
            self.progress.reset()

    def show_progress(self, step: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(step)
