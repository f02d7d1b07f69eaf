"""Opened images with thumbnails and their status (queued, analysed, no cell found, failed);
a "?" badge marks an image unfamiliar to the model (its tooltip says by how much)."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

from ...core.vocabulary import IMAGE_STATUSES
from ..cell_store import CellStore
from ..image_list_model import ImageListModel, ImageStatusFilter, PathRole, status_text
from ..palette import ACCENT, STATUS_COLOURS, UNFAMILIAR_COLOUR, dot_icon
from ..throttle import Throttle

ROW_HEIGHT = 58
THUMB = 48


class ImageRowDelegate(QStyledItemDelegate):
    """Thumbnail, name and status line; reads the store directly (see CellTileDelegate).

    Fonts, metrics and colours are made once: a paint runs for every visible row each time
    the list changes.
    """

    def __init__(self, proxy: ImageStatusFilter, parent=None):
        super().__init__(parent)
        self._proxy = proxy
        images = proxy.sourceModel()
        if not isinstance(images, ImageListModel):
            raise TypeError(f"the image list shows an ImageListModel, not {type(images).__name__}")
        self._images = images
        self._fonts: tuple | None = None
        self._status_colours = {s: QColor(c) for s, c in STATUS_COLOURS.items()}
        self._selected, self._hover, self._empty = QColor("#E3F2FD"), QColor("#F5F7F8"), QColor("#ECEFF1")
        self._accent, self._text = QColor(ACCENT), QColor("#263238")
        self._badge, self._badge_ring, self._badge_text = QColor(UNFAMILIAR_COLOUR), QColor("#FFFFFF"), QColor("#FFFFFF")

    def sizeHint(self, option, index) -> QSize:
        return QSize(200, ROW_HEIGHT)

    def _fonts_for(self, base: QFont) -> tuple:
        if self._fonts is None or self._fonts[0] != base:
            bold = QFont(base)
            bold.setBold(True)
            self._fonts = (QFont(base), bold, QFontMetrics(bold), QFontMetrics(base))
        return self._fonts

    def paint(self, painter: QPainter, option, index: QModelIndex | QPersistentModelIndex) -> None:
        entry = self._images.entry_at(self._proxy.mapToSource(index).row())
        normal, bold, bold_metrics, metrics = self._fonts_for(option.font)
        painter.save()
        r = option.rect
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(r, self._selected)
            painter.fillRect(QRect(r.x(), r.y(), 3, r.height()), self._accent)
        elif option.state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(r, self._hover)
        pic = QRect(r.x() + 8, r.y() + (r.height() - THUMB) // 2, THUMB, THUMB)
        thumb = self._images.thumbnail(entry)
        if thumb is not None:
            size = thumb.size().scaled(pic.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(pic.center())
            painter.drawImage(target, thumb)
        else:
            painter.fillRect(pic, self._empty)
        if entry.unfamiliar:
            self._unfamiliar_badge(painter, pic, bold)
        x = pic.right() + 10
        width = r.right() - x - 6
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.setFont(bold)
        painter.setPen(self._text)
        name = bold_metrics.elidedText(entry.file_name, Qt.TextElideMode.ElideMiddle, width)
        painter.drawText(QRect(x, r.y() + 9, width, 20), left, name)
        colour = self._status_colours.get(entry.status, self._text)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(colour)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawEllipse(QRect(x, r.y() + 35, 8, 8))
        painter.setFont(normal)
        painter.setPen(colour.darker(115))
        status = metrics.elidedText(status_text(entry), Qt.TextElideMode.ElideRight, width - 14)
        painter.drawText(QRect(x + 14, r.y() + 29, width - 14, 20), left, status)
        painter.setPen(self._empty)
        painter.drawLine(r.bottomLeft(), r.bottomRight())
        painter.restore()

    def _unfamiliar_badge(self, painter: QPainter, pic: QRect, font: QFont) -> None:
        """A "?" on the thumbnail's corner: the model does not know images like this one."""
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        badge = QRect(pic.right() - 13, pic.top() - 3, 17, 17)
        painter.setPen(self._badge_ring)
        painter.setBrush(self._badge)
        painter.drawEllipse(badge)
        painter.setFont(font)
        painter.setPen(self._badge_text)
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, "?")
        painter.restore()


class FixedRowListView(QListView):
    """A list whose rows never change size: a changed row is repainted, nothing laid out.

    QListView lays out and repaints every row on any dataChanged, even for one row out of
    sight; during a run that is a full repaint per analysed image.
    """

    def dataChanged(
        self, top_left: QModelIndex | QPersistentModelIndex, bottom_right: QModelIndex | QPersistentModelIndex, roles=()
    ) -> None:
        if top_left.isValid() and top_left.row() == bottom_right.row() and top_left.parent() == bottom_right.parent():
            rect = self.visualRect(top_left)
            if rect.intersects(self.viewport().rect()):
                self.viewport().update(rect)
            return
        super().dataChanged(top_left, bottom_right, roles)


class ImageList(QWidget):
    image_selected = Signal(str)  # path

    def __init__(self, store: CellStore, model: ImageListModel, parent=None):
        super().__init__(parent)
        self.setObjectName("ImageList")
        self._store = store
        self.filter = ImageStatusFilter(self)
        self.filter.setSourceModel(model)
        self.status = QComboBox()
        self.status.setToolTip("Show images by status")
        self.status.currentIndexChanged.connect(self._status_chosen)
        self.view = FixedRowListView()
        self.view.setModel(self.filter)
        self.view.setItemDelegate(ImageRowDelegate(self.filter, self.view))
        self.view.setUniformItemSizes(True)
        self.view.setMouseTracking(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.status)
        layout.addWidget(self.view, 1)
        self._path = ""
        # Counting statuses walks every image: do it at most a few times a second.
        self._recount = Throttle(self._update_counts, 300, self)
        for signal in (model.rowsInserted, model.modelReset, model.dataChanged):
            signal.connect(self._recount)
        self._update_counts()

    def show_image(self, path: str) -> None:
        if path == self._path:
            return
        self._path = path
        row = self._store.image_row(path)
        model = self.filter.sourceModel()
        index = self.filter.mapFromSource(model.index(row, 0)) if row >= 0 else QModelIndex()
        selection = self.view.selectionModel()
        selection.blockSignals(True)
        if index.isValid():
            selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.view.scrollTo(index)
        else:
            selection.clear()
        selection.blockSignals(False)
        self.view.viewport().update()

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        path = current.data(PathRole) if current.isValid() else None
        if path and path != self._path:
            self._path = path
            self.image_selected.emit(path)

    def _status_chosen(self, index: int) -> None:
        statuses = self.status.itemData(index)
        if statuses:
            self.filter.set_statuses(frozenset(statuses))

    def _update_counts(self) -> None:
        counts = self._store.status_counts()
        total = self._store.image_count
        current = self.status.currentData()
        items: list[tuple[str, tuple[str, ...], str | None]] = [(f"All images ({total:,})", IMAGE_STATUSES, None)]
        items += [(f"{s.capitalize()} ({counts[s]:,})", (s,), s) for s in IMAGE_STATUSES if counts[s]]
        self.status.blockSignals(True)
        self.status.clear()
        for text, statuses, status in items:
            if status is None:
                self.status.addItem(text, statuses)
            else:
                self.status.addItem(dot_icon(STATUS_COLOURS[status]), text, statuses)
        found = next((i for i, (_, s, _) in enumerate(items) if s == current), 0)
        self.status.setCurrentIndex(found)
        self.status.blockSignals(False)
        if found == 0 and current not in (None, IMAGE_STATUSES):
            self.filter.set_statuses(frozenset(IMAGE_STATUSES))
