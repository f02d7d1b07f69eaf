"""CSV output of analysed cells, written so that a crash or a bad file loses nothing.

Rows are appended and flushed image by image to ``<out>.partial``; the file takes its
final name only when the run ends, so a half-written file is never mistaken for a
complete one, and what was written before a crash is still on disk.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .classes import GROUPS

if TYPE_CHECKING:  # annotations only: exporting a session need not load scikit-image
    from .pipeline import CellRecord

SEGMENT_COLUMNS = ["path", "cell_id", "kind", "x", "y", "width", "height"]
PROB_COLUMNS = [f"prob_{g}" for g in GROUPS]
CLASSIFY_COLUMNS = SEGMENT_COLUMNS + ["predicted", "confidence", *PROB_COLUMNS, "model"]


def cell_row(cell: CellRecord, with_prediction: bool) -> dict[str, object]:
    r = cell.region
    row: dict[str, object] = {
        "path": cell.path,
        "cell_id": cell.cell_id,
        "kind": r.kind,
        "x": r.x,
        "y": r.y,
        "width": r.width,
        "height": r.height,
    }
    if with_prediction:
        row["predicted"] = cell.predicted
        row["confidence"] = f"{cell.confidence:.6f}"
        for col, p in zip(PROB_COLUMNS, cell.probs if cell.probs is not None else [float("nan")] * len(GROUPS)):
            row[col] = f"{p:.6f}"
        row["model"] = cell.model
    return row


class CellCsvWriter:
    """Streams cell rows to ``<path>.partial`` and renames it to ``path`` on ``close()``."""

    def __init__(self, path: str | os.PathLike, columns: list[str]):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # utf-8-sig: spreadsheet programs then read non-ASCII paths correctly.
        self._fh = open(self.partial, "w", encoding="utf-8-sig", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=columns)
        self._writer.writeheader()
        self.columns = columns
        self.rows = 0

    def write_cells(self, cells: list[CellRecord]) -> None:
        with_prediction = "predicted" in self.columns
        for cell in cells:
            self._writer.writerow(cell_row(cell, with_prediction))
            self.rows += 1
        self._fh.flush()

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Stop without renaming: the rows written so far stay in ``.partial``."""
        self._fh.close()

    def __enter__(self) -> CellCsvWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
