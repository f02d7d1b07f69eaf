"""The session's cell queries: which cells a filter picks, the to-review queue among them."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from .. import review_rules
from .records import abspath

CELLS = "FROM cell c JOIN image i ON i.id = c.image_id"  # every cell query filters on both


def where_cells(
    image_id: int | None = None,
    folder: str | os.PathLike[str] | None = None,
    queue_threshold: float | None = None,
    label: str | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) picking the cells that match every filter given."""
    clauses: list[str] = []
    params: list[Any] = []
    if image_id is not None:
        clauses.append("c.image_id = ?")
        params.append(int(image_id))
    if folder is not None:
        clauses.append("i.folder = ?")
        params.append(abspath(folder))
    if queue_threshold is not None:
        queue, queue_params = review_rules.queue_where(queue_threshold)  # the rule's SQL form
        clauses.append(queue)
        params.extend(queue_params)
    if label is not None:
        clauses.append("COALESCE(c.label, c.predicted) = ?")
        params.append(label)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def fetch_in(conn: sqlite3.Connection, sql: str, ids: list[int]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` whose ``IN ({})`` is ``ids``.  SQLite caps the number of bound
    parameters, so they are asked in slices."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        rows.extend(conn.execute(sql.format(",".join("?" * len(part))), part).fetchall())
    return rows
