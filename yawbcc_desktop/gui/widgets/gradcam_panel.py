"""Grad-CAM of the selected cell over the cell as the model sees it, with an opacity slider
and a choice of the class to explain (the predicted one by default)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QSlider, QVBoxLayout, QWidget

from ...core.classes import GROUPS
from ..image_loader import qimage_from_rgb
from ..palette import class_icon, display_name
from ..worker import GradCamResult
from .picture import Picture


class GradCamPanel(QWidget):
    explain_requested = Signal(object)  # group to explain, None: the predicted class
    shown = Signal()  # a heatmap is on screen

    def __init__(self, parent=None):
        super().__init__(parent)
        self.picture = Picture("Select a cell")
        self.explains = QComboBox()
        self.explains.setToolTip("Class whose evidence the heatmap shows")
        self.explains.addItem("Predicted class", None)
        for group in GROUPS:
            self.explains.addItem(class_icon(group), display_name(group), group)
        self.explains.currentIndexChanged.connect(lambda _: self.explain_requested.emit(self.explains.currentData()))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setToolTip("Heatmap opacity")
        self.opacity.valueChanged.connect(self._redraw)
        self.caption = QLabel("")
        self.caption.setObjectName("Caption")
        self.caption.setWordWrap(True)

        self.opacity_value = QLabel("45 %")
        self.opacity_value.setMinimumWidth(36)
        self.opacity.valueChanged.connect(lambda v: self.opacity_value.setText(f"{v} %"))
        controls = QGridLayout()
        controls.setColumnStretch(1, 1)
        controls.addWidget(QLabel("Explain"), 0, 0)
        controls.addWidget(self.explains, 0, 1, 1, 2)
        controls.addWidget(QLabel("Opacity"), 1, 0)
        controls.addWidget(self.opacity, 1, 1)
        controls.addWidget(self.opacity_value, 1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.picture, 1)
        layout.addLayout(controls)
        layout.addWidget(self.caption)
        self._result: GradCamResult | None = None
        self.state = "empty"  # empty, pending, shown, failed

    def group(self) -> str | None:
        return self.explains.currentData()

    def show_pending(self) -> None:
        self._result, self.state = None, "pending"
        self.picture.set_message("Computing Grad-CAM…")
        self.caption.setText("")

    def show_failure(self, message: str) -> None:
        self._result, self.state = None, "failed"
        self.picture.set_message(f"Grad-CAM unavailable:\n{message}")
        self.caption.setText("")

    def clear(self, message: str = "Select a cell") -> None:
        self._result, self.state = None, "empty"
        self.picture.set_message(message)
        self.caption.setText("")

    def show_result(self, result: GradCamResult) -> None:
        self._result, self.state = result, "shown"
        self._redraw()
        side = result.image.shape[0]
        self.caption.setText(
            f"Evidence for <b>{display_name(result.explains)}</b><br>"
            f"{result.model} input, {side} px · {1000 * result.seconds:.0f} ms"
        )
        self.shown.emit()

    def has_heatmap(self) -> bool:
        return self._result is not None and self.picture.has_image()

    def _redraw(self) -> None:
        from ...core.gradcam import overlay  # OpenCV: loaded with the first heatmap, not at start-up

        if self._result is not None:
            blended = overlay(self._result.image, self._result.heatmap, self.opacity.value() / 100)
            self.picture.set_image(qimage_from_rgb(blended))
