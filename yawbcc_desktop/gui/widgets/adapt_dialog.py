"""Adapt a model to this lab: the session's reviewed cells refit the model's classifier head.

The dialog shows what the adaptation will learn from (reviewed cells per class, which classes
have enough, the minimum), runs an ``AdaptJob`` with its progress, log and Cancel, and at the
end the figures before and after.  ``model_adapted(folder)`` tells the window to use the new
model for new analyses.
"""

from __future__ import annotations

import html
import math
import re
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ...core.classes import GROUPS
from ...core.classifier import ModelBundleError, list_bundles
from ...core.store import ReviewSession
from ..adapt import (
    MIN_CELLS,
    MIN_IMAGE_CELLS,
    MIN_PER_CLASS,
    AdaptJob,
    adaptation_problem,
    cannot_adapt,
    count_adaptation_cells,
    count_adaptation_images,
    images_problem,
)
from ..palette import class_icon, display_name
from ..training_job import check_model_name, training_command
from .job_dialog import JobDialog, left_out_text

GOOD, SHORT = "#2E7D32", "#9E9E9E"


def _pct(value) -> str:
    return "–" if value is None or not math.isfinite(float(value)) else f"{100 * float(value):.1f} %"


def default_name(base: str, lab: str, models_dir: Path | None = None) -> str:
    """``<base>-<lab>`` (or ``<base>-<date>`` without a lab), made unique."""
    suffix = re.sub(r"[^A-Za-z0-9._-]+", "-", lab).strip("-._")[:32] or datetime.now().strftime("%Y%m%d")
    name = f"{base}-{suffix}"[:64]
    for n in range(2, 100):
        if check_model_name(name, models_dir) is None:
            break
        name = f"{base}-{suffix}-{n}"[:64]
    return name


INTRO = {
    False: (
        "Refits the model's last layer on the cells reviewed in this session, together with a sample of the "
        "cells it was trained on, so that it learns this lab's stain and microscope without forgetting the "
        "others. It takes a minute or two; the new model is then used for new images, and cells already "
        "analysed keep their results."
    ),
    True: (
        "Without corrections: measures the model's image statistics (its batch-norm layers' means and variances) "
        "on the cells of this session's images and keeps half of them, half the model's own. No label is needed "
        "and nothing is trained; on labs the models never saw it raised the balanced accuracy (README, Adapting to "
        "a lab's images). Nothing is measured on your lab, so its images stay flagged unfamiliar and every cell "
        "still waits for review; reviewed cells then adapt the model it came from. The new model is meant for this "
        "lab's images only."
    ),
}


def images_results_html(report: dict) -> str:
    """What a finished adaptation to the images did: cells measured, classes that moved."""
    before, after = report.get("classes_before") or {}, report.get("classes_after") or {}
    rows = "".join(
        f"<tr><td>{html.escape(display_name(g), quote=False)}</td><td align='right'>{before.get(g, 0)}</td>"
        f"<td align='right'><b>{after.get(g, 0)}</b></td></tr>"
        for g in GROUPS
        if before.get(g) or after.get(g)
    )
    return (
        f"<b>Model {html.escape(str(report.get('name', '')))} is ready</b>, adapted from "
        f"{html.escape(str(report.get('base', '')))}: image statistics measured on {report.get('cells', 0)} cells of "
        f"{report.get('images', 0)} images ({_pct(report.get('share'))} this lab's) in {float(report.get('seconds', 0)):.0f} s. "
        f"The class of {_pct(report.get('class_changed'))} of these cells changed:"
        "<table cellspacing='0' cellpadding='3' style='margin-top:4px'>"
        "<tr><th align='left'>Class</th><th align='right'>before</th><th align='right'>after</th></tr>"
        f"{rows}</table>"
        "<span style='color:#546E7A'>No cell of this lab is known, so nothing was measured on it: its images stay "
        "flagged unfamiliar and every cell waits for review.</span>"
    )


def results_html(report: dict) -> str:
    """The figures of a finished adaptation: before and after, and the base model's own."""
    if report.get("source") == "images":
        return images_results_html(report)
    rows = [
        (
            f"Accuracy on this lab's cells (cross-validated, {report.get('folds', '?')} folds)",
            report.get("accuracy_before"),
            report.get("accuracy_after_cross_validated"),
        ),
        (
            "Balanced accuracy on this lab's cells (cross-validated)",
            report.get("balanced_accuracy_before"),
            report.get("balanced_accuracy_after_cross_validated"),
        ),
        (
            f"Accuracy on the base model's replay sample ({', '.join(report.get('replay_domains') or ['its training labs'])})",
            report.get("replay_accuracy_before"),
            report.get("replay_accuracy_after"),
        ),
    ]
    cells = "".join(
        f"<tr><td>{html.escape(what, quote=False)}</td>"
        f"<td align='right'>{_pct(before)}</td><td align='right'><b>{_pct(after)}</b></td></tr>"
        for what, before, after in rows
    )
    text = (
        f"<b>Model {html.escape(str(report.get('name', '')))} is ready</b>, adapted from "
        f"{html.escape(str(report.get('base', '')))} on {report.get('cells', 0)} cells of this lab in "
        f"{float(report.get('seconds', 0)):.0f} s."
        "<table cellspacing='0' cellpadding='3' style='margin-top:4px'>"
        "<tr><th align='left'></th><th align='right'>before</th><th align='right'>after</th></tr>"
        f"{cells}</table>"
        "<span style='color:#546E7A'>Cross-validated: each cell is scored by a model fitted without it.</span>"
    )
    base = report.get("base_test_metrics") or {}
    if base.get("accuracy") is not None:
        f1 = f", macro F1 {float(base['macro_f1']):.3f}" if base.get("macro_f1") is not None else ""
        text += (
            f"<br>Base model {html.escape(str(report.get('base', '')))} on its own test split: accuracy "
            f"{_pct(base['accuracy'])}{f1} (not measured again)."
        )
    left = report.get("classes_not_adapted") or {}
    if left:
        names = ", ".join(f"{display_name(g)} {n}" for g, n in left.items())
        text += f"<br>Not adapted (fewer than {MIN_PER_CLASS} cells): {html.escape(names)}."
    return text


class AdaptDialog(JobDialog):
    """Adapt a model to the lab of ``session``; ``model_adapted(folder)`` when the new model is ready."""

    model_adapted = Signal(str)
    cancel_text = "Cancel adaptation"
    failed_text = "Adaptation failed."
    cancelled_text = "Adaptation cancelled; no model was added."
    log_placeholder = "The adaptation's log appears here."

    def __init__(
        self,
        session: ReviewSession,
        parent: QWidget | None = None,
        *,
        current_model: str | Path | None = None,
        models_dir: str | Path | None = None,
        work_dir: str | Path | None = None,
        lab_um_per_px: float | None = None,
    ):
        """``lab_um_per_px``: the lab's pixel size (Preferences), at which the images are framed."""
        super().__init__("Adapt model to this lab", parent)
        self.lab_um_per_px = lab_um_per_px
        self.resize(660, 540)
        self.session = session
        self._models_dir = Path(models_dir) if models_dir is not None else None
        self._work_dir = work_dir
        self._name_edited = False
        self._done = False

        self.intro = intro = QLabel(INTRO[False])
        intro.setWordWrap(True)
        self.source = QComboBox()
        self.source.addItem("Reviewed cells: refit the last layer", False)
        self.source.addItem("This session's images, without corrections: the image statistics", True)
        self.base = QComboBox()
        for folder, card in list_bundles():
            if isinstance(card, ModelBundleError):
                continue
            note = "" if cannot_adapt(folder) is None else "  (no replay sample: from images only)"
            self.base.addItem(f"{card.name}{note}", str(folder))
            if current_model and Path(folder) == Path(current_model):
                self.base.setCurrentIndex(self.base.count() - 1)
        self.lab = QLineEdit()
        self.lab.setPlaceholderText("the lab, site or analyser (optional; goes into the model card)")
        self.name = QLineEdit()
        form = QFormLayout()
        form.addRow("Learn from", self.source)
        form.addRow("Model to adapt", self.base)
        form.addRow("Lab", self.lab)
        form.addRow("New model name", self.name)

        self.table = QTableWidget(len(GROUPS), 3)
        self.table.setHorizontalHeaderLabels(("Class", "Reviewed cells", "Adapted"))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)  # eight rows at a glance
        self.totals = QLabel("")
        self.totals.setWordWrap(True)
        self.results = QLabel("")
        self.results.setWordWrap(True)
        self.results.setTextFormat(Qt.TextFormat.RichText)
        self.results.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.results.setVisible(False)
        self._layout([intro, form, self.table, self.totals], [self.results])
        self.log.setMinimumHeight(60)
        for widget in (self.bar, self.status, self.log):
            widget.setVisible(False)  # until started: the counts and the figures matter first
        self.start_button.setText("Start adaptation")

        self.source.currentIndexChanged.connect(self.refresh)
        self.base.currentIndexChanged.connect(self._base_or_lab_changed)
        self.lab.textChanged.connect(self._base_or_lab_changed)
        self.name.textEdited.connect(self._name_was_edited)
        self.name.textChanged.connect(self._update_start)
        self.refresh()
        self._base_or_lab_changed()

    # -- what the dialog says before starting

    @property
    def from_images(self) -> bool:
        return bool(self.source.currentData())

    def refresh(self) -> None:
        """Count the session's reviewed cells (or its images' cells) again: the reviewer may have
        gone on reviewing or opening images."""
        self.intro.setText(INTRO[self.from_images])
        self.table.setVisible(not self.from_images)
        self.images = count_adaptation_images(self.session)
        self.cells = count_adaptation_cells(self.session)
        if self.from_images:
            im = self.images
            mark = GOOD if im.enough else "#B71C1C"
            self.totals.setText(
                f"<b style='color:{mark}'>{im.cells:,}</b> cells in {len(im.paths):,} image{'s' * (len(im.paths) != 1)} "
                f"of this session will be measured (at least {MIN_IMAGE_CELLS} are needed)."
                + left_out_text((im.missing, f"image{'s' * (im.missing != 1)} no longer on disk"))
            )
            self._update_start()
            return
        for row, group in enumerate(GROUPS):
            n = self.cells.per_class[group]
            adapted = n >= MIN_PER_CLASS
            name = QTableWidgetItem(class_icon(group), display_name(group))
            count = QTableWidgetItem(f"{n:,}")
            count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            verdict = QTableWidgetItem("yes" if adapted else (f"no: under {MIN_PER_CLASS}" if n else "no cell"))
            verdict.setForeground(QColor(GOOD if adapted else SHORT))
            if not adapted:
                name.setForeground(QColor(SHORT))
                count.setForeground(QColor(SHORT))
            for col, item in enumerate((name, count, verdict)):
                self.table.setItem(row, col, item)
        rows_height = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(rows_height + self.table.horizontalHeader().height() + 2 * self.table.frameWidth())
        c = self.cells
        mark = GOOD if c.enough else "#B71C1C"
        text = (
            f"<b style='color:{mark}'>{c.total:,}</b> cells in {len(c.adapted)} class{'es' if len(c.adapted) != 1 else ''} "
            f"will adapt the model (at least {MIN_CELLS} are needed; a class needs {MIN_PER_CLASS})."
        )
        text += left_out_text(
            (c.artefacts, "artefact" + "s" * (c.artefacts != 1)),
            (c.missing, f"cell{'s' * (c.missing != 1)} whose image is no longer on disk"),
        )
        self.totals.setText(text)
        self._update_start()

    def _base_or_lab_changed(self, *_args) -> None:
        if not self._name_edited:
            folder = self.base.currentData()
            base = Path(folder).name if folder else "model"
            self.name.setText(default_name(base, self.lab.text(), self._models_dir))
        self._update_start()

    def _name_was_edited(self, _text: str) -> None:
        self._name_edited = True

    def start_problem(self) -> str | None:
        """Why Start is disabled (None: it is not)."""
        command, why = training_command("Adapting a model")
        if command is None:
            return why
        if self.from_images:
            if not self.base.currentData():
                return "No model to adapt: install or train one first."
            return images_problem(self.images) or check_model_name(self.name.text().strip(), self._models_dir)
        problem = cannot_adapt(self.base.currentData()) or adaptation_problem(self.cells)
        if problem and self.images.enough:
            problem += " Or learn from this session's images, without corrections (Learn from, above)."
        return problem or check_model_name(self.name.text().strip(), self._models_dir)

    def _update_start(self, *_args) -> None:
        if (self.job is not None and self.job.running) or self._done:
            return
        problem = self.start_problem()
        self._show_problem(problem or "")
        self.start_button.setEnabled(problem is None)
        self.start_button.setToolTip(problem or "")

    # -- running

    def start(self) -> None:
        if (self.job is not None and self.job.running) or self.start_problem():
            return
        self.results.setVisible(False)
        for widget in (self.bar, self.status, self.log):
            widget.setVisible(True)
        self.resize(self.width(), max(self.height(), 820))
        job = AdaptJob(
            self.session,
            self.base.currentData(),
            self.name.text().strip(),
            self.lab.text(),
            from_images=self.from_images,
            lab_um_per_px=self.lab_um_per_px,
            models_dir=self._models_dir,
            work_dir=self._work_dir,
            parent=self,
        )
        self._run(job)

    def _inputs(self) -> list[QWidget]:
        return [self.source, self.base, self.lab, self.name]

    def _set_running(self, running: bool) -> None:
        super()._set_running(running)
        if not running:
            self._update_start()

    def _finished(self, folder: str) -> None:
        self._done = True
        super()._finished(folder)
        self.status.setText(f"The new model is in {folder}. It is now used for new images.")
        report = self.job.report if isinstance(self.job, AdaptJob) else None
        self.results.setText(results_html(report or {}))
        self.results.setVisible(True)
        self.model_adapted.emit(folder)
