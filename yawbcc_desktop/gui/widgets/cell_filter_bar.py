"""Which cells the gallery and the table show: classes, lowest confidence, review status."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QToolButton, QVBoxLayout, QWidget

from ...core.review_rules import CELL_STATUSES, CONFIDENT, CONFIRMED, CORRECTED, TO_REVIEW
from ..cell_filter import CellFilter
from ..cell_table_model import FINAL_LABELS, NOT_CLASSIFIED_LABEL
from ..palette import class_icon, display_name, short_name
from ..throttle import Throttle

STATUS_CHOICES = (
    ("All cells", CELL_STATUSES),
    ("To review", (TO_REVIEW,)),
    ("Not reviewed", (TO_REVIEW, CONFIDENT)),
    ("Reviewed", (CONFIRMED, CORRECTED)),
    ("Corrected", (CORRECTED,)),
)
TO_REVIEW_CHOICE = 1


class CellFilterBar(QWidget):
    changed = Signal()

    def __init__(self, cell_filter: CellFilter, parent=None):
        super().__init__(parent)
        self.setObjectName("CellFilterBar")
        self._filter = cell_filter
        self._only_what = ""  # what the cells shown by hand are (show_only_cells), for the summary
        self.class_buttons: dict[str, QToolButton] = {}
        classes = QHBoxLayout()
        classes.setSpacing(2)
        for group in FINAL_LABELS:
            button = QToolButton()
            button.setObjectName("ClassChip")
            button.setText(short_name(group))
            button.setIcon(class_icon(group))
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.setCheckable(True)
            button.setChecked(True)
            shown = f"{display_name(group).lower()}s" if group else "cells never classified"
            button.setToolTip(f"Show {shown} (right-click: only these)")
            button.toggled.connect(self._apply)
            button.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            button.customContextMenuRequested.connect(lambda _pos, g=group: self.show_only(g))
            classes.addWidget(button)
            self.class_buttons[group] = button
        # Only while some cell has no class: a session of cells only segmented (yawbcc segment).
        self.class_buttons[NOT_CLASSIFIED_LABEL].setVisible(False)
        classes.addStretch(1)

        self.confidence = QSlider(Qt.Orientation.Horizontal)
        self.confidence.setRange(0, 100)
        self.confidence.setToolTip("Hide cells below this calibrated confidence (and, above 0 %, those never classified)")
        self.confidence_label = QLabel("≥ 0 %")
        self.confidence_label.setMinimumWidth(44)
        self.confidence.valueChanged.connect(self._apply)
        self.status = QComboBox()
        self.status.setToolTip(
            "Review state: 'To review' is the queue of unreviewed cells below the review threshold, "
            "of an image unfamiliar to the model, or whose size contradicts their class"
        )
        for text, statuses in STATUS_CHOICES:
            self.status.addItem(text, statuses)
        self.status.currentIndexChanged.connect(self._apply)
        self.reset_button = QToolButton()
        self.reset_button.setText("Reset")
        self.reset_button.setToolTip("Show every cell")
        self.reset_button.clicked.connect(lambda: self.reset())
        self.summary = QLabel("")
        self.summary.setObjectName("Caption")

        second = QHBoxLayout()
        second.addWidget(QLabel("Confidence"))
        second.addWidget(self.confidence, 1)
        second.addWidget(self.confidence_label)
        second.addWidget(self.status)
        second.addWidget(self.reset_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 2)
        layout.setSpacing(3)
        layout.addLayout(classes)
        layout.addLayout(second)
        layout.addWidget(self.summary)
        self._summary_later = Throttle(self.update_summary, 250, self)
        f = cell_filter
        for signal in (f.rowsInserted, f.rowsRemoved, f.modelReset, f.layoutChanged):
            signal.connect(self._summary_later)
        self.update_summary()

    def show_only(self, group: str) -> None:
        for g, button in self.class_buttons.items():
            button.blockSignals(True)
            button.setChecked(g == group)
            button.blockSignals(False)
        self._apply()

    def show_to_review(self) -> None:
        """Only the to-review queue, every class, any confidence."""
        self.reset()
        self.status.setCurrentIndex(TO_REVIEW_CHOICE)

    def show_only_cells(self, rows: list[int], what: str) -> None:
        """Only the cells of these store rows (every class, status and confidence), the
        summary saying what they are."""
        self._only_what = what
        self.reset(keep_only=True)
        self._filter.set_only(rows)
        self.update_summary()
        self.changed.emit()

    def reset(self, keep_only: bool = False) -> None:
        if not keep_only:
            self._only_what = ""
            self._filter.set_only(None)
        for button in self.class_buttons.values():
            button.blockSignals(True)
            button.setChecked(True)
            button.blockSignals(False)
        self.confidence.blockSignals(True)
        self.confidence.setValue(0)
        self.confidence.blockSignals(False)
        self.status.blockSignals(True)
        self.status.setCurrentIndex(0)
        self.status.blockSignals(False)
        self._apply()

    def _apply(self, *args) -> None:
        groups = frozenset(g for g, b in self.class_buttons.items() if b.isChecked())
        low = self.confidence.value() / 100
        self.confidence_label.setText(f"≥ {self.confidence.value()} %")
        self._filter.set_criteria(groups=groups, confidence=(low, 1.0), statuses=frozenset(self.status.currentData()))
        self.update_summary()
        self.changed.emit()

    def update_summary(self, *args) -> None:
        shown, total = self._filter.rowCount(), self._filter.sourceModel().rowCount()
        final = self._filter.cell_model.store.columns().final
        self.class_buttons[NOT_CLASSIFIED_LABEL].setVisible(bool(np.any(final == FINAL_LABELS.index(NOT_CLASSIFIED_LABEL))))
        if self._filter.only is not None and self._only_what:
            self.summary.setText(f"{self._only_what}: showing {shown:,} of {total:,} cells")
        elif self._filter.is_filtering():
            self.summary.setText(f"Showing {shown:,} of {total:,} cells")
        else:
            self.summary.setText(f"{total:,} cell{'s' if total != 1 else ''}")
        self.reset_button.setEnabled(self._filter.is_filtering())
