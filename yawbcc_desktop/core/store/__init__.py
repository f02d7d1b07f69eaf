"""Review sessions: one SQLite file with the analysed images, their cells, the model's
predictions, and every reviewer's correction as an append-only audit trail.

Nothing is lost to a crash: the file is in WAL mode with ``synchronous=FULL``, each
analysed image (or batch) and each correction is its own transaction, and a new session
file appears by rename only once its schema is complete.

Threads: one ``ReviewSession`` may be shared by the threads of a process (the GUI corrects
from its main thread while the analysis worker calls ``add_image``); each thread gets its
own SQLite connection and SQLite serialises the writes.  Undo/redo keeps its stacks in
memory and is meant for one thread, the GUI's, as is ``ReviewSession.cache``, the cells a
window shows, which each correction updates as it commits.  Stop the worker before ``close()``.

Processes: one at a time writes a session.  ``open`` takes an OS lock on ``<file>.lock``
for as long as the session is open; the OS drops it when the process ends, ``kill -9``
included, so a stale lock file never blocks reopening.  ``readonly=True`` takes no lock
(export while the GUI has the session open).

A file that is damaged, from a newer YAWBCC, or locked raises a ``SessionError`` subclass
whose message names the file and what to do; such a file is never written to.
"""

from .cache import CellCache, CellColumns
from .errors import (
    CellsChanged,
    ChangedCell,
    SampleSignedOff,
    SessionClosed,
    SessionCorrupt,
    SessionError,
    SessionExists,
    SessionLocked,
    SessionNotFound,
    SessionReadOnly,
    SessionTooNew,
    SessionUnreachable,
    SessionWriteError,
    SignOffRefused,
)
from .locations import is_server_url, server_sessions, session_url
from .records import CellChange, Correction, CorrectionRecord, SessionCell, SessionImage, SessionSummary, SignOff
from .schema import APPLICATION_ID, SCHEMA_VERSION, SESSION_SUFFIX
from .session import ReviewSession, unfamiliar_threshold

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "SESSION_SUFFIX",
    "CellCache",
    "CellsChanged",
    "ChangedCell",
    "CellChange",
    "CellColumns",
    "Correction",
    "CorrectionRecord",
    "ReviewSession",
    "SessionCell",
    "SessionClosed",
    "SessionCorrupt",
    "SessionError",
    "SessionExists",
    "SessionImage",
    "SessionLocked",
    "SessionNotFound",
    "SessionReadOnly",
    "SessionSummary",
    "SampleSignedOff",
    "SessionTooNew",
    "SessionUnreachable",
    "SessionWriteError",
    "SignOff",
    "SignOffRefused",
    "is_server_url",
    "server_sessions",
    "session_url",
    "unfamiliar_threshold",
]
