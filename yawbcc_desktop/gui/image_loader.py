"""Thumbnails and full images, decoded off the GUI thread and kept in small caches.

Views ask for a picture while they paint; a missing one is queued for a pool thread and
the views repaint when ``thumbnails_ready``/``image_ready`` names the file.  The newest
request is served first: it is what the reviewer is looking at now.  Nothing here touches
the model, so this thread never waits for the analysis worker.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtGui import QImage

from ..core.cells import CellRegion

# OpenCV and the image readers load with the first picture, not at start-up (see app.py).

# How much of the surroundings a cell thumbnail shows, and its smallest crop in pixels
# (a platelet box is a few pixels wide: upscaling less keeps it recognisable).
THUMB_CONTEXT = 1.35
THUMB_MIN_CROP = 56


def qimage_from_rgb(rgb: np.ndarray) -> QImage:
    """A QImage that owns a copy of an (H, W, 3) uint8 array."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def fit_within(rgb: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def cell_thumbnail(rgb: np.ndarray, region: CellRegion, side: int) -> np.ndarray:
    """A square crop around the cell, ``side`` pixels wide."""
    import cv2

    from ..core.preprocess import cell_crop

    context = max(THUMB_CONTEXT, THUMB_MIN_CROP / max(region.width, region.height, 1))
    crop = cell_crop(rgb, region, context)
    interp = cv2.INTER_AREA if crop.shape[0] > side else cv2.INTER_CUBIC
    return cv2.resize(crop, (side, side), interpolation=interp)


@dataclass
class Thumbnails:
    """An image's thumbnail and its cells' thumbnails (by cell id); ``image`` None: unreadable."""

    image: QImage | None
    cells: dict[int, QImage] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        pictures = ([self.image] if self.image is not None else []) + list(self.cells.values())
        return sum(p.sizeInBytes() for p in pictures) + 256


@dataclass
class LoadedImage:
    """A whole image for the viewer, and its pixels for crops."""

    picture: QImage
    rgb: np.ndarray


class ImageLoader(QObject):
    thumbnails_ready = Signal(str)  # path
    image_ready = Signal(str)  # path
    image_failed = Signal(str, str)  # path, reason
    _thumbnails_loaded = Signal(str, object)
    _image_loaded = Signal(str, object)

    def __init__(self, image_side: int = 56, cell_side: int = 96, budget_mb: int = 96, parent=None):
        super().__init__(parent)
        self.image_side, self.cell_side = image_side, cell_side
        self._budget = budget_mb * 1024 * 1024
        self._thumbs: OrderedDict[str, Thumbnails] = OrderedDict()
        self._thumb_bytes = 0
        self._full: OrderedDict[str, LoadedImage] = OrderedDict()
        self._queued: set[str] = set()
        self._queued_full: set[str] = set()
        self._ticket = itertools.count()
        self._closing = False
        # One thread: decoding competes with the analysis for the same few cores.
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._thumbnails_loaded.connect(self._store_thumbnails)
        self._image_loaded.connect(self._store_image)

    # ------------------------------------------------------------------ thumbnails
    def cached(self, path: str) -> Thumbnails | None:
        """What is cached for ``path`` (cheap: views call it for every tile they paint)."""
        return self._thumbs.get(path)

    def thumbnails(self, path: str, cells: list[tuple[int, CellRegion]]) -> Thumbnails | None:
        """Cached thumbnails of ``path`` holding every cell in ``cells``; else None and queued."""
        found = self._thumbs.get(path)
        if found is not None and (found.image is None or all(cid in found.cells for cid, _ in cells)):
            self._thumbs.move_to_end(path)
            return found
        if path not in self._queued and not self._closing:
            self._queued.add(path)
            self._pool.start(lambda: self._load_thumbnails(path, cells), next(self._ticket) % (1 << 29))
        return found

    def _load_thumbnails(self, path: str, cells: list[tuple[int, CellRegion]]) -> None:
        import cv2

        from ..core.imageio import ImageReadError, read_rgb

        if self._closing:
            return
        try:
            rgb = read_rgb(path)
            result = Thumbnails(qimage_from_rgb(fit_within(rgb, self.image_side)))
            for cid, region in cells:
                result.cells[cid] = qimage_from_rgb(cell_thumbnail(rgb, region, self.cell_side))
        except (ImageReadError, MemoryError, ValueError, cv2.error):
            result = Thumbnails(None)
        self._thumbnails_loaded.emit(path, result)

    def _store_thumbnails(self, path: str, result: Thumbnails) -> None:
        self._queued.discard(path)
        old = self._thumbs.pop(path, None)
        if old is not None:
            self._thumb_bytes -= old.nbytes
        self._thumbs[path] = result
        self._thumb_bytes += result.nbytes
        while self._thumb_bytes > self._budget and len(self._thumbs) > 1:
            _, evicted = self._thumbs.popitem(last=False)
            self._thumb_bytes -= evicted.nbytes
        self.thumbnails_ready.emit(path)

    # ----------------------------------------------------------------- full images
    def image(self, path: str) -> LoadedImage | None:
        """The whole image if cached; else None, and ``image_ready`` follows once loaded."""
        found = self._full.get(path)
        if found is not None:
            self._full.move_to_end(path)
            return found
        if path not in self._queued_full and not self._closing:
            self._queued_full.add(path)
            # Ahead of every thumbnail: the viewer waits for this one.
            self._pool.start(lambda: self._load_image(path), (1 << 30) + next(self._ticket) % (1 << 29))
        return None

    def _load_image(self, path: str) -> None:
        from ..core.imageio import ImageReadError, read_rgb

        if self._closing:
            return
        try:
            rgb = read_rgb(path)
            result: LoadedImage | str = LoadedImage(qimage_from_rgb(rgb), rgb)
        except ImageReadError as exc:
            result = exc.reason
        except MemoryError:
            result = "out of memory while reading this image"
        self._image_loaded.emit(path, result)

    def _store_image(self, path: str, result: LoadedImage | str) -> None:
        self._queued_full.discard(path)
        if isinstance(result, str):
            self.image_failed.emit(path, result)
            return
        self._full[path] = result
        while len(self._full) > 3:
            self._full.popitem(last=False)
        self.image_ready.emit(path)

    # ------------------------------------------------------------------------ life
    def is_idle(self) -> bool:
        return not self._queued and not self._queued_full

    def clear(self) -> None:
        self._thumbs.clear()
        self._thumb_bytes = 0
        self._full.clear()

    def shutdown(self, msecs: int = 5000) -> bool:
        """Drop queued loads and wait for the one in progress (before the app quits)."""
        self._closing = True
        self._pool.clear()
        finished = self._pool.waitForDone(msecs)
        self._queued.clear()
        self._queued_full.clear()
        return finished

    def threads_running(self) -> int:
        return self._pool.activeThreadCount()
