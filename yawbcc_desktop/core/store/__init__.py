"""Review sessions: the analysed images, their cells, the model's predictions, and every
reviewer's correction as an append-only audit trail.

One contract (``ReviewSession``: ``session.py`` writes, ``reads.py`` queries), two stores,
chosen by where the session is (``locations.py``):

- a path: one SQLite file on this workstation (``sqlite_store.py``, the embedded default).
  WAL mode with ``synchronous=FULL``; one process writes it at a time (an OS lock on
  ``<file>.lock`` that dies with its process, ``kill -9`` included); ``readonly=True``
  takes no lock (export while the GUI has the session open);
- ``postgresql://host/db?session=NAME``: a session on the lab's server, shared by several
  review stations at once (``postgres_store.py``; psycopg is imported only then).

Either way each analysed image (or batch) and each correction is its own transaction, the
audit trail refuses to be rewritten, a correction names the version of each cell it saw
(``CellsChanged`` when another station changed one since), a sign-off locks its cells for
every station until reopened (``SampleSignedOff``), the sample notes (``notes.py``) are an
append-only trail of their own, and ``copy_to`` moves a whole session
from one store to the other (``transfer.py``).

Threads: one session may be shared by the threads of a process; each gets its own
connection.  Undo/redo and ``ReviewSession.cache`` (the cells a window shows, kept in step
by every correction, and by ``catch_up`` with other stations') are the GUI thread's.

A session that is damaged, from a newer YAWBCC, locked or unreachable raises a
``SessionError`` subclass whose message names it and what to do; it is never written to.
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
from .notes import COMMENTS, SAMPLE_ID, SampleNote
from .records import CellChange, Correction, CorrectionRecord, SessionCell, SessionImage, SessionSummary, SignOff
from .schema import APPLICATION_ID, SCHEMA_VERSION, SESSION_SUFFIX
from .session import ReviewSession, unfamiliar_threshold

__all__ = [
    "APPLICATION_ID",
    "COMMENTS",
    "SAMPLE_ID",
    "SampleNote",
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
