"""The main window's library actions: open an entry, regenerate it with the same input, seed and settings,
compare two side by side, delete one. A mixin of `MainWindow` (uses its state, library, tasks and message bar)."""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from engine.errors import UserError
from studio.library import LibraryEntry
from studio.state import GenerationSettings


class LibraryActions:
    def open_entry(self, entry: LibraryEntry) -> None:
        try:
            avatar = self.library.load(entry)
        except UserError as exc:
            self.message_bar.show_message(str(exc), "error")
            return
        self.state.show_avatar(avatar)
        self.state.update_settings(**_settings_fields(GenerationSettings.from_record(entry.record)))
        self.status_label.setText(f"Opened {entry.name}")

    def regenerate_entry(self, entry: LibraryEntry) -> None:
        """Same input, seed and settings again (the seed is locked so the run is reproducible)."""
        from engine.preprocess import prepare_portrait

        settings = GenerationSettings.from_record(entry.record)
        self.state.update_settings(**_settings_fields(settings), seed_locked=True)
        if not settings.unconditional:
            if entry.model_input is None:
                self.message_bar.show_message(f"{entry.name} has no saved input to regenerate from", "error")
                return
            prepared = prepare_portrait(entry.model_input, detect=False, matte=False)
            self.state.set_portrait(entry.model_input, prepared)
        self.generate()

    def compare_entries(self, first: LibraryEntry, second: LibraryEntry) -> None:
        from studio.widgets.compare_dialog import CompareDialog

        camera = self.state.camera.c2w()

        def render(report):
            return [self.library.load(e).render(camera, resolution=320) for e in (first, second)]

        def show(images) -> None:
            captions = [f"{e.name}\n{e.summary()}" for e in (first, second)]
            self.compare_dialog = CompareDialog(images, captions, self)
            self.compare_dialog.show()

        self.run_task("compare", render, show, label="Rendering the comparison")

    def delete_entry(self, entry: LibraryEntry) -> None:
        answer = QMessageBox.question(self, "Delete avatar", f"Delete {entry.name} from the library?")
        if answer == QMessageBox.Yes:
            self.library.remove(entry)
            self.library_panel.refresh()


def _settings_fields(settings: GenerationSettings) -> dict:
    return {"guidance": settings.guidance, "steps": settings.steps, "sampler": settings.sampler,
            "seed": settings.seed, "stages": settings.stages, "unconditional": settings.unconditional}
