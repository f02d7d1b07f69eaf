"""Work that grows with the session, off the GUI thread: Anki's ``QueryOp`` shape.

``in_background(owner, work, done, failed, reading=session)`` runs ``work()`` on a pool
thread, then ``done(result)`` or ``failed(exception)`` on the GUI thread, so the window keeps
answering while a 100,000-cell session is loaded or exported.  ``work`` may read the open
``ReviewSession`` (each thread gets its own SQLite connection) but must not touch widgets or
Qt models.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import TypeVar, cast

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

# Its own pool, so that closing a session can wait for exactly these jobs (they read it).
_POOL = QThreadPool()
_reading: Counter[int] = Counter()  # id of a session -> jobs reading it that have not ended
_ended = threading.Condition()


def wait_for_background(reading: object | None = None, msecs: int = -1) -> bool:
    """Block until every job reading the session ``reading`` (None: every job) has ended,
    before that session is closed; False on time-out."""
    if reading is None:
        return _POOL.waitForDone(msecs)
    with _ended:
        # Only these: the session opened in its place may be loading, and need not be waited for.
        return _ended.wait_for(lambda: not _reading[id(reading)], None if msecs < 0 else msecs / 1000)


class _Relay(QObject):
    """Lives on the GUI thread, so the pool thread's signal is delivered there."""

    finished = Signal(object, object)  # result, exception (None when it went well)


class _Job(QRunnable):
    def __init__(self, work: Callable[[], object], relay: _Relay, reading: object | None):
        super().__init__()
        self.work, self.relay, self.key = work, relay, id(reading) if reading is not None else None
        if self.key is not None:
            with _ended:
                _reading[self.key] += 1

    def run(self) -> None:
        try:
            result, error = self.work(), None
        except Exception as exc:  # handed to ``failed`` on the GUI thread
            result, error = None, exc
        finally:
            if self.key is not None:
                with _ended:
                    _reading[self.key] -= 1
                    if not _reading[self.key]:
                        del _reading[self.key]
                    _ended.notify_all()
        self.relay.finished.emit(result, error)


T = TypeVar("T")


def in_background(
    owner: QObject,
    work: Callable[[], T],
    done: Callable[[T], None],
    failed: Callable[[Exception], None],
    reading: object | None = None,
) -> None:
    """Run ``work`` off the GUI thread; ``done``/``failed`` follow on it (not at all once
    ``owner`` is gone).  ``reading``: the session ``work`` reads, which
    ``wait_for_background(reading)`` waits for."""
    relay = _Relay(owner)

    def finish(result: object, error: Exception | None) -> None:
        relay.deleteLater()
        if error is not None:
            failed(error)
        else:
            done(cast(T, result))  # what ``work`` returned, through the relay's untyped signal

    relay.finished.connect(finish)
    _POOL.start(_Job(work, relay, reading))
