"""The images and cells of the open analysis, held in memory for the Qt models.

Qt-free on purpose: the review issue that follows backs this same interface with the
SQLite session (``core/store.py``) and adds a reviewer's final label per cell.  The Qt
models read only through ``CellStore``, so that change stays out of the views.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..core.cells import CellRegion
from ..core.classes import GROUPS

# Image statuses in the image list.  The last three are the words of core.pipeline (a test
# pins them): importing the pipeline here would put scikit-image on the GUI's start-up path.
QUEUED, CANCELLED = "queued", "cancelled"
ANALYSED, NO_CELL, FAILED = "analysed", "no cell found", "failed"
IMAGE_STATUSES = (QUEUED, ANALYSED, NO_CELL, FAILED, CANCELLED)
FINAL_STATUSES = (ANALYSED, NO_CELL, FAILED)

# Review status of a cell.  "corrected" joins these when reviewers can relabel cells.
CONFIDENT, UNCERTAIN = "confident", "uncertain"
CELL_STATUSES = (CONFIDENT, UNCERTAIN)
# Below this calibrated confidence a cell is flagged for a closer look.
UNCERTAIN_BELOW = 0.60

_NO_MASK = np.zeros((0, 0), bool)


@dataclass(slots=True, eq=False)
class Cell:
    """One classified cell: where it is, and the model's calibrated probabilities.

    The segmentation mask is not kept (20,000 cells would hold hundreds of MB of masks);
    the box is what the reviewer and the model framing need.
    """

    path: str
    cell_id: int
    x: int
    y: int
    width: int
    height: int
    kind: str
    probs: np.ndarray  # float32, GROUPS order
    model: str
    predicted: str = ""
    confidence: float = math.nan

    def __post_init__(self) -> None:
        if len(self.probs):
            best = int(np.argmax(self.probs))
            self.predicted, self.confidence = GROUPS[best], float(self.probs[best])

    @classmethod
    def from_record(cls, record) -> Cell:
        """A row from a ``core.pipeline.CellRecord``."""
        r = record.region
        probs = np.asarray(record.probs if record.probs is not None else [], np.float32)
        return cls(record.path, record.cell_id, r.x, r.y, r.width, r.height, r.kind, probs, record.model)

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height

    @property
    def review_status(self) -> str:
        return UNCERTAIN if not self.confidence >= UNCERTAIN_BELOW else CONFIDENT

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)

    def region(self) -> CellRegion:
        """The box as a core ``CellRegion`` (without mask), for model framing and crops."""
        return CellRegion(self.x, self.y, self.width, self.height, _NO_MASK, self.kind)


@dataclass(slots=True)
class AnalysedImage:
    """What the worker sends back for one image: its status and classified cells."""

    path: str
    status: str
    reason: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    cells: list[Cell] = field(default_factory=list)

    @classmethod
    def from_result(cls, result) -> AnalysedImage:
        """From a ``core.pipeline.ImageResult`` (cells without probabilities are dropped)."""
        cells = [Cell.from_record(c) for c in result.cells if c.probs is not None]
        return cls(result.path, result.status, result.error or "", result.mode, result.width, result.height, cells)


@dataclass(slots=True)
class ImageEntry:
    """One image file of the analysis, as the image list shows it."""

    path: str
    status: str = QUEUED
    reason: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    cell_rows: list[int] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)


class CellStore:
    """Images in the order they were opened, and cells in the order they were analysed.

    A cell's row id is its index here; ids stay stable until ``clear_cells``.
    """

    def __init__(self) -> None:
        self._images: dict[str, ImageEntry] = {}
        self._order: list[str] = []
        self._rows: dict[str, int] = {}
        self._cells: list[Cell] = []

    # -- reading
    @property
    def image_count(self) -> int:
        return len(self._order)

    @property
    def cell_count(self) -> int:
        return len(self._cells)

    def image_at(self, row: int) -> ImageEntry:
        return self._images[self._order[row]]

    def image(self, path: str) -> ImageEntry | None:
        return self._images.get(path)

    def image_row(self, path: str) -> int:
        """Row of ``path`` in opening order; -1 if it is not open."""
        return self._rows.get(path, -1)

    def cell(self, row: int) -> Cell:
        return self._cells[row]

    def cells(self) -> list[Cell]:
        return self._cells

    def regions_of(self, path: str) -> list[tuple[int, CellRegion]]:
        """(cell id, region) of every cell of an image, in cell order."""
        entry = self._images.get(path)
        return [(self._cells[r].cell_id, self._cells[r].region()) for r in entry.cell_rows] if entry else []

    def paths(self) -> list[str]:
        return list(self._order)

    def paths_with_status(self, *statuses: str) -> list[str]:
        return [p for p in self._order if self._images[p].status in statuses]

    def status_counts(self) -> Counter:
        return Counter(self._images[p].status for p in self._order)

    # -- changing
    def add_images(self, paths: Iterable[str]) -> list[str]:
        """Open ``paths``; returns those not already open, in order, now queued."""
        added = []
        for path in paths:
            path = str(path)
            if path not in self._images:
                self._images[path] = ImageEntry(path)
                self._rows[path] = len(self._order)
                self._order.append(path)
                added.append(path)
        return added

    def record(self, analysed: AnalysedImage) -> range:
        """Store an image's outcome; returns the row ids of its new cells.

        An image that already has cells keeps them (a result that raced a cancel or a
        second opening of the same file adds nothing twice).
        """
        entry = self._images.get(analysed.path)
        if entry is None:
            self.add_images([analysed.path])
            entry = self._images[analysed.path]
        if entry.cell_rows:
            return range(0)
        entry.status, entry.reason, entry.mode = analysed.status, analysed.reason, analysed.mode
        entry.width, entry.height = analysed.width, analysed.height
        start = len(self._cells)
        self._cells.extend(analysed.cells)
        entry.cell_rows = list(range(start, len(self._cells)))
        return range(start, len(self._cells))

    def set_status(self, paths: Iterable[str], status: str, reason: str = "") -> None:
        for path in paths:
            entry = self._images.get(path)
            if entry is not None:
                entry.status, entry.reason = status, reason

    def clear_cells(self) -> None:
        """Forget every result (before a re-analysis); images stay open, queued."""
        self._cells = []
        for entry in self._images.values():
            entry.cell_rows = []
            entry.status, entry.reason = QUEUED, ""

    def clear(self) -> None:
        self._images, self._order, self._rows, self._cells = {}, [], {}, []
