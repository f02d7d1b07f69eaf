"""The model's dialogs: choose another model (and whether the open images are re-analysed),
retrain with the reviewed cells, adapt the model to this lab.  Training runs as a separate
process, which never outlives the window (``shutdown``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .widgets.model_chooser import ModelChooser

if TYPE_CHECKING:  # the window builds these dialogs; the dialogs load when first asked for
    from .main_window import MainWindow
    from .widgets.adapt_dialog import AdaptDialog
    from .widgets.retrain_dialog import RetrainDialog


class ModelDialogs:
    def __init__(self, window: MainWindow):
        self.window = window
        self.retrain_dialog: RetrainDialog | None = None
        self.adapt_dialog: AdaptDialog | None = None

    def _status(self, text: str, ms: int) -> None:
        self.window.statusBar().showMessage(text, ms)

    def choose(self) -> None:
        w = self.window
        chooser = ModelChooser(w.controller.model_folder, w)
        if chooser.exec() != ModelChooser.DialogCode.Accepted or not chooser.chosen:
            return
        folder, store = chooser.chosen, w.controller.store
        reanalyse = False
        if (store.cell_count or w.controller.progress.active) and store.image_count:
            answer = w.dialogs.ask_reanalyse(store.image_count, os.path.basename(folder))
            if answer is None:
                return
            reanalyse = answer
        w.switch_model(folder, reanalyse)

    def retrain(self) -> None:
        """Train a model on the base data plus this session's reviewed cells (a separate process)."""
        from .widgets.retrain_dialog import RetrainDialog

        w = self.window
        if w.review.session is None:
            return
        if self.retrain_dialog is None or not self.retrain_dialog.isVisible():
            dialog = RetrainDialog(w.review.session, w, settings=w.settings, current_model=w.controller.model_folder or None)
            dialog.bundle_added.connect(self._bundle_added)
            self.retrain_dialog = dialog
        self.retrain_dialog.show()
        self.retrain_dialog.raise_()

    def adapt(self) -> None:
        """Adapt the current model to this lab from the session's reviewed cells (a separate process)."""
        from .widgets.adapt_dialog import AdaptDialog

        w = self.window
        if w.review.session is None:
            return
        if self.adapt_dialog is None or not self.adapt_dialog.isVisible():
            dialog = AdaptDialog(
                w.review.session, w, current_model=w.controller.model_folder or None, lab_um_per_px=w.review.prefs.lab_um_per_px
            )
            dialog.model_adapted.connect(self._model_adapted)
            self.adapt_dialog = dialog
        elif self.adapt_dialog.job is None:
            # The reviewer may have reviewed more cells, or set the lab's pixel size, meanwhile.
            self.adapt_dialog.lab_um_per_px = w.review.prefs.lab_um_per_px
            self.adapt_dialog.refresh()
        self.adapt_dialog.show()
        self.adapt_dialog.raise_()

    def _model_adapted(self, folder: str) -> None:
        """The adapted model classifies new images; what is analysed keeps its results (as Choose model's Keep)."""
        self.window.switch_model(folder, reanalyse=False)
        self._status(
            f"Adapted model {os.path.basename(folder)} is now used for new images; analysed cells keep their results",
            15000,
        )

    def _bundle_added(self, folder: str) -> None:
        self._status(f"New model {os.path.basename(folder)} installed: choose it with Analysis › Choose model…", 15000)

    def shutdown(self) -> None:
        """Stop a training process still running: it never outlives the window."""
        for dialog in (self.retrain_dialog, self.adapt_dialog):
            if dialog is not None and dialog.job is not None and dialog.job.running:
                dialog.job.shutdown()

    def suggest_for_adapting(self) -> list[int]:
        """Show only the unreviewed cells whose labels would teach the model most about this lab
        (``core.suggest``), for the reviewer to review before Adapt model to this lab; the
        store rows shown ([] when the session has no unreviewed classified cell)."""
        import numpy as np

        from ..core.suggest import SUGGESTED_CELLS, cells_to_review_for_adapting

        w = self.window
        store = w.controller.store
        columns = store.columns()
        rows = np.flatnonzero((columns.label < 0) & ~np.isnan(columns.confidence))
        if not len(rows):
            self._status("No unreviewed classified cells to suggest: analyse images first", 8000)
            return []
        probs = np.stack([store.cell(int(r)).probs for r in rows])
        picked = [int(rows[i]) for i in cells_to_review_for_adapting(probs, SUGGESTED_CELLS)]
        w.filter_bar.show_only_cells(picked, "Cells to review for adapting")
        self._status(
            f"{len(picked)} cells that would teach the model most about this lab: review them, then Review › Adapt model "
            "to this lab… (Reset shows every cell again)",
            15000,
        )
        return picked
