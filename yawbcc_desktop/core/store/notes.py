"""The sample's identifier and the reviewer's morphology comments, per session or folder.

Kept as an append-only trail like the corrections: each change is a new row naming who
made it and when, the latest row of a field is its value, and either store refuses to change
or delete a row (its audit guard).  A mixin of ``ReviewSession``: it uses the session's
``_write``, ``_read`` and ``_announce``, in SQL both stores read alike, so the notes work in
a file and on the lab's server, and other stations hear of a change.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .records import abspath, now

SAMPLE_ID, COMMENTS = "sample_id", "comments"
NOTE_FIELDS = (SAMPLE_ID, COMMENTS)


@dataclass(frozen=True, slots=True)
class SampleNote:
    """One change of a sample note: the field, its new value, who and when."""

    folder: str  # '' for the whole session
    field: str
    value: str
    reviewer: str
    at: str


class SampleNotes:
    """The sample notes of a ``ReviewSession``."""

    if TYPE_CHECKING:  # what the session gives its mixin

        def _write(self) -> contextlib.AbstractContextManager[Any]: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

        def _announce(self, conn: Any, action_id: int) -> None: ...

    def set_note(self, field: str, value: str, reviewer: str, folder: str | os.PathLike[str] | None = None) -> bool:
        """Give ``field`` (``SAMPLE_ID`` or ``COMMENTS``) of the session (or one folder) a new
        value, recorded with ``reviewer`` and the time; False when it already had that value."""
        if field not in NOTE_FIELDS:
            raise ValueError(f"unknown sample note {field!r}; expected one of {', '.join(NOTE_FIELDS)}")
        reviewer = (reviewer or "").strip()
        if not reviewer:
            raise ValueError("a sample note needs the reviewer's name (set it in preferences)")
        scope = abspath(folder) if folder is not None else ""
        with self._write() as conn:
            row = conn.execute(
                "SELECT value FROM sample_note WHERE folder = ? AND field = ? ORDER BY id DESC LIMIT 1", (scope, field)
            ).fetchone()
            if (row[0] if row else "") == value:
                return False
            conn.execute(
                "INSERT INTO sample_note (folder, field, value, reviewer, at) VALUES (?, ?, ?, ?, ?)",
                (scope, field, value, reviewer, now()),
            )
            self._announce(conn, 0)  # other stations' windows show the new value
        return True

    def notes(self, folder: str | os.PathLike[str] | None = None) -> dict[str, str]:
        """The current value of each note of the session (or one folder); '' where never set."""
        current = {f: "" for f in NOTE_FIELDS}
        for note in self.note_history(folder):
            current[note.field] = note.value
        return current

    def note_history(self, folder: str | os.PathLike[str] | None = None) -> list[SampleNote]:
        """Every change of the notes of the session (or one folder), oldest first."""
        scope = abspath(folder) if folder is not None else ""
        rows = self._read("SELECT folder, field, value, reviewer, at FROM sample_note WHERE folder = ? ORDER BY id", (scope,))
        return [SampleNote(*r) for r in rows]
