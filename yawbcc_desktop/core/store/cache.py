"""The cells of a session that a window shows, held in memory and kept in step by the session.

A table over a month of a busy lab asks for thousands of values a second and cannot wait on
SQLite, so the session keeps the cells its views have read (``ReviewSession.cache``), in the
order they were read: a cell's *row* is its index here.  The session itself updates them, in
the same call that commits a correction, an undo or a redo, then tells its listeners which
cells changed; nobody else applies a label.  Filtering and sorting 100,000 cells read whole
numpy columns (``columns``), kept in step the same way.

One thread (the GUI's): cells are added, read and relabelled there.  A cache may be filled on
another thread before anything reads it (a session opened in the background).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from .. import review_rules
from ..classes import REVIEW_LABELS
from .records import CellChange, SessionCell

_LABEL_CODES = {label: i for i, label in enumerate(REVIEW_LABELS)}
NO_LABEL = -1  # not reviewed
UNKNOWN = len(REVIEW_LABELS)  # a prediction outside REVIEW_LABELS ('' never classified)


class CellColumns(NamedTuple):
    """The cells as numpy columns (row order), so that filtering and sorting 100,000 cells is
    a handful of array operations rather than a Python call per cell."""

    predicted: np.ndarray  # int16, index in REVIEW_LABELS
    label: np.ndarray  # int16, index in REVIEW_LABELS; -1 not reviewed
    confidence: np.ndarray  # float64, nan not classified
    flagged: np.ndarray  # bool: flags fixed at analysis
    cell_index: np.ndarray  # int32, the cell's number within its image

    @property
    def final(self) -> np.ndarray:
        """Index in REVIEW_LABELS of what each cell counts as (``SessionCell.final_label``)."""
        return np.where(self.label >= 0, self.label, self.predicted)

    def status_codes(self, threshold: float) -> np.ndarray:
        """Index in ``review_rules.CELL_STATUSES`` of each cell's ``SessionCell.status``."""
        return review_rules.status_codes(self.label, self.predicted, self.confidence, threshold, self.flagged)


def label_code(label: str | None) -> int:
    return NO_LABEL if label is None else _LABEL_CODES[label]


def columns_of(cells: list[SessionCell]) -> CellColumns:
    n = len(cells)
    return CellColumns(
        np.fromiter((_LABEL_CODES.get(c.predicted, UNKNOWN) for c in cells), np.int16, n),
        np.fromiter((label_code(c.label) for c in cells), np.int16, n),
        np.fromiter((c.confidence for c in cells), np.float64, n),
        np.fromiter((bool(c.flags) for c in cells), bool, n),
        np.fromiter((c.cell_index for c in cells), np.int32, n),
    )


class CellCache:
    """Cells in the order they were read (their rows), by row and by session id."""

    def __init__(self) -> None:
        self._cells: list[SessionCell] = []
        self._rows: dict[int, int] = {}  # session id -> row (cells not in a session have none)
        self._columns: CellColumns | None = None  # built when first asked, extended as cells arrive
        self._listeners: list[Callable[[list[int]], None]] = []

    def __len__(self) -> int:
        return len(self._cells)

    def cell(self, row: int) -> SessionCell:
        return self._cells[row]

    def cells(self) -> list[SessionCell]:
        return self._cells

    def row_of(self, cell_id: int) -> int:
        """Row of the cell with session id ``cell_id``; -1 if it is not here."""
        return self._rows.get(cell_id, -1)

    def columns(self) -> CellColumns:
        """Every cell as numpy columns, in step with the cells."""
        have = 0 if self._columns is None else len(self._columns.predicted)
        if have < len(self._cells):
            tail = columns_of(self._cells[have:])
            self._columns = tail if self._columns is None else CellColumns(*map(np.concatenate, zip(self._columns, tail)))
        elif self._columns is None:
            self._columns = columns_of([])
        return self._columns

    def add(self, cells: Iterable[SessionCell]) -> range:
        """Append cells read from the session (or results no session took); returns their rows."""
        start = len(self._cells)
        self._cells.extend(cells)
        for row in range(start, len(self._cells)):
            if self._cells[row].id >= 0:
                self._rows[self._cells[row].id] = row
        return range(start, len(self._cells))

    def clear(self) -> None:
        """Forget every cell (the session file keeps them)."""
        self._cells, self._rows, self._columns = [], {}, None

    # -- kept in step by the session
    def listen(self, listener: Callable[[list[int]], None]) -> None:
        """Call ``listener(cell_ids)`` after each committed correction, with the ids it changed."""
        self._listeners.append(listener)

    def relabel(self, changes: Iterable[CellChange], reviewer: str, at: str) -> list[int]:
        """A committed correction (``ReviewSession`` only): the cells held here take their new
        labels, as the session's rows did; returns the ids of every cell changed."""
        columns = self.columns()
        changed = []
        for change in changes:
            changed.append(change.cell_id)
            row = self._rows.get(change.cell_id, -1)
            if row < 0:
                continue
            reviewed = change.after is not None
            cell = self._cells[row]
            self._cells[row] = replace(
                cell,
                label=change.after,
                reviewer=reviewer if reviewed else "",
                reviewed_at=at if reviewed else "",
                version=cell.version + 1,  # as the session's row: one change, one version
            )
            columns.label[row] = label_code(change.after)
        return changed

    def refresh(self, cells: Iterable[SessionCell]) -> list[int]:
        """Cells read again from the session after another station changed them (``ReviewSession.refresh``):
        those held here take what the session now says; returns the ids of those held."""
        columns = self.columns()
        changed = []
        for cell in cells:
            row = self._rows.get(cell.id, -1)
            if row >= 0:
                self._cells[row] = cell
                columns.label[row] = label_code(cell.label)
                changed.append(cell.id)
        return changed

    def versions(self, cell_ids: Iterable[int]) -> dict[int, int]:
        """The version of each held cell among ``cell_ids``: what this window saw."""
        return {i: self._cells[self._rows[i]].version for i in cell_ids if i in self._rows}

    def tell(self, cell_ids: list[int]) -> None:
        """Call every listener with the ids of the cells a correction changed, shown or not."""
        for listener in list(self._listeners):
            listener(cell_ids)
