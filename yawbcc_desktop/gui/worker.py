"""The analysis worker: the one thread that owns the loaded model.

Keras ``predict`` is not thread-safe and TensorFlow takes seconds to import, so the model
lives in this thread and nowhere else.  The GUI thread asks through the thread-safe methods
below and gets answers through queued signals; code running here never touches a widget.
Work goes one image at a time, so a cancel or a Grad-CAM request waits for at most one
image or one small model batch.  Each classified batch is committed to the review session
here, before the GUI sees it: an image on screen is an image on disk.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QThread, Signal

from ..core.preferences import DEFAULT_ANALYSIS, AnalysisSettings
from ..core.store import SessionError, unfamiliar_threshold
from .cell_store import AnalysedImage

if TYPE_CHECKING:  # loaded on the worker thread only, when a model is
    from ..core.classifier import ModelBundle
    from ..core.gradcam import GradCam
    from ..core.pipeline import ImageResult
    from ..core.store import ReviewSession

# Images read and segmented ahead of the model, and the child processes doing it.  Two, at
# a lower scheduling priority: on two cores they keep the model fed (one child left the
# window at 78 % of headless speed), and the window's thread and the model's take the CPU
# from them whenever they need it (benchmarks/gui_review.py, docs/measurements.md).
# YAWBCC_SEGMENTING_WORKERS sets another number.
SEGMENTING_WORKERS = int(os.environ.get("YAWBCC_SEGMENTING_WORKERS", "0")) or 2
SEGMENTING_NICENESS = 5
# Segmentations queued ahead of the model: enough that the children are never idle while
# the model works on a batch (batch_cells below).
LOOKAHEAD = 32
# Segmentation runs in a child process: its scikit-image steps hold the GIL for tens of
# milliseconds at a time, and in a thread of this process every such hold is a moment the
# window cannot repaint.  YAWBCC_SEGMENT_IN_PROCESS=0 keeps it in a thread.
SEGMENT_IN_PROCESS = os.environ.get("YAWBCC_SEGMENT_IN_PROCESS", "1") != "0"


def segment_safely(path: str, mode: str, card, settings: AnalysisSettings = DEFAULT_ANALYSIS):
    """``pipeline.segment_image`` that never raises: (result, traceback of a library bug or '').

    Module-level, so that a process pool can run it.
    """
    from ..core import pipeline

    try:
        return pipeline.segment_image(path, mode, card, settings), ""
    except Exception as exc:  # a library bug on one odd image: that image fails, the run goes on
        result = pipeline.ImageResult(path=path, error=f"unexpected error while analysing ({type(exc).__name__}: {exc})")
        return result, traceback.format_exc()


def _start_segmenting() -> None:
    if hasattr(os, "nice"):  # POSIX; elsewhere the children keep the normal priority
        os.nice(SEGMENTING_NICENESS)
    threading.Thread(target=_exit_with_window, name="exit-with-window", daemon=True).start()
    from ..core import pipeline  # noqa: F401  (imported once, when the child starts)


def _exit_with_window() -> None:
    """End this child when the window's process ends, however it ends.

    A pool's children wait on a queue whose writing end each of them also holds, so a
    window that crashed or was killed left them waiting for ever (140 MB each).
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
        os._exit(0)


def segmenting_pool() -> Executor:
    """SEGMENTING_WORKERS child processes (spawned: forking a process with Qt threads is
    unsafe), or threads."""
    if SEGMENT_IN_PROCESS:
        try:
            context = multiprocessing.get_context("spawn")
            return ProcessPoolExecutor(max_workers=SEGMENTING_WORKERS, mp_context=context, initializer=_start_segmenting)
        except (OSError, ValueError, NotImplementedError):
            pass  # no process could be made here: a thread still works, with more stalls
    return ThreadPoolExecutor(max_workers=SEGMENTING_WORKERS, thread_name_prefix="segment")


@dataclass(frozen=True)
class GradCamRequest:
    """Explain one cell: which image, how it was framed, which of its cells, which class."""

    path: str
    mode: str  # the mode the image was analysed in: "cell" or "smear"
    regions: tuple  # every CellRegion of the image: a smear's framing depends on all its cells
    index: int
    group: str | None = None  # None: the predicted class
    um_per_px: float | None = None  # the image's pixel size, for a model that frames cells by it

    @property
    def key(self) -> tuple[str, int, str | None]:
        return self.path, self.index, self.group


@dataclass
class GradCamResult:
    request: GradCamRequest
    model: str
    image: np.ndarray  # the cell as the model sees it, uint8 (S, S, 3)
    heatmap: np.ndarray  # float32 (S, S) in [0, 1]
    explains: str  # the group the heatmap explains
    seconds: float  # time spent in the worker


class AnalysisWorker(QThread):
    """Loads a model bundle, analyses queued images in order, explains cells on demand."""

    model_loading = Signal(str)  # bundle folder
    model_ready = Signal(object, str)  # ModelCard, bundle folder
    model_failed = Signal(str, str)  # bundle folder, message saying what is wrong
    images_analysed = Signal(object)  # list[AnalysedImage], in the order they were queued
    run_idle = Signal(int)  # the queue ran dry (or was cancelled); images ever queued by then
    gradcam_ready = Signal(object)  # GradCamResult
    gradcam_failed = Signal(object, str)  # GradCamRequest, message
    problem = Signal(str, str)  # one line, traceback: an unexpected error; the run goes on
    session_failed = Signal(str)  # the review session refused a write; results stay on screen only
    crashed = Signal(str)  # traceback: the worker's loop died and the thread has ended

    def __init__(self, batch_cells: int = 16, batch_seconds: float = 0.5, parent=None):
        super().__init__(parent)
        self.setObjectName("AnalysisWorker")
        # Small batches keep results streaming and a cancel quick; on a CPU the model's
        # cost per cell hardly depends on the batch size beyond a few cells.
        self.batch_cells, self.batch_seconds = batch_cells, batch_seconds
        self._wake = threading.Condition()
        # Shared with the GUI thread, always under self._wake:
        self._pending: deque[tuple[str, str, int]] = deque()  # (path, mode, generation)
        self._generation = 0  # bumped by cancel(): work of older generations is dropped
        self._model_wanted: str | None = None
        self._explain_wanted: GradCamRequest | None = None
        self._stopping = False
        self._running = False  # some work since the last run_idle
        self._submitted = 0  # images ever queued: lets the GUI tell a stale run_idle
        # The review session results are committed to; swapped under this lock so that a
        # session is never closed while a batch is being written to it.
        self._session: ReviewSession | None = None
        self._session_lock = threading.Lock()
        # Worker-thread state:
        self._bundle: ModelBundle | None = None
        self._cam: GradCam | None = None
        # How images submitted from now on are analysed (segmenter, the lab's pixel size).
        self.settings = DEFAULT_ANALYSIS

    # ------------------------------------------------------------ called from the GUI thread
    def load_model(self, folder: str) -> None:
        """Load the bundle in ``folder`` (replacing the current model) before further work."""
        with self._wake:
            self._model_wanted = str(folder)
            self._wake.notify()

    def analyse(self, paths: list[str], mode: str) -> None:
        """Queue image files; they are analysed once a model is loaded."""
        if not paths:
            return
        with self._wake:
            self._pending.extend((str(p), mode, self._generation) for p in paths)
            self._submitted += len(paths)
            self._running = True
            self._wake.notify()

    def set_session(self, session) -> None:
        """Commit later results to ``session`` (a ``ReviewSession`` or None); blocks while a
        batch is being written, so the previous session may be closed on return."""
        self.cancel()
        with self._session_lock:
            self._session = session

    def cancel(self) -> None:
        """Drop every queued image and the batch in progress; run_idle follows shortly."""
        with self._wake:
            self._generation += 1
            self._pending.clear()
            self._wake.notify()

    def request_gradcam(self, request: GradCamRequest) -> None:
        """Explain one cell; a newer request replaces one not yet started."""
        with self._wake:
            self._explain_wanted = request
            self._wake.notify()

    def stop(self) -> None:
        """Ask the thread to end after the step in progress; follow with ``wait()``."""
        with self._wake:
            self._stopping = True
            self._generation += 1
            self._pending.clear()
            self._wake.notify()

    def queued(self) -> int:
        with self._wake:
            return len(self._pending)

    # ------------------------------------------------------------------- the worker thread
    def run(self) -> None:
        try:
            self._serve()
        except BaseException:  # reported, never a silent dead thread
            self.crashed.emit(traceback.format_exc())

    def _serve(self) -> None:
        from ..core import pipeline  # scikit-image and friends load here, off the GUI thread

        # Reading and segmenting run ahead (see segmenting_pool), overlapping the model's
        # work as core.pipeline.segmented does for `yawbcc`.  The model stays this thread's.
        self._helpers = segmenting_pool()
        try:
            self._serve_with(pipeline)
        finally:
            self._helpers.shutdown(wait=True, cancel_futures=True)

    def _serve_with(self, pipeline) -> None:
        ahead: deque[tuple[Future, str, str, int]] = deque()  # (segmentation, path, mode, generation)
        batch: list[tuple[int, ImageResult]] = []  # (generation, ImageResult) awaiting the model
        batch_full = False
        batch_started = 0.0
        while True:
            with self._wake:
                while True:
                    if self._stopping:
                        return
                    batch = [(g, r) for g, r in batch if g == self._generation]
                    batch_full = batch_full and bool(batch)
                    for stale in [a for a in ahead if a[3] != self._generation]:
                        stale[0].cancel()
                        ahead.remove(stale)
                    if batch and (batch_full or self._model_wanted or not (self._pending or ahead)):
                        task = "classify"
                    elif self._model_wanted:
                        # Segmentations made for the old model's input size are redone.
                        for future, path, mode, generation in reversed(ahead):
                            future.cancel()
                            self._pending.appendleft((path, mode, generation))
                        ahead.clear()
                        task, folder, self._model_wanted = "load", self._model_wanted, None
                    elif self._explain_wanted:
                        task, request, self._explain_wanted = "explain", self._explain_wanted, None
                    elif (self._pending or ahead) and self._bundle is not None:
                        card = self._bundle.card
                        while self._pending and len(ahead) < LOOKAHEAD:
                            path, mode, generation = self._pending.popleft()
                            future = self._submit(path, mode, card)
                            ahead.append((future, path, mode, generation))
                        task = "image"
                        future, path, mode, generation = ahead.popleft()
                    elif self._running and not self._pending and not ahead:
                        task, self._running, submitted = "idle", False, self._submitted
                    else:
                        self._wake.wait()
                        continue
                    break
            if task == "classify":
                self._classify(pipeline, batch)
                batch, batch_full = [], False
            elif task == "load":
                self._load(folder)
            elif task == "explain":
                self._explain(request)
            elif task == "image":
                if not batch:
                    batch_started = time.monotonic()
                batch.append((generation, self._segmented(pipeline, future, path, mode)))
                n_cells = sum(len(r.cells) for _, r in batch)
                batch_full = n_cells >= self.batch_cells or time.monotonic() - batch_started >= self.batch_seconds
            elif task == "idle":
                self.run_idle.emit(submitted)

    def _submit(self, path: str, mode: str, card) -> Future:
        if getattr(self._helpers, "_broken", False):  # its child died: start another
            self._helpers.shutdown(wait=False, cancel_futures=True)
            self._helpers = segmenting_pool()
        return self._helpers.submit(segment_safely, path, mode, card, self.settings)

    def _segmented(self, pipeline, future: Future, path: str, mode: str):
        """The segmentation of ``path``; a failure is that image's, and the run goes on."""
        try:
            result, details = future.result()
        except BrokenProcessPool:
            # The child died (killed, out of memory) with this image queued or in hand: one
            # more try in a new child, so only an image that kills it twice fails.
            try:
                result, details = self._submit(path, mode, self._bundle.card if self._bundle else None).result()
            except BrokenProcessPool:
                result = pipeline.ImageResult(path=path, error="the segmentation process stopped on this image")
                details = traceback.format_exc()
        if details:
            self.problem.emit(f"{path}: {result.error}", details)
        return result

    def _classify(self, pipeline, batch: list) -> None:
        results = [r for _, r in batch]
        try:
            pipeline.classify_batch(results, self._bundle)
        except Exception as exc:
            self.problem.emit(f"the model failed on a batch: {type(exc).__name__}: {exc}", traceback.format_exc())
            for r in results:
                if r.cells:
                    r.error = f"classification failed ({type(exc).__name__}: {exc})"
                    r.cells, r.inputs = [], None
        with self._session_lock:
            with self._wake:  # a cancel that came during the model call drops the batch
                fresh = [r for g, r in batch if g == self._generation]
            analysed = self._save(fresh) if fresh else []
        if analysed:
            self.images_analysed.emit(analysed)

    def _save(self, results: list) -> list[AnalysedImage]:
        """Commit results to the session (one transaction); the GUI's view of each image is
        what the session then holds."""
        session = self._session
        threshold = unfamiliar_threshold(self._bundle)
        if session is None:
            return [AnalysedImage.from_result(r, None, threshold) for r in results]
        try:
            ids = session.add_images(results, threshold)
            # Read back in one query: the window shows the cells as the file has them.
            written = iter(session.cells([i for cell_ids in ids if cell_ids for i in cell_ids]))
        except SessionError as exc:
            self.session_failed.emit(str(exc))
            return [AnalysedImage.from_result(r, None, threshold) for r in results]
        out = []
        for result, cell_ids in zip(results, ids):
            if cell_ids is None:  # already in the session (with its corrections): show what it holds
                image = session.image(result.path)
                if image is None:  # gone again meanwhile (another station): shown as analysed, not saved
                    analysed = AnalysedImage.from_result(result, None, threshold)
                else:
                    analysed = AnalysedImage.from_session(image, session.cells(image_id=image.id))
            else:
                analysed = AnalysedImage.from_result(result, [next(written) for _ in cell_ids], threshold)
            analysed.session = session.location
            out.append(analysed)
        return out

    def _load(self, folder: str) -> None:
        from ..core.classifier import ModelBundle, ModelBundleError

        self.model_loading.emit(folder)
        self._bundle, self._cam = None, None  # free the old model first
        try:
            bundle = ModelBundle(folder)
            bundle.warm_up()
            self._bundle = bundle
            self._warm_gradcam()  # tracing takes seconds: now, not on the reviewer's first click
        except ModelBundleError as exc:
            self._bundle = None
            self.model_failed.emit(folder, str(exc))
            return
        except Exception as exc:
            self._bundle = None
            self.model_failed.emit(folder, f"{folder}: cannot use this model ({type(exc).__name__}: {exc})")
            return
        self.model_ready.emit(bundle.card, folder)

    def _gradcam(self) -> GradCam:
        if self._cam is None:
            from ..core.gradcam import GradCam

            if self._bundle is None:
                raise RuntimeError("no model is loaded")
            self._cam = GradCam(self._bundle.model)
        return self._cam

    def _warm_gradcam(self) -> None:
        if self._bundle is None:
            return
        try:
            side = self._bundle.card.input_size
            self._gradcam().heatmaps(np.zeros((1, side, side, 3), np.uint8))
        except Exception:
            pass  # the same error is reported when a cell is explained

    def _explain(self, request: GradCamRequest) -> None:
        started = time.perf_counter()
        if self._bundle is None:
            self.gradcam_failed.emit(request, "no model is loaded")
            return
        try:
            from ..core.imageio import read_rgb
            from ..core.pipeline import model_input

            card = self._bundle.card
            inputs = model_input(read_rgb(request.path), request.mode, list(request.regions), card, request.um_per_px)
            x = inputs[request.index : request.index + 1]
            classes = None if request.group is None else np.array([card.class_order.index(request.group)])
            heat, picked = self._gradcam().heatmaps(x, classes)
        except Exception as exc:
            self.gradcam_failed.emit(request, f"{type(exc).__name__}: {exc}")
            return
        explains = card.class_order[int(picked[0])]
        self.gradcam_ready.emit(GradCamResult(request, card.name, x[0], heat[0], explains, time.perf_counter() - started))
