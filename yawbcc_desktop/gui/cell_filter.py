"""Which cells the reviewer sees: the proxy between the cell table model and the table and
gallery views, filtering by final label, confidence range and review status on whole
columns of the store."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PySide6.QtCore import QAbstractItemModel, QAbstractProxyModel, QModelIndex, Qt

from ..core.review_rules import CELL_STATUSES
from .cell_table_model import COLUMNS, FINAL_LABELS, CellTableModel, Index, ThumbnailRole

_COLUMN_COUNT = len(COLUMNS)
_ROOT = QModelIndex()


class CellFilter(QAbstractProxyModel):
    """Cells shown to the reviewer: by final label, confidence range and review status.

    The table shows this proxy; each gallery section shows a ``for_group`` proxy that shares
    its criteria.  Sections sit on the cell model itself, not on this proxy.  Which rows pass
    is worked out on whole columns of the store (``CellStore.columns``), never a Python
    call per row: a ``QSortFilterProxyModel`` would call ``filterAcceptsRow`` 100,000 times
    per section on each change of a big session.  Rows keep the cell model's order.
    """

    def __init__(self, parent=None, *, group: str | None = None):
        super().__init__(parent)
        self.group = group  # None: every class the criteria allow
        self.groups: frozenset[str] = frozenset(FINAL_LABELS)
        self.min_confidence, self.max_confidence = 0.0, 1.0
        self.statuses: frozenset[str] = frozenset(CELL_STATUSES)
        self.only: frozenset[int] | None = None  # store row ids picked by hand (cells suggested for review)
        self.sections: list[CellFilter] = []
        self._rows = np.zeros(0, np.int64)  # proxy row -> source row
        self._position = np.zeros(0, np.int64)  # source row -> proxy row; -1 filtered out
        self._held: list[tuple[QModelIndex, int]] = []  # persistent indexes and their row ids
        self._cells: CellTableModel | None = None  # the source model, with its type

    def for_group(self, group: str) -> CellFilter:
        """A proxy of this filter's cells of one class (a gallery section), kept in step."""
        section = CellFilter(self, group=group)
        section._copy_criteria(self)
        section.setSourceModel(self.cell_model)
        self.sections.append(section)
        return section

    @property
    def cell_model(self) -> CellTableModel:
        """The cell model this filter shows (its ``sourceModel``)."""
        if self._cells is None:
            raise RuntimeError("CellFilter has no cell model yet (setSourceModel)")
        return self._cells

    def setSourceModel(self, model: QAbstractItemModel) -> None:
        if not isinstance(model, CellTableModel):
            raise TypeError(f"CellFilter filters a CellTableModel, not {type(model).__name__}")
        self.beginResetModel()
        self._cells = model
        super().setSourceModel(model)
        model.modelAboutToBeReset.connect(self.beginResetModel)
        model.modelReset.connect(self._source_reset)
        for about, done in (
            (model.layoutAboutToBeChanged, model.layoutChanged),
            (model.rowsAboutToBeInserted, model.rowsInserted),
            (model.rowsAboutToBeRemoved, model.rowsRemoved),
        ):
            about.connect(self._hold)
            done.connect(self._refilter)
        model.dataChanged.connect(self._source_data_changed)
        self._filter()
        self.endResetModel()

    def set_criteria(
        self,
        groups: frozenset[str] | None = None,
        confidence: tuple[float, float] | None = None,
        statuses: frozenset[str] | None = None,
    ) -> None:
        """Change any of the criteria (None keeps it) and filter again, sections too."""
        if groups is not None:
            self.groups = frozenset(groups)
        if confidence is not None:
            self.min_confidence, self.max_confidence = confidence
        if statuses is not None:
            self.statuses = frozenset(statuses)
        self._filter_again()

    def set_only(self, rows: Iterable[int] | None) -> None:
        """Show only these store rows (cells picked by hand), or None: every row the criteria pass."""
        self.only = None if rows is None else frozenset(rows)
        self._filter_again()

    def _filter_again(self) -> None:
        self._hold()
        self._refilter()
        for section in self.sections:
            section._copy_criteria(self)
            section._hold()
            section._refilter()

    def _copy_criteria(self, other: CellFilter) -> None:
        self.groups, self.statuses, self.only = other.groups, other.statuses, other.only
        self.min_confidence, self.max_confidence = other.min_confidence, other.max_confidence

    def is_filtering(self) -> bool:
        return (
            self.groups != frozenset(FINAL_LABELS)
            or self.min_confidence > 0.0
            or self.max_confidence < 1.0
            or self.statuses != frozenset(CELL_STATUSES)
            or self.only is not None
        )

    # -- which rows pass
    def _accepted(self) -> np.ndarray:
        """Source rows that pass, in the source's order."""
        model = self._cells
        if model is None or not len(model.order):
            return np.zeros(0, np.int64)
        store = model.store
        columns = store.columns()
        final = columns.final
        codes = [i for i, label in enumerate(FINAL_LABELS) if label in self.groups and self.group in (None, label)]
        ok = np.isin(final, codes)
        # A cell never classified (nan) is at 0 %: shown until the lowest confidence is raised.
        confidence = np.nan_to_num(columns.confidence, nan=0.0)
        ok &= (self.min_confidence <= confidence) & (confidence <= self.max_confidence)
        ok &= np.isin(columns.status_codes(store.review_threshold), [CELL_STATUSES.index(s) for s in self.statuses])
        if self.only is not None:
            picked = np.zeros(len(ok), bool)
            picked[np.fromiter(self.only, np.int64, len(self.only))] = True
            ok &= picked
        return np.flatnonzero(ok[model.order])

    def _filter(self) -> None:
        self._rows = self._accepted()
        n = self.sourceModel().rowCount() if self.sourceModel() is not None else 0
        self._position = np.full(n, -1, np.int64)
        self._position[self._rows] = np.arange(len(self._rows))

    def _hold(self, *args) -> None:
        """Before the rows move: remember which cell each persistent index (selection) is on."""
        self.layoutAboutToBeChanged.emit()
        model = self.cell_model
        self._held = [(p, model.row_id_at(int(self._rows[p.row()]))) for p in self.persistentIndexList() if p.isValid()]

    def _refilter(self, *args) -> None:
        """After: filter again and put each persistent index back on its cell (or nowhere)."""
        self._filter()
        model = self.cell_model
        held, self._held = self._held, []
        moved = [self.mapFromSource(model.index_of_id(row_id, p.column())) for p, row_id in held]
        self.changePersistentIndexList([p for p, _ in held], moved)
        self.layoutChanged.emit()

    def _source_reset(self) -> None:
        self._filter()
        self.endResetModel()

    def _source_data_changed(self, top: QModelIndex, bottom: QModelIndex, roles=()) -> None:
        if ThumbnailRole not in roles:  # a label changed: the cell may now pass or fail
            if not np.array_equal(self._accepted(), self._rows):
                self._hold()
                self._refilter()
        shown = self._position[top.row() : bottom.row() + 1]
        shown = shown[shown >= 0]
        if len(shown):
            last = self.columnCount() - 1
            self.dataChanged.emit(self.index(int(shown.min()), 0), self.index(int(shown.max()), last), roles)

    # -- QAbstractProxyModel
    def mapToSource(self, index: Index) -> QModelIndex:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return QModelIndex()
        return self.sourceModel().index(int(self._rows[index.row()]), index.column())

    def mapFromSource(self, index: Index) -> QModelIndex:
        if not index.isValid() or not 0 <= index.row() < len(self._position) or self._position[index.row()] < 0:
            return QModelIndex()
        return self.index(int(self._position[index.row()]), index.column())

    def index(self, row: int, column: int, parent: Index = _ROOT) -> QModelIndex:
        # Called for every row each time a gallery section lays out its tiles: kept lean.
        if 0 <= row < len(self._rows) and 0 <= column < _COLUMN_COUNT and not parent.isValid():
            return self.createIndex(row, column)
        return _ROOT

    def parent(self, index: Index | None = None):
        # Without an argument, QObject's parent; with one, the (flat) model's.
        return super().parent() if index is None else QModelIndex()

    def sibling(self, row: int, column: int, index: Index) -> QModelIndex:
        return self.index(row, column)

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else _COLUMN_COUNT

    def hasChildren(self, parent: Index = QModelIndex()) -> bool:
        return not parent.isValid() and len(self._rows) > 0

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sorting is the cell model's (see the module docstring); sections follow it."""
        self.sourceModel().sort(column, order)
