"""Work that grows with the session, off the GUI thread: Anki's ``QueryOp`` shape.

``in_background(owner, work, done, failed)`` runs ``work()`` on a pool thread, then
``done(result)`` or ``failed(exception)`` on the GUI thread, so the window keeps answering
while a 100,000-cell session is exported.  ``work`` may read the open ``ReviewSession``
(each thread gets its own SQLite connection) but must not touch widgets or Qt models.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

# Its own pool, so that closing a session can wait for exactly these jobs (they read it).
_POOL = QThreadPool()


def wait_for_background(msecs: int = -1) -> bool:
    """Block until every job has ended (before its session is closed); False on time-out."""
    return _POOL.waitForDone(msecs)


class _Relay(QObject):
    """Lives on the GUI thread, so the pool thread's signal is delivered there."""

    finished = Signal(object, object)  # result, exception (None when it went well)


class _Job(QRunnable):
    def __init__(self, work: Callable[[], object], relay: _Relay):
        super().__init__()
        self.work, self.relay = work, relay

    def run(self) -> None:
        try:
            result, error = self.work(), None
        except Exception as exc:  # handed to ``failed`` on the GUI thread
            result, error = None, exc
        self.relay.finished.emit(result, error)


def in_background(
    owner: QObject,
    work: Callable[[], object],
    done: Callable[[object], None],
    failed: Callable[[Exception], None],
) -> None:
    """Run ``work`` off the GUI thread; ``done``/``failed`` follow on it (not at all once
    ``owner`` is gone)."""
    relay = _Relay(owner)

    def finish(result: object, error: Exception | None) -> None:
        relay.deleteLater()
        if error is not None:
            failed(error)
        else:
            done(result)

    relay.finished.connect(finish)
    _POOL.start(_Job(work, relay))
