"""File › Export annotation data set: the session's cells as a COCO data set (boxes, masks,
final labels) or as class folders of the reviewed cells as the model sees them.

The reviewer picks the folder to put it in; the data set gets a new folder there named after
the session (``<session>_coco``, ``_2`` … when taken), written in the background and renamed
into place only when complete (``core.dataset_export``).  What was skipped is said with the
reason, in the status bar and the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMainWindow

from ..core.atomic import write_failure
from ..core.dataset_export import ExportOutcome, export_coco, export_crops
from ..core.store import ReviewSession, SessionError
from .analysis import AnalysisController
from .background import in_background
from .messages import Notifier
from .review import ReviewController
from .settings import AppSettings

log = logging.getLogger(__name__)

KINDS = {
    "coco": ("Export annotations (COCO)", "coco", "COCO data set"),
    "crops": ("Export reviewed cells for training", "crops", "Class folders"),
}


def free_folder(parent: Path, stem: str) -> Path:
    """``parent/stem``, or ``stem_2``, ``stem_3`` … where that is taken."""
    target, n = parent / stem, 1
    while target.exists():
        n += 1
        target = parent / f"{stem}_{n}"
    return target


class DatasetDialogs:
    def __init__(
        self,
        window: QMainWindow,
        review: ReviewController,
        controller: AnalysisController,
        settings: AppSettings,
        notifier: Notifier,
    ):
        """``controller``: the analysis controller, whose model in use frames the crops of its cells."""
        self.window, self.review, self.controller = window, review, controller
        self.settings, self.notifier = settings, notifier

    def export_coco(self) -> Path | None:
        """The session's labelled cells as a COCO data set (images copied beside it)."""
        return self._export("coco", lambda s, folder: export_coco(s, folder))

    def export_crops(self) -> Path | None:
        """The reviewed cells as class folders of model inputs, each framed by the model that classified it."""
        card, folder = self.controller.model_card, self.controller.model_folder
        known = {card.name: str(folder)} if card is not None and folder else {}
        return self._export("crops", lambda s, target: export_crops(s, target, known=known))

    def _export(self, kind: str, run: Callable[[ReviewSession, Path], ExportOutcome]) -> Path | None:
        session = self.review.session
        if session is None:  # the actions are off without a session
            return None
        title, suffix, what = KINDS[kind]
        start = str(self.settings.value("last_folder", str(Path.home())))
        parent = QFileDialog.getExistingDirectory(self.window, f"{title}: the folder to put it in", start)
        if not parent:
            return None
        target = free_folder(Path(parent), f"{session.name}_{suffix}")

        def done(outcome: ExportOutcome) -> None:
            skipped = outcome.skipped_lines()
            for line in skipped:
                log.warning("%s: %s", target, line)
            said = f"{what} of {outcome.cells} cells from {outcome.images} images saved to {target}"
            if skipped:
                said += f"; skipped: {skipped[0]}"
                if len(skipped) > 1:
                    said += f" (and {len(skipped) - 1} more reasons: see the log)"
            self.window.statusBar().showMessage(said, 15000)

        def failed(exc: Exception) -> None:
            if isinstance(exc, OSError):
                self.notifier.error("Not exported", write_failure(str(target), exc))
            elif isinstance(exc, SessionError | ValueError):
                self.notifier.error("Not exported", str(exc))
            else:
                raise exc

        in_background(self.window, lambda: run(session, target), done, failed, reading=session)
        return target
