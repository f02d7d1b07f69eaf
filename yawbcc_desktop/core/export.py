"""CSV output of analysed cells, written so that a crash or a bad file loses nothing.

Rows are appended and flushed image by image to ``<out>.partial``; the file takes its
final name only when the run ends, so a half-written file is never mistaken for a
complete one, and what was written before a crash is still on disk.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .atomic import AtomicFile
from .classes import GROUPS
from .preferences import DEFAULT_REVIEW_THRESHOLD
from .review_rules import join_flags, review_reasons

if TYPE_CHECKING:  # annotations only: exporting a session need not load scikit-image
    from .pipeline import CellRecord, ImageResult
    from .store.records import SessionImage

SEGMENT_COLUMNS = ["path", "cell_id", "kind", "x", "y", "width", "height"]
PROB_COLUMNS = [f"prob_{g}" for g in GROUPS]
# Whether the model knew what it was looking at, and whether the cell waits for a reviewer
# (core/review_rules.py): the image's pixel size and what it was measured on (core/scale.py:
# red cells, white cell, default, set by the lab), its familiarity verdict, the cell's reasons.
REVIEW_COLUMNS = ["um_per_px", "um_per_px_source", "unfamiliar", "to_review", "review_reason"]
CLASSIFY_COLUMNS = SEGMENT_COLUMNS + ["predicted", "confidence", *PROB_COLUMNS, "model", *REVIEW_COLUMNS]


def review_values(image: ImageResult | SessionImage | None, reasons: list[str]) -> dict[str, str]:
    """The ``REVIEW_COLUMNS`` of one cell of ``image`` (an ``ImageResult`` or a session's image
    record; None when unknown): ``reasons`` are why it waits for review ([] if it does not)."""
    um_per_px = image.um_per_px if image is not None else math.nan
    known = um_per_px is not None and math.isfinite(um_per_px)  # nan: not measured, or an older session
    return {
        "um_per_px": f"{um_per_px:.4f}" if known else "",
        "um_per_px_source": image.scale_source if known and image is not None else "",
        "unfamiliar": "yes" if image is not None and image.unfamiliar else "no",
        "to_review": "yes" if reasons else "no",
        "review_reason": join_flags(reasons),
    }


def cell_row(
    cell: CellRecord,
    with_prediction: bool,
    image: ImageResult | None = None,
    threshold: float = DEFAULT_REVIEW_THRESHOLD,
) -> dict[str, object]:
    """One CSV row; with a prediction, ``image`` (the cell's) and ``threshold`` give the review columns."""
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
        row.update(review_values(image, review_reasons(cell.confidence, threshold, cell.flags)))
    return row


class CellCsvWriter:
    """Streams cell rows to ``<path>.partial`` and renames it to ``path`` on ``close()``."""

    def __init__(self, path: str | os.PathLike[str], columns: list[str], threshold: float = DEFAULT_REVIEW_THRESHOLD):
        self.path = Path(path)
        self.threshold = threshold  # the review threshold of the to_review column
        self.partial = self.path.with_name(self.path.name + ".partial")
        # utf-8-sig: spreadsheet programs then read non-ASCII paths correctly.
        self._out = AtomicFile(self.path, "utf-8-sig", "", partial=self.partial, keep_partial=True)
        self._fh = self._out.file
        self._writer = csv.DictWriter(self._fh, fieldnames=columns)
        self._writer.writeheader()
        self.columns = columns
        self.rows = 0

    def write_image(self, result: ImageResult) -> None:
        """The rows of one image's cells, flushed to disk."""
        with_prediction = "predicted" in self.columns
        for cell in result.cells:
            self._writer.writerow(cell_row(cell, with_prediction, result, self.threshold))
            self.rows += 1
        self._fh.flush()

    def close(self) -> None:
        self._out.commit()

    def abort(self) -> None:
        """Stop without renaming: the rows written so far stay in ``.partial``."""
        self._out.abort()

    def __enter__(self) -> CellCsvWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
