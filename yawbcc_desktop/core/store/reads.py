"""What every store answers the same way: the session's images, cells, counts, audit trail
and sign-offs, in SQL that SQLite and PostgreSQL read alike (``ReviewSession`` adds the writes)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..vocabulary import FAILED
from .errors import SessionError
from .queries import CELLS, fetch_in, where_cells
from .records import (
    CELL_SELECT,
    IMAGE_SELECT,
    CorrectionRecord,
    SessionCell,
    SessionImage,
    SessionSummary,
    SignOff,
    abspath,
    cell_from_row,
    image_from_row,
    unpack_mask,
)

Connection = Any  # sqlite3.Connection, or postgres_store's connection: execute/executemany/close

FINAL = "COALESCE(c.label, c.predicted, '') AS final"
SIGN_OFF_SELECT = "SELECT id, folder, reviewer, at, threshold, last_correction, last_cell, counts FROM sign_off"


def count_where(condition: str) -> str:
    """How many rows meet ``condition``, in SQL both stores read alike (0 for no rows)."""
    return f"COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)"


class SessionReads:
    """The read side of ``ReviewSession`` (any thread)."""

    location: str
    backend_errors: tuple[type[BaseException], ...] = ()  # the driver's errors

    def _conn(self) -> Connection:
        raise NotImplementedError

    def _error(self, exc: BaseException, writing: bool) -> SessionError:
        """The driver's ``exc`` as the message a user sees."""
        raise NotImplementedError

    def _stale_connection(self, exc: BaseException) -> bool:
        """True when ``exc`` says this thread's connection is gone (a server restarted): it is
        dropped, and what failed may be asked again on a new one."""
        return False

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._reading(lambda conn: list(conn.execute(sql, params).fetchall()))

    def _read_in(self, sql: str, ids: list[int]) -> list[tuple[Any, ...]]:
        return self._reading(lambda conn: fetch_in(conn, sql, ids))

    def _reading(self, read: Callable[[Connection], list[tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
        for retry in (True, False):  # a read asked again changes nothing: once more on a new connection
            try:
                return read(self._conn())
            except self.backend_errors as exc:
                if not (retry and self._stale_connection(exc)):
                    raise self._error(exc, writing=False) from exc
        raise AssertionError("unreachable")

    def images(self) -> list[SessionImage]:
        """Every image, in the order first added."""
        return [image_from_row(r) for r in self._read(IMAGE_SELECT + " ORDER BY i.id")]

    def image(self, path: str | os.PathLike[str]) -> SessionImage | None:
        rows = self._read(IMAGE_SELECT + " WHERE i.path = ?", (abspath(path),))
        return image_from_row(rows[0]) if rows else None

    def image_by_id(self, image_id: int) -> SessionImage | None:
        rows = self._read(IMAGE_SELECT + " WHERE i.id = ?", (int(image_id),))
        return image_from_row(rows[0]) if rows else None

    def image_count(self) -> int:
        """Images in the session, failed ones included (cheap: whether another station added some)."""
        return int(self._read("SELECT COUNT(*) FROM image")[0][0])

    def analysed_paths(self) -> set[str]:
        """Absolute paths already analysed here (failed ones excluded: they may be retried)."""
        return {r[0] for r in self._read("SELECT path FROM image WHERE status != ?", (FAILED,))}

    def folders(self) -> list[str]:
        return [r[0] for r in self._read("SELECT folder FROM image GROUP BY folder ORDER BY MIN(id)")]

    def cell_ids(
        self,
        image_id: int | None = None,
        folder: str | os.PathLike[str] | None = None,
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

    def cells(self, ids: Sequence[int] | None = None, **filters: Any) -> list[SessionCell]:
        """Cells by id (in the order asked), or every cell matching ``cell_ids``' filters."""
        if ids is None:
            # One query, not the ids then the cells 500 at a time: half the time on a big session.
            where, params = where_cells(**filters)
            return [cell_from_row(r) for r in self._read(f"{CELL_SELECT} {where} ORDER BY c.id", params)]
        ids = [int(i) for i in ids]
        by_id = {r[0]: cell_from_row(r) for r in self._read_in(CELL_SELECT + " WHERE c.id IN ({})", ids)}
        return [by_id[i] for i in ids if i in by_id]

    def cell(self, cell_id: int) -> SessionCell:
        found = self.cells([cell_id])
        if not found:
            raise KeyError(f"no cell {cell_id} in {self.location}")
        return found[0]

    def cell_mask(self, cell_id: int) -> np.ndarray | None:
        """The cell's segmentation mask over its box (bool, height x width), if stored."""
        rows = self._read("SELECT mask, height, width FROM cell WHERE id = ?", (int(cell_id),))
        if not rows or rows[0][0] is None:
            return None
        return unpack_mask(*rows[0])

    def to_review_count(self, threshold: float, image_id: int | None = None, folder: str | os.PathLike[str] | None = None) -> int:
        """Unreviewed cells of the to-review queue: the count the GUI always shows."""
        where, params = where_cells(image_id, folder, threshold)
        return int(self._read(f"SELECT COUNT(*) {CELLS} {where}", params)[0][0])

    def label_counts(self, image_id: int | None = None, folder: str | os.PathLike[str] | None = None) -> Counter[str]:
        """Cells per final label (reviewer's, else model's); '' counts cells never classified."""
        where, params = where_cells(image_id, folder)
        rows = self._read(f"SELECT {FINAL}, COUNT(*) {CELLS} {where} GROUP BY final", params)
        return Counter({final: int(n) for final, n in rows})

    def summary(self, threshold: float) -> SessionSummary:
        images, failed = self._read(f"SELECT COUNT(*), {count_where('status = ?')} FROM image", (FAILED,))[0]
        cells, reviewed, corrected = self._read(
            f"SELECT COUNT(*), {count_where('label IS NOT NULL')}, "
            f"{count_where('label IS NOT NULL AND label IS DISTINCT FROM predicted')} FROM cell"
        )[0]
        counts = (int(images), int(failed), int(cells), int(reviewed), int(corrected))
        return SessionSummary(*counts, self.to_review_count(threshold))

    def history(self, cell_id: int | None = None) -> list[CorrectionRecord]:
        """The audit trail, oldest first: every correction, undo and redo ever made."""
        sql = (
            "SELECT k.id, k.action_id, a.kind, k.cell_id, i.path, c.cell_index, k.predicted, k.previous, k.label, "
            "k.reviewer, k.at, a.station FROM correction k JOIN review_action a ON a.id = k.action_id "
            "JOIN cell c ON c.id = k.cell_id JOIN image i ON i.id = c.image_id"
        )
        if cell_id is not None:
            return [CorrectionRecord(*r) for r in self._read(sql + " WHERE k.cell_id = ? ORDER BY k.id", (int(cell_id),))]
        return [CorrectionRecord(*r) for r in self._read(sql + " ORDER BY k.id")]

    def sign_offs(self, folder: str | os.PathLike[str] | None = None) -> list[SignOff]:
        """Sign-offs of the session (``folder=None``) or of one folder, oldest first."""
        scope = abspath(folder) if folder is not None else ""
        rows = self._read(f"{SIGN_OFF_SELECT} WHERE folder = ? ORDER BY id", (scope,))
        try:
            return [self._sign_off_from_row(self._conn(), row) for row in rows]
        except self.backend_errors as exc:
            raise self._error(exc, writing=False) from exc

    def _sign_off_from_row(self, conn: Connection, row: Sequence[Any]) -> SignOff:
        """A ``SIGN_OFF_SELECT`` row; current unless a later correction or new cell is in its scope."""
        sid, fold, reviewer, at, threshold, last_correction, last_cell, counts = row
        where, params = where_cells(folder=fold or None)
        changed = conn.execute(
            f"SELECT EXISTS (SELECT 1 {CELLS} {where} "
            f"{'AND' if where else 'WHERE'} (c.id > ? OR EXISTS "
            "(SELECT 1 FROM correction k WHERE k.cell_id = c.id AND k.id > ?)))",
            (*params, last_cell, last_correction),
        ).fetchone()[0]
        return SignOff(sid, fold, reviewer, at, threshold, json.loads(counts), not changed)

    def current_sign_off(self, folder: str | os.PathLike[str] | None = None) -> SignOff | None:
        """The latest sign-off of that scope if nothing in it changed since, else ``None``."""
        offs = self.sign_offs(folder)
        return offs[-1] if offs and offs[-1].current else None

    def info(self) -> dict[str, str]:
        """Creation time, the YAWBCC version that created it, the class order of the probabilities."""
        return dict(self._read("SELECT key, value FROM session_info"))
