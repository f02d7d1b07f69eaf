"""Cells as thumbnails grouped by class, with counts, as CellaVision shows them.

Each class is a section over its own ``GroupFilter`` of the shared cell filter, so the
gallery and the table always show the same cells.  Cells sit under their final label: a
correction moves the tile to its new section; cells never classified sit in a last section
until labelled.  Sections without cells are hidden.
Ctrl/Shift-click selects several tiles, in one section or across sections.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QScrollArea,
    QStyle,
    QStyledItemDelegate,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.review_rules import CONFIRMED, CORRECTED, TO_REVIEW
from ..cell_filter import CellFilter
from ..cell_table_model import FINAL_LABELS, CellTableModel, Index, RowIdRole
from ..palette import ACCENT, NO_VALUE, REVIEW_COLOURS, class_colour, display_name, short_name
from ..throttle import Throttle

TILE = QSize(100, 118)
THUMB = 92


class CellTileDelegate(QStyledItemDelegate):
    """A thumbnail with the confidence under it; the selected tile gets the accent frame.

    It reads the cell straight from the Python model: each ``index.data()`` would cross into
    Qt and back, and every crossing waits for the GIL while the worker is busy.
    """

    def __init__(self, section_model: CellFilter, parent=None):
        super().__init__(parent)
        self._proxy = section_model
        self._cells: CellTableModel = section_model.cell_model
        # Pens and brushes made once: a paint runs for every visible tile on each change.
        self._frame = (QPen(QColor(ACCENT), 2.5), QPen(QColor("#CFD8DC"), 1))
        self._fill = (QColor("#E3F2FD"), QColor("#F5F7F8"), QColor("white"))
        self._empty, self._text = QColor("#ECEFF1"), QColor("#37474F")
        self._status = {status: QColor(colour) for status, colour in REVIEW_COLOURS.items()}
        self._bold = QFont()
        self._bold.setBold(True)
        # Finished tiles: the gallery repaints every visible tile whenever a section grows.
        self._tiles: OrderedDict[tuple, QPixmap] = OrderedDict()
        self._cells.modelReset.connect(self._tiles.clear)

    def sizeHint(self, option, index) -> QSize:
        return TILE

    def paint(self, painter: QPainter, option, index: Index) -> None:
        row_id = self._cells.row_id_at(self._proxy.mapToSource(index).row())
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        store = self._cells.store
        cell = store.cell(row_id)
        status = store.status(row_id)
        thumb = self._cells.thumbnail(cell)
        key = (row_id, selected, hovered, thumb is not None, cell.final_label, status)
        tile = self._tiles.get(key)
        if tile is None:
            tile = self._render(cell, status, thumb, selected, hovered)
            self._tiles[key] = tile
            while len(self._tiles) > 600:
                self._tiles.popitem(last=False)
        else:
            self._tiles.move_to_end(key)
        painter.drawPixmap(option.rect.topLeft(), tile)

    def _render(self, cell, status: str, thumb, selected: bool, hovered: bool) -> QPixmap:
        tile = QPixmap(TILE)
        tile.fill(Qt.GlobalColor.transparent)
        painter = QPainter(tile)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRect(0, 0, TILE.width(), TILE.height()).adjusted(2, 2, -2, -2)
        painter.setPen(self._frame[0] if selected else self._frame[1])
        painter.setBrush(self._fill[0] if selected else self._fill[1] if hovered else self._fill[2])
        painter.drawRoundedRect(r, 5, 5)
        pic = QRect(r.x() + (r.width() - THUMB) // 2, r.y() + 3, THUMB, THUMB)
        if thumb is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(pic, thumb)
        else:
            painter.fillRect(pic, self._empty)
        painter.fillRect(QRect(pic.x(), pic.bottom() - 3, pic.width(), 4), class_colour(cell.final_label))
        text = QRect(r.x(), pic.bottom() + 2, r.width(), r.bottom() - pic.bottom() - 2)
        if status == CORRECTED:
            # Corrected: the change itself, in the corrected colour, and a marked corner.
            painter.setPen(self._status[CORRECTED])
            painter.setFont(self._bold)
            caption = f"{short_name(cell.predicted)} → {short_name(cell.final_label)}"
            painter.drawText(text, Qt.AlignmentFlag.AlignCenter, caption)
            self._corner(painter, pic, self._status[CORRECTED], "✎")
        else:
            painter.setPen(self._status[TO_REVIEW] if status == TO_REVIEW else self._text)
            caption = f"{100 * cell.confidence:.0f} %" if cell.classified else NO_VALUE
            painter.drawText(text, Qt.AlignmentFlag.AlignCenter, caption)
            if status == CONFIRMED:
                self._corner(painter, pic, self._status[CONFIRMED], "✓")
        painter.end()
        return tile

    @staticmethod
    def _corner(painter: QPainter, pic: QRect, colour: QColor, mark: str) -> None:
        badge = QRect(pic.right() - 19, pic.y() + 1, 18, 18)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        painter.drawEllipse(badge)
        painter.setPen(QColor("white"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, mark)


class GalleryGrid(QListView):
    """A wrapping grid as tall as its tiles: the gallery scrolls, not each section."""

    def __init__(self, parent=None):
        super().__init__(parent)
        # List mode flowing left to right and wrapping, not icon mode: with tiles of one size
        # its layout is arithmetic on the row count, where icon mode asks the (Python) model
        # for every index and files each tile in a tree — a fifth of a second per relayout
        # of a section of a big session, and sections relayout on every filter change.
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        # A section of a big session holds tens of thousands of tiles: lay them out a batch
        # per turn of the event loop, so that the window keeps answering meanwhile.
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(2000)
        self.setGridSize(TILE + QSize(4, 4))
        self.setSpacing(0)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMouseTracking(True)

    def dataChanged(self, top_left: Index, bottom_right: Index, roles=()) -> None:
        # Tiles have one size: repaint the changed tile only (see FixedRowListView).
        if top_left.isValid() and top_left.row() == bottom_right.row():
            rect = self.visualRect(top_left)
            if rect.intersects(self.viewport().rect()):
                self.viewport().update(rect)
            return
        super().dataChanged(top_left, bottom_right, roles)

    def fit_height(self, width: int) -> None:
        grid = self.gridSize()
        per_row = max(1, (width - 4) // grid.width())
        rows = math.ceil(self.model().rowCount() / per_row) if self.model() else 0
        self.setFixedHeight(rows * grid.height() + 6)

    def wheelEvent(self, event) -> None:
        event.ignore()  # let the gallery scroll


class GallerySection(QWidget):
    def __init__(self, group: str, source: CellFilter, parent=None):
        super().__init__(parent)
        self.group = group
        self.model = source.for_group(group)
        self.toggle = QToolButton()
        self.toggle.setObjectName("SectionToggle")
        self.toggle.setCheckable(True)
        self.toggle.setChecked(True)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.toggled.connect(self._expand)
        swatch = QLabel()
        swatch.setFixedSize(14, 14)
        swatch.setStyleSheet(f"background:{class_colour(group).name()}; border-radius:7px;")
        short = f" <span style='color:#607D8B'>({short_name(group)})</span>" if group else ""
        self.title = QLabel(f"{display_name(group)}{short}")
        self.title.setObjectName("SectionTitle")
        self.badge = QLabel()
        self.badge.setObjectName("CountBadge")
        header = QHBoxLayout()
        header.setContentsMargins(2, 8, 8, 2)
        header.setSpacing(6)
        header.addWidget(self.toggle)
        header.addWidget(swatch)
        header.addWidget(self.title, 1)
        header.addWidget(self.badge)
        self.grid = GalleryGrid()
        self.grid.setItemDelegate(CellTileDelegate(self.model, self.grid))
        self.grid.setModel(self.model)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(header)
        layout.addWidget(self.grid)
        # Badge, visibility and height follow the rows a little later, once per burst.
        self._refresh_later = Throttle(self.refresh, 150, self)
        m = self.model
        for signal in (m.rowsInserted, m.rowsRemoved):
            signal.connect(self._refresh_later)
        for signal in (m.modelReset, m.layoutChanged):  # the reviewer's filter: show it at once
            signal.connect(self.refresh)
        self.refresh()

    def count(self) -> int:
        return self.model.rowCount()

    def refresh(self, *args) -> None:
        n = self.count()
        self.badge.setText(f"{n:,}")
        self.setVisible(n > 0)
        self.grid.fit_height(self.width())

    def _expand(self, expanded: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.grid.setVisible(expanded)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.grid.fit_height(event.size().width())

    def index_of(self, row: int) -> QModelIndex:
        return self.model.mapFromSource(self.model.cell_model.index_of_id(row))


class CellGallery(QScrollArea):
    cell_selected = Signal(int)  # row id
    menu_requested = Signal(QPoint)  # global position of a right-click on a tile

    def __init__(self, cell_filter: CellFilter, parent=None):
        super().__init__(parent)
        self.setObjectName("CellGallery")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        body.setObjectName("GalleryBody")
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 2, 4, 4)
        layout.setSpacing(2)
        self.sections: dict[str, GallerySection] = {}
        for group in FINAL_LABELS:
            section = GallerySection(group, cell_filter)
            section.grid.selectionModel().currentChanged.connect(lambda current, _previous, s=section: self._picked(s, current))
            section.grid.clicked.connect(lambda index, s=section: self._picked(s, index))
            section.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            section.grid.customContextMenuRequested.connect(lambda pos, s=section: self._menu(s, pos))
            layout.addWidget(section)
            self.sections[group] = section
        self.empty = QLabel("No cells yet: open images to analyse them.")
        self.empty.setObjectName("Placeholder")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.empty)
        layout.addStretch(1)
        self.setWidget(body)
        self._row = -1
        self._filter = cell_filter
        self._placeholder_later = Throttle(self._update_placeholder, 150, self)
        for section in self.sections.values():
            for signal in (section.model.rowsInserted, section.model.rowsRemoved):
                signal.connect(self._placeholder_later)
            for signal in (section.model.modelReset, section.model.layoutChanged):
                signal.connect(self._update_placeholder)
        self._update_placeholder()

    def counts(self) -> dict[str, int]:
        return {g: s.count() for g, s in self.sections.items()}

    def show_cell(self, row: int, force: bool = False) -> None:
        """Select a cell's tile and scroll to it (nothing if it is filtered out);
        ``force``: again, after a correction moved the tile to another section."""
        if row == self._row and not force:
            return
        self._row = row
        for section in self.sections.values():
            index = section.index_of(row) if row >= 0 else QModelIndex()
            selection = section.grid.selectionModel()
            if not index.isValid() and not selection.hasSelection():
                continue  # untouched sections are not repainted
            selection.blockSignals(True)
            if index.isValid():
                selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
                if not section.grid.isVisible():
                    section.toggle.setChecked(True)
                rect = section.grid.visualRect(index)
                inner = self.widget()
                if inner is not None:
                    centre = section.grid.viewport().mapTo(inner, rect.center())
                    self.ensureVisible(centre.x(), centre.y(), 20, TILE.height())
            else:
                selection.clear()
            selection.blockSignals(False)
            section.grid.viewport().update()

    def selected_rows(self) -> list[int]:
        """Row ids of every selected tile, section by section."""
        rows = []
        for section in self.sections.values():
            # selectAll() selects every column of the table model: one index per tile is enough.
            indexes = [i for i in section.grid.selectionModel().selectedIndexes() if i.column() == 0]
            indexes.sort(key=lambda i: i.row())
            rows += [i.data(RowIdRole) for i in indexes]
        return rows

    def select_all(self) -> None:
        """Select every shown tile (e.g. to confirm a whole class at once)."""
        for section in self.sections.values():
            if section.count():
                section.grid.selectAll()

    def neighbour(self, row: int, step: int) -> int:
        """The row id ``step`` (+1/-1) tiles after ``row``, section after section (-1: none;
        the first tile when ``row`` is not shown)."""
        shown = [s for s in self.sections.values() if s.count()]
        if step < 0:
            shown.reverse()
        if not shown:
            return -1

        def end_of(section: GallerySection) -> int:
            m = section.model
            return m.index(0 if step > 0 else m.rowCount() - 1, 0).data(RowIdRole)

        for i, section in enumerate(shown):
            index = section.index_of(row) if row >= 0 else QModelIndex()
            if index.isValid():
                target = index.row() + step
                if 0 <= target < section.model.rowCount():
                    return section.model.index(target, 0).data(RowIdRole)
                return end_of(shown[i + 1]) if i + 1 < len(shown) else -1
        return end_of(shown[0])

    def _menu(self, section: GallerySection, pos) -> None:
        index = section.grid.indexAt(pos)
        if not index.isValid():
            return
        if not section.grid.selectionModel().isSelected(index):
            section.grid.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.menu_requested.emit(section.grid.viewport().mapToGlobal(pos))

    def _picked(self, section: GallerySection, index: QModelIndex) -> None:
        if not index.isValid():
            return
        # A plain click starts a new selection: tiles selected in other sections are let go.
        if not QApplication.keyboardModifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier):
            for other in self.sections.values():
                if other is not section and other.grid.selectionModel().hasSelection():
                    other.grid.selectionModel().clear()
                    other.grid.viewport().update()
        row = index.data(RowIdRole)
        if row is not None and row != self._row:
            self._row = row  # the grid has selected it already: keep a Ctrl/Shift selection as it is
            self.cell_selected.emit(row)

    def show_loading(self, *args) -> None:
        """A session's cells are on their way (the next reset of the sections replaces this)."""
        self.empty.setText("Loading session…")
        self.empty.setVisible(True)

    def _update_placeholder(self, *args) -> None:
        empty = all(s.count() == 0 for s in self.sections.values())
        if empty and self._filter.sourceModel().rowCount():
            self.empty.setText("No cell matches these filters.")
        else:
            self.empty.setText("No cells yet: open images to analyse them.")
        self.empty.setVisible(empty)
