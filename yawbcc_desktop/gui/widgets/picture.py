"""A picture scaled to fit its box (aspect kept), or a short message while there is none."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


class Picture(QWidget):
    def __init__(self, message: str = "", parent=None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._message = message
        self.frame_colour: QColor | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)

    def set_image(self, image: QImage | None, message: str = "") -> None:
        self._image, self._message = image, message
        self.update()

    def set_message(self, message: str) -> None:
        self._image, self._message = None, message
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def has_image(self) -> bool:
        return self._image is not None and not self._image.isNull()

    def sizeHint(self) -> QSize:
        return QSize(240, 240)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect()).adjusted(4, 4, -4, -4)
        image = self._image
        if image is None or not self.has_image():
            painter.setPen(QColor("#90A4AE"))
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
            return
        size = image.size().scaled(area.size().toSize(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRectF(0, 0, size.width(), size.height())
        target.moveCenter(area.center())
        painter.drawImage(target, image)
        if self.frame_colour is not None:
            painter.setPen(QPen(self.frame_colour, 3))
            painter.drawRect(target.adjusted(1.5, 1.5, -1.5, -1.5))
