"""The analysis as the window sees it: opened images, the worker, the models, progress.

Widget-free: it speaks to the window only through signals, so tests and the screenshot
mode drive it exactly as the reviewer's clicks do.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Iterable

from PySide6.QtCore import QObject, Signal

from ..core.classifier import ModelBundleError, ModelCard, read_card, resolve_bundle
from ..core.imageio import iter_image_paths
from ..core.preferences import DEFAULT_ANALYSIS
from ..core.store import CellCache, SessionError
from ..core.vocabulary import CANCELLED, FAILED, NO_CELL, QUEUED
from .background import in_background
from .cell_filter import CellFilter
from .cell_store import AnalysedImage, CellStore, read_session
from .cell_table_model import CellTableModel
from .image_list_model import ImageListModel
from .image_loader import ImageLoader
from .throttle import Throttle
from .worker import AnalysisWorker, GradCamRequest, GradCamResult

log = logging.getLogger(__name__)

RESULTS_EVERY_MS = 700


class RunProgress:
    """Images done out of images queued since the worker was last idle, with a rate and ETA."""

    def __init__(self) -> None:
        self.active = False
        self.total = self.done = self.cells = 0
        self.started = 0.0
        self._first_result: tuple[float, int] | None = None

    def add(self, n: int) -> None:
        if not self.active:
            self.active = True
            self.total = self.done = self.cells = 0
            self.started, self._first_result = time.monotonic(), None
        self.total += n

    def record(self, n_images: int, n_cells: int) -> None:
        if self._first_result is None:
            # The rate is measured from the first result: loading the model is not analysis.
            self._first_result = (time.monotonic(), self.done)
        self.done = min(self.done + n_images, self.total)
        self.cells += n_cells

    def rate(self) -> float | None:
        """Images per second, once there is something to measure."""
        if self._first_result is None:
            return None
        since, done_then = self._first_result
        elapsed = time.monotonic() - since
        return (self.done - done_then) / elapsed if elapsed > 0.5 and self.done > done_then else None

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total - self.done) / rate if rate else None

    def finish(self) -> None:
        self.active = False


class AnalysisController(QObject):
    images_opened = Signal(int)  # how many new images were queued
    images_analysed = Signal(list)  # paths whose outcome just arrived
    progress_changed = Signal()  # read .progress
    run_finished = Signal(str)  # one-line summary
    model_loading = Signal(str)  # bundle name
    model_ready = Signal(object)  # ModelCard
    model_failed = Signal(str, str)  # bundle folder or name, message saying what is wrong
    gradcam_ready = Signal(object)  # GradCamResult
    gradcam_failed = Signal(object, str)  # GradCamRequest, message
    problem = Signal(str, str, str)  # title, message, details
    session_loading = Signal(str)  # path of the session whose cells are read off the GUI thread
    session_loaded = Signal()  # the store now mirrors .session (or is empty: no session)

    def __init__(self, mode: str = "auto", parent=None):
        super().__init__(parent)
        self.store = CellStore()
        self.loader = ImageLoader(parent=self)
        self.cells = CellTableModel(self.store, self.loader, self)
        self.cell_filter = CellFilter(self)
        self.cell_filter.setSourceModel(self.cells)
        self.images = ImageListModel(self.store, self.loader, self)
        self.progress = RunProgress()
        self.mode = mode
        self.settings = DEFAULT_ANALYSIS  # the preferences' segmenter and pixel size
        self.session = None  # the ReviewSession results are committed to (the review controller's)
        self._session_warned = False
        self._loads = 0  # session loads asked for: a load that is not the last one is dropped
        self.loading = False  # the session's cells are being read: the views are still empty
        self._opened_while_loading: list[str | os.PathLike[str]] = []
        self.model_card: ModelCard | None = None
        self.model_folder = ""
        self.model_state = "none"  # none, loading, ready, failed
        self._gradcams: OrderedDict[tuple, GradCamResult] = OrderedDict()
        self._gradcam_asked: dict[tuple, float] = {}
        self.last_gradcam_latency: float | None = None  # seconds from asking to the answer
        self._submitted = 0  # images sent to the worker, to recognise a stale run_idle
        self._problems_this_run = 0
        # Results wait here a moment so that several batches reach the views as one update:
        # each update relays out and repaints the gallery, and that costs the worker CPU too.
        self._arrived: list[AnalysedImage] = []
        self._apply_later = Throttle(self._apply_results, RESULTS_EVERY_MS, self)
        self._worker = self._make_worker()

    def start(self) -> None:
        """Start the worker thread (after the window is up: its imports compete for the CPU)."""
        if not self._worker.isRunning():
            self._worker.start()

    # ------------------------------------------------------------------ the worker
    def _make_worker(self) -> AnalysisWorker:
        worker = AnalysisWorker(parent=self)
        worker.model_loading.connect(self._on_model_loading)
        worker.model_ready.connect(self._on_model_ready)
        worker.model_failed.connect(self._on_model_failed)
        worker.images_analysed.connect(self._on_images_analysed)
        worker.run_idle.connect(self._on_run_idle)
        worker.gradcam_ready.connect(self._on_gradcam_ready)
        worker.gradcam_failed.connect(self.gradcam_failed)
        worker.problem.connect(self._on_problem)
        worker.session_failed.connect(self._on_session_failed)
        worker.crashed.connect(self._on_crashed)
        worker.set_session(self.session)
        self._submitted = 0  # the new worker counts from zero
        return worker

    @property
    def worker(self) -> AnalysisWorker:
        return self._worker

    def shutdown(self, msecs: int = 60_000) -> bool:
        """Stop the worker and the image loader; True if every thread has ended."""
        self._loads += 1  # a session still loading is not wanted any more
        self.loader.shutdown()
        worker = self._worker
        if worker is None:
            return True
        worker.stop()
        # A model load cannot be interrupted; it is the longest step the worker takes.
        return worker.wait(msecs)

    # --------------------------------------------------------------------- models
    def use_model(self, name_or_folder: str | os.PathLike[str] | None) -> bool:
        """Load a bundle (None: the default) in the worker; False if it cannot even be found."""
        try:
            folder = resolve_bundle(name_or_folder)
            read_card(folder)  # a broken card is reported now, not after TensorFlow has loaded
        except ModelBundleError as exc:
            self.model_state = "failed"
            self.model_failed.emit(str(name_or_folder or "default model"), str(exc))
            return False
        self.model_folder = str(folder)
        self._worker.load_model(str(folder))
        return True

    def _on_model_loading(self, folder: str) -> None:
        self.model_state = "loading"
        self.model_loading.emit(os.path.basename(folder))

    def _on_model_ready(self, card: ModelCard, folder: str) -> None:
        self.model_state, self.model_card, self.model_folder = "ready", card, folder
        self._gradcams.clear()
        self.model_ready.emit(card)

    def _on_model_failed(self, folder: str, message: str) -> None:
        self.model_state, self.model_card = "failed", None
        self.model_failed.emit(folder, message)

    # ------------------------------------------------------------------- sessions
    def use_session(self, session, new: bool = False) -> None:
        """Show ``session`` (a ``ReviewSession``, or None) and commit new results to it.

        Whatever was open is closed first; the previous session object is no longer
        written to when this returns, so the caller may close it.  Its cells are read off
        the GUI thread (a month of a busy lab takes a second): ``session_loading`` now,
        ``session_loaded`` once the views show them.  ``new``: just created, nothing to read.
        """
        self.close_all()
        self._worker.set_session(session)
        self.session, self._session_warned = session, False
        self._loads += 1
        # The views read the session's own cells, kept in step by its corrections; while an
        # opened session is read they show an empty cache, and the session's once it is filled.
        self.store.use(session.cache if session is not None and new else CellCache())
        if session is None or new:
            self._loaded()
            return
        load = self._loads
        self.loading = True
        self.session_loading.emit(session.location)
        in_background(
            self,
            lambda: read_session(session, abandoned=lambda: load != self._loads),
            lambda store: self._session_read(load, store),
            lambda exc: self._session_unreadable(load, exc),
            reading=session,
        )

    def add_session_images(self) -> int:
        """Show the images another station analysed into the shared session since it was read,
        with their cells, as if they had been read at open; returns how many."""
        session = self.session
        if session is None or self.loading or session.image_count() == self.store.image_count:
            return 0
        new = [im for im in session.images() if self.store.image(im.path) is None]
        if not new:
            return 0
        first_row = self.store.cell_count
        self.store.add_images(im.path for im in new)
        self.images.images_added()
        for image in new:
            self.store.record(AnalysedImage.from_session(image, session.cells(image_id=image.id)))
        self.cells.cells_added(range(first_row, self.store.cell_count))
        self.images.images_changed([im.path for im in new])
        return len(new)

    def _session_read(self, load: int, store: CellStore | None) -> None:
        if load != self._loads or store is None:
            return  # another session was opened meanwhile
        self.store.take(store)
        self.cells.reset()
        self.images.reset()
        self._loaded()

    def _session_unreadable(self, load: int, exc: Exception) -> None:
        if load != self._loads:
            return
        self._loaded()
        if not isinstance(exc, SessionError | OSError):
            raise exc
        self.problem.emit("Cannot read the session", f"{exc}\n\nNo cell of it is shown.", "")

    def _loaded(self) -> None:
        self.loading = False
        self.session_loaded.emit()
        # Images opened while the session loaded join it now, after its own.
        waiting, self._opened_while_loading = self._opened_while_loading, []
        if waiting:
            self.open_paths(waiting)

    def _session_path(self) -> str:
        return self.session.location if self.session is not None else ""

    def cell_mask(self, row: int):
        """The segmentation mask of the cell in store row ``row`` over its box, as the session
        keeps it (None: no session, not yet saved, or no mask stored)."""
        session, cell = self.session, self.store.cell(row)
        if session is None or session.closed or cell.id < 0:
            return None
        return session.cell_mask(cell.id)

    def _on_session_failed(self, message: str) -> None:
        if not self._session_warned:  # once per session: every later batch fails the same way
            self._session_warned = True
            self.problem.emit(
                "Results are not being saved",
                f"{message}\n\nThe analysis goes on and its results stay on screen, but they are not in the "
                "session file: free disk space or save the session elsewhere (File › Save session as…).",
                "",
            )

    # ------------------------------------------------------------------- analysis
    def open_paths(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Open files and folders (searched recursively); new images are queued for analysis.
        While a session loads they wait for it (and 0 is returned): its images come first."""
        if self.loading:
            self._opened_while_loading.extend(paths)
            return 0
        # Absolute: the session stores absolute paths, and an image is one row whatever its spelling.
        found = [os.path.abspath(p) for p in iter_image_paths(paths)]
        added = self.store.add_images(found)
        if added:
            self.images.images_added()
            self._queue(added)
        self.images_opened.emit(len(added))
        return len(added)

    def _queue(self, paths: list[str]) -> None:
        if not self.progress.active:
            self._problems_this_run = 0
        self.progress.add(len(paths))
        self._submitted += len(paths)
        self._worker.settings = self.settings
        self._worker.analyse(paths, self.mode)
        self.progress_changed.emit()

    def analyse_remaining(self) -> int:
        """Queue again the images a cancel left unanalysed."""
        paths = self.store.paths_with_status(CANCELLED)
        self.store.set_status(paths, QUEUED)
        self.images.statuses_changed()
        if paths:
            self._queue(paths)
        return len(paths)

    def _forget_results(self, images_too: bool) -> None:
        """Stop the run and drop every result (and, with ``images_too``, every open image)."""
        self._worker.cancel()
        self._arrived = []
        self.progress.finish()
        if images_too:
            self.store.clear()
            self.loader.clear()
        else:
            self.store.clear_cells()
        self._gradcams.clear()
        self.cells.reset()
        self.images.reset()

    def reanalyse_all(self) -> int:
        """Forget every result and analyse every open image again (after a model change)."""
        self._forget_results(images_too=False)
        paths = self.store.paths()
        if paths:
            self._queue(paths)
        return len(paths)

    def cancel(self) -> None:
        """Stop the run: queued images become 'cancelled' at once; the worker drops its batch."""
        if not self.progress.active:
            return
        self._worker.cancel()
        self._apply_later.flush()
        queued = self.store.paths_with_status(QUEUED)
        self.store.set_status(queued, CANCELLED)
        self.images.statuses_changed()
        self.progress.finish()
        self.progress_changed.emit()
        self.run_finished.emit(f"Cancelled: {len(queued)} image{'s' if len(queued) != 1 else ''} left unanalysed")

    def close_all(self) -> None:
        self._forget_results(images_too=True)
        self.progress_changed.emit()

    def is_idle(self) -> bool:
        return not self.progress.active

    def _on_images_analysed(self, analysed: list[AnalysedImage]) -> None:
        first = not self.store.cell_count and not self._arrived
        self._arrived.extend(analysed)
        if first:
            self._apply_results()  # the first cells show at once
        else:
            self._apply_later()

    def _apply_results(self) -> None:
        analysed, self._arrived = self._arrived, []
        if not analysed:
            return
        paths, n_images, n_cells = [], 0, 0
        first_row = self.store.cell_count
        current = self._session_path()
        for image in analysed:
            if image.session != current:
                continue  # a late result meant for the session closed since
            entry = self.store.image(image.path)
            # Late results of cancelled images are kept but do not count in this run.
            in_run = entry is not None and entry.status == QUEUED
            rows = self.store.record(image)
            if image.status == FAILED:
                log.warning("%s: %s", image.path, image.reason)  # the image list shows it; the log keeps it
            paths.append(image.path)
            n_images += in_run
            n_cells += len(rows) if in_run else 0
        # One insert and one change for the whole batch: each signal reaches nine proxies.
        self.cells.cells_added(range(first_row, self.store.cell_count))
        self.images.images_changed(paths)
        if self.progress.active and n_images:
            self.progress.record(n_images, n_cells)
            self.progress_changed.emit()
        self.images_analysed.emit(paths)

    def _on_run_idle(self, submitted: int) -> None:
        self._apply_later.flush()
        p = self.progress
        if submitted < self._submitted or not p.active:
            return  # more images were queued since, or the run was cancelled
        counts = self.store.status_counts()
        elapsed = time.monotonic() - p.started
        summary = (
            f"Analysed {p.done} image{'s' if p.done != 1 else ''} in {elapsed:.1f} s: {p.cells} cells"
            f"{f', {counts[NO_CELL]} without a cell' if counts[NO_CELL] else ''}"
            f"{f', {counts[FAILED]} failed' if counts[FAILED] else ''}"
        )
        p.finish()
        log.info("%s", summary)
        self.progress_changed.emit()
        self.run_finished.emit(summary)

    # -------------------------------------------------------------------- Grad-CAM
    def explain(self, row: int, group: str | None = None) -> tuple[tuple, GradCamResult | None]:
        """Grad-CAM of a cell: the request's key and the cached result, or None and
        ``gradcam_ready`` follows."""
        cell = self.store.cell(row)
        group = group or cell.predicted or None  # the class the reviewer sees, whichever model is loaded now
        entry = self.store.image(cell.path)
        rows = entry.cell_rows if entry is not None else [row]
        um_per_px = entry.familiarity.um_per_px if entry is not None else math.nan
        request = GradCamRequest(
            cell.path,
            entry.mode if entry is not None and entry.mode else "cell",
            tuple(self.store.cell(r).region() for r in rows),
            rows.index(row),
            group,
            um_per_px if math.isfinite(um_per_px) else None,  # framed as when it was classified
        )
        found = self._gradcams.get(request.key)
        if found is not None:
            self._gradcams.move_to_end(request.key)
            return request.key, found
        self._gradcam_asked[request.key] = time.perf_counter()
        self._worker.request_gradcam(request)
        return request.key, None

    def _on_gradcam_ready(self, result: GradCamResult) -> None:
        key = result.request.key
        self._gradcams[key] = result
        while len(self._gradcams) > 256:
            self._gradcams.popitem(last=False)
        asked = self._gradcam_asked.pop(key, None)
        if asked is not None:
            self.last_gradcam_latency = time.perf_counter() - asked
        self.gradcam_ready.emit(result)

    # ---------------------------------------------------------------------- errors
    def _on_problem(self, summary: str, details: str) -> None:
        # One dialog per run is enough: the image list names every failed image, the log each error.
        log.error("%s\n%s", summary, details)
        self._problems_this_run += 1
        if self._problems_this_run == 1:
            self.problem.emit(
                "Unexpected error during the analysis",
                f"{summary}\n\nThe image is marked failed and the analysis goes on.",
                details,
            )

    def _on_crashed(self, details: str) -> None:
        log.error("The analysis worker stopped\n%s", details)
        self._apply_later.flush()
        queued = self.store.paths_with_status(QUEUED)
        self.problem.emit(
            "The analysis worker stopped",
            "The analysis worker stopped on an unexpected error; it has been restarted"
            f"{f' and {len(queued)} queued images are analysed again' if queued else ''}.",
            details,
        )
        old = self._worker
        old.wait(2000)
        old.deleteLater()
        self.model_state = "none"
        self._worker = self._make_worker()
        self._worker.start()
        if self.model_folder:
            self._worker.load_model(self.model_folder)
        if queued:
            self.progress.finish()
            self._queue(queued)
