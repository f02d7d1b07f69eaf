"""Errors a user can cause with a session file; ``str()`` of each is the message to show."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import NamedTuple

from .schema import SCHEMA_VERSION


class SessionError(Exception):
    """A session file that cannot be used; ``str()`` is the message to show."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(message)
        self.path = str(path)


class SessionNotFound(SessionError):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, f"Session file {path} does not exist. Check the name, or start a new session.")


class SessionExists(SessionError):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, f"{path} already exists; a session is never overwritten. Choose another name.")


class SessionCorrupt(SessionError):
    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(
            path,
            f"{path} cannot be opened as a review session: {reason}. The file was left untouched; "
            "restore it from a backup, or start a new session.",
        )
        self.reason = reason


class SessionTooNew(SessionError):
    def __init__(self, path: str | os.PathLike[str], version: int) -> None:
        super().__init__(
            path,
            f"{path} was written by a newer YAWBCC (session format {version}; this version reads up to "
            f"{SCHEMA_VERSION}). The file was left untouched; update YAWBCC to open it.",
        )
        self.version = version


class SessionLocked(SessionError):
    def __init__(self, path: str | os.PathLike[str], holder: str) -> None:
        super().__init__(
            path,
            f"{path} is open in another YAWBCC ({holder}). Close it there first; "
            "the cell and differential CSVs can still be exported meanwhile.",
        )
        self.holder = holder


class SessionWriteError(SessionError):
    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(
            path,
            f"Could not save to {path}: {reason}. Everything saved before is safe; "
            "free disk space or check the folder's permissions, then try again.",
        )


class SessionReadOnly(SessionError):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, f"{path} is open read-only; open it for review to change it.")


class SessionClosed(SessionError):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, f"{path} is closed.")


class SignOffRefused(Exception):
    """Sign-off asked for while cells of the to-review queue are still unreviewed."""

    def __init__(self, unreviewed: int, scope: str) -> None:
        super().__init__(f"{unreviewed} cell(s) {scope} still wait in the to-review queue; review them before signing off.")
        self.unreviewed = unreviewed


def read_error(path: Path, exc: sqlite3.DatabaseError) -> SessionError:
    # OperationalError is the disk or the OS (cannot open, I/O error), not the file's content.
    if isinstance(exc, sqlite3.OperationalError):
        return SessionError(path, f"Could not read {path}: {exc}. Check that the file and its folder are reachable.")
    return SessionCorrupt(path, f"the database is damaged ({exc})")


class CellsChanged(SessionError):
    """A correction refused because another station changed some of its cells after this one
    read them: nothing was saved.  ``changes`` says who changed each to what, so the reviewer
    can look again and choose (keep theirs, or apply this one over it)."""

    def __init__(self, location: str | os.PathLike[str], changes: list[ChangedCell]) -> None:
        shown = "; ".join(str(c) for c in changes[:5]) + ("; …" if len(changes) > 5 else "")
        super().__init__(
            location,
            f"{len(changes)} cell(s) were changed at another station since you saw them: {shown}. "
            "Nothing was saved; look at them again and choose.",
        )
        self.changes = changes


class ChangedCell(NamedTuple):
    """The latest change of a cell another station made: what a conflict names."""

    cell_id: int
    label: str | None  # None: back to not reviewed
    reviewer: str
    station: str
    at: str
    version: int

    def __str__(self) -> str:
        where = f" at {self.station}" if self.station else ""
        return f"cell {self.cell_id} to {self.label or 'not reviewed'} by {self.reviewer}{where} ({self.at})"


class SampleSignedOff(SessionError):
    """A change refused because its cells are in a sample (folder or session) that is signed
    off: the sign-off stands for every station until a reviewer reopens it on purpose."""

    def __init__(self, location: str | os.PathLike[str], scope: str, reviewer: str, at: str) -> None:
        super().__init__(
            location,
            f"{scope or 'This session'} was signed off by {reviewer} ({at}); its cells are locked. "
            "Reopen it to change them (the sign-off then no longer holds).",
        )
        self.scope, self.reviewer, self.at = scope, reviewer, at


class SessionUnreachable(SessionError):
    """The session's server could not be reached (stopped, restarted, network down)."""

    def __init__(self, location: str | os.PathLike[str], reason: str) -> None:
        super().__init__(
            location,
            f"The review server of {location} cannot be reached ({reason}). What it confirmed is safe; "
            "the last change may not have been saved: check it once the server is back.",
        )
