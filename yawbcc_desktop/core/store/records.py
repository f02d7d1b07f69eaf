"""What a session holds, as the rest of the program sees it: images, cells, corrections,
sign-offs; and the conversions between those records and the session's rows."""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .. import review_rules
from ..cells import CellRegion
from ..classes import ARTEFACT

if TYPE_CHECKING:
    from ..pipeline import CellRecord


@dataclass(frozen=True, slots=True)
class SessionImage:
    """One image file of the session and what its analysis found."""

    id: int
    path: str
    folder: str
    status: str
    error: str
    mode: str
    width: int
    height: int
    analysed_at: str
    cell_count: int
    um_per_px: float = math.nan  # estimated pixel size (nan: not measured, or an older session)
    scale_source: str = ""  # what it was measured on: red cells / white cell / default / set by the lab
    unfamiliar_score: float = math.nan  # nan: classified without a familiarity model
    unfamiliar: bool = False  # its look is far from the model's training images
    unfamiliar_threshold: float = math.nan  # the model's threshold on the score


_NO_MASK = np.zeros((0, 0), bool)


@dataclass(frozen=True, slots=True, eq=False)
class SessionCell:
    """A cell as the session holds it: the model's prediction and the reviewer's label.

    The one reviewed-cell type: the CLI, the export, training and the window all read this.
    (``core.pipeline.CellRecord`` is what the analysis writes into the session.)  Frozen: a
    correction is a new ``SessionCell``, made by the session when it commits one
    (``ReviewSession.cache``).  The segmentation mask is not held (``ReviewSession.cell_mask``):
    a month of cells would hold gigabytes of them.
    """

    id: int  # session-wide, assigned in the order cells were added, never reused; -1: not in a session
    image_id: int  # -1: not in a session
    path: str
    cell_index: int  # index within its image (the classify CSV's cell_id)
    kind: str
    x: int
    y: int
    width: int
    height: int
    model: str
    predicted: str  # '' when not classified
    confidence: float  # nan when not classified
    probs: np.ndarray | None  # float32, GROUPS order
    label: str | None  # the reviewer's label; None while not reviewed
    reviewer: str
    reviewed_at: str
    diameter_um: float = math.nan  # nan: not measured (an older session)
    unfamiliar_score: float = math.nan  # nan: no familiarity model
    flags: str = ""  # reasons for review fixed at analysis (review_rules), joined by "; "
    version: int = 0  # changes of label so far: a correction names the version it saw

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height

    @property
    def classified(self) -> bool:
        """False for a cell only segmented (``yawbcc segment``, or a session of format 1): it
        has no prediction, confidence or probabilities, and waits for review until labelled."""
        return self.probs is not None

    @property
    def reviewed(self) -> bool:
        return self.label is not None

    @property
    def final_label(self) -> str:
        """The reviewer's label, else the model's ('' for a cell never classified)."""
        return self.label if self.label is not None else self.predicted

    @property
    def corrected(self) -> bool:
        """True when a reviewer gave a label other than the model's."""
        return self.label is not None and self.label != self.predicted

    @property
    def artefact(self) -> bool:
        return self.label == ARTEFACT

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)

    def region(self) -> CellRegion:
        """The box as a ``CellRegion`` (without mask), for model framing and crops."""
        return CellRegion(self.x, self.y, self.width, self.height, _NO_MASK, self.kind)

    def review_reasons(self, threshold: float) -> list[str]:
        """Why the cell waits for review (``core.review_rules``); [] once reviewed or if nothing calls for it."""
        if self.label is not None:
            return []
        return review_rules.review_reasons(self.confidence, threshold, self.flags)

    def in_queue(self, threshold: float) -> bool:
        """Waits for review: not reviewed yet, and a reason to (``review_reasons``)."""
        return bool(self.review_reasons(threshold))

    def status(self, threshold: float) -> str:
        """``review_rules.review_status``: to review, confident, confirmed or corrected."""
        return review_rules.review_status(self.label, self.predicted, self.confidence, threshold, self.flags)


def unsaved_cell(record: CellRecord) -> SessionCell:
    """A ``core.pipeline.CellRecord`` as a session would hold it, for a result no session
    took (none open, or its write failed): ids -1, not reviewed."""
    r = record.region
    classified = record.probs is not None
    return SessionCell(
        -1, -1, record.path, int(record.cell_id), r.kind, int(r.x), int(r.y), int(r.width), int(r.height), record.model,
        record.predicted, record.confidence, np.asarray(record.probs, np.float32) if classified else None,
        None, "", "", float(record.diameter_um), float(record.unfamiliar_score), review_rules.join_flags(record.flags),
    )  # fmt: skip


class CellChange(NamedTuple):
    cell_id: int
    before: str | None  # None: not reviewed
    after: str | None


@dataclass(frozen=True)
class Correction:
    """One reviewer action on one or more cells, committed as one transaction.

    What ``set_label``/``confirm`` return and what one ``undo()`` reverts.  ``kind`` is
    ``set``, ``confirm``, ``undo`` or ``redo``; an undo or redo ``reverts`` an earlier one.
    """

    id: int
    kind: str
    reviewer: str
    at: str
    changes: tuple[CellChange, ...]
    reverts: int | None = None

    @property
    def cell_ids(self) -> list[int]:
        return [c.cell_id for c in self.changes]


@dataclass(frozen=True, slots=True)
class CorrectionRecord:
    """One row of the audit trail."""

    id: int
    action_id: int
    kind: str
    cell_id: int
    path: str
    cell_index: int
    predicted: str | None
    previous: str | None
    label: str | None
    reviewer: str
    at: str
    station: str = ""  # the workstation it was made on ('' before format 4)


@dataclass(frozen=True, slots=True)
class SignOff:
    """A reviewer's sign-off of the session (``folder == ''``) or of one folder."""

    id: int
    folder: str
    reviewer: str
    at: str
    threshold: float
    counts: dict[str, int]
    current: bool  # False once a later correction or a new cell in its scope changed the count


@dataclass(frozen=True, slots=True)
class SessionSummary:
    images: int
    failed_images: int
    cells: int
    reviewed: int
    corrected: int
    to_review: int  # unreviewed cells in the to-review queue: what blocks sign-off


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def abspath(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(path))


def real(value: float | None) -> float | None:
    """A float for the store, NULL for None or nan (SQLite has no nan; both stores read NULL as nan)."""
    return float(value) if value is not None and math.isfinite(value) else None


def pack_mask(mask: np.ndarray | None, height: int, width: int) -> bytes | None:
    if mask is None or mask.shape != (height, width):
        return None
    return zlib.compress(np.packbits(mask.astype(bool), axis=None).tobytes())


def unpack_mask(blob: bytes, height: int, width: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(zlib.decompress(blob), np.uint8), count=height * width)
    return bits.reshape(height, width).astype(bool)


IMAGE_SELECT = (
    "SELECT i.id, i.path, i.folder, i.status, i.error, i.mode, i.width, i.height, i.analysed_at, "
    "(SELECT COUNT(*) FROM cell c WHERE c.image_id = i.id), i.um_per_px, i.scale_source, i.unfamiliar_score, "
    "i.unfamiliar, i.unfamiliar_threshold FROM image i"
)
CELL_SELECT = (
    "SELECT c.id, c.image_id, i.path, c.cell_index, c.kind, c.x, c.y, c.width, c.height, c.model, c.predicted, "
    "c.confidence, c.probs, c.label, c.reviewer, c.reviewed_at, c.diameter_um, c.unfamiliar_score, c.flags, "
    "c.version FROM cell c JOIN image i ON i.id = c.image_id"
)


def nan_if_null(value: float | None) -> float:
    return value if value is not None else math.nan


def image_from_row(r: tuple[Any, ...]) -> SessionImage:
    return SessionImage(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
        nan_if_null(r[10]), r[11], nan_if_null(r[12]), bool(r[13]), nan_if_null(r[14]),
    )  # fmt: skip


def cell_from_row(r: tuple[Any, ...]) -> SessionCell:
    probs = np.frombuffer(r[12], "<f4").astype(np.float32) if r[12] is not None else None
    return SessionCell(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10] or "",
        nan_if_null(r[11]), probs, r[13], r[14], r[15], nan_if_null(r[16]), nan_if_null(r[17]), r[18], r[19],
    )  # fmt: skip


CELL_INSERT = (
    "INSERT INTO cell (image_id, cell_index, kind, x, y, width, height, mask, model, predicted, "
    "confidence, probs, diameter_um, unfamiliar_score, flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "RETURNING id"
)


def cell_values(image_id: int, cell: CellRecord) -> tuple[Any, ...]:
    """The ``CELL_INSERT`` values of a ``core.pipeline.CellRecord``."""
    r = cell.region
    classified = cell.probs is not None
    return (
        image_id, int(cell.cell_id), r.kind, int(r.x), int(r.y), int(r.width), int(r.height),
        pack_mask(r.mask, int(r.height), int(r.width)),
        cell.model,
        cell.predicted if classified else None,
        cell.confidence if classified else None,
        np.asarray(cell.probs, "<f4").tobytes() if classified else None,
        real(cell.diameter_um),
        real(cell.unfamiliar_score),
        review_rules.join_flags(cell.flags),
    )  # fmt: skip
