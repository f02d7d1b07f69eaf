"""Why a cell goes to the to-review queue: the one place that says it.

A cell waits for a reviewer when it is not reviewed yet and any of these holds:

- its calibrated confidence is below the review threshold (a preference, so this part is
  decided when the queue is read);
- its image is *unfamiliar* to the model (``core/familiarity.py``): the model's confidence
  means little on a stain or microscope it never saw;
- its segmented size contradicts its class: a platelet (or a small clump) is under 10 µm
  across, a white cell or erythroblast over 5 µm, so a 14 µm "platelet" or a 3 µm
  "lymphocyte" is a mistake of the segmentation or of the classifier (sizes count only
  when the image's red cells gave the ruler).  On an unfamiliar image a cell wider than
  any platelet is also not *classed* as one (``size_ruled``): on a lab the model never
  saw, white cells read as platelets were its commonest mistake.

The last two are fixed when the cell is analysed and stored with it as *flags*.

The rule is written once, in ``QUEUE_REASONS``; the per-cell form (``review_reasons``), the
whole-column form (``waits_for_review``, numpy) and the SQL form (``queue_where``) are all
built from it, and tests/unit/test_review_rules.py checks that the three pick the same cells.
The review statuses a cell shows (to review, confident, confirmed, corrected) follow from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .classes import GROUPS, WBC_GROUPS
from .scale import FROM_LAB, FROM_RED_CELLS

LOW_CONFIDENCE = "low confidence"
UNFAMILIAR = "unfamiliar image"
SIZE_SAYS_WBC = "size says white cell, model said platelet"
# On an unfamiliar image the class shown is then the likeliest white cell (size_ruled).
SIZE_SET_ASIDE = "size says white cell, the model's platelet call set aside"
SIZE_SAYS_PLATELET = "size says platelet, model said white cell"
NOT_CLASSIFIED = "not classified"
# The cell's features are far from the training cells of the class it was called
# (core.familiarity.neighbour_distances): the model cannot vouch for it, whatever its confidence.
UNUSUAL_CELL = "unlike the cells the model learnt this class from"
# An adapted bundle's rule for its lab (core.adaptation.LabReviewRule).
BELOW_LAB_BAR = "less sure than this lab's corrections ask"
CLASS_NOT_YET_RELIABLE = "class not yet reliable on this lab"
NEIGHBOURS_CALLED_OTHERWISE = "this lab's cells most like it were called another class"
CALLED_OTHERWISE_BEFORE = "adapting to this lab changed its class"

# Diameters (µm) beyond which size and class contradict each other.  Measured on 40 PBC
# crops per class (segmented outline, scale from red cells): platelets (clumps included)
# 4.5-9.2 µm, median 5.8; white cells and erythroblasts 5.4-22 µm, 5th percentiles 7.0-12.0.
# The limits sit outside both ranges, so a PBC cell is never flagged by its size alone.
PLATELET_MAX_UM = 10.0
WBC_MIN_UM = 5.0

FLAG_SEPARATOR = "; "


def size_ruled(probs: np.ndarray, diameter_um: float, image_unfamiliar: bool) -> np.ndarray:
    """The class probabilities (GROUPS order) a cell's measured size allows.

    On an image unfamiliar to the model, a cell wider than any platelet (``PLATELET_MAX_UM``)
    is not one: the white-cell classes share the probability again in proportion, so a
    white cell the model read as a platelet (its commonest mistake on a lab it never saw)
    gets its likeliest white-cell class.  Only the white-cell classes: the model's second
    guess there was mostly erythroblast, which would count out of the white cells and raise
    the differential's erythroblast flag on a lab that showed none.  On a familiar image the
    model's call stands: there a segmented outline that merged a platelet with its
    neighbour is the likelier mistake (2 of 329 PBC platelets).  Either way the flag
    (``analysis_flags``) keeps the cell in the queue and says which happened.  A cell too
    small for a white cell keeps its probabilities: a fragment of a white cell's outline is
    as likely there as a platelet.  ``diameter_um`` nan (not measured) changes nothing.
    """
    if not (image_unfamiliar and _too_wide_for_a_platelet(GROUPS[int(np.argmax(probs))], diameter_um)):
        return probs
    out = np.zeros(len(GROUPS))
    wbc = [GROUPS.index(g) for g in WBC_GROUPS]
    out[wbc] = np.asarray(probs, np.float64)[wbc]
    total = out.sum()
    return (out / total).astype(np.asarray(probs).dtype) if total > 0 else probs


def _too_wide_for_a_platelet(said: str, diameter_um: float) -> bool:
    """The model said platelet of a cell wider than any (nan: not measured, never)."""
    return said == "PLATELET" and diameter_um > PLATELET_MAX_UM


def analysis_flags(predicted: str, diameter_um: float, image_unfamiliar: bool) -> list[str]:
    """The reasons fixed at analysis time (not the confidence, which depends on the threshold).

    ``predicted`` is the model's own call, before ``size_ruled``; ``diameter_um`` nan when
    the cell's size was not measured against an independent ruler (``measured_diameter``)."""
    flags = []
    if image_unfamiliar:
        flags.append(UNFAMILIAR)
    if predicted and diameter_um and math.isfinite(diameter_um):
        if _too_wide_for_a_platelet(predicted, diameter_um):
            flags.append(SIZE_SET_ASIDE if image_unfamiliar else SIZE_SAYS_WBC)
        elif predicted != "PLATELET" and diameter_um < WBC_MIN_UM:
            flags.append(SIZE_SAYS_PLATELET)
    return flags


def measured_diameter(diameter_um: float, scale_source: str) -> float:
    """A cell's diameter as the size rules may use it: only when the image's scale came from
    its red cells or the lab set it.  A scale taken from the white cells' own size (in a
    single-cell crop, the cell itself: 13 µm by construction) or PBC's default camera proves
    nothing about size."""
    return diameter_um if scale_source in (FROM_RED_CELLS, FROM_LAB) else float("nan")


class QueueReason(NamedTuple):
    """One reason an unreviewed cell waits, besides its analysis flags."""

    words: str  # what the reviewer reads
    # Whether it holds, on one confidence or on a numpy column of them alike (nan: never classified).
    holds: Callable[[Any, float], Any]
    sql: str  # the same over a session's cell row: NULL is never classified, ``?`` the threshold


QUEUE_REASONS = (
    QueueReason(NOT_CLASSIFIED, lambda confidence, threshold: np.isnan(confidence), "{confidence} IS NULL"),
    # nan < threshold is false, as NULL < ? is in SQL: a cell never classified is not "low".
    QueueReason(LOW_CONFIDENCE, lambda confidence, threshold: confidence < threshold, "{confidence} < ?"),
)


def review_reasons(confidence: float | None, threshold: float, flags: str | list[str]) -> list[str]:
    """Every reason an unreviewed cell waits for review ([] if none), in the words the reviewer sees."""
    if isinstance(flags, str):
        flags = split_flags(flags)
    confidence = math.nan if confidence is None else float(confidence)
    return [r.words for r in QUEUE_REASONS if r.holds(confidence, threshold)] + list(flags)


def waits_for_review(confidence: np.ndarray, threshold: float, flagged: np.ndarray) -> np.ndarray:
    """``review_reasons`` of many unreviewed cells at once (numpy columns of confidences, nan
    when never classified, and of "has analysis flags"): True where it gives a reason."""
    waits = np.asarray(flagged, bool).copy()
    for reason in QUEUE_REASONS:
        waits |= reason.holds(confidence, threshold)
    return waits


def queue_where(
    threshold: float, label: str = "c.label", confidence: str = "c.confidence", flags: str = "c.flags"
) -> tuple[str, list[float]]:
    """The to-review queue as an SQL condition over a session's cell columns, and its
    parameters: not reviewed (``label`` NULL) and ``review_reasons`` gives a reason."""
    reasons = [r.sql.format(confidence=confidence) for r in QUEUE_REASONS] + [f"{flags} != ''"]
    params = [float(threshold)] * sum(r.sql.count("?") for r in QUEUE_REASONS)
    return f"{label} IS NULL AND ({' OR '.join(reasons)})", params


# Review status of a cell.  Not reviewed: "to review" when the rule above gives a reason,
# else "confident".  Reviewed: "confirmed" when the reviewer kept the model's class,
# "corrected" when they gave another (or artefact).
TO_REVIEW, CONFIDENT, CONFIRMED, CORRECTED = "to review", "confident", "confirmed", "corrected"
CELL_STATUSES = (TO_REVIEW, CONFIDENT, CONFIRMED, CORRECTED)


def review_status(label: str | None, predicted: str, confidence: float | None, threshold: float, flags: str | list[str]) -> str:
    """The status of one cell (``label``: the reviewer's, None while not reviewed)."""
    if label is not None:
        return CORRECTED if label != predicted else CONFIRMED
    return TO_REVIEW if review_reasons(confidence, threshold, flags) else CONFIDENT


def status_codes(
    label: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, threshold: float, flagged: np.ndarray
) -> np.ndarray:
    """``review_status`` of many cells as indexes in ``CELL_STATUSES`` (int8): ``label`` and
    ``predicted`` are class codes, a negative ``label`` meaning not reviewed."""
    reviewed = label >= 0
    waits = waits_for_review(confidence, threshold, flagged)
    codes = np.where(waits, CELL_STATUSES.index(TO_REVIEW), CELL_STATUSES.index(CONFIDENT))
    codes = np.where(reviewed, CELL_STATUSES.index(CONFIRMED), codes)
    return np.where(reviewed & (label != predicted), CELL_STATUSES.index(CORRECTED), codes).astype(np.int8)


def join_flags(flags: list[str]) -> str:
    return FLAG_SEPARATOR.join(flags)


def split_flags(joined: str) -> list[str]:
    """The flags of a stored ``join_flags`` string."""
    return [f for f in joined.split(FLAG_SEPARATOR) if f]
