"""Review sessions: one SQLite file with the analysed images, their cells, the model's
predictions, and every reviewer's correction as an append-only audit trail.

Nothing is lost to a crash: the file is in WAL mode with ``synchronous=FULL``, each
analysed image (or batch) and each correction is its own transaction, and a new session
file appears by rename only once its schema is complete.

Threads: one ``ReviewSession`` may be shared by the threads of a process (the GUI corrects
from its main thread while the analysis worker calls ``add_image``); each thread gets its
own SQLite connection and SQLite serialises the writes.  Undo/redo keeps its stacks in
memory and is meant for one thread, the GUI's.  Stop the worker before ``close()``.

Processes: one at a time writes a session.  ``open`` takes an OS lock on ``<file>.lock``
for as long as the session is open; the OS drops it when the process ends, ``kill -9``
included, so a stale lock file never blocks reopening.  ``readonly=True`` takes no lock
(export while the GUI has the session open).

A file that is damaged, from a newer YAWBCC, or locked raises a ``SessionError`` subclass
whose message names the file and what to do; such a file is never written to.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

import numpy as np

from . import review_rules
from .classes import GROUPS, REVIEW_LABELS
from .vocabulary import FAILED

if TYPE_CHECKING:
    from .pipeline import ImageResult

SCHEMA_VERSION = 2  # PRAGMA user_version; bump with the columns it adds in _ADDED_COLUMNS
APPLICATION_ID = 0x59574243  # PRAGMA application_id, "YWBC": tells our files from other SQLite files
SESSION_SUFFIX = ".yawbcc"  # suggested file name ending for file dialogs

_SQLITE_MAGIC = b"SQLite format 3\x00"
_TABLES = {"session_info", "image", "cell", "review_action", "correction", "sign_off"}

_SCHEMA = """
CREATE TABLE session_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE image (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,          -- absolute
    folder TEXT NOT NULL,               -- the path's parent: the unit of a per-folder count
    status TEXT NOT NULL,               -- analysed / no cell found / failed
    error TEXT NOT NULL DEFAULT '',
    mode TEXT NOT NULL DEFAULT '',      -- cell / smear
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    analysed_at TEXT NOT NULL,
    -- format 2: what the analysis measured on the whole image (core/scale.py, core/familiarity.py)
    um_per_px REAL,                     -- estimated pixel size; NULL: not measured
    scale_source TEXT NOT NULL DEFAULT '',  -- red cells / white cell / default
    unfamiliar_score REAL,              -- median of its cells' scores; NULL: no familiarity model
    unfamiliar INTEGER NOT NULL DEFAULT 0,  -- 1: score above the model's threshold
    unfamiliar_threshold REAL           -- that threshold; NULL: no familiarity model
);
CREATE INDEX image_folder ON image(folder);
CREATE TABLE cell (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES image(id),
    cell_index INTEGER NOT NULL,        -- CellRecord.cell_id, the classify CSV's cell_id
    kind TEXT NOT NULL,
    x INTEGER NOT NULL, y INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    mask BLOB,                          -- zlib(packbits(mask)), shape (height, width)
    model TEXT NOT NULL DEFAULT '',
    predicted TEXT,                     -- NULL: not classified
    confidence REAL,
    probs BLOB,                         -- float32 little-endian, class_order of session_info
    -- The latest correction, copied here in the same transaction for fast queries.
    label TEXT,                         -- NULL: not reviewed, the prediction stands
    reviewer TEXT NOT NULL DEFAULT '',
    reviewed_at TEXT NOT NULL DEFAULT '',
    -- format 2
    diameter_um REAL,                   -- the segmented outline's equivalent diameter
    unfamiliar_score REAL,              -- NULL: no familiarity model
    flags TEXT NOT NULL DEFAULT '',     -- review_rules.analysis_flags, joined by '; ' ('' none)
    UNIQUE (image_id, cell_index)
);
CREATE INDEX cell_confidence ON cell(confidence);
CREATE TABLE review_action (            -- one reviewer action: what one undo step reverts
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('set', 'confirm', 'undo', 'redo')),
    reverts INTEGER REFERENCES review_action(id),
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE correction (               -- the audit trail: one row per cell per action
    id INTEGER PRIMARY KEY,
    action_id INTEGER NOT NULL REFERENCES review_action(id),
    cell_id INTEGER NOT NULL REFERENCES cell(id),
    predicted TEXT,                     -- the model's label, so each row reads on its own
    previous TEXT,                      -- label before (NULL: not reviewed)
    label TEXT,                         -- label after (NULL: back to not reviewed, by an undo)
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX correction_cell ON correction(cell_id);
CREATE TABLE sign_off (
    id INTEGER PRIMARY KEY,
    folder TEXT NOT NULL,               -- '' for the whole session
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL,
    threshold REAL NOT NULL,
    last_correction INTEGER NOT NULL,   -- max(correction.id) then: a later one in scope voids it
    last_cell INTEGER NOT NULL,         -- max(cell.id) in scope then: a new cell voids it
    counts TEXT NOT NULL                -- JSON {final label: cells}, what was signed
);
"""
# Columns each format added to an older file's tables: (table, column, declaration, their
# value in an older file).  Opened for writing, an older file gets them by ALTER TABLE;
# opened read-only, by temporary views (``_read_older``).  The CREATE TABLEs above hold them
# too, and a test checks that a migrated file has the same columns as a new one.
_ADDED_COLUMNS: dict[int, list[tuple[str, str, str, str]]] = {
    2: [
        ("image", "um_per_px", "REAL", "NULL"),
        ("image", "scale_source", "TEXT NOT NULL DEFAULT ''", "''"),
        ("image", "unfamiliar_score", "REAL", "NULL"),
        ("image", "unfamiliar", "INTEGER NOT NULL DEFAULT 0", "0"),
        ("image", "unfamiliar_threshold", "REAL", "NULL"),
        ("cell", "diameter_um", "REAL", "NULL"),
        ("cell", "unfamiliar_score", "REAL", "NULL"),
        ("cell", "flags", "TEXT NOT NULL DEFAULT ''", "''"),
    ],
}
assert max(_ADDED_COLUMNS) == SCHEMA_VERSION


def _columns_since(version: int) -> list[tuple[str, str, str, str]]:
    """The columns a file of format ``version`` lacks."""
    return [col for v in sorted(_ADDED_COLUMNS) if v > version for col in _ADDED_COLUMNS[v]]


# History is never rewritten: undo appends rows, and SQLite itself refuses the rest.
_SCHEMA += "".join(
    f"CREATE TRIGGER {t}_no_{op.lower()} BEFORE {op} ON {t} "
    f"BEGIN SELECT RAISE(ABORT, '{t} rows are an audit trail and cannot be changed'); END;\n"
    for t in ("review_action", "correction", "sign_off")
    for op in ("UPDATE", "DELETE")
)


# -- errors a user can cause -------------------------------------------------------------


class SessionError(Exception):
    """A session file that cannot be used; ``str()`` is the message to show."""

    def __init__(self, path: str | os.PathLike, message: str):
        super().__init__(message)
        self.path = str(path)


class SessionNotFound(SessionError):
    def __init__(self, path):
        super().__init__(path, f"Session file {path} does not exist. Check the name, or start a new session.")


class SessionExists(SessionError):
    def __init__(self, path):
        super().__init__(path, f"{path} already exists; a session is never overwritten. Choose another name.")


class SessionCorrupt(SessionError):
    def __init__(self, path, reason: str):
        super().__init__(
            path,
            f"{path} cannot be opened as a review session: {reason}. The file was left untouched; "
            "restore it from a backup, or start a new session.",
        )
        self.reason = reason


class SessionTooNew(SessionError):
    def __init__(self, path, version: int):
        super().__init__(
            path,
            f"{path} was written by a newer YAWBCC (session format {version}; this version reads up to "
            f"{SCHEMA_VERSION}). The file was left untouched; update YAWBCC to open it.",
        )
        self.version = version


class SessionLocked(SessionError):
    def __init__(self, path, holder: str):
        super().__init__(
            path,
            f"{path} is open in another YAWBCC ({holder}). Close it there first; "
            "the cell and differential CSVs can still be exported meanwhile.",
        )
        self.holder = holder


class SessionWriteError(SessionError):
    def __init__(self, path, reason: str):
        super().__init__(
            path,
            f"Could not save to {path}: {reason}. Everything saved before is safe; "
            "free disk space or check the folder's permissions, then try again.",
        )


class SessionReadOnly(SessionError):
    def __init__(self, path):
        super().__init__(path, f"{path} is open read-only; open it for review to change it.")


class SessionClosed(SessionError):
    def __init__(self, path):
        super().__init__(path, f"{path} is closed.")


class SignOffRefused(Exception):
    """Sign-off asked for while cells of the to-review queue are still unreviewed."""

    def __init__(self, unreviewed: int, scope: str):
        super().__init__(f"{unreviewed} cell(s) {scope} still wait in the to-review queue; review them before signing off.")
        self.unreviewed = unreviewed


# -- what the session holds --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionImage:
    """One image file of the session and what its analysis found."""

    id: int
    path: str
    folder: str
    status: str
    error: str
    mode: str
    width: int
    height: int
    analysed_at: str
    cell_count: int
    um_per_px: float = math.nan  # estimated pixel size (nan: not measured, or an older session)
    scale_source: str = ""  # what it was measured on: red cells / white cell / default
    unfamiliar_score: float = math.nan  # nan: classified without a familiarity model
    unfamiliar: bool = False  # its look is far from the model's training images
    unfamiliar_threshold: float = math.nan  # the model's threshold on the score


@dataclass(frozen=True, slots=True, eq=False)
class SessionCell:
    """A cell as the session holds it: the model's prediction and the reviewer's label."""

    id: int  # session-wide, assigned in the order cells were added, never reused
    image_id: int
    path: str
    cell_index: int  # index within its image (the classify CSV's cell_id)
    kind: str
    x: int
    y: int
    width: int
    height: int
    model: str
    predicted: str  # '' when not classified
    confidence: float  # nan when not classified
    probs: np.ndarray | None  # float32, GROUPS order
    label: str | None  # the reviewer's label; None while not reviewed
    reviewer: str
    reviewed_at: str
    diameter_um: float = math.nan  # nan: not measured (an older session)
    unfamiliar_score: float = math.nan  # nan: no familiarity model
    flags: str = ""  # reasons for review fixed at analysis (review_rules), joined by "; "

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height

    @property
    def reviewed(self) -> bool:
        return self.label is not None

    @property
    def final_label(self) -> str:
        """The reviewer's label, else the model's ('' for a cell never classified)."""
        return self.label if self.label is not None else self.predicted

    @property
    def corrected(self) -> bool:
        """True when a reviewer gave a label other than the model's."""
        return self.label is not None and self.label != self.predicted

    def review_reasons(self, threshold: float) -> list[str]:
        """Why the cell waits for review (``core.review_rules``); [] once reviewed or if nothing calls for it."""
        if self.label is not None:
            return []
        return review_rules.review_reasons(self.confidence, threshold, self.flags)

    def in_queue(self, threshold: float) -> bool:
        """Waits for review: not reviewed yet, and a reason to (``review_reasons``)."""
        return bool(self.review_reasons(threshold))


class CellChange(NamedTuple):
    cell_id: int
    before: str | None  # None: not reviewed
    after: str | None


@dataclass(frozen=True)
class Correction:
    """One reviewer action on one or more cells, committed as one transaction.

    What ``set_label``/``confirm`` return and what one ``undo()`` reverts.  ``kind`` is
    ``set``, ``confirm``, ``undo`` or ``redo``; an undo or redo ``reverts`` an earlier one.
    """

    id: int
    kind: str
    reviewer: str
    at: str
    changes: tuple[CellChange, ...]
    reverts: int | None = None

    @property
    def cell_ids(self) -> list[int]:
        return [c.cell_id for c in self.changes]


@dataclass(frozen=True, slots=True)
class CorrectionRecord:
    """One row of the audit trail."""

    id: int
    action_id: int
    kind: str
    cell_id: int
    path: str
    cell_index: int
    predicted: str | None
    previous: str | None
    label: str | None
    reviewer: str
    at: str


@dataclass(frozen=True, slots=True)
class SignOff:
    """A reviewer's sign-off of the session (``folder == ''``) or of one folder."""

    id: int
    folder: str
    reviewer: str
    at: str
    threshold: float
    counts: dict[str, int]
    current: bool  # False once a later correction or a new cell in its scope changed the count


@dataclass(frozen=True, slots=True)
class SessionSummary:
    images: int
    failed_images: int
    cells: int
    reviewed: int
    corrected: int
    to_review: int  # unreviewed cells in the to-review queue: what blocks sign-off


# -- the session ---------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _abspath(path: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(path))


def unfamiliar_threshold(bundle) -> float | None:
    """The image score above which ``bundle`` (a ``ModelBundle``) calls an image unfamiliar,
    as ``add_images`` keeps it; None without a familiarity model.  ``Familiarity.image_score``
    is in units of its thresholds: an image is unfamiliar above 1."""
    return 1.0 if getattr(bundle, "familiarity", None) is not None else None


def _real(value: float | None) -> float | None:
    """A float for SQLite, NULL for None or nan (SQLite has no nan)."""
    return float(value) if value is not None and math.isfinite(value) else None


def _pack_mask(mask: np.ndarray | None, height: int, width: int) -> bytes | None:
    if mask is None or mask.shape != (height, width):
        return None
    return zlib.compress(np.packbits(mask.astype(bool), axis=None).tobytes())


class ReviewSession:
    """An open review session file.  Use ``create``, ``open`` or ``open_or_create``."""

    def __init__(self, path: Path, readonly: bool, lock: _SessionLock | None):
        self.path = path
        self.readonly = readonly
        self._lock = lock
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.RLock()
        self._closed = False
        self._undo: list[Correction] = []
        self._redo: list[Correction] = []

    # -- opening and closing

    @classmethod
    def create(cls, path: str | os.PathLike) -> ReviewSession:
        """A new, empty session at ``path``; ``SessionExists`` if a file is already there."""
        path = Path(_abspath(path))
        if path.exists():
            raise SessionExists(path)
        lock = _SessionLock(path)
        lock.acquire()
        try:
            if path.exists():  # checked again under the lock: another instance may have made it
                raise SessionExists(path)
            _write_new_session(path)
        except BaseException:
            lock.release()
            raise
        session = cls(path, readonly=False, lock=lock)
        try:
            session._check_schema(session._conn())
        except BaseException:
            session.close()
            raise
        return session

    @classmethod
    def open(cls, path: str | os.PathLike, readonly: bool = False) -> ReviewSession:
        """Reopen a session: everything committed in it, in any earlier process, is there."""
        path = Path(_abspath(path))
        _check_header(path)
        lock = None
        if not readonly:
            lock = _SessionLock(path)
            lock.acquire()
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        had_wal, had_shm = wal.exists(), shm.exists()
        session = cls(path, readonly, lock)
        try:
            version = session._check_schema(session._conn())
            session._check_integrity()
            if version < SCHEMA_VERSION and not readonly:
                session._migrate(version)
        except BaseException:
            session.close()
            # SQLite keeps the empty WAL files it made beside a file it could not read;
            # remove those, so a refused file is left exactly as it was found.
            with contextlib.suppress(OSError):
                if not had_wal and wal.stat().st_size == 0:
                    wal.unlink()
            with contextlib.suppress(OSError):
                if not had_shm and not wal.exists():
                    shm.unlink()
            raise
        return session

    def copy_to(self, path: str | os.PathLike) -> ReviewSession:
        """A complete copy at ``path`` (images, cells, every correction and sign-off), opened
        for review; this session stays open and as it was ("Save session as").

        ``SessionExists`` if a file is at ``path``: a session is never overwritten.
        ``SessionWriteError`` if the copy cannot be written (a full disk): nothing is left at
        ``path`` and this session is untouched.  SQLite's backup copies a consistent
        snapshot, what is still in the WAL included, into a temporary file renamed into place.
        """
        target = Path(_abspath(path))
        if target.exists():
            raise SessionExists(target)
        partial = target.with_name(f".{target.name}.{os.getpid()}.copy")
        with _renamed_into_place(partial, target):
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as copy:
                self._conn().backup(copy)
            if target.exists():  # checked again: another process may have made it meanwhile
                raise SessionExists(target)
        return ReviewSession.open(target)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike) -> ReviewSession:
        """``open`` if the file exists, else ``create`` (the CLI's ``--session``)."""
        return cls.open(path) if Path(path).exists() else cls.create(path)

    def close(self) -> None:
        """Close every thread's connection and release the lock; idempotent."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        if self._lock is not None:
            self._lock.release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ReviewSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReviewSession({str(self.path)!r}, readonly={self.readonly})"

    # -- connections and transactions

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise SessionClosed(self.path)
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._guard:
                self._connections.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                uri = f"file:{quote(str(self.path))}?mode=ro"
                conn = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None, check_same_thread=False)
                _read_older(conn)
                conn.execute("PRAGMA query_only = ON")
            else:
                # Used only by the thread that made it; check_same_thread=False lets close() reach it.
                conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise _read_error(self.path, exc) from exc
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed (durably) on exit, rolled back on any error."""
        if self.readonly:
            raise SessionReadOnly(self.path)
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SessionWriteError(self.path, str(exc)) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise SessionWriteError(self.path, str(exc)) from exc
            raise

    def _read(self, sql: str, params: Sequence = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _read_error(self.path, exc) from exc

    def _check_schema(self, conn: sqlite3.Connection) -> int:
        """Refuse a file that is not a session or is too new; returns its format."""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise _read_error(self.path, exc) from exc
        if app_id != APPLICATION_ID:
            raise SessionCorrupt(self.path, "it is an SQLite database, but not a YAWBCC review session")
        if version > SCHEMA_VERSION:
            raise SessionTooNew(self.path, version)
        if version < 1 or not _TABLES <= tables:
            raise SessionCorrupt(self.path, f"its tables are incomplete (format {version})")
        return version

    def _migrate(self, version: int) -> None:
        """Bring an older file to this format, in one transaction before any other write:
        the columns it lacks, with their older-file values (``_ADDED_COLUMNS``)."""
        with self._write() as conn:
            for table, column, declaration, _ in _columns_since(version):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_integrity(self) -> None:
        problems = [r[0] for r in self._read("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise SessionCorrupt(self.path, "the database is damaged (" + "; ".join(problems) + ")")

    # -- analysis results (any thread; the GUI's worker)

    def add_image(self, result: ImageResult, unfamiliar_threshold: float | None = None) -> list[int] | None:
        """Store one analysed image and its cells in one transaction; returns the new cell ids.

        An image already in the session keeps what it has (its cells may carry corrections)
        and ``None`` is returned; one that had failed is replaced by the new result.
        ``unfamiliar_threshold``: the model's familiarity threshold (None: it has none),
        kept to say why an image is unfamiliar.
        """
        return self.add_images([result], unfamiliar_threshold)[0]

    def add_images(self, results: Iterable[ImageResult], unfamiliar_threshold: float | None = None) -> list[list[int] | None]:
        """``add_image`` for several results in one transaction (fewer disk syncs)."""
        out: list[list[int] | None] = []
        now = _now()
        with self._write() as conn:
            for result in results:
                out.append(self._insert_image(conn, result, now, unfamiliar_threshold))
        return out

    def _insert_image(
        self, conn: sqlite3.Connection, result: ImageResult, now: str, unfamiliar_threshold: float | None
    ) -> list[int] | None:
        path = _abspath(result.path)
        row = conn.execute("SELECT id, status FROM image WHERE path = ?", (path,)).fetchone()
        values = (
            result.status, result.error or "", result.mode, result.width, result.height, now,
            _real(result.um_per_px), result.scale_source, _real(result.unfamiliar_score), int(bool(result.unfamiliar)),
            _real(unfamiliar_threshold),
        )  # fmt: skip
        if row is not None and row[1] != FAILED:
            return None
        if row is not None:  # a failed image has no cells: the retry only replaces its row
            image_id = row[0]
            conn.execute(
                "UPDATE image SET status=?, error=?, mode=?, width=?, height=?, analysed_at=?, um_per_px=?, "
                "scale_source=?, unfamiliar_score=?, unfamiliar=?, unfamiliar_threshold=? WHERE id=?",
                (*values, image_id),
            )
        else:
            image_id = conn.execute(
                "INSERT INTO image (path, folder, status, error, mode, width, height, analysed_at, um_per_px, "
                "scale_source, unfamiliar_score, unfamiliar, unfamiliar_threshold) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (path, os.path.dirname(path), *values),
            ).lastrowid
        ids = []
        for cell in result.cells:
            r = cell.region
            classified = cell.probs is not None
            ids.append(
                conn.execute(
                    "INSERT INTO cell (image_id, cell_index, kind, x, y, width, height, mask, model, predicted, "
                    "confidence, probs, diameter_um, unfamiliar_score, flags) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        image_id,
                        int(cell.cell_id),
                        r.kind,
                        int(r.x),
                        int(r.y),
                        int(r.width),
                        int(r.height),
                        _pack_mask(r.mask, int(r.height), int(r.width)),
                        cell.model,
                        cell.predicted if classified else None,
                        cell.confidence if classified else None,
                        np.asarray(cell.probs, "<f4").tobytes() if classified else None,
                        _real(cell.diameter_um),
                        _real(cell.unfamiliar_score),
                        review_rules.join_flags(cell.flags),
                    ),
                ).lastrowid
            )
        return ids

    # -- corrections (the GUI's main thread)

    def set_label(self, cell_ids: Iterable[int], label: str, reviewer: str) -> Correction | None:
        """Give ``label`` (a group or ``ARTEFACT``) to cells, committed at once; undoable.

        Returns ``None`` when every cell already had that label from a reviewer.
        """
        if label not in REVIEW_LABELS:
            raise ValueError(f"unknown label {label!r}; expected one of {', '.join(REVIEW_LABELS)}")
        ids = list(dict.fromkeys(int(i) for i in cell_ids))
        return self._record("set", _reviewer(reviewer), dict.fromkeys(ids, label), push=True)

    def confirm(self, cell_ids: Iterable[int], reviewer: str) -> Correction | None:
        """Mark cells reviewed with the label they show now (the model's, unless corrected); undoable.

        Cells never classified have no label to confirm and are left as they are.
        """
        ids = list(dict.fromkeys(int(i) for i in cell_ids))
        wanted = {c.id: c.final_label for c in self.cells(ids) if c.final_label}
        return self._record("confirm", _reviewer(reviewer), wanted, push=True)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self, reviewer: str) -> Correction | None:
        """Revert the latest correction of this session object by appending new audit rows.

        The undo history lives as long as this object; the audit trail in the file, forever.
        """
        if not self._undo:
            return None
        target = self._undo[-1]
        done = self._record("undo", _reviewer(reviewer), {c.cell_id: c.before for c in target.changes}, target.id)
        self._undo.pop()
        if done is not None:
            self._redo.append(done)
        return done

    def redo(self, reviewer: str) -> Correction | None:
        """Apply again what the latest ``undo`` reverted (as new audit rows)."""
        if not self._redo:
            return None
        target = self._redo[-1]
        done = self._record("redo", _reviewer(reviewer), {c.cell_id: c.before for c in target.changes}, target.id)
        self._redo.pop()
        if done is not None:
            self._undo.append(done)
        return done

    def _record(
        self, kind: str, reviewer: str, wanted: dict[int, str | None], reverts: int | None = None, push: bool = False
    ) -> Correction | None:
        if not wanted:
            return None
        at = _now()
        with self._guard, self._write() as conn:
            current = dict(self._fetch_in(conn, "SELECT id, label FROM cell WHERE id IN ({})", list(wanted)))
            missing = set(wanted) - set(current)
            if missing:
                raise ValueError(f"no cell with id {sorted(missing)[:5]} in {self.path}")
            changes = tuple(CellChange(i, current[i], new) for i, new in wanted.items() if current[i] != new)
            if not changes:
                return None
            action_id = conn.execute(
                "INSERT INTO review_action (kind, reverts, reviewer, at) VALUES (?, ?, ?, ?)", (kind, reverts, reviewer, at)
            ).lastrowid
            conn.executemany(
                "INSERT INTO correction (action_id, cell_id, predicted, previous, label, reviewer, at) "
                "SELECT ?, id, predicted, ?, ?, ?, ? FROM cell WHERE id = ?",
                [(action_id, c.before, c.after, reviewer, at, c.cell_id) for c in changes],
            )
            conn.executemany(
                "UPDATE cell SET label = ?, reviewer = ?, reviewed_at = ? WHERE id = ?",
                [(c.after, reviewer, at, c.cell_id) if c.after else (None, "", "", c.cell_id) for c in changes],
            )
            correction = Correction(action_id, kind, reviewer, at, changes, reverts)
            if push:
                self._undo.append(correction)
                self._redo.clear()
        return correction

    def sign_off(self, reviewer: str, threshold: float, folder: str | os.PathLike | None = None) -> SignOff:
        """Record that ``reviewer`` signs off the session (or one folder's count).

        Refused with ``SignOffRefused`` while any cell of the to-review queue in that scope
        is unreviewed.  Checked and recorded in one transaction, so no change slips between.
        """
        reviewer = _reviewer(reviewer)
        scope = _abspath(folder) if folder is not None else ""
        at = _now()
        with self._write() as conn:
            where, params = _filters(folder=scope or None, queue_threshold=threshold)
            waiting = conn.execute(f"SELECT COUNT(*) {_CELLS} {where}", params).fetchone()
            if waiting[0]:
                raise SignOffRefused(waiting[0], f"in {scope}" if scope else "in this session")
            where, params = _filters(folder=scope or None)
            counts = dict(
                conn.execute(
                    f"SELECT COALESCE(c.label, c.predicted, '') AS final, COUNT(*) {_CELLS} {where} GROUP BY final",
                    params,
                ).fetchall()
            )
            last_cell = conn.execute(f"SELECT COALESCE(MAX(c.id), 0) {_CELLS} {where}", params).fetchone()[0]
            last_correction = conn.execute("SELECT COALESCE(MAX(id), 0) FROM correction").fetchone()[0]
            sign_id = conn.execute(
                "INSERT INTO sign_off (folder, reviewer, at, threshold, last_correction, last_cell, counts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (scope, reviewer, at, float(threshold), last_correction, last_cell, json.dumps(counts, sort_keys=True)),
            ).lastrowid
        return SignOff(sign_id, scope, reviewer, at, float(threshold), counts, True)

    # -- reading (any thread)

    def images(self) -> list[SessionImage]:
        """Every image, in the order first added."""
        return [_image_from_row(r) for r in self._read(_IMAGE_SELECT + " ORDER BY i.id")]

    def image(self, path: str | os.PathLike) -> SessionImage | None:
        rows = self._read(_IMAGE_SELECT + " WHERE i.path = ?", (_abspath(path),))
        return _image_from_row(rows[0]) if rows else None

    def image_by_id(self, image_id: int) -> SessionImage | None:
        rows = self._read(_IMAGE_SELECT + " WHERE i.id = ?", (int(image_id),))
        return _image_from_row(rows[0]) if rows else None

    def analysed_paths(self) -> set[str]:
        """Absolute paths already analysed here (failed ones excluded: they may be retried)."""
        return {r[0] for r in self._read("SELECT path FROM image WHERE status != ?", (FAILED,))}

    def folders(self) -> list[str]:
        return [r[0] for r in self._read("SELECT folder FROM image GROUP BY folder ORDER BY MIN(id)")]

    def cell_ids(
        self,
        image_id: int | None = None,
        folder: str | os.PathLike | None = None,
        queue_threshold: float | None = None,
        label: str | None = None,
    ) -> list[int]:
        """Ids of the cells that match every filter given, in the order added.

        ``queue_threshold``: only the to-review queue (unreviewed, and confidence below it,
        not classified, or flagged at analysis: ``core.review_rules``);
        ``label``: only cells whose final label is this.  Cheap: for lazy table models.
        """
        where, params = _filters(image_id, folder, queue_threshold, label)
        return [r[0] for r in self._read(f"SELECT c.id {_CELLS} {where} ORDER BY c.id", params)]

    def cells(self, ids: Sequence[int] | None = None, **filters) -> list[SessionCell]:
        """Cells by id (in the order asked), or every cell matching ``cell_ids``' filters."""
        if ids is None:
            ids = self.cell_ids(**filters)
        ids = [int(i) for i in ids]
        try:
            rows = self._fetch_in(self._conn(), _CELL_SELECT + " WHERE c.id IN ({})", ids)
        except sqlite3.DatabaseError as exc:
            raise _read_error(self.path, exc) from exc
        by_id = {r[0]: _cell_from_row(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def cell(self, cell_id: int) -> SessionCell:
        found = self.cells([cell_id])
        if not found:
            raise KeyError(f"no cell {cell_id} in {self.path}")
        return found[0]

    def cell_mask(self, cell_id: int) -> np.ndarray | None:
        """The cell's segmentation mask over its box (bool, height x width), if stored."""
        rows = self._read("SELECT mask, height, width FROM cell WHERE id = ?", (int(cell_id),))
        if not rows or rows[0][0] is None:
            return None
        blob, h, w = rows[0]
        bits = np.unpackbits(np.frombuffer(zlib.decompress(blob), np.uint8), count=h * w)
        return bits.reshape(h, w).astype(bool)

    def to_review_count(self, threshold: float, image_id: int | None = None, folder: str | os.PathLike | None = None) -> int:
        """Unreviewed cells of the to-review queue: the count the GUI always shows."""
        where, params = _filters(image_id, folder, threshold)
        return self._read(f"SELECT COUNT(*) {_CELLS} {where}", params)[0][0]

    def label_counts(self, image_id: int | None = None, folder: str | os.PathLike | None = None) -> Counter:
        """Cells per final label (reviewer's, else model's); '' counts cells never classified."""
        where, params = _filters(image_id, folder)
        rows = self._read(
            f"SELECT COALESCE(c.label, c.predicted, '') AS final, COUNT(*) {_CELLS} {where} GROUP BY final",
            params,
        )
        return Counter(dict(rows))

    def summary(self, threshold: float) -> SessionSummary:
        images, failed = self._read("SELECT COUNT(*), COALESCE(SUM(status = ?), 0) FROM image", (FAILED,))[0]
        cells, reviewed, corrected = self._read(
            "SELECT COUNT(*), COALESCE(SUM(label IS NOT NULL), 0), "
            "COALESCE(SUM(label IS NOT NULL AND label IS NOT predicted), 0) FROM cell"
        )[0]
        return SessionSummary(images, failed, cells, reviewed, corrected, self.to_review_count(threshold))

    def history(self, cell_id: int | None = None) -> list[CorrectionRecord]:
        """The audit trail, oldest first: every correction, undo and redo ever made."""
        sql = (
            "SELECT k.id, k.action_id, a.kind, k.cell_id, i.path, c.cell_index, k.predicted, k.previous, k.label, "
            "k.reviewer, k.at FROM correction k JOIN review_action a ON a.id = k.action_id "
            "JOIN cell c ON c.id = k.cell_id JOIN image i ON i.id = c.image_id"
        )
        if cell_id is not None:
            return [CorrectionRecord(*r) for r in self._read(sql + " WHERE k.cell_id = ? ORDER BY k.id", (int(cell_id),))]
        return [CorrectionRecord(*r) for r in self._read(sql + " ORDER BY k.id")]

    def sign_offs(self, folder: str | os.PathLike | None = None) -> list[SignOff]:
        """Sign-offs of the session (``folder=None``) or of one folder, oldest first."""
        scope = _abspath(folder) if folder is not None else ""
        rows = self._read(
            "SELECT id, folder, reviewer, at, threshold, last_correction, last_cell, counts FROM sign_off "
            "WHERE folder = ? ORDER BY id",
            (scope,),
        )
        where, params = _filters(folder=scope or None)
        out = []
        for sid, fold, reviewer, at, threshold, last_correction, last_cell, counts in rows:
            changed = self._read(
                f"SELECT EXISTS (SELECT 1 {_CELLS} {where} "
                f"{'AND' if where else 'WHERE'} (c.id > ? OR EXISTS "
                "(SELECT 1 FROM correction k WHERE k.cell_id = c.id AND k.id > ?)))",
                (*params, last_cell, last_correction),
            )[0][0]
            out.append(SignOff(sid, fold, reviewer, at, threshold, json.loads(counts), not changed))
        return out

    def current_sign_off(self, folder: str | os.PathLike | None = None) -> SignOff | None:
        """The latest sign-off of that scope if nothing in it changed since, else ``None``."""
        offs = self.sign_offs(folder)
        return offs[-1] if offs and offs[-1].current else None

    def info(self) -> dict[str, str]:
        """Creation time, the YAWBCC version that created it, the class order of the probabilities."""
        return dict(self._read("SELECT key, value FROM session_info"))

    @staticmethod
    def _fetch_in(conn: sqlite3.Connection, sql: str, ids: list[int]) -> list[tuple]:
        # SQLite caps the number of bound parameters; ask in slices.
        rows: list[tuple] = []
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows.extend(conn.execute(sql.format(",".join("?" * len(part))), part).fetchall())
        return rows


_CELLS = "FROM cell c JOIN image i ON i.id = c.image_id"  # every cell query filters on both
_IMAGE_SELECT = (
    "SELECT i.id, i.path, i.folder, i.status, i.error, i.mode, i.width, i.height, i.analysed_at, "
    "(SELECT COUNT(*) FROM cell c WHERE c.image_id = i.id), i.um_per_px, i.scale_source, i.unfamiliar_score, "
    "i.unfamiliar, i.unfamiliar_threshold FROM image i"
)
_CELL_SELECT = (
    "SELECT c.id, c.image_id, i.path, c.cell_index, c.kind, c.x, c.y, c.width, c.height, c.model, c.predicted, "
    "c.confidence, c.probs, c.label, c.reviewer, c.reviewed_at, c.diameter_um, c.unfamiliar_score, c.flags "
    "FROM cell c JOIN image i ON i.id = c.image_id"
)


def _nan(value: float | None) -> float:
    return value if value is not None else math.nan


def _image_from_row(r: tuple) -> SessionImage:
    return SessionImage(*r[:10], _nan(r[10]), r[11], _nan(r[12]), bool(r[13]), _nan(r[14]))


def _cell_from_row(r: tuple) -> SessionCell:
    probs = np.frombuffer(r[12], "<f4").astype(np.float32) if r[12] is not None else None
    return SessionCell(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10] or "",
        _nan(r[11]), probs, r[13], r[14], r[15], _nan(r[16]), _nan(r[17]), r[18],
    )  # fmt: skip


# The to-review rule of core/review_rules.py in SQL, one clause per reason it gives; a test
# checks that it picks exactly the cells whose ``SessionCell.in_queue`` is true.
_QUEUE_REASONS = {
    review_rules.NOT_CLASSIFIED: "c.confidence IS NULL",
    review_rules.LOW_CONFIDENCE: "c.confidence < ?",  # the threshold
    "flags fixed at analysis": "c.flags != ''",
}
_QUEUE = "c.label IS NULL AND ({})".format(" OR ".join(_QUEUE_REASONS.values()))


def _filters(
    image_id: int | None = None,
    folder: str | os.PathLike | None = None,
    queue_threshold: float | None = None,
    label: str | None = None,
) -> tuple[str, list]:
    clauses, params = [], []
    if image_id is not None:
        clauses.append("c.image_id = ?")
        params.append(int(image_id))
    if folder is not None:
        clauses.append("i.folder = ?")
        params.append(_abspath(folder))
    if queue_threshold is not None:
        clauses.append(_QUEUE)
        params.append(float(queue_threshold))
    if label is not None:
        clauses.append("COALESCE(c.label, c.predicted) = ?")
        params.append(label)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _read_older(conn: sqlite3.Connection) -> None:
    """Let a read-only connection to an older file read it as this format: a temporary view
    per changed table, of the same name (SQLite looks in ``temp`` first), adds the columns
    the file lacks at their older-file values.  The file itself is not touched."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if not 1 <= version < SCHEMA_VERSION:
        return  # this format; or not a session, which _check_schema refuses
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = _columns_since(version)
    for table in dict.fromkeys(t for t, *_ in missing):
        if table in tables:
            extra = ", ".join(f"{value} AS {column}" for t, column, _, value in missing if t == table)
            conn.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {extra} FROM main.{table}")


def _read_error(path: Path, exc: sqlite3.DatabaseError) -> SessionError:
    # OperationalError is the disk or the OS (cannot open, I/O error), not the file's content.
    if isinstance(exc, sqlite3.OperationalError):
        return SessionError(path, f"Could not read {path}: {exc}. Check that the file and its folder are reachable.")
    return SessionCorrupt(path, f"the database is damaged ({exc})")


def _reviewer(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValueError("a correction needs the reviewer's name (set it in preferences)")
    return name


def _check_header(path: Path) -> None:
    """Refuse what is plainly not a session from its first 100 bytes, before SQLite touches it."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except FileNotFoundError:
        raise SessionNotFound(path) from None
    except IsADirectoryError:
        raise SessionCorrupt(path, "it is a folder") from None
    except OSError as exc:
        raise SessionError(path, f"Could not read {path}: {exc.strerror}.") from exc
    if not header:
        raise SessionCorrupt(path, "the file is empty")
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise SessionCorrupt(path, "it is not an SQLite database")
    # The header holds user_version at byte 60 and application_id at byte 68 (big-endian).
    if int.from_bytes(header[68:72], "big") != APPLICATION_ID:
        raise SessionCorrupt(path, "it is an SQLite database, but not a YAWBCC review session")
    version = int.from_bytes(header[60:64], "big")
    if version > SCHEMA_VERSION:
        raise SessionTooNew(path, version)


def _write_new_session(path: Path) -> None:
    """Build the empty schema in a temporary file, then rename it into place."""
    from .. import __version__

    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    info = {"created_at": _now(), "created_by": f"yawbcc-desktop {__version__}", "class_order": json.dumps(GROUPS)}
    with _renamed_into_place(tmp, path):
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(
                f"BEGIN; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
            conn.executemany("INSERT INTO session_info (key, value) VALUES (?, ?)", info.items())
        finally:
            conn.close()  # the last connection checkpoints the WAL into the file and removes it


@contextlib.contextmanager
def _renamed_into_place(tmp: Path, path: Path) -> Iterator[None]:
    """The block writes a SQLite file at ``tmp``; it becomes ``path`` when the block ends
    cleanly.  SQLite and OS errors become one ``SessionWriteError`` naming ``path`` (a full
    disk, a read-only folder); ``tmp`` and its -wal, -shm and -journal files never outlive it."""
    try:
        yield
        os.replace(tmp, path)
    except sqlite3.Error as exc:
        raise SessionWriteError(path, str(exc)) from exc
    except OSError as exc:
        raise SessionWriteError(path, exc.strerror or str(exc)) from exc
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink()


class _SessionLock:
    """An OS lock on ``<session>.lock``, held while the session is open for writing.

    The OS lock, not the file's existence, is what counts: it dies with its process, so a
    lock file left by a killed process is simply taken over.  The file's text (pid, host,
    time) is only there to tell the user who holds it.
    """

    def __init__(self, session_path: Path):
        self.session_path = session_path
        self.path = Path(f"{session_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise SessionError(
                    self.session_path,
                    f"Cannot open {self.session_path} for review: its folder is not writable ({exc.strerror}). "
                    "Copy the session to a folder you can write to.",
                ) from exc
            try:
                _lock_fd(fd)
            except OSError:
                os.close(fd)
                raise SessionLocked(self.session_path, self._holder()) from None
            # The previous holder may have removed the file between our open and our lock.
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    break
            except FileNotFoundError:
                pass
            _unlock_fd(fd)
            os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(holder).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Removed while still locked, so no one can take the old file after we let it go.
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        _unlock_fd(self._fd)
        os.close(self._fd)
        self._fd = None

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return f"process {info['pid']} on {info['host']}, since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"


if os.name == "nt":
    import msvcrt

    _LOCK_OFFSET = 1 << 30  # a byte past the holder text, so others can still read it

    def _lock_fd(fd: int) -> None:
        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock_fd(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        # flock: per open file, so a second open in the same process is refused too.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_fd(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
