"""Class colours, short names and status colours: one source, so that a class looks the
same in the viewer's boxes, the gallery, the table and the probability bars."""

from __future__ import annotations

import math
from functools import cache

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap

from ..core.classes import ARTEFACT, COLOURS, DISPLAY_NAMES
from ..core.review_rules import CONFIDENT, CONFIRMED, CORRECTED, TO_REVIEW
from ..core.vocabulary import ANALYSED, CANCELLED, FAILED, NO_CELL, QUEUED

# The abbreviations haematology reports use.
SHORT_NAMES: dict[str, str] = {
    "BASOPHIL": "BA",
    "EOSINOPHIL": "EO",
    "ERYTHROBLAST": "ERB",
    "IG": "IG",
    "LYMPHOCYTE": "LY",
    "MONOCYTE": "MO",
    "NEUTROPHIL": "NE",
    "PLATELET": "PLT",
    ARTEFACT: "ART",
}
# Artefacts are not a class of the model: a dark slate, apart from the eight class hues.  A cell
# never classified has no label yet (''): a pale blue-grey, "no colour", apart from the platelets' grey.
LABEL_COLOURS: dict[str, str] = {**COLOURS, ARTEFACT: "#37474F", "": "#CFD8DC"}

# How a cell's review state looks in every view.
REVIEW_COLOURS: dict[str, str] = {
    TO_REVIEW: "#B26A00",
    CONFIDENT: "#607D8B",
    CONFIRMED: "#2E7D32",
    CORRECTED: "#1565C0",
}

STATUS_COLOURS: dict[str, str] = {
    QUEUED: "#90A4AE",
    ANALYSED: "#2E7D32",
    NO_CELL: "#EF8F00",
    FAILED: "#C62828",
    CANCELLED: "#757575",
}

ACCENT = "#1565C0"
# An image the model does not know (core/familiarity.py): the to-review hue, as its cells all wait.
UNFAMILIAR_COLOUR = REVIEW_COLOURS[TO_REVIEW]
MUTED_TEXT = "#607D8B"


# What a cell never classified shows: its final label is '' until a reviewer gives one, and it
# has no prediction or confidence to show.
NOT_CLASSIFIED_NAME = "Not classified"
NO_VALUE = "—"


def display_name(group: str) -> str:
    return DISPLAY_NAMES.get(group, group.title()) if group else NOT_CLASSIFIED_NAME


def short_name(group: str) -> str:
    """The abbreviation of a label ("—" for a cell never classified)."""
    return SHORT_NAMES.get(group, "?") if group else NO_VALUE


@cache
def class_colour(group: str) -> QColor:
    return QColor(LABEL_COLOURS.get(group, "#9E9E9E"))


@cache
def dot_icon(colour: str, size: int = 12) -> QIcon:
    """A filled circle, for class and status markers in lists and menus."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QColor(colour).darker(130))
    painter.setBrush(QColor(colour))
    painter.drawEllipse(1, 1, size - 2, size - 2)
    painter.end()
    return QIcon(pixmap)


def class_icon(group: str) -> QIcon:
    return dot_icon(LABEL_COLOURS.get(group, "#9E9E9E"))


def percent(value: float) -> str:
    """A probability as "87.5 %" ("—" for nan: a cell never classified has no confidence)."""
    return NO_VALUE if math.isnan(value) else f"{100 * value:.1f} %"
