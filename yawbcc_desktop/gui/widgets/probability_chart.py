"""The calibrated class probabilities of one cell as horizontal bars (pyqtgraph).

Every bar has its class colour; the predicted class is drawn solid with an outline and a
bold value, the others paler, so the answer reads at a glance.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont

from ...core.classes import GROUPS
from ..palette import class_colour, display_name


class ProbabilityChart(pg.PlotWidget):
    def __init__(self, parent=None):
        super().__init__(parent=parent, background="w")
        self.setObjectName("ProbabilityChart")
        self.setMinimumSize(260, 200)
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        plot = self.getPlotItem()
        plot.invertY(True)  # first class on top, as in the gallery
        plot.showGrid(x=True, y=False, alpha=0.25)
        n = len(GROUPS)
        plot.setYRange(-0.6, n - 0.4, padding=0)
        plot.setXRange(0, 1.0, padding=0.06)
        left, bottom = plot.getAxis("left"), plot.getAxis("bottom")
        for axis in (left, bottom):
            axis.setPen(pg.mkPen("#B0BEC5"))
            axis.setTextPen(pg.mkPen("#37474F"))
        left.setTicks([[(i, display_name(g)) for i, g in enumerate(GROUPS)]])
        left.setStyle(tickLength=0)
        bottom.setTicks([[(v, f"{int(100 * v)} %") for v in (0, 0.5, 1.0)], [(v, "") for v in (0.25, 0.75)]])
        self._values = np.zeros(n)
        self._bars = pg.BarGraphItem(x0=np.zeros(n), y=np.arange(n), height=0.68, width=np.zeros(n))
        plot.addItem(self._bars)
        self._labels = []
        for i in range(n):
            label = pg.TextItem("", color="#37474F", anchor=(0, 0.5))
            label.setPos(0, i)
            plot.addItem(label)
            self._labels.append(label)
        self._label_state: list[tuple | None] = [None] * n
        self._normal, self._bold = QFont(), QFont()
        self._bold.setBold(True)

    def show_probabilities(self, probs: np.ndarray | None, predicted: str = "") -> None:
        """Bars for ``probs`` (GROUPS order); None clears the chart."""
        values = np.zeros(len(GROUPS)) if probs is None else np.asarray(probs, float)
        self._values = values
        brushes, pens = [], []
        for group in GROUPS:
            colour = QColor(class_colour(group))
            if group != predicted:
                colour.setAlpha(95)
            brushes.append(pg.mkBrush(colour))
            pens.append(pg.mkPen(class_colour(group).darker(150), width=1.5) if group == predicted else pg.mkPen(None))
        self._bars.setOpts(width=values, brushes=brushes, pens=pens)
        for i, (group, label) in enumerate(zip(GROUPS, self._labels)):
            text = "" if probs is None else f"{100 * values[i]:.1f} %"
            # A long bar carries its value inside, in white; a short one just after its end.
            inside = values[i] > 0.6
            state = (text, group == predicted, inside)
            if self._label_state[i] == state:
                continue  # each TextItem change costs a relayout in pyqtgraph: skip the same ones
            self._label_state[i] = state
            label.setText(text)
            label.setFont(self._bold if group == predicted else self._normal)
            label.setAnchor((1, 0.5) if inside else (0, 0.5))
            label.setColor("#FFFFFF" if inside else "#37474F")
            label.setPos(values[i] - 0.015 if inside else values[i] + 0.015, i)

    def values(self) -> np.ndarray:
        """The probabilities shown, GROUPS order (zeros when empty)."""
        return self._values.copy()
