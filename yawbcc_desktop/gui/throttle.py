"""Coalescing of updates: many model signals during a run become one refresh.

Each results batch inserts rows into nine models; refreshing counts, badges and layouts on
every one of those signals would keep the GUI thread busy painting instead of responding.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer


class Throttle(QObject):
    """Call it as often as you like: ``slot`` runs once, ``msec`` after the first call."""

    def __init__(self, slot: Callable[[], None], msec: int = 200, parent: QObject | None = None):
        super().__init__(parent)
        self._slot = slot
        self._timer = QTimer(self, singleShot=True, interval=msec)
        self._timer.timeout.connect(slot)

    def __call__(self, *args) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Run now if a call is pending (before a screenshot, in tests)."""
        if self._timer.isActive():
            self._timer.stop()
            self._slot()
