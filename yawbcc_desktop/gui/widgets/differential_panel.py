"""The differential count as the lab reports it, its flags, and the sign-off.

White cells make up 100 %; erythroblasts and platelets are per 100 WBC; artefacts are left
out.  The numbers come from the session file (``core.differential``), the same code the
CSV export runs, so the panel and the export never disagree.  They are counted off the GUI
thread (a tenth of a second on a big session) and shown when they arrive.
"""

from __future__ import annotations

import os
from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...core.classes import WBC_GROUPS
from ...core.differential import ABOVE_RANGE, BELOW_RANGE, FEW_CELLS, PER_100_WBC, Differential
from ...core.store import SessionError, SignOff
from ..background import in_background
from ..palette import SHORT_NAMES, class_icon, display_name
from ..review import ReviewController
from .sample_notes import SampleNotesBox

FLAG_COLOUR = "#C62828"
COLUMNS = ("Class", "Cells", "%", "Reference", "")


class DifferentialPanel(QWidget):
    sign_off_requested = Signal(object)  # folder path, or None for the whole session
    refreshed = Signal()  # the panel shows the count as it was when last asked for

    def __init__(self, review: ReviewController, parent=None):
        super().__init__(parent)
        self.setObjectName("DifferentialPanel")
        self._review = review
        self.diff: Differential | None = None
        self._counting = False  # a count is on its way
        self._count_again = False  # asked for while it was: the count it brings may be old
        self.scope = QComboBox()
        self.scope.setToolTip("Count the whole session or one folder (one patient's slide)")
        self.scope.currentIndexChanged.connect(self.refresh)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setShowGrid(False)
        self.table.verticalHeader().setDefaultSectionSize(21)
        # All eight classes in view: the count is read at a glance, never scrolled.
        self.table.setFixedHeight(21 * (len(WBC_GROUPS) + len(PER_100_WBC)) + 28)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.totals = QLabel("")
        self.totals.setObjectName("Caption")
        self.totals.setWordWrap(True)
        self.flags = QLabel("")
        self.flags.setWordWrap(True)
        self.flags.setTextFormat(Qt.TextFormat.RichText)
        self.flags.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        flags_box = QScrollArea()
        flags_box.setWidget(self.flags)
        flags_box.setWidgetResizable(True)
        flags_box.setFrameShape(QFrame.Shape.NoFrame)
        flags_box.setMinimumHeight(60)
        self.signed = QLabel("")
        self.signed.setWordWrap(True)
        self.sign_button = QPushButton("Sign off…")
        self.sign_button.setObjectName("SignOffButton")
        self.sign_button.clicked.connect(lambda: self.sign_off_requested.emit(self.scope.currentData()))
        self.notes = SampleNotesBox(review)
        self.scope.currentIndexChanged.connect(lambda: self.notes.show_scope(self.scope.currentData()))
        scope_row = QHBoxLayout()
        scope_row.addWidget(QLabel("Count of"))
        scope_row.addWidget(self.scope, 1)
        sign_row = QHBoxLayout()
        sign_row.addWidget(self.signed, 1)
        sign_row.addWidget(self.sign_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addLayout(scope_row)
        layout.addWidget(self.table)
        layout.addWidget(self.totals)
        layout.addWidget(flags_box, 1)
        layout.addWidget(self.notes)
        layout.addLayout(sign_row)
        review.session_changed.connect(self.fill_scopes)
        self.fill_scopes()

    def fill_scopes(self) -> None:
        """The session, then each folder it has images from."""
        session = self._review.session
        wanted: list[tuple[str, str | None]] = [("Whole session", None)]
        if session is not None:
            folders = session.folders()
            if len(folders) > 1:
                wanted += [(f"Folder {os.path.basename(f) or f}", f) for f in folders]
        current = self.scope.currentData()
        if [self.scope.itemData(i) for i in range(self.scope.count())] != [d for _, d in wanted]:
            self.scope.blockSignals(True)
            self.scope.clear()
            for text, data in wanted:
                self.scope.addItem(text, data)
                self.scope.setItemData(self.scope.count() - 1, data or "the whole session", Qt.ItemDataRole.ToolTipRole)
            index = self.scope.findData(current)
            self.scope.setCurrentIndex(max(index, 0))
            self.scope.blockSignals(False)
        self.notes.show_scope(self.scope.currentData())
        self.refresh()

    def refresh(self, *args) -> None:
        """Count again, off the GUI thread; ``refreshed`` once it is shown."""
        if self._counting:
            self._count_again = True
            return
        session = self._review.session
        count = self._review.count_query(self.scope.currentData())
        if count is None:
            self._show(None, None)
            return
        self._counting, self._count_again = True, False
        in_background(self, count, lambda found: self._counted(*found), self._not_counted, reading=session)

    def _counted(self, diff: Differential | None, last: SignOff | None) -> None:
        self._counting = False
        if self._count_again:
            self.refresh()  # something changed while it counted: that count is not shown
            return
        self._show(diff, last)

    def _not_counted(self, exc: Exception) -> None:
        self._counting = False
        if not isinstance(exc, SessionError):
            raise exc
        if self._count_again:
            self.refresh()
            return
        self.totals.setText(f"The count could not be read: {exc}")

    def _show(self, diff: Differential | None, last: SignOff | None) -> None:
        self.diff = diff
        self.table.setRowCount(0)
        if diff is None:
            self.totals.setText("No session open.")
            self.flags.setText("")
            self.signed.setText("")
            self.sign_button.setEnabled(False)
            self.refreshed.emit()
            return
        ranges = self._review.prefs.reference_ranges
        flagged = {f.group: f for f in diff.flags if f.code in (ABOVE_RANGE, BELOW_RANGE)}
        for group in WBC_GROUPS:
            r = ranges.get(group)
            pct = diff.percent.get(group)
            flag = flagged.get(group)
            mark = "" if flag is None else ("▲ high" if flag.code == ABOVE_RANGE else "▼ low")
            self._add_row(
                group, diff.counts[group], "" if pct is None else f"{pct:.1f}", f"{r.low:g}–{r.high:g}" if r else "", mark
            )
        for group in PER_100_WBC:
            per100 = diff.per_100_wbc.get(group)
            value = "" if per100 is None else f"{per100:.1f} /100 WBC"
            self._add_row(
                group, diff.counts[group], value, "", "present" if group == "ERYTHROBLAST" and diff.counts[group] else ""
            )
        parts = [f"{diff.wbc:,} white cells counted"]
        if diff.artefacts:
            parts.append(f"{diff.artefacts:,} artefacts left out")
        if diff.unclassified:
            parts.append(f"{diff.unclassified:,} not classified yet")
        if diff.unreviewed:
            parts.append(f"<b style='color:#B26A00'>{diff.unreviewed:,} cells still to review: provisional</b>")
        self.totals.setText(" · ".join(parts))
        shown = [f for f in diff.flags if f.code != FEW_CELLS or diff.wbc]
        self.flags.setText(
            "<br>".join(f"<span style='color:{FLAG_COLOUR}'>⚑</span> {f.message}" for f in shown) if shown else "No flag."
        )
        self._show_sign_off(diff, last)
        self.refreshed.emit()

    def _add_row(self, group: str, n: int, value: str, reference: str, mark: str) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        name = QTableWidgetItem(class_icon(group), f"{display_name(group)} ({SHORT_NAMES[group]})")
        cells = [name, QTableWidgetItem(f"{n:,}"), QTableWidgetItem(value), QTableWidgetItem(reference), QTableWidgetItem(mark)]
        for column, item in enumerate(cells):
            if column in (1, 2):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if mark:
                item.setForeground(QColor(FLAG_COLOUR))
            self.table.setItem(row, column, item)

    def _show_sign_off(self, diff: Differential, last: SignOff | None) -> None:
        if last is None:
            text = "Not signed off."
        elif last.current:
            text = f"<b style='color:#2E7D32'>✓ Signed off</b> by {last.reviewer} at {_when(last.at)}."
        else:
            text = f"<span style='color:#B26A00'>Signed off by {last.reviewer} at {_when(last.at)}, changed since.</span>"
        self.signed.setText(text)
        ready = diff.unreviewed == 0 and (diff.wbc + diff.counts["PLATELET"] + diff.counts["ERYTHROBLAST"]) > 0
        self.sign_button.setEnabled(ready and not (last is not None and last.current))
        self.sign_button.setToolTip(
            "Sign off this count with your name and the time"
            if ready
            else "Every cell of the to-review queue must be reviewed first"
        )


def _when(at: str) -> str:
    """An ISO UTC time as the reviewer's local date and minute."""
    try:
        return datetime.fromisoformat(at).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return at
