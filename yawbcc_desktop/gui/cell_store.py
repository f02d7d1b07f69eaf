"""The images of the analysis, and the cells the views show, for the Qt models.

Qt-free on purpose.  The cells are the session's own (``core.store.SessionCell``), read
through the cache the session keeps in step with every correction (``ReviewSession.cache``,
a ``core.store.CellCache``): a cell's row id is its row there.  What this adds is the
images opened in this window, queued, failed or cancelled ones too, which a session does
not hold until they are analysed.
"""

from __future__ import annotations

import gc
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from ..core.cells import CellRegion
from ..core.preferences import DEFAULT_REVIEW_THRESHOLD
from ..core.review_rules import CELL_STATUSES, TO_REVIEW
from ..core.store import CellCache, CellColumns, SessionCell
from ..core.store.records import unsaved_cell
from ..core.vocabulary import ANALYSED, QUEUED


@dataclass(slots=True, frozen=True)
class ImageFamiliarity:
    """What the analysis measured on a whole image: its pixel size and whether it looks like
    the images the model was trained on (``core.familiarity``)."""

    um_per_px: float = math.nan  # nan: not measured
    score: float = math.nan  # nan: the model has no familiarity model
    unfamiliar: bool = False
    threshold: float = math.nan  # the score above which an image is unfamiliar
    model: str = ""  # the model that judged it
    scale_source: str = ""  # what the pixel size was measured on (core.scale: red cells, set by the lab, ...)

    def scale_text(self) -> str:
        """The pixel size and its ruler, as the image list's tooltip says it ('' if not measured)."""
        if not math.isfinite(self.um_per_px):
            return ""
        return f"{self.um_per_px:.4f} µm per pixel" + (f" ({self.scale_source})" if self.scale_source else "")


@dataclass(slots=True)
class AnalysedImage:
    """What the worker sends back for one image: its status and its cells."""

    path: str
    status: str
    reason: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    cells: list[SessionCell] = field(default_factory=list)
    session: str = ""  # path of the review session it was saved in ('' none)
    familiarity: ImageFamiliarity = field(default_factory=ImageFamiliarity)

    @classmethod
    def from_result(
        cls, result, cells: list[SessionCell] | None = None, unfamiliar_threshold: float | None = None
    ) -> AnalysedImage:
        """From a ``core.pipeline.ImageResult``, every cell of it (one never classified waits
        for review like any other, ``core.review_rules``); ``cells``: its cells as the session
        read them back once written, in cell order (None: no session took them);
        ``unfamiliar_threshold``: the model's, as ``core.store.unfamiliar_threshold`` gives it."""
        if cells is None:
            cells = [unsaved_cell(c) for c in result.cells]
        familiarity = ImageFamiliarity(
            result.um_per_px,
            result.unfamiliar_score,
            bool(result.unfamiliar),
            math.nan if unfamiliar_threshold is None else unfamiliar_threshold,
            scale_source=result.scale_source,
        )
        return cls(
            result.path, result.status, result.error or "", result.mode, result.width, result.height, cells, "", familiarity
        )

    @classmethod
    def from_session(cls, image, cells: list[SessionCell]) -> AnalysedImage:
        """A ``core.store.SessionImage`` and its cells, those never classified too."""
        familiarity = ImageFamiliarity(
            image.um_per_px, image.unfamiliar_score, image.unfamiliar, image.unfamiliar_threshold, scale_source=image.scale_source
        )
        return cls(image.path, image.status, image.error, image.mode, image.width, image.height, cells, "", familiarity)


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


class CellStore:
    """Images in the order they were opened, and the cells of a ``CellCache`` (a session's,
    or one of its own while no session is open) in the order they were analysed or read.

    A cell's row id is its row in the cache; ids stay stable until ``clear_cells``.
    """

    def __init__(self, cache: CellCache | None = None) -> None:
        self._images: dict[str, ImageEntry] = {}
        self._order: list[str] = []
        self._rows: dict[str, int] = {}
        self._cache = cache if cache is not None else CellCache()
        # Below this calibrated confidence an unreviewed cell waits in the to-review queue.
        self.review_threshold = DEFAULT_REVIEW_THRESHOLD

    # -- reading
    @property
    def cache(self) -> CellCache:
        return self._cache

    @property
    def image_count(self) -> int:
        return len(self._order)

    @property
    def cell_count(self) -> int:
        return len(self._cache)

    def image_at(self, row: int) -> ImageEntry:
        return self._images[self._order[row]]

    def image(self, path: str) -> ImageEntry | None:
        return self._images.get(path)

    def image_row(self, path: str) -> int:
        """Row of ``path`` in opening order; -1 if it is not open."""
        return self._rows.get(path, -1)

    def cell(self, row: int) -> SessionCell:
        return self._cache.cell(row)

    def cells(self) -> list[SessionCell]:
        return self._cache.cells()

    def rows_of(self, cell_ids: Iterable[int]) -> list[int]:
        """Row ids of the cells with these session ids (those shown)."""
        rows = (self._cache.row_of(i) for i in cell_ids)
        return [r for r in rows if r >= 0]

    def status(self, row: int) -> str:
        return self._cache.cell(row).status(self.review_threshold)

    def to_review_count(self) -> int:
        codes = self.columns().status_codes(self.review_threshold)
        return int(np.count_nonzero(codes == CELL_STATUSES.index(TO_REVIEW)))

    def columns(self) -> CellColumns:
        """Every cell as numpy columns (the cache's, kept in step with each correction)."""
        return self._cache.columns()

    def unfamiliar_images(self) -> tuple[int, int, str]:
        """(images unfamiliar to their model, images analysed, the model most of them are unfamiliar to)."""
        analysed = [self._images[p] for p in self._order if self._images[p].status == ANALYSED]
        models = Counter(e.familiarity.model for e in analysed if e.unfamiliar)
        return sum(models.values()), len(analysed), models.most_common(1)[0][0] if models else ""

    def regions_of(self, path: str) -> list[tuple[int, CellRegion]]:
        """(cell index, region) of every cell of an image, in cell order."""
        entry = self._images.get(path)
        if entry is None:
            return []
        return [(c.cell_index, c.region()) for c in map(self._cache.cell, entry.cell_rows)]

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
        rows = self._cache.add(analysed.cells)
        entry.cell_rows = list(rows)
        return rows

    def set_status(self, paths: Iterable[str], status: str, reason: str = "") -> None:
        for path in paths:
            entry = self._images.get(path)
            if entry is not None:
                entry.status, entry.reason = status, reason

    def clear_cells(self) -> None:
        """Forget every result (before a re-analysis); images stay open, queued."""
        self._cache.clear()
        for entry in self._images.values():
            entry.cell_rows = []
            entry.status, entry.reason = QUEUED, ""
            entry.familiarity = ImageFamiliarity()

    def clear(self) -> None:
        self._images, self._order, self._rows = {}, [], {}
        self._cache.clear()

    def use(self, cache: CellCache) -> None:
        """Show the cells of ``cache`` (an empty one: a new session's, or none) from now on."""
        self._cache = cache

    def take(self, other: CellStore) -> None:
        """Hold ``other``'s images and cells instead of this store's (``other`` is left
        empty); the review threshold stays this store's.  Constant time: how a session read
        off the GUI thread (``read_session``) reaches the views in one step."""
        self._images, self._order, self._rows, self._cache = other._images, other._order, other._rows, other._cache
        other._images, other._order, other._rows, other._cache = {}, [], {}, CellCache()


def read_session(session, abandoned: Callable[[], bool] = lambda: False) -> CellStore | None:
    """``session`` (a ``core.store.ReviewSession``) read into a new store: its images, and its
    cells into the session's own cache, the columns built.  Work for a pool thread, since a
    month of a busy lab takes a second; nothing reads that cache until the store is taken.
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
        session.cache.clear()
        store = CellStore(session.cache)
        store.add_images(im.path for im in images)
        for i, image in enumerate(images):
            if i % 100 == 0 and abandoned():
                session.cache.clear()
                return None
            store.record(AnalysedImage.from_session(image, by_image[image.id]))
        store.columns()  # here rather than at the views' first filter, on the GUI thread
        gc.freeze()
    finally:
        if collecting:
            gc.enable()
    return store
