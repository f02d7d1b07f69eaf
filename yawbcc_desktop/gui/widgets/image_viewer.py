"""The whole image with zoom and pan, and every cell's box in its class colour.

Clicking a box selects that cell everywhere (``cell_clicked``); the selected cell's box is
drawn thicker and kept in view, with the outline of its segmentation mask when the review
session holds one (the reviewer sees what the segmenter took for the cell).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPoint, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QBitmap, QBrush, QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPen, QPixmap, QRegion
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
)

from ...core.store import SessionCell
from ...core.vocabulary import FAILED, NO_CELL, QUEUED
from ..cell_store import CellStore
from ..image_loader import ImageLoader
from ..palette import class_colour, display_name, percent, short_name

ZOOM_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 0.05, 40.0


class BoxLabel(QGraphicsItem):
    """The class and confidence above a box, at screen size whatever the zoom."""

    def __init__(self, text: str, colour: QColor, parent: QGraphicsItem):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self._text, self._colour = text, colour
        self._font = QFont()
        self._font.setPointSizeF(8.5)
        self._font.setBold(True)
        metrics = QFontMetricsF(self._font)
        self._rect = QRectF(0, -metrics.height() - 4, metrics.horizontalAdvance(text) + 8, metrics.height() + 4)

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option, widget=None) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self._colour)
        painter.drawRoundedRect(self._rect, 3, 3)
        painter.setPen(QColor("white") if self._colour.lightness() < 180 else QColor("#37474F"))  # pale: not classified
        painter.setFont(self._font)
        painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, self._text)


class CellBox(QGraphicsRectItem):
    """One cell's box; ``row`` is the cell's row id in the store."""

    def __init__(self, row: int, cell: SessionCell):
        super().__init__(cell.x, cell.y, cell.width, cell.height)
        self.row = row
        # Boxes show the final label; a corrected one is dashed and says what it was.
        self.colour = class_colour(cell.final_label)
        self.corrected = cell.corrected
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        final, predicted = short_name(cell.final_label), short_name(cell.predicted)
        if cell.corrected:
            text = f"{predicted}→{final} ✎"
            tip = f"Cell {cell.cell_index + 1}: {display_name(cell.final_label)}, corrected from {display_name(cell.predicted)}"
        elif cell.classified:
            text = f"{final} {100 * cell.confidence:.0f}%{' ✓' if cell.reviewed else ''}"
            tip = f"Cell {cell.cell_index + 1}: {display_name(cell.final_label)} {percent(cell.confidence)}"
        else:
            text = display_name(cell.final_label).lower()
            tip = f"Cell {cell.cell_index + 1}: {display_name(cell.final_label)}, to review"
        self.setToolTip(tip)
        self.label = BoxLabel(text, self.colour, self)
        self.label.setPos(cell.x, cell.y)
        self.set_selected(False)

    def set_selected(self, selected: bool) -> None:
        pen = QPen(self.colour, 4.0 if selected else 2.0)
        if self.corrected:
            pen.setStyle(Qt.PenStyle.DashLine)
        pen.setCosmetic(True)  # same width on screen at every zoom
        if selected:
            pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
        self.setPen(pen)
        fill = QColor(self.colour)
        fill.setAlpha(40 if selected else 0)
        self.setBrush(QBrush(fill))
        self.setZValue(2 if selected else 1)


def mask_outline(mask: np.ndarray) -> QPainterPath:
    """The outline of a bool mask as a path in the mask's pixel coordinates."""
    h, w = mask.shape
    bits = np.packbits(mask.astype(bool), axis=1, bitorder="little")
    stride = (w + 31) // 32 * 4  # QImage rows are 32-bit aligned
    rows = np.zeros((h, stride), np.uint8)
    rows[:, : bits.shape[1]] = bits
    image = QImage(rows.tobytes(), w, h, stride, QImage.Format.Format_MonoLSB)
    image.setColorTable([0xFF000000, 0xFFFFFFFF])
    path = QPainterPath()
    path.addRegion(QRegion(QBitmap.fromImage(image)))
    return path.simplified()


class ImageViewer(QGraphicsView):
    cell_clicked = Signal(int)  # row id
    menu_requested = Signal(QPoint)  # global position of a right-click on a box (after cell_clicked)
    zoom_changed = Signal(float)

    def __init__(
        self, store: CellStore, loader: ImageLoader, mask_of: Callable[[int], np.ndarray | None] | None = None, parent=None
    ):
        """``mask_of(row)``: the cell's mask over its box, or None (not stored, no session)."""
        super().__init__(parent)
        self._mask_of = mask_of
        self._outline: QGraphicsPathItem | None = None
        self.setObjectName("ImageViewer")
        self._store, self._loader = store, loader
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setBackgroundBrush(QColor("#263238"))
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.path = ""
        self._row = -1
        self._pixmap: QGraphicsPixmapItem | None = None
        self._boxes: dict[int, CellBox] = {}
        self._fitted = True  # refit on resize until the reviewer zooms
        self._message = "Open images or folders (Ctrl+O), or drop them here"
        self.labels_visible = True
        loader.image_ready.connect(self._image_ready)
        loader.image_failed.connect(self._image_failed)

    # ---------------------------------------------------------------- what to show
    def show_image(self, path: str) -> None:
        if path == self.path:
            return
        self.path = path
        self._clear_scene()
        if not path:
            self._message = "Open images or folders (Ctrl+O), or drop them here"
            self.viewport().update()
            return
        self._message = "Loading…"
        loaded = self._loader.image(path)
        if loaded is not None:
            self._build(loaded.picture)
        self.viewport().update()

    def select_cell(self, row: int) -> None:
        if row == self._row:
            return
        old = self._boxes.get(self._row)
        if old is not None:
            old.set_selected(False)
        self._row = row
        box = self._boxes.get(row)
        if box is not None:
            box.set_selected(True)
            self.ensureVisible(box, 40, 40)
        self._show_outline()

    def outline(self) -> QGraphicsPathItem | None:
        """The selected cell's mask outline on screen, if any."""
        return self._outline

    def _show_outline(self) -> None:
        if self._outline is not None:
            self._scene.removeItem(self._outline)
            self._outline = None
        box = self._boxes.get(self._row)
        mask = self._mask_of(self._row) if box is not None and self._mask_of is not None else None
        if box is None or mask is None or not mask.any():
            return
        self._outline = QGraphicsPathItem(mask_outline(mask), box)
        self._outline.setPos(box.rect().topLeft())
        pen = QPen(QColor("white"), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._outline.setPen(pen)

    def relabel(self, rows) -> None:
        """Reviewers changed these cells' labels: redraw the boxes if one is shown here."""
        if any(r in self._boxes for r in rows):
            self.refresh()

    def refresh(self) -> None:
        """The current image's cells changed (its analysis arrived)."""
        if self._pixmap is not None:
            self._build_boxes()
        self.viewport().update()

    def set_labels_visible(self, visible: bool) -> None:
        self.labels_visible = visible
        for box in self._boxes.values():
            box.label.setVisible(visible)

    def box_count(self) -> int:
        return len(self._boxes)

    # ------------------------------------------------------------------- zooming
    def zoom(self) -> float:
        return self.transform().m11()

    def zoom_by(self, factor: float) -> None:
        new = min(max(self.zoom() * factor, MIN_ZOOM), MAX_ZOOM)
        self.scale(new / self.zoom(), new / self.zoom())
        self._fitted = False
        self.zoom_changed.emit(self.zoom())

    def zoom_in(self) -> None:
        self.zoom_by(ZOOM_STEP)

    def zoom_out(self) -> None:
        self.zoom_by(1 / ZOOM_STEP)

    def zoom_actual(self) -> None:
        self.zoom_by(1.0 / self.zoom())

    def fit(self) -> None:
        if self._pixmap is not None:
            self.fitInView(self._pixmap, Qt.AspectRatioMode.KeepAspectRatio)
            self._fitted = True
            self.zoom_changed.emit(self.zoom())

    # --------------------------------------------------------------------- events
    def wheelEvent(self, event) -> None:
        if event.angleDelta().y():
            self.zoom_by(ZOOM_STEP ** (event.angleDelta().y() / 120))
            event.accept()

    def mousePressEvent(self, event) -> None:
        item = self.itemAt(event.position().toPoint())
        while item is not None and not isinstance(item, CellBox):
            item = item.parentItem()
        if isinstance(item, CellBox) and event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self.cell_clicked.emit(item.row)
            if event.button() == Qt.MouseButton.RightButton:
                self.menu_requested.emit(event.globalPosition().toPoint())
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:
        self.fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:
        if self._pixmap is not None and not self._message:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor("#CFD8DC"))
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.15)
        painter.setFont(font)
        area = self.viewport().rect()
        if self._pixmap is not None:  # a status over the picture: bottom band
            band = QRectF(0, area.height() - 34, area.width(), 34)
            painter.fillRect(band, QColor(38, 50, 56, 210))
            painter.drawText(band, Qt.AlignmentFlag.AlignCenter, self._message)
        else:
            painter.drawText(QRectF(area), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
        painter.restore()

    # ------------------------------------------------------------------ internals
    def _clear_scene(self) -> None:
        self._scene.clear()
        self._pixmap, self._boxes, self._row, self._outline = None, {}, -1, None

    def _image_ready(self, path: str) -> None:
        if path == self.path and self._pixmap is None:
            loaded = self._loader.image(path)
            if loaded is not None:
                self._build(loaded.picture)

    def _image_failed(self, path: str, reason: str) -> None:
        if path == self.path:
            self._message = f"This image cannot be shown: {reason}"
            self.viewport().update()

    def _build(self, picture) -> None:
        self._pixmap = self._scene.addPixmap(QPixmap.fromImage(picture))
        self._pixmap.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._scene.setSceneRect(QRectF(self._pixmap.boundingRect()))
        self._build_boxes()
        self._fitted = True
        self.fit()

    def _build_boxes(self) -> None:
        for box in self._boxes.values():
            self._scene.removeItem(box)
        self._boxes, self._outline = {}, None  # the outline went with its box
        entry = self._store.image(self.path)
        rows = entry.cell_rows if entry is not None else []
        for row in rows:
            box = CellBox(row, self._store.cell(row))
            box.label.setVisible(self.labels_visible)
            self._scene.addItem(box)
            self._boxes[row] = box
        selected = self._boxes.get(self._row)
        if selected is not None:
            selected.set_selected(True)
            self._show_outline()
        self._message = _status_message(entry)

    def centre_of(self, row: int) -> QPoint | None:
        """Where a cell's box is on screen (tests click there)."""
        box = self._boxes.get(row)
        return self.mapFromScene(box.rect().center()) if box is not None else None


def _status_message(entry) -> str:
    if entry is None:
        return ""
    if entry.status == QUEUED:
        return "Waiting for analysis…"
    if entry.status == FAILED:
        return f"Analysis failed: {entry.reason}"
    if entry.status == NO_CELL:
        return "No cell found in this image"
    if not entry.cell_rows and entry.status != "analysed":
        return entry.status.capitalize()
    return ""
