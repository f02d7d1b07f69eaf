"""``ReviewSession``: an open session file, and everything done to it."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np

from ..classes import REVIEW_LABELS
from ..vocabulary import FAILED
from .cache import CellCache
from .errors import (
    SessionClosed,
    SessionCorrupt,
    SessionExists,
    SessionReadOnly,
    SessionTooNew,
    SessionWriteError,
    SignOffRefused,
    read_error,
)
from .files import SessionLock, check_header, renamed_into_place, write_new_session
from .notes import SampleNotes
from .queries import CELLS, fetch_in, where_cells
from .records import (
    CELL_INSERT,
    CELL_SELECT,
    IMAGE_SELECT,
    CellChange,
    Correction,
    CorrectionRecord,
    SessionCell,
    SessionImage,
    SessionSummary,
    SignOff,
    abspath,
    cell_from_row,
    cell_values,
    image_from_row,
    now,
    real,
    unpack_mask,
)
from .schema import APPLICATION_ID, SCHEMA_VERSION, TABLES, columns_since, read_older, tables_since

if TYPE_CHECKING:
    from ..pipeline import ImageResult


def unfamiliar_threshold(bundle) -> float | None:
    """The image score above which ``bundle`` (a ``ModelBundle``) calls an image unfamiliar,
    as ``add_images`` keeps it; None without a familiarity model.  ``Familiarity.image_score``
    is in units of its thresholds: an image is unfamiliar above 1."""
    return 1.0 if getattr(bundle, "familiarity", None) is not None else None


class ReviewSession(SampleNotes):
    """An open review session file.  Use ``create``, ``open`` or ``open_or_create``."""

    def __init__(self, path: Path, readonly: bool, lock: SessionLock | None):
        self.path = path
        self.readonly = readonly
        self._lock = lock
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.RLock()
        self._closed = False
        self._undo: list[Correction] = []
        self._redo: list[Correction] = []
        # The cells a window shows, kept in step by ``_record`` (main thread, like undo/redo).
        self.cache = CellCache()

    # -- opening and closing

    @classmethod
    def create(cls, path: str | os.PathLike) -> ReviewSession:
        """A new, empty session at ``path``; ``SessionExists`` if a file is already there."""
        path = Path(abspath(path))
        if path.exists():
            raise SessionExists(path)
        lock = SessionLock(path)
        lock.acquire()
        try:
            if path.exists():  # checked again under the lock: another instance may have made it
                raise SessionExists(path)
            write_new_session(path)
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
        path = Path(abspath(path))
        check_header(path)
        lock = None
        if not readonly:
            lock = SessionLock(path)
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
        target = Path(abspath(path))
        if target.exists():
            raise SessionExists(target)
        partial = target.with_name(f".{target.name}.{os.getpid()}.copy")
        with renamed_into_place(partial, target):
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
                read_older(conn)
                conn.execute("PRAGMA query_only = ON")
            else:
                # Used only by the thread that made it; check_same_thread=False lets close() reach it.
                conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise read_error(self.path, exc) from exc
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
            raise read_error(self.path, exc) from exc

    def _check_schema(self, conn: sqlite3.Connection) -> int:
        """Refuse a file that is not a session or is too new; returns its format."""
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise read_error(self.path, exc) from exc
        if app_id != APPLICATION_ID:
            raise SessionCorrupt(self.path, "it is an SQLite database, but not a YAWBCC review session")
        if version > SCHEMA_VERSION:
            raise SessionTooNew(self.path, version)
        if version < 1 or not TABLES <= tables:
            raise SessionCorrupt(self.path, f"its tables are incomplete (format {version})")
        return version

    def _migrate(self, version: int) -> None:
        """Bring an older file to this format, in one transaction before any other write:
        the columns it lacks, with their older-file values (``ADDED_COLUMNS``)."""
        with self._write() as conn:
            for table, column, declaration, _ in columns_since(version):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            for sql in tables_since(version):
                conn.execute(sql)
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
        analysed_at = now()
        with self._write() as conn:
            for result in results:
                out.append(self._insert_image(conn, result, analysed_at, unfamiliar_threshold))
        return out

    def _insert_image(
        self, conn: sqlite3.Connection, result: ImageResult, analysed_at: str, unfamiliar_threshold: float | None
    ) -> list[int] | None:
        path = abspath(result.path)
        row = conn.execute("SELECT id, status FROM image WHERE path = ?", (path,)).fetchone()
        values = (
            result.status, result.error or "", result.mode, result.width, result.height, analysed_at,
            real(result.um_per_px), result.scale_source, real(result.unfamiliar_score), int(bool(result.unfamiliar)),
            real(unfamiliar_threshold),
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
        return [conn.execute(CELL_INSERT, cell_values(image_id, cell)).lastrowid for cell in result.cells]

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
        return self._revert("undo", self._undo, self._redo, reviewer)

    def redo(self, reviewer: str) -> Correction | None:
        """Apply again what the latest ``undo`` reverted (as new audit rows)."""
        return self._revert("redo", self._redo, self._undo, reviewer)

    def _revert(self, kind: str, source: list, target: list, reviewer: str) -> Correction | None:
        """Put back the labels the latest correction of ``source`` replaced; that correction
        moves to ``target`` (undo <-> redo) once written."""
        if not source:
            return None
        latest = source[-1]
        done = self._record(kind, _reviewer(reviewer), {c.cell_id: c.before for c in latest.changes}, latest.id)
        source.pop()
        if done is not None:
            target.append(done)
        return done

    def _record(
        self, kind: str, reviewer: str, wanted: dict[int, str | None], reverts: int | None = None, push: bool = False
    ) -> Correction | None:
        if not wanted:
            return None
        at = now()
        with self._guard, self._write() as conn:
            current = dict(fetch_in(conn, "SELECT id, label FROM cell WHERE id IN ({})", list(wanted)))
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
        # Committed: the cells in memory take the new labels here and only here, then whoever
        # shows them is told.
        self.cache.tell(self.cache.relabel(changes, reviewer, at))
        return correction

    def sign_off(self, reviewer: str, threshold: float, folder: str | os.PathLike | None = None) -> SignOff:
        """Record that ``reviewer`` signs off the session (or one folder's count).

        Refused with ``SignOffRefused`` while any cell of the to-review queue in that scope
        is unreviewed.  Checked and recorded in one transaction, so no change slips between.
        """
        reviewer = _reviewer(reviewer)
        scope = abspath(folder) if folder is not None else ""
        at = now()
        with self._write() as conn:
            where, params = where_cells(folder=scope or None, queue_threshold=threshold)
            waiting = conn.execute(f"SELECT COUNT(*) {CELLS} {where}", params).fetchone()
            if waiting[0]:
                raise SignOffRefused(waiting[0], f"in {scope}" if scope else "in this session")
            where, params = where_cells(folder=scope or None)
            counts = dict(
                conn.execute(
                    f"SELECT COALESCE(c.label, c.predicted, '') AS final, COUNT(*) {CELLS} {where} GROUP BY final",
                    params,
                ).fetchall()
            )
            last_cell = conn.execute(f"SELECT COALESCE(MAX(c.id), 0) {CELLS} {where}", params).fetchone()[0]
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
        return [image_from_row(r) for r in self._read(IMAGE_SELECT + " ORDER BY i.id")]

    def image(self, path: str | os.PathLike) -> SessionImage | None:
        rows = self._read(IMAGE_SELECT + " WHERE i.path = ?", (abspath(path),))
        return image_from_row(rows[0]) if rows else None

    def image_by_id(self, image_id: int) -> SessionImage | None:
        rows = self._read(IMAGE_SELECT + " WHERE i.id = ?", (int(image_id),))
        return image_from_row(rows[0]) if rows else None

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
        where, params = where_cells(image_id, folder, queue_threshold, label)
        return [r[0] for r in self._read(f"SELECT c.id {CELLS} {where} ORDER BY c.id", params)]

    def cells(self, ids: Sequence[int] | None = None, **filters) -> list[SessionCell]:
        """Cells by id (in the order asked), or every cell matching ``cell_ids``' filters."""
        if ids is None:
            # One query, not the ids then the cells 500 at a time: half the time on a big session.
            where, params = where_cells(**filters)
            return [cell_from_row(r) for r in self._read(f"{CELL_SELECT} {where} ORDER BY c.id", params)]
        ids = [int(i) for i in ids]
        try:
            rows = fetch_in(self._conn(), CELL_SELECT + " WHERE c.id IN ({})", ids)
        except sqlite3.DatabaseError as exc:
            raise read_error(self.path, exc) from exc
        by_id = {r[0]: cell_from_row(r) for r in rows}
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
        return unpack_mask(*rows[0])

    def to_review_count(self, threshold: float, image_id: int | None = None, folder: str | os.PathLike | None = None) -> int:
        """Unreviewed cells of the to-review queue: the count the GUI always shows."""
        where, params = where_cells(image_id, folder, threshold)
        return self._read(f"SELECT COUNT(*) {CELLS} {where}", params)[0][0]

    def label_counts(self, image_id: int | None = None, folder: str | os.PathLike | None = None) -> Counter:
        """Cells per final label (reviewer's, else model's); '' counts cells never classified."""
        where, params = where_cells(image_id, folder)
        rows = self._read(
            f"SELECT COALESCE(c.label, c.predicted, '') AS final, COUNT(*) {CELLS} {where} GROUP BY final",
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
        scope = abspath(folder) if folder is not None else ""
        rows = self._read(
            "SELECT id, folder, reviewer, at, threshold, last_correction, last_cell, counts FROM sign_off "
            "WHERE folder = ? ORDER BY id",
            (scope,),
        )
        where, params = where_cells(folder=scope or None)
        out = []
        for sid, fold, reviewer, at, threshold, last_correction, last_cell, counts in rows:
            changed = self._read(
                f"SELECT EXISTS (SELECT 1 {CELLS} {where} "
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


def _reviewer(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValueError("a correction needs the reviewer's name (set it in preferences)")
    return name
