"""``--screenshot OUT.png``: wait for the analysis, select the first cell, save the window.

In a session under review the first corrected cell is selected instead: that is the cell
a bug report or a review screenshot is about.

Polling keeps the steps plain: each tick checks whether the window has reached the next
state.  Thumbnails load while the views paint, so the window is rendered until the image
loader has nothing left to do before the picture that is saved.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from ..core.vocabulary import QUEUED
from .messages import say

EXIT_SAVED, EXIT_INCOMPLETE, EXIT_UNUSABLE = 0, 1, 2


class ScreenshotJob(QObject):
    finished = Signal(int)  # exit status

    def __init__(self, window, out: str | os.PathLike[str], timeout: float = 900.0, parent=None):
        super().__init__(parent)
        self.window, self.out, self.timeout = window, Path(out), timeout
        self._started = time.monotonic()
        self._step = "analysing"
        self._step_since = time.monotonic()
        self._timer = QTimer(self, interval=100)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._timer.start()

    def _next(self, step: str) -> None:
        self._step, self._step_since = step, time.monotonic()

    def _tick(self) -> None:
        controller = self.window.controller
        waited = time.monotonic() - self._started
        if waited > self.timeout:
            say(f"yawbcc-desktop: screenshot: gave up waiting after {self.timeout:.0f} s ({self._step})")
            self._save(EXIT_INCOMPLETE)
            return
        if self._step == "analysing":
            if controller.model_state == "failed":
                self._save(EXIT_UNUSABLE)
                return
            queued = controller.store.paths_with_status(QUEUED)
            if controller.model_state == "ready" and controller.is_idle() and not queued:
                store = controller.store
                if store.cell_count:
                    corrected = next((r for r in range(store.cell_count) if store.cell(r).corrected), 0)
                    self.window.selection.select_cell(corrected)
                self._next("explaining")
        elif self._step == "explaining":
            detail = self.window.detail
            settled = detail.row < 0 or detail.gradcam.state != "pending"  # a cell never classified has none
            if settled or time.monotonic() - self._step_since > 30:
                self._next("painting")
        elif self._step == "painting":
            # Paint (which asks for thumbnails) until nothing is left to load.
            self.window.grab()
            # Counts and badges follow the models a few hundred ms later (throttle.py).
            if controller.loader.is_idle() and time.monotonic() - self._step_since > 0.8:
                self._save(EXIT_SAVED)

    def _save(self, status: int) -> None:
        self._timer.stop()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        partial = self.out.with_name(self.out.name + ".partial.png")
        if self.window.grab().save(str(partial), "PNG"):
            os.replace(partial, self.out)
            say(f"yawbcc-desktop: screenshot saved to {self.out}")
        else:
            say(f"yawbcc-desktop: cannot write {self.out}")
            status = EXIT_UNUSABLE
        self.finished.emit(status)
