"""The images and cells of the open review session, held in memory for the Qt models.

Qt-free on purpose.  The SQLite session (``core/store``) is the record that survives a
crash; this is its mirror for the views, which ask for thousands of values a second and
must not wait on disk.  Each cell carries its session id, so a correction made here is
committed there first and mirrored after.
"""

from __future__ import annotations

import gc
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from ..core import review_rules
from ..core.cells import CellRegion
from ..core.classes import ARTEFACT, GROUPS, REVIEW_LABELS
from ..core.preferences import DEFAULT_REVIEW_THRESHOLD
from ..core.vocabulary import ANALYSED, QUEUED

# Review status of a cell.  Not reviewed: "to review" when core.review_rules gives a reason
# (calibrated confidence below the review threshold of the preferences, an image unfamiliar
# to the model, a size that contradicts the class), else "confident".  Reviewed: "confirmed"
# when the reviewer kept the model's class, "corrected" when they gave another (or artefact).
TO_REVIEW, CONFIDENT, CONFIRMED, CORRECTED = "to review", "confident", "confirmed", "corrected"
CELL_STATUSES = (TO_REVIEW, CONFIDENT, CONFIRMED, CORRECTED)

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
    session_id: int = -1  # the cell's id in the review session; -1 while not saved there
    label: str | None = None  # the reviewer's class (or ARTEFACT); None while not reviewed
    reviewer: str = ""
    reviewed_at: str = ""
    flags: tuple[str, ...] = ()  # reasons for review fixed at analysis (core.review_rules.analysis_flags)

    def __post_init__(self) -> None:
        if len(self.probs) and not self.predicted:  # a session cell comes with its prediction
            best = int(np.argmax(self.probs))
            self.predicted, self.confidence = GROUPS[best], float(self.probs[best])

    @classmethod
    def from_record(cls, record, session_id: int = -1) -> Cell:
        """A row from a ``core.pipeline.CellRecord``."""
        r = record.region
        probs = np.asarray(record.probs if record.probs is not None else [], np.float32)
        return cls(
            record.path, record.cell_id, r.x, r.y, r.width, r.height, r.kind, probs, record.model,
            session_id=session_id, flags=tuple(record.flags),
        )  # fmt: skip

    @classmethod
    def from_session(cls, c) -> Cell:
        """A cell as a ``core.store.SessionCell`` holds it, the reviewer's label included."""
        probs = c.probs if c.probs is not None else np.zeros(0, np.float32)
        return cls(
            c.path, c.cell_index, c.x, c.y, c.width, c.height, c.kind, probs, c.model, c.predicted, c.confidence,
            session_id=c.id, label=c.label, reviewer=c.reviewer, reviewed_at=c.reviewed_at,
            flags=tuple(review_rules.split_flags(c.flags)),
        )  # fmt: skip

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height

    @property
    def final_label(self) -> str:
        """What the cell counts as: the reviewer's label, else the model's."""
        return self.label if self.label is not None else self.predicted

    @property
    def reviewed(self) -> bool:
        return self.label is not None

    @property
    def corrected(self) -> bool:
        return self.label is not None and self.label != self.predicted

    @property
    def artefact(self) -> bool:
        return self.label == ARTEFACT

    def review_reasons(self, threshold: float) -> list[str]:
        """Why the cell waits for review (``core.review_rules``); [] once reviewed."""
        if self.label is not None:
            return []
        return review_rules.review_reasons(self.confidence, threshold, self.flags)

    def status(self, threshold: float) -> str:
        if self.label is not None:
            return CORRECTED if self.label != self.predicted else CONFIRMED
        return TO_REVIEW if review_rules.review_reasons(self.confidence, threshold, self.flags) else CONFIDENT

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)

    def region(self) -> CellRegion:
        """The box as a core ``CellRegion`` (without mask), for model framing and crops."""
        return CellRegion(self.x, self.y, self.width, self.height, _NO_MASK, self.kind)


@dataclass(slots=True, frozen=True)
class ImageFamiliarity:
    """What the analysis measured on a whole image: its pixel size and whether it looks like
    the images the model was trained on (``core.familiarity``)."""

    um_per_px: float = math.nan  # nan: not measured
    score: float = math.nan  # nan: the model has no familiarity model
    unfamiliar: bool = False
    threshold: float = math.nan  # the score above which an image is unfamiliar
    model: str = ""  # the model that judged it


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
    session: str = ""  # path of the review session it was saved in ('' none)
    familiarity: ImageFamiliarity = field(default_factory=ImageFamiliarity)

    @classmethod
    def from_result(
        cls, result, session_ids: list[int] | None = None, unfamiliar_threshold: float | None = None
    ) -> AnalysedImage:
        """From a ``core.pipeline.ImageResult`` (cells without probabilities are dropped);
        ``session_ids``: the ids the review session gave its cells, in cell order;
        ``unfamiliar_threshold``: the model's, as ``core.store.unfamiliar_threshold`` gives it."""
        ids = session_ids if session_ids is not None else [-1] * len(result.cells)
        cells = [Cell.from_record(c, i) for c, i in zip(result.cells, ids) if c.probs is not None]
        familiarity = ImageFamiliarity(
            result.um_per_px,
            result.unfamiliar_score,
            bool(result.unfamiliar),
            math.nan if unfamiliar_threshold is None else unfamiliar_threshold,
        )
        return cls(
            result.path, result.status, result.error or "", result.mode, result.width, result.height, cells, "", familiarity
        )

    @classmethod
    def from_session(cls, image, cells) -> AnalysedImage:
        """A ``core.store.SessionImage`` and its ``SessionCell``s (unclassified ones dropped)."""
        kept = [Cell.from_session(c) for c in cells if c.probs is not None]
        familiarity = ImageFamiliarity(image.um_per_px, image.unfamiliar_score, image.unfamiliar, image.unfamiliar_threshold)
        return cls(image.path, image.status, image.error, image.mode, image.width, image.height, kept, "", familiarity)


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
    familiarity: ImageFamiliarity = field(default_factory=ImageFamiliarity)

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)

    @property
    def unfamiliar(self) -> bool:
        return self.familiarity.unfamiliar

    def unfamiliar_text(self) -> str:
        """Why the image is marked unfamiliar ('' when it is not)."""
        f = self.familiarity
        if not f.unfamiliar:
            return ""
        threshold = f" > threshold {f.threshold:.2f}" if math.isfinite(f.threshold) else ""
        return f"unfamiliar to model {f.model}: score {f.score:.2f}{threshold}"


_LABEL_CODES = {label: i for i, label in enumerate(REVIEW_LABELS)}
_NO_LABEL = -1  # not reviewed
_UNKNOWN = len(REVIEW_LABELS)  # a prediction outside REVIEW_LABELS ('' never classified)


class CellColumns(NamedTuple):
    """The cells as numpy columns (row id order), so that filtering and sorting 100,000
    cells is a handful of array operations rather than a Python call per cell."""

    predicted: np.ndarray  # int16, index in REVIEW_LABELS
    label: np.ndarray  # int16, index in REVIEW_LABELS; -1 not reviewed
    confidence: np.ndarray  # float64, nan not classified
    flagged: np.ndarray  # bool: flags fixed at analysis
    cell_id: np.ndarray  # int32, the cell's number within its image
    image_row: np.ndarray  # int32, its image's row in opening order

    @property
    def final(self) -> np.ndarray:
        """Index in REVIEW_LABELS of what each cell counts as (``Cell.final_label``)."""
        return np.where(self.label >= 0, self.label, self.predicted)

    def status_codes(self, threshold: float) -> np.ndarray:
        """Index in CELL_STATUSES of each cell's ``Cell.status``."""
        reviewed = self.label >= 0
        waits = review_rules.waits_for_review(self.confidence, threshold, self.flagged)
        codes = np.where(waits, CELL_STATUSES.index(TO_REVIEW), CELL_STATUSES.index(CONFIDENT))
        codes = np.where(reviewed, CELL_STATUSES.index(CONFIRMED), codes)
        return np.where(reviewed & (self.label != self.predicted), CELL_STATUSES.index(CORRECTED), codes).astype(np.int8)


def _columns_of(cells: list[Cell], rows: dict[str, int]) -> CellColumns:
    return CellColumns(
        np.fromiter((_LABEL_CODES.get(c.predicted, _UNKNOWN) for c in cells), np.int16, len(cells)),
        np.fromiter((_NO_LABEL if c.label is None else _LABEL_CODES[c.label] for c in cells), np.int16, len(cells)),
        np.fromiter((c.confidence for c in cells), np.float64, len(cells)),
        np.fromiter((bool(c.flags) for c in cells), bool, len(cells)),
        np.fromiter((c.cell_id for c in cells), np.int32, len(cells)),
        np.fromiter((rows[c.path] for c in cells), np.int32, len(cells)),
    )


class CellStore:
    """Images in the order they were opened, and cells in the order they were analysed.

    A cell's row id is its index here; ids stay stable until ``clear_cells``.
    """

    def __init__(self) -> None:
        self._images: dict[str, ImageEntry] = {}
        self._order: list[str] = []
        self._rows: dict[str, int] = {}
        self._cells: list[Cell] = []
        self._by_session_id: dict[int, int] = {}
        self._columns: CellColumns | None = None  # built when first asked, extended as cells arrive
        # Below this calibrated confidence an unreviewed cell waits in the to-review queue.
        self.review_threshold = DEFAULT_REVIEW_THRESHOLD

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

    def status(self, row: int) -> str:
        return self._cells[row].status(self.review_threshold)

    def to_review_count(self) -> int:
        codes = self.columns().status_codes(self.review_threshold)
        return int(np.count_nonzero(codes == CELL_STATUSES.index(TO_REVIEW)))

    def columns(self) -> CellColumns:
        """Every cell as numpy columns; kept in step with ``record`` and ``apply_label``."""
        have = 0 if self._columns is None else len(self._columns.predicted)
        if have < len(self._cells):
            tail = _columns_of(self._cells[have:], self._rows)
            self._columns = tail if self._columns is None else CellColumns(*map(np.concatenate, zip(self._columns, tail)))
        elif self._columns is None:
            self._columns = _columns_of([], self._rows)
        return self._columns

    def unfamiliar_images(self) -> tuple[int, int, str]:
        """(images unfamiliar to their model, images analysed, the model most of them are unfamiliar to)."""
        analysed = [self._images[p] for p in self._order if self._images[p].status == ANALYSED]
        models = Counter(e.familiarity.model for e in analysed if e.unfamiliar)
        return sum(models.values()), len(analysed), models.most_common(1)[0][0] if models else ""

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
        model = analysed.cells[0].model if analysed.cells else ""
        entry.familiarity = replace(analysed.familiarity, model=model)
        start = len(self._cells)
        self._cells.extend(analysed.cells)
        entry.cell_rows = list(range(start, len(self._cells)))
        for row in entry.cell_rows:
            if self._cells[row].session_id >= 0:
                self._by_session_id[self._cells[row].session_id] = row
        return range(start, len(self._cells))

    def apply_label(self, session_id: int, label: str | None, reviewer: str, at: str) -> int:
        """Mirror a committed correction; returns the cell's row id (-1 if not loaded)."""
        row = self._by_session_id.get(session_id, -1)
        if row >= 0:
            cell = self._cells[row]
            cell.label = label
            cell.reviewer, cell.reviewed_at = (reviewer, at) if label is not None else ("", "")
            self.labels_changed([row])
        return row

    def labels_changed(self, rows: Iterable[int]) -> None:
        """Bring the label column of these cells (row ids) in step with the cells themselves."""
        if self._columns is None:
            return
        column = self._columns.label
        for row in rows:
            if row < len(column):
                label = self._cells[row].label
                column[row] = _NO_LABEL if label is None else _LABEL_CODES[label]

    def set_status(self, paths: Iterable[str], status: str, reason: str = "") -> None:
        for path in paths:
            entry = self._images.get(path)
            if entry is not None:
                entry.status, entry.reason = status, reason

    def clear_cells(self) -> None:
        """Forget every result (before a re-analysis); images stay open, queued."""
        self._cells, self._by_session_id, self._columns = [], {}, None
        for entry in self._images.values():
            entry.cell_rows = []
            entry.status, entry.reason = QUEUED, ""
            entry.familiarity = ImageFamiliarity()

    def clear(self) -> None:
        self._images, self._order, self._rows, self._cells, self._by_session_id = {}, [], {}, [], {}
        self._columns = None

    def take(self, other: CellStore) -> None:
        """Hold ``other``'s images and cells instead of this store's (``other`` is left
        empty); the review threshold stays this store's.  Constant time: how a session read
        off the GUI thread (``read_session``) reaches the views in one step."""
        self._images, self._order, self._rows = other._images, other._order, other._rows
        self._cells, self._by_session_id, self._columns = other._cells, other._by_session_id, other._columns
        other.__init__()


def read_session(session, abandoned: Callable[[], bool] = lambda: False) -> CellStore | None:
    """A new store holding ``session``'s images and cells (a ``core.store.ReviewSession``),
    its columns built: work for a pool thread, since a month of a busy lab takes a second.
    None as soon as ``abandoned()`` says the result is no longer wanted (another session
    was opened meanwhile, or the window closed)."""
    # Hundreds of thousands of objects at once: the cyclic collector would walk the whole heap
    # several times meanwhile, holding the GIL for a tenth of a second each time, and the GUI
    # thread waits on that.  It waits until the end; then what was built is frozen (never walked
    # again: cells hold no cycles, and reference counting frees them when the session closes).
    collecting = gc.isenabled()
    gc.disable()
    try:
        images = session.images()
        by_image = defaultdict(list)
        for cell in session.cells():
            by_image[cell.image_id].append(cell)
        store = CellStore()
        store.add_images(im.path for im in images)
        for i, image in enumerate(images):
            if i % 100 == 0 and abandoned():
                return None
            store.record(AnalysedImage.from_session(image, by_image[image.id]))
        store.columns()  # here rather than at the views' first filter, on the GUI thread
        gc.freeze()
    finally:
        if collecting:
            gc.enable()
    return store
