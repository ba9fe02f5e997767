"""The main window's portrait actions: open or drop a photo, prepare it in a worker (face, crop, matte), change
the preprocessing options or the manual crop. A mixin of `MainWindow` (uses its state, tasks and message bar)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from engine.errors import UserError

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"


class PortraitActions:
    def choose_portrait(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Open portrait", str(self._last_folder()), IMAGE_FILTER)
        if chosen:
            self.open_portrait(Path(chosen))

    def _last_folder(self) -> Path:
        recent = self.recent_files()
        return Path(recent[0]).parent if recent else Path.home()

    def open_portrait(self, path: Path, as_is: bool = False) -> None:
        """Prepare `path` in a worker; it becomes the portrait only once it opened (a broken file changes
        nothing). No face found: the photo stays so the crop can be set by hand. `as_is`: already in the training
        framing (a text → portrait candidate): no detection, no matte."""
        from engine.preprocess import NoFaceFound

        path = Path(path)
        options = self.state.portrait_options
        detect, matte = (False, False) if as_is else (options.detect, options.matte)
        crop = None  # a new photo starts from automatic cropping

        def prepare(report):
            try:
                return path, _prepare(path, detect, matte, crop), None
            except NoFaceFound as exc:
                return path, None, str(exc)

        self.run_task("portrait", prepare, self._portrait_ready, label=f"Preparing {path.name}")

    def _portrait_ready(self, result) -> None:
        path, prepared, problem = result
        self.state.set_portrait(path, prepared)
        self._remember(path)
        if problem:
            self.message_bar.show_message(problem, "error")
        else:
            self.message_bar.clear()

    def change_portrait_options(self, changes: dict) -> None:
        try:
            self.state.update_portrait_options(**changes)
        except UserError as exc:
            self.message_bar.show_message(str(exc), "error")
            return
        self._reprepare()

    def _reprepare(self) -> None:
        """Prepare the current photo again with the current options (detection, matte, manual crop)."""
        from engine.preprocess import NoFaceFound

        path, options = self.state.portrait, self.state.portrait_options
        if path is None:
            return

        def prepare(report):
            try:
                return _prepare(path, options.detect, options.matte, options.crop), None
            except NoFaceFound as exc:
                return None, str(exc)

        def ready(result) -> None:
            prepared, problem = result
            self.state.set_prepared(prepared)
            if problem:
                self.message_bar.show_message(problem, "error")
            else:
                self.message_bar.clear()

        self.run_task("portrait", prepare, ready, label=f"Preparing {path.name}")

    def choose_crop(self) -> None:
        from studio.widgets.crop_dialog import CropDialog

        if self.state.portrait is None:
            return
        initial = self.state.portrait_options.crop
        if initial is None and self.state.prepared is not None:
            c = self.state.prepared.crop
            initial = (int(c.x), int(c.y), int(c.size))
        dialog = CropDialog(self.state.portrait, initial, self)
        if dialog.exec():
            self.change_portrait_options({"crop": dialog.crop()})

    # ------------------------------------------------------------------------------------------ drag & drop
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if not files:
            self.message_bar.show_message("Only local files can be dropped", "error")
            return
        if len(files) > 1:
            self.message_bar.show_message(f"{len(files)} files dropped: opening the first", "info")
        event.acceptProposedAction()
        self.open_portrait(files[0])


def _prepare(path: Path, detect: bool, matte: bool, crop):
    from engine.preprocess import CropBox, prepare_portrait

    box = None if crop is None else CropBox(*crop) if not isinstance(crop, CropBox) else crop
    return prepare_portrait(path, detect=detect, matte=matte, crop=box)
