"""Retrain with corrections: the session's reviewed cells plus the base data set make a new model.

The dialog says what will be learnt from, runs a ``RetrainJob`` with its progress and log,
and emits ``bundle_added(folder)`` when the new model is in the user's models folder (the
model chooser lists it from then on).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ...core.classifier import CARD_FILE, ModelBundleError, resolve_bundle
from ...core.retraining import LITE0_FAST, FitRecipe
from ...core.store import ReviewSession
from ..retrain import RetrainJob, check_model_name, count_retraining_cells, training_command
from ..settings import AppSettings
from .job_dialog import JobDialog, left_out_text

BASE_DATA_KEY = "retrain/base_data"


def recorded_data_folder(bundle_folder: str | Path | None = None) -> str:
    """The data folder a bundle's card says it was trained on ('' when it says none)."""
    try:
        folder = Path(bundle_folder) if bundle_folder else resolve_bundle(None)
        card = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    except (ModelBundleError, OSError, ValueError):
        return ""
    found = card.get("data") or (card.get("training") or {}).get("data") or ""
    return str(found) if isinstance(found, str) else ""


def default_base_data(settings: AppSettings, bundle_folder: str | Path | None = None) -> str:
    """The folder last used, else the one the current model was trained on, else the source
    checkout's ``../shared/data/pbc``; only a folder that exists."""
    source = Path(__file__).resolve().parents[4] / "shared" / "data" / "pbc"
    for candidate in (str(settings.value(BASE_DATA_KEY, "") or ""), recorded_data_folder(bundle_folder), str(source)):
        if candidate and Path(candidate).is_dir():
            return candidate
    return ""


class RetrainDialog(JobDialog):
    """Retrain with the corrections of ``session``; ``bundle_added(folder)`` when the model is ready."""

    bundle_added = Signal(str)
    cancel_text = "Cancel training"
    failed_text = "Retraining failed."
    cancelled_text = "Retraining cancelled; no model was added."
    log_placeholder = "The training log appears here."

    def __init__(
        self,
        session: ReviewSession,
        parent: QWidget | None = None,
        *,
        settings: AppSettings | None = None,
        recipe: FitRecipe | None = None,
        current_model: str | Path | None = None,
        models_dir: str | Path | None = None,
        work_dir: str | Path | None = None,
    ):
        super().__init__("Retrain with corrections", parent)
        self.resize(720, 560)
        self.session = session
        self.settings = settings if settings is not None else AppSettings()
        self.recipe = recipe or LITE0_FAST
        self._models_dir = Path(models_dir) if models_dir is not None else None
        self._work_dir = work_dir
        self.cells = count_retraining_cells(session)

        self.summary = QLabel(self._summary_text())
        self.summary.setWordWrap(True)
        self.base_data = QLineEdit(default_base_data(self.settings, current_model))
        self.base_data.setPlaceholderText("folder of class folders: basophil, eosinophil, …")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        base_row = QHBoxLayout()
        base_row.addWidget(self.base_data, 1)
        base_row.addWidget(browse)
        self.name = QLineEdit(f"retrained-{datetime.now():%Y%m%d-%H%M}")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 50)
        self.epochs.setValue(self.recipe.epochs_fine)
        self.epochs.setSuffix(" fine-tuning epochs")
        self.epochs.setToolTip(
            f"The fast recipe uses {self.recipe.epochs_fine}; fewer is quicker and usually less accurate. "
            f"One epoch of the new classifier head comes first ({self.recipe.epochs_frozen} in this recipe)."
        )
        form = QFormLayout()
        form.addRow("Base data set", base_row)
        form.addRow("New model name", self.name)
        form.addRow("Training", self.epochs)
        recipe_note = QLabel(
            f"Recipe: {self.recipe.backbone}, {self.recipe.input_size} px, as the bundled lite0-fast model "
            "(about 40 min on two CPU cores for the PBC data set). The test figures of the new model are in "
            "its model card."
        )
        recipe_note.setWordWrap(True)
        recipe_note.setObjectName("Caption")
        self._layout([self.summary, form, recipe_note])
        self._refuse_if_impossible()

    # -- what the dialog says before starting

    def _summary_text(self) -> str:
        c = self.cells
        text = (
            f"<b>{c.usable}</b> reviewed single-cell image(s) will be added to the training side "
            f"({c.corrected} of them corrected by a reviewer)."
        )
        text += left_out_text(
            (c.smear, "cell(s) of smear fields (training reads single-cell images)"),
            (c.artefacts, "artefact(s)"),
            (c.missing, "image(s) no longer on disk"),
        )
        # merge_extra drops files the base data set already has (by content), its label stands.
        return text + "<br>An image already in the base data set is not added again; its label there stands."

    def _refuse_if_impossible(self) -> None:
        command, why = training_command()
        if command is None:
            self._show_problem(why)
            self.start_button.setEnabled(False)
        elif self.cells.usable == 0:
            self._show_problem(
                "There is nothing to retrain with yet: no single-cell image of this session has been reviewed. "
                "Confirm or correct cells first (cells of smear fields and artefacts are not used)."
            )
            self.start_button.setEnabled(False)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Base data set (folder of class folders)", self.base_data.text())
        if folder:
            self.base_data.setText(folder)

    # -- running

    def start(self) -> None:
        if self.job is not None and self.job.running:
            return
        base = self.base_data.text().strip()
        name = self.name.text().strip()
        if not base or not Path(base).is_dir():
            self._show_problem(
                f"The base data folder {base or '(none)'} does not exist. Choose the folder of class folders "
                "(basophil, eosinophil, …) the models were trained on, for example the PBC data set."
            )
            return
        problem = check_model_name(name, self._models_dir)
        if problem:
            self._show_problem(problem)
            return
        self.settings.set_value(BASE_DATA_KEY, base)
        recipe = replace(self.recipe, epochs_fine=self.epochs.value())
        self._run(RetrainJob(self.session, base, name, recipe, models_dir=self._models_dir, work_dir=self._work_dir, parent=self))

    def _inputs(self) -> list[QWidget]:
        return [self.base_data, self.name, self.epochs]

    def _finished(self, folder: str) -> None:
        super()._finished(folder)
        self.status.setText(f"The new model is ready: {folder}. Choose it in Analysis › Choose model….")
        self.bundle_added.emit(folder)
