"""The main window's text → portrait actions: load the text model (folder kept in QSettings), an optional LoRA
with its scale, make N candidates in a worker, and turn the chosen one into the portrait input. A mixin of
`MainWindow` (uses its state, settings, library, tasks and message bar)."""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from engine.io import atomic_write
from studio.widgets.text_panel import TextPanel

TEXT_PREVIEW_INTERVAL_S = 0.4
DEFAULT_TEXT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "models" / "text_default"
TEXT_PORTRAITS = "text_portraits"  # inside the library folder: the candidates that were used


class TextActions:
    def _build_text_dock(self) -> None:
        self.text_pipeline = None
        self.lora_path: Path | None = None
        self.text_origins: dict[Path, dict] = {}  # portrait file → the prompt and settings that made it
        self._last_text: dict = {}  # settings of the candidates on show
        self.text_panel = TextPanel()
        self._dock("Text", self.text_panel, Qt.LeftDockWidgetArea)
        panel = self.text_panel
        panel.generate_requested.connect(self.make_portraits)
        panel.cancel_requested.connect(self.cancel)
        panel.use_requested.connect(self.use_candidate)
        panel.choose_model_requested.connect(self.choose_text_model)
        panel.choose_lora_requested.connect(self.choose_lora)
        panel.clear_lora_requested.connect(lambda: self.set_lora(None))
        panel.show_lora(None)
        folder = self.text_model_folder()
        panel.show_model(f"{folder.name} (loads on first use)" if folder.is_dir() else "no text model", None)

    def text_model_folder(self) -> Path:
        return Path(self.settings.value("text_model") or DEFAULT_TEXT_MODEL)

    def choose_text_model(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Text model folder", str(self.text_model_folder()))
        if chosen:
            self.settings.setValue("text_model", chosen)
            self.text_pipeline = None
            self.load_text_model(model_chosen=True)

    def load_text_model(self, then=None, model_chosen: bool = False) -> None:
        """Load the text model in a worker, then call `then`. The guidance box takes the model's default unless the
        user has set a guidance (on the lazy load of the first Generate their value must be the one used); a model
        the user has just chosen (`model_chosen`) brings its own default."""
        from engine.text import TextPortraitPipeline

        folder = self.text_model_folder()

        def loaded(pipe) -> None:
            self.text_pipeline = pipe
            self.text_panel.show_model(f"{folder.name} ({pipe.resolution}²)", pipe.trigger)
            # the value the model was measured best at
            self.text_panel.set_default_guidance(pipe.default_guidance, force=model_chosen)
            if then is not None:
                then()

        self.run_task("text_model", lambda report: TextPortraitPipeline.from_pretrained(folder), loaded,
                      label="Loading the text model")

    def choose_lora(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "LoRA", str(Path.home()), "LoRA (*.safetensors)")
        if chosen:
            self.set_lora(Path(chosen))

    def set_lora(self, path: Path | None) -> None:
        """Use `path` (checked when the next portraits are made: a bad file is reported then)."""
        self.lora_path = path
        self.text_panel.show_lora(None if path is None else path.name)

    def make_portraits(self) -> None:
        settings = self.text_panel.settings()
        if not settings["prompt"]:
            self.message_bar.show_message("The prompt is empty: describe the person (hair, clothes, …)", "error")
            return
        if self.text_pipeline is None:
            self.load_text_model(then=self.make_portraits)
            return
        pipe, lora, scale = self.text_pipeline, self.lora_path, self.text_panel.lora_scale_value()

        def job(report):
            if lora is None:
                pipe.unload_lora()
            else:
                pipe.load_lora(lora, scale=scale)
            started = time.perf_counter()
            images = pipe(callback=lambda progress: report(progress), **settings)
            return images, time.perf_counter() - started

        shown_at = [float("-inf")]

        def progressed(progress) -> None:
            self.progress.setRange(0, progress.total)
            self.progress.setValue(progress.step)
            self.progress.show()
            now = time.perf_counter()
            if progress.preview and now - shown_at[0] >= TEXT_PREVIEW_INTERVAL_S:  # drawing takes CPU from sampling
                shown_at[0] = now
                self.text_panel.show_previews(progress.preview)

        def made(result) -> None:
            images, seconds = result
            self.text_panel.show_candidates(images)
            self.text_panel.show_model(self.text_panel.model_label.text(), pipe.active_trigger)  # LoRA's trigger
            self._last_text = {**settings, "model_hash": pipe.model_hash(), "lora": pipe.lora_info}
            self.status_label.setText(f"{len(images)} portraits in {seconds:.1f} s: pick one")

        task = self.run_task("text", job, made, progressed, label="Making portraits",
                             on_done=lambda: self.text_panel.set_running(False))
        if task is not None:
            self.text_panel.set_running(True)

    def use_candidate(self, index: int) -> None:
        """Save the chosen candidate into the library folder and make it the portrait input (as is: it is
        already framed like the training portraits)."""
        image = self.text_panel.candidates[index]
        settings = self._last_text
        folder = self.library.root / TEXT_PORTRAITS
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{settings.get('seed', 0) + index}.png"
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
        self.text_origins[path] = {**settings, "candidate": index, "seed": settings.get("seed", 0) + index}
        self.open_portrait(path, as_is=True)
