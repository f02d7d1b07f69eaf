"""The selected cell side by side: its crop, its class probabilities, its Grad-CAM."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from ...core.cells import PLATELET
from ...core.review_rules import CORRECTED, LOW_CONFIDENCE, TO_REVIEW
from ...core.store import SessionCell
from ..cell_store import CellStore
from ..image_loader import ImageLoader, cell_thumbnail, qimage_from_rgb
from ..palette import REVIEW_COLOURS, class_colour, display_name, percent
from ..worker import GradCamResult
from .gradcam_panel import GradCamPanel
from .label_bar import LabelBar
from .picture import Picture

if TYPE_CHECKING:  # pyqtgraph loads after the window is up
    from .probability_chart import ProbabilityChart

CROP_SIDE = 320


def _titled(title: str, body: QWidget) -> QFrame:
    frame = QFrame()
    frame.setObjectName("Panel")
    layout = QVBoxLayout(frame)
    layout.setContentsMargins(8, 6, 8, 8)
    heading = QLabel(title)
    heading.setObjectName("PanelTitle")
    layout.addWidget(heading)
    layout.addWidget(body, 1)
    return frame


def review_text(reasons: list[str], threshold: float) -> str:
    """The reasons a cell waits, as the reviewer reads them: "low confidence (below 90 %); unfamiliar image"."""
    below = f"{LOW_CONFIDENCE} (below {100 * threshold:.0f} %)"
    return "; ".join(below if r == LOW_CONFIDENCE else r for r in reasons)


class CellDetail(QWidget):
    explain_requested = Signal(int, object)  # row id, group (None: predicted)

    def __init__(self, store: CellStore, loader: ImageLoader, parent=None):
        super().__init__(parent)
        self.setObjectName("CellDetail")
        self._store, self._loader = store, loader
        self.row = -1
        self._cell: SessionCell | None = None
        self._waiting_for: tuple | None = None

        self.title = QLabel("No cell selected")
        self.title.setObjectName("CellTitle")
        self.subtitle = QLabel("")
        self.subtitle.setObjectName("Caption")
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Why the cell waits for review; one line kept for it, so the panes never jump.
        self.reasons = QLabel("")
        self.reasons.setStyleSheet(f"color:{REVIEW_COLOURS[TO_REVIEW]}")
        self.reasons.setMinimumHeight(self.reasons.fontMetrics().height())
        self.crop = Picture("Select a cell in the gallery, the table or the image")
        # pyqtgraph takes most of a second to import: the chart is built after the window is up.
        self._chart: ProbabilityChart | None = None
        self._chart_box = QWidget()
        self._chart_box.setMinimumSize(260, 200)
        self._chart_layout = QVBoxLayout(self._chart_box)
        self._chart_layout.setContentsMargins(0, 0, 0, 0)
        self.gradcam = GradCamPanel()
        self.gradcam.explain_requested.connect(self._explain_other_class)

        self.label_bar = LabelBar()
        # Long titles are clipped rather than widening the window (the tooltip has the path).
        for label in (self.title, self.subtitle, self.reasons):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        heading = QVBoxLayout()
        heading.setSpacing(0)
        heading.addWidget(self.title)
        heading.addWidget(self.subtitle)
        heading.addWidget(self.reasons)
        heading.addSpacing(3)
        heading.addWidget(self.label_bar)
        panes = QSplitter(Qt.Orientation.Horizontal)
        panes.setChildrenCollapsible(False)
        panes.addWidget(_titled("Cell", self.crop))
        panes.addWidget(_titled("Class probabilities (calibrated)", self._chart_box))
        panes.addWidget(_titled("Grad-CAM", self.gradcam))
        for i in range(3):
            panes.setStretchFactor(i, 1)
        self._panes = panes
        self._sized = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addLayout(heading)
        layout.addWidget(panes, 1)
        loader.image_ready.connect(self._image_ready)
        loader.image_failed.connect(self._image_failed)

    @property
    def chart(self) -> ProbabilityChart:
        """The probability chart (pyqtgraph), built on first use."""
        if self._chart is None:
            from .probability_chart import ProbabilityChart

            self._chart = ProbabilityChart()
            self._chart_layout.addWidget(self._chart)
        return self._chart

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if not self._sized and event.size().width() > 300:
            # Once, at the first real size: the panes' size hints would give the crop too little.
            width = self._panes.width()
            self._panes.setSizes([int(width * 0.30), int(width * 0.38), int(width * 0.32)])
            self._sized = True

    def show_cell(self, row: int) -> None:
        """Fill the three panes for a cell (-1 clears them); Grad-CAM is asked for."""
        self.row = row
        self._cell = cell = self._store.cell(row) if row >= 0 else None
        if cell is None:
            self.title.setText("No cell selected")
            self.title.setStyleSheet("")
            self.subtitle.setText("")
            self.reasons.setText("")
            self.crop.set_message("Select a cell in the gallery, the table or the image")
            self.chart.show_probabilities(None)
            self.gradcam.clear()
            self.label_bar.show_label(None)
            self._waiting_for = None
            return
        self.show_review_state()
        entry = self._store.image(cell.path)
        n = len(entry.cell_rows) if entry is not None else 1
        kind = "platelet" if cell.kind == PLATELET else "white cell"
        model = f" · model {cell.model}" if cell.model else ""  # none for a cell never classified
        self.subtitle.setText(
            f"{cell.file_name} · cell {cell.cell_index + 1} of {n} · {kind} · box {cell.width}×{cell.height} px "
            f"at ({cell.x}, {cell.y}){model}"
        )
        self.subtitle.setToolTip(cell.path)
        self._show_crop()
        self.chart.show_probabilities(cell.probs, cell.predicted)
        self._ask_gradcam(self.gradcam.group())

    def show_review_state(self) -> None:
        """Title, frame and label bar for the cell's label now (after a correction, too)."""
        cell = self._cell
        if cell is None:
            return
        status = cell.status(self._store.review_threshold)
        colour = class_colour(cell.final_label).name()
        note = f"<span style='color:{REVIEW_COLOURS[status]}; font-weight:normal'> · {status}"
        confidence = f" <span style='font-weight:normal'>{percent(cell.confidence)}</span>" if cell.classified else ""
        if status == CORRECTED:
            # The model's confidence belongs to its class, not to the reviewer's.
            was = f" from {display_name(cell.predicted)} ({percent(cell.confidence)})" if cell.classified else ""
            note += f"{was} by {cell.reviewer}"
            confidence = ""
        elif cell.reviewed:
            note += f" by {cell.reviewer}"
        note += "</span>"
        reasons = cell.review_reasons(self._store.review_threshold)
        self.reasons.setText(f"To review: {review_text(reasons, self._store.review_threshold)}" if reasons else "")
        self.reasons.setToolTip(self.reasons.text())  # clipped when the pane is narrow
        self.title.setText(f"<span style='color:{colour}'>■</span> {display_name(cell.final_label)}{confidence}{note}")
        self.crop.frame_colour = class_colour(cell.final_label)
        self.crop.update()
        self.label_bar.show_label(cell.final_label, cell.reviewed)

    def waiting_for(self, key: tuple | None) -> None:
        """The Grad-CAM request the panes wait for (set by whoever sent it)."""
        self._waiting_for = key

    def show_gradcam(self, result: GradCamResult) -> None:
        if result.request.key == self._waiting_for:
            self.gradcam.show_result(result)

    def gradcam_failed(self, request, message: str) -> None:
        if request.key == self._waiting_for:
            self.gradcam.show_failure(message)

    def _explain_other_class(self, group) -> None:
        if self.row >= 0:
            self._ask_gradcam(group)

    def _ask_gradcam(self, group) -> None:
        """Ask for the heatmap of the cell shown; a cell never classified gets none (no model saw it)."""
        cell = self._cell
        if cell is None:
            return
        self.gradcam.explains.setEnabled(cell.classified)
        if not cell.classified:
            self._waiting_for = None
            self.gradcam.clear("Not classified:\nno model has seen this cell,\nso there is nothing to explain")
            return
        self.gradcam.show_pending()
        self.explain_requested.emit(self.row, group)

    def _show_crop(self) -> None:
        cell = self._cell
        if cell is None:
            return
        loaded = self._loader.image(cell.path)
        if loaded is None:
            self.crop.set_message("Loading…")
            return
        self.crop.set_image(qimage_from_rgb(cell_thumbnail(loaded.rgb, cell.region(), CROP_SIDE)))

    def _image_failed(self, path: str, reason: str) -> None:
        if self._cell is not None and self._cell.path == path:
            self.crop.set_message(f"Cannot show the cell: {reason}")

    def _image_ready(self, path: str) -> None:
        if self._cell is not None and self._cell.path == path:
            self._show_crop()
