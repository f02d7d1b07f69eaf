"""The table of cells (Qt model/view); ``cell_filter.py`` is the filter that the table and
the gallery show it through.

The model holds only row ids of the store, in analysis order or sorted; every value is
computed when a view asks for it, so the model stays quick with tens of thousands of
cells.  Sorting happens here, with Python's sort on precomputed keys: a proxy's lessThan
would cost a Python call per comparison (seconds for 20,000 rows).  Columns are declared
once in ``COLUMNS``.  Views group and filter by a cell's *final* label (the reviewer's,
else the model's), so a corrected cell moves to its new class everywhere at once; a cell
never classified (segmented only) has none until a reviewer gives one, and shows as "not
classified" (``NOT_CLASSIFIED_LABEL``), to review.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QFont

from ..core.cells import PLATELET
from ..core.classes import REVIEW_LABELS
from ..core.review_rules import CELL_STATUSES, CORRECTED
from ..core.store import SessionCell
from .cell_store import CellStore
from .image_loader import ImageLoader
from .palette import NO_VALUE, REVIEW_COLOURS, class_icon, display_name, percent

CellRole = Qt.ItemDataRole.UserRole + 1  # the SessionCell
RowIdRole = Qt.ItemDataRole.UserRole + 2  # its row id in the store
GroupRole = Qt.ItemDataRole.UserRole + 3  # final label, e.g. "NEUTROPHIL" (the reviewer's if reviewed)
ConfidenceRole = Qt.ItemDataRole.UserRole + 4
ThumbnailRole = Qt.ItemDataRole.UserRole + 5  # QImage, or None while it loads
SortRole = Qt.ItemDataRole.UserRole + 6

# The final label of a cell never classified and not reviewed yet; the views group and filter
# it after the review labels.  Its index here is its class code in the cache's columns
# (``core.store.cache``: every label outside REVIEW_LABELS has the code len(REVIEW_LABELS)).
NOT_CLASSIFIED_LABEL = ""
FINAL_LABELS: tuple[str, ...] = (*REVIEW_LABELS, NOT_CLASSIFIED_LABEL)


class Column(NamedTuple):
    key: str
    header: str
    tip: str


COLUMNS: tuple[Column, ...] = (
    Column("image", "Image", "Image file the cell was found in"),
    Column("cell", "Cell", "Number of the cell within its image"),
    Column("kind", "Kind", "What segmentation found: a white cell (WBC) or a platelet"),
    Column("predicted", "Predicted", "Class with the highest calibrated probability (— never classified)"),
    Column("confidence", "Confidence", "Calibrated probability of the predicted class (— never classified)"),
    Column("final", "Final label", "What the cell counts as: the reviewer's class if reviewed, else the prediction"),
    Column(
        "status",
        "Review",
        "to review: not reviewed, and never classified, below the review threshold, of an image unfamiliar to the "
        "model, or of a size that contradicts the class; confident: not reviewed, none of these; "
        "confirmed: reviewer kept the prediction; corrected: reviewer changed it",
    ),
    Column("why", "Why to review", "Why an unreviewed cell waits for review (empty when it does not)"),
    Column("reviewer", "Reviewer", "Who reviewed the cell, and when"),
    Column("model", "Model", "Model bundle that classified the cell"),
)
COLUMN = {c.key: i for i, c in enumerate(COLUMNS)}

Index = QModelIndex | QPersistentModelIndex


class CellTableModel(QAbstractTableModel):
    """One row per cell, over a ``CellStore``; row ids stay the store's."""

    def __init__(self, store: CellStore, loader: ImageLoader | None = None, parent=None):
        super().__init__(parent)
        self._store = store
        self._loader = loader
        self._order = np.arange(store.cell_count)  # model row -> row id
        self._positions: np.ndarray | None = None  # row id -> model row, rebuilt when needed
        self._sort_column, self._sort_order = -1, Qt.SortOrder.AscendingOrder
        self._sorted_as: tuple | None = None  # (column, order, cells) of ``_order``; None once labels changed
        if loader is not None:
            loader.thumbnails_ready.connect(self._thumbnails_ready)

    @property
    def store(self) -> CellStore:
        return self._store

    @property
    def order(self) -> np.ndarray:
        """Row id of each model row (for the filter, which works on whole columns)."""
        return self._order

    # -- told by the controller
    def cells_added(self, rows: range) -> None:
        """The store appended ``rows``; announce them (in sorted place when sorted)."""
        if not len(rows):
            return
        self._positions = None
        if self._sort_column < 0:
            start = len(self._order)
            self.beginInsertRows(QModelIndex(), start, start + len(rows) - 1)
            self._order = np.concatenate([self._order, np.arange(rows.start, rows.stop)])
            self.endInsertRows()
            return
        self.sort(self._sort_column, self._sort_order)  # whole columns: cheaper than a bisect per cell

    def labels_changed(self, rows) -> None:
        """The session relabelled these cells (row ids): repaint them, filter them again."""
        self._sorted_as = None  # the rows stay where they are, but sorting again must sort
        positions = sorted(p for p in (self.index_of_id(r).row() for r in rows) if p >= 0)
        if not positions:
            return
        last = len(COLUMNS) - 1
        if len(positions) > 64:  # one signal for a big batch: each reaches every gallery section
            self.dataChanged.emit(self.index(positions[0], 0), self.index(positions[-1], last))
            return
        for p in positions:
            self.dataChanged.emit(self.index(p, 0), self.index(p, last))

    def reset(self) -> None:
        """The store was cleared or refilled."""
        self.beginResetModel()
        self._order = self._sorted_rows()
        self._positions = None
        self.endResetModel()

    def row_id_at(self, row: int) -> int:
        """The store row id of the cell shown at model row ``row``."""
        return int(self._order[row])

    def cell_at(self, row: int) -> SessionCell:
        """The cell shown at model row ``row`` (not a row id)."""
        return self._store.cell(int(self._order[row]))

    def index_of_id(self, row_id: int, column: int = 0) -> QModelIndex:
        """The model index of the cell with store row id ``row_id``."""
        if self._positions is None:
            positions = np.empty(len(self._order), np.int64)
            positions[self._order] = np.arange(len(self._order))
            self._positions = positions
        if not 0 <= row_id < len(self._positions):
            return QModelIndex()
        return self.index(int(self._positions[row_id]), column)

    # -- sorting
    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by ``column`` (-1: analysis order); persistent indexes follow their cells."""
        column = column if 0 <= column < len(COLUMNS) else -1
        if self._sorted_as == (column, order, self._store.cell_count):
            return  # already: QTableView.sortByColumn asks twice (itself, then its header's signal)
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        ids = [int(self._order[i.row()]) for i in persistent]
        self._sort_column, self._sort_order = column, order
        self._order = self._sorted_rows()
        self._positions = None
        moved = [self.index_of_id(rid, i.column()) for rid, i in zip(ids, persistent)]
        self.changePersistentIndexList(persistent, moved)
        self.layoutChanged.emit()

    def sort_column(self) -> int:
        return self._sort_column

    def _sorted_rows(self) -> np.ndarray:
        self._sorted_as = (self._sort_column, self._sort_order, self._store.cell_count)
        ids = np.arange(self._store.cell_count)
        if self._sort_column < 0:
            return ids
        key = _sort_keys(self._store, COLUMNS[self._sort_column].key)
        # Ties keep analysis order in both directions.
        if self._sort_order == Qt.SortOrder.AscendingOrder:
            return np.lexsort((ids, key))
        return np.lexsort((-ids, key))[::-1]

    # -- QAbstractTableModel
    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._order)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(COLUMNS):
            if role == Qt.ItemDataRole.DisplayRole:
                return COLUMNS[section].header
            if role == Qt.ItemDataRole.ToolTipRole:
                return COLUMNS[section].tip
        elif orientation == Qt.Orientation.Vertical and role == Qt.ItemDataRole.DisplayRole:
            return section + 1
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._order):
            return None
        row_id = int(self._order[index.row()])
        cell = self._store.cell(row_id)
        key = COLUMNS[index.column()].key
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(cell, key, self._store.review_threshold)
        if role == SortRole:
            return _sort_value(cell, key, self._store.review_threshold)
        if role == CellRole:
            return cell
        if role == RowIdRole:
            return row_id
        if role == GroupRole:
            return cell.final_label
        if role == ConfidenceRole:
            return cell.confidence
        if role == ThumbnailRole:
            return self.thumbnail(cell)
        if role == Qt.ItemDataRole.DecorationRole and key in ("predicted", "final"):
            label = cell.predicted if key == "predicted" else cell.final_label
            return class_icon(label) if label else None
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{cell.path}\ncell {cell.cell_index + 1}, box {cell.x},{cell.y} {cell.width}x{cell.height}"
            if cell.corrected:
                tip += f"\ncorrected from {display_name(cell.predicted)} by {cell.reviewer} at {cell.reviewed_at}"
            elif cell.reviewed:
                tip += f"\nconfirmed by {cell.reviewer} at {cell.reviewed_at}"
            return tip
        if role == Qt.ItemDataRole.TextAlignmentRole and key in ("cell", "confidence"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and key in ("status", "final"):
            status = self._store.status(row_id)
            return _COLOURS[status] if key == "status" or status == CORRECTED else None
        if role == Qt.ItemDataRole.FontRole and key == "final" and cell.corrected:
            return _BOLD
        return None

    def thumbnail(self, cell: SessionCell):
        """The cell's thumbnail (QImage), or None while it loads."""
        if self._loader is None:
            return None
        found = self._loader.cached(cell.path)
        if found is None or (found.image is not None and cell.cell_index not in found.cells):
            found = self._loader.thumbnails(cell.path, self._store.regions_of(cell.path))
        return found.cells.get(cell.cell_index) if found is not None else None

    def _thumbnails_ready(self, path: str) -> None:
        entry = self._store.image(path)
        if entry is None:
            return
        for row_id in entry.cell_rows:
            index = self.index_of_id(row_id)
            if index.isValid():
                self.dataChanged.emit(index, index, [ThumbnailRole])


_COLOURS = {status: QColor(colour) for status, colour in REVIEW_COLOURS.items()}
_BOLD = QFont()
_BOLD.setBold(True)


def _display(cell: SessionCell, key: str, threshold: float) -> str:
    if key == "image":
        return cell.file_name
    if key == "cell":
        return str(cell.cell_index + 1)
    if key == "kind":
        return "Platelet" if cell.kind == PLATELET else cell.kind
    if key == "predicted":
        return display_name(cell.predicted) if cell.classified else NO_VALUE
    if key == "confidence":
        return percent(cell.confidence)
    if key == "final":
        return display_name(cell.final_label)
    if key == "status":
        return cell.status(threshold)
    if key == "why":
        return "; ".join(cell.review_reasons(threshold))
    if key == "reviewer":
        return f"{cell.reviewer} {cell.reviewed_at[:16].replace('T', ' ')}" if cell.reviewed else ""
    if key == "model":
        return cell.model
    return ""


def _sort_value(cell: SessionCell, key: str, threshold: float):
    if key == "image":
        return (cell.path, cell.cell_index)
    if key == "cell":
        return cell.cell_index
    if key in ("predicted", "final"):
        label = cell.predicted if key == "predicted" else cell.final_label
        return REVIEW_LABELS.index(label) if label in REVIEW_LABELS else len(REVIEW_LABELS)
    if key == "confidence":
        return -1.0 if math.isnan(cell.confidence) else cell.confidence
    if key == "status":
        return CELL_STATUSES.index(cell.status(threshold))
    return _display(cell, key, threshold)


def _sort_keys(store: CellStore, key: str) -> np.ndarray:
    """``_sort_value`` of every cell (row id order) as one array, for ``np.lexsort``."""
    columns, cells, threshold = store.columns(), store.cells(), store.review_threshold
    if key == "image":
        path_rank = _text_ranks([c.path for c in cells], lambda row: cells[row].path)
        return path_rank * (int(columns.cell_index.max(initial=0)) + 1) + columns.cell_index
    if key == "cell":
        return columns.cell_index
    if key in ("predicted", "final"):
        return columns.predicted if key == "predicted" else columns.final
    if key == "confidence":
        return np.nan_to_num(columns.confidence, nan=-1.0)
    if key == "status":
        return columns.status_codes(threshold)
    # Text columns: cells alike in what the text says show the same text, made once per kind.
    if key == "why":
        low = np.where(columns.confidence >= threshold, 2, np.where(np.isnan(columns.confidence), 0, 1))
        alike = list(zip((columns.label >= 0).tolist(), low.tolist(), (c.flags for c in cells)))
    elif key == "reviewer":
        alike = [(c.label is not None, c.reviewer, c.reviewed_at) for c in cells]
    else:
        alike = [getattr(c, key) for c in cells]
    return _text_ranks(alike, lambda row: _display(cells[row], key, threshold))


def _text_ranks(alike: list, text_at) -> np.ndarray:
    """Rank of each row's text in sorted order, ``text_at(row)`` asked once per distinct ``alike``."""
    first: dict = {}
    for row, a in enumerate(alike):
        first.setdefault(a, row)
    texts = {a: text_at(row) for a, row in first.items()}
    rank = {text: i for i, text in enumerate(sorted(set(texts.values())))}
    by_alike = {a: rank[text] for a, text in texts.items()}
    return np.fromiter((by_alike[a] for a in alike), np.int64, len(alike))
