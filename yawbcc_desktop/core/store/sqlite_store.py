"""The embedded store: a session is one SQLite file on this workstation.

Nothing is lost to a crash: the file is in WAL mode with ``synchronous=FULL``, each analysed
image (or batch) and each correction is its own transaction, and a new session file appears
by rename only once its schema is complete.  Each thread gets its own SQLite connection and
SQLite serialises the writes.

Processes: one at a time writes a session.  ``open`` takes an OS lock on ``<file>.lock`` for
as long as the session is open; the OS drops it when the process ends, ``kill -9`` included,
so a stale lock file never blocks reopening.  ``readonly=True`` takes no lock (export while
the GUI has the session open).  Several stations share a queue on a server instead
(``postgres_store``): SQLite's WAL needs shared memory on one host.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from .errors import SessionCorrupt, SessionError, SessionExists, SessionTooNew, SessionWriteError, read_error
from .files import SessionLock, check_header, renamed_into_place, write_new_session
from .locations import is_server_url
from .reads import Connection
from .records import abspath
from .schema import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    TABLES,
    audit_triggers,
    columns_since,
    missing_tables,
    read_older,
    table_columns,
)
from .session import ReviewSession


class SqliteSession(ReviewSession):
    """An open review session file."""

    backend_errors = (sqlite3.Error,)

    def __init__(self, path: Path, readonly: bool, lock: SessionLock | None):
        super().__init__(str(path), readonly)
        self.path = path
        self._lock = lock

    @property
    def name(self) -> str:
        return self.path.stem

    def __repr__(self) -> str:
        return f"ReviewSession({str(self.path)!r}, readonly={self.readonly})"

    @classmethod
    def exists(cls, location: str | os.PathLike[str]) -> bool:
        return Path(location).exists()

    @classmethod
    def create(cls, location: str | os.PathLike[str]) -> SqliteSession:
        """A new, empty session at ``path``; ``SessionExists`` if a file is already there."""
        path = Path(abspath(location))
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
            session._start_catching_up()
        except BaseException:
            session.close()
            raise
        return session

    @classmethod
    def open(cls, location: str | os.PathLike[str], readonly: bool = False) -> SqliteSession:
        """Reopen a session: everything committed in it, in any earlier process, is there."""
        path = Path(abspath(location))
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
            session._start_catching_up()
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

    def copy_to(self, location: str | os.PathLike[str]) -> ReviewSession:
        """A complete copy (``ReviewSession.copy_to``).  To another file: SQLite's backup
        copies a consistent snapshot, what is still in the WAL included, into a temporary file
        renamed into place, so a full disk leaves nothing at ``location`` and this session
        untouched (``SessionWriteError``)."""
        if is_server_url(location):
            return super().copy_to(location)
        target = Path(abspath(location))
        if target.exists():
            raise SessionExists(target)
        partial = target.with_name(f".{target.name}.{os.getpid()}.copy")
        with renamed_into_place(partial, target):
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as copy:
                self._conn().backup(copy)
            if target.exists():  # checked again: another process may have made it meanwhile
                raise SessionExists(target)
        return SqliteSession.open(target)

    def _discard(self) -> None:
        """Close and remove a session this process has just made (a copy that failed half-way)."""
        self.close()
        for leftover in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    # -- connections and transactions

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

    def _begin(self, conn: Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the one writer: takes the write lock at once

    def _error(self, exc: BaseException, writing: bool) -> SessionError:
        if writing:
            return SessionWriteError(self.path, str(exc))
        assert isinstance(exc, sqlite3.DatabaseError)
        return read_error(self.path, exc)

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
        return int(version)

    def _migrate(self, version: int) -> None:
        """Bring an older file to this format, in one transaction before any other write:
        the columns it lacks, with their older-file values (``ADDED_COLUMNS``), and the tables
        (``ADDED_TABLES``).  What the file lacks, not what its number says: a file of an
        unmerged branch's numbering may have some of them already."""
        with self._write() as conn:
            for table, column, declaration, _ in columns_since(version):
                if column not in table_columns(conn, table):
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            added = missing_tables(tables)
            for sql in [*added.values(), *audit_triggers(added)]:
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_integrity(self) -> None:
        problems = [r[0] for r in self._read("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise SessionCorrupt(self.path, "the database is damaged (" + "; ".join(problems) + ")")
