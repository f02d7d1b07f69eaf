"""The session file on disk: telling a session from other files, creating one by rename,
and the OS lock that lets one process at a time write it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

from ..classes import GROUPS
from .errors import SessionCorrupt, SessionError, SessionLocked, SessionNotFound, SessionTooNew, SessionWriteError
from .records import now
from .schema import APPLICATION_ID, SCHEMA, SCHEMA_VERSION

_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_header(path: Path) -> None:
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


def write_new_session(path: Path) -> None:
    """Build the empty schema in a temporary file, then rename it into place."""
    from ... import __version__

    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    info = {"created_at": now(), "created_by": f"yawbcc-desktop {__version__}", "class_order": json.dumps(GROUPS)}
    with renamed_into_place(tmp, path):
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(
                f"BEGIN; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
            conn.executemany("INSERT INTO session_info (key, value) VALUES (?, ?)", info.items())
        finally:
            conn.close()  # the last connection checkpoints the WAL into the file and removes it


@contextlib.contextmanager
def renamed_into_place(tmp: Path, path: Path) -> Iterator[None]:
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


class SessionLock:
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
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": now()}
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


if sys.platform == "win32":  # the form mypy knows, to check only this OS's branch
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
