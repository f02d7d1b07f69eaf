"""A session copied whole from one store to another (``yawbcc session copy FROM TO``):
every table row for row, ids kept, so the copy's audit trail reads as the original's."""

from __future__ import annotations

import os

from .schema import TABLE_ORDER
from .session import ReviewSession

_BATCH = 2000  # rows per round trip: 100,000 cells do not sit in memory at once


def copy_session(source: ReviewSession, location: str | os.PathLike[str]) -> ReviewSession:
    """A complete copy of ``source`` at ``location`` (a path or a server URL), opened for
    review; ``SessionExists`` if a session is there.  The rows are written in one transaction
    and a copy that fails half-way is removed, so nothing half-copied is ever opened.

    The source is read as one snapshot, so a station correcting it meanwhile cannot leave
    the copy with a correction but not its cell's new label."""
    target = ReviewSession.create(location)
    try:
        with source._snapshot() as src, target._write() as dst:
            dst.execute("DELETE FROM session_info")  # the source's creation, not the copy's
            for table in TABLE_ORDER:
                cursor = src.execute(f"SELECT * FROM {table}")
                columns = ", ".join(d[0] for d in cursor.description)
                marks = ", ".join("?" * len(cursor.description))
                insert = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
                while rows := cursor.fetchmany(_BATCH):
                    dst.executemany(insert, [tuple(r) for r in rows])
            target._after_copy(dst)
        target._start_catching_up()
    except BaseException:
        target._discard()
        raise
    return target
