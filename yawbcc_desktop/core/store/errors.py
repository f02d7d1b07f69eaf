"""Errors a user can cause with a session file; ``str()`` of each is the message to show."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .schema import SCHEMA_VERSION


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


def read_error(path: Path, exc: sqlite3.DatabaseError) -> SessionError:
    # OperationalError is the disk or the OS (cannot open, I/O error), not the file's content.
    if isinstance(exc, sqlite3.OperationalError):
        return SessionError(path, f"Could not read {path}: {exc}. Check that the file and its folder are reachable.")
    return SessionCorrupt(path, f"the database is damaged ({exc})")
