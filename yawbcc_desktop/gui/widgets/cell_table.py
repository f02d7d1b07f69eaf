"""Every shown cell as a sortable table row (the same filtered model as the gallery)."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QMenu, QTableView

from ..cell_filter import CellFilter
from ..cell_table_model import COLUMN, COLUMNS, RowIdRole


class CellTable(QTableView):
    cell_selected = Signal(int)  # row id
    menu_requested = Signal(QPoint)  # global position of a right-click on a row

    def __init__(self, cell_filter: CellFilter, parent=None):
        super().__init__(parent)
        self.setObjectName("CellTable")
        self._filter = cell_filter
        self.setModel(cell_filter)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setShowGrid(False)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(24)
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setMinimumSectionSize(36)
        widths = {
            "image": 150, "cell": 42, "kind": 62, "predicted": 150, "confidence": 86,
            "final": 150, "status": 84, "why": 200, "reviewer": 140, "model": 96,
        }  # fmt: skip
        for key, width in widths.items():
            self.setColumnWidth(COLUMN[key], width)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # file names differ at their end
        # Right-click on the header picks the columns; the model column starts hidden.
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._column_menu)
        self.setColumnHidden(COLUMN["model"], True)
        self.setColumnHidden(COLUMN["reviewer"], True)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._cell_menu)
        # Analysis order until the reviewer clicks a header.
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.setSortingEnabled(True)
        self.selectionModel().currentRowChanged.connect(self._current_changed)
        self._row = -1

    def _column_menu(self, pos) -> None:
        menu = QMenu(self)
        for i, column in enumerate(COLUMNS):
            action = menu.addAction(column.header)
            action.setCheckable(True)
            action.setChecked(not self.isColumnHidden(i))
            action.setEnabled(i != COLUMN["predicted"])
            action.toggled.connect(lambda shown, i=i: self.setColumnHidden(i, not shown))
        menu.exec(self.horizontalHeader().mapToGlobal(pos))

    def selected_rows(self) -> list[int]:
        """Row ids of the selected rows, top to bottom."""
        rows = sorted(self.selectionModel().selectedRows(), key=lambda i: i.row())
        return [i.data(RowIdRole) for i in rows]

    def neighbour(self, row: int, step: int) -> int:
        """The row id ``step`` rows after ``row`` as shown (-1: none; the first if ``row`` is hidden)."""
        m = self._filter
        if not m.rowCount():
            return -1
        at = m.mapFromSource(m.cell_model.index_of_id(row)).row() if row >= 0 else -1
        target = (0 if step > 0 else m.rowCount() - 1) if at < 0 else at + step
        return m.index(target, 0).data(RowIdRole) if 0 <= target < m.rowCount() else -1

    def _cell_menu(self, pos) -> None:
        index = self.indexAt(pos)
        if not index.isValid():
            return
        if not self.selectionModel().isRowSelected(index.row(), QModelIndex()):
            flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
            self.selectionModel().setCurrentIndex(index, flags)
        self.menu_requested.emit(self.viewport().mapToGlobal(pos))

    def show_cell(self, row: int, force: bool = False) -> None:
        if row == self._row and not force:
            return
        self._row = row
        index = self._filter.mapFromSource(self._filter.cell_model.index_of_id(row)) if row >= 0 else QModelIndex()
        selection = self.selectionModel()
        selection.blockSignals(True)
        if index.isValid():
            flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
            selection.setCurrentIndex(index, flags)
            self.scrollTo(index, QAbstractItemView.ScrollHint.EnsureVisible)
        else:
            selection.clear()
        selection.blockSignals(False)
        self.viewport().update()

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        row = current.data(RowIdRole) if current.isValid() else None
        if row is not None and row != self._row:
            self._row = row
            self.cell_selected.emit(row)
