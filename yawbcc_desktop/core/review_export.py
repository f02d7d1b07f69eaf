"""CSV export of a review session: one row per cell, and the differential with its flags.

Both files are written atomically (temporary file, then rename) in UTF-8 with a byte-order
mark, comma-separated with a decimal point, so a spreadsheet opens them as they are.  The
cells CSV is also retraining input: ``python -m training fit --corrections cells.csv``
reads its ``path`` and ``final_label`` (reviewed rows only, single-cell images only).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping

from .atomic import atomic_write
from .classes import GROUPS, REFERENCE_RANGES, WBC_GROUPS, ReferenceRange
from .differential import FOLDER, PER_100_WBC, SESSION, Differential, all_differentials
from .export import PROB_COLUMNS, REVIEW_COLUMNS, SEGMENT_COLUMNS, review_values
from .preferences import DEFAULT_MIN_WBC, DEFAULT_REVIEW_THRESHOLD
from .store import ReviewSession

CELL_COLUMNS = [
    *SEGMENT_COLUMNS,  # path, cell_id, kind, x, y, width, height: as the classify CSV
    "mode",
    "model",
    "predicted",
    "confidence",
    *PROB_COLUMNS,
    "final_label",
    "reviewed",
    "corrected",
    "reviewer",
    "reviewed_at",
    *REVIEW_COLUMNS,  # pixel size and its source, unfamiliar, to_review, review_reason: as the classify CSV
]
DIFFERENTIAL_COLUMNS = [
    "scope",
    "name",
    "cells",
    "wbc",
    *[f"n_{g}" for g in GROUPS],
    *[f"pct_{g}" for g in WBC_GROUPS],
    *[f"{g.lower()}s_per_100_wbc" for g in PER_100_WBC],
    "artefacts",
    "unclassified",
    "unreviewed",
    "flags",
    "flag_codes",
    # Bounds as numbers: a text like "1-6" would become a date in a spreadsheet.
    *[f"ref_{bound}_{g}" for g in WBC_GROUPS for bound in ("low", "high")],
    "signed_off_by",
    "signed_off_at",
]


def number_text(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals as every export writes it; '' for a missing value."""
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def export_cells(session: ReviewSession, path: str | os.PathLike[str], threshold: float = DEFAULT_REVIEW_THRESHOLD) -> int:
    """Write every cell of the session to ``path``; returns the number of rows.

    ``threshold``: the review threshold of the ``to_review`` column (a reviewed cell never is).
    """
    images = {im.id: im for im in session.images()}
    ids = session.cell_ids()
    with atomic_write(path, encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CELL_COLUMNS)
        writer.writeheader()
        for start in range(0, len(ids), 2000):
            for c in session.cells(ids[start : start + 2000]):
                probs = c.probs if c.probs is not None else [math.nan] * len(GROUPS)
                image = images.get(c.image_id)
                writer.writerow(
                    {
                        "path": c.path,
                        "cell_id": c.cell_index,
                        "kind": c.kind,
                        "x": c.x,
                        "y": c.y,
                        "width": c.width,
                        "height": c.height,
                        "mode": image.mode if image is not None else "",
                        "model": c.model,
                        "predicted": c.predicted,
                        "confidence": number_text(c.confidence, 6),
                        **{col: number_text(float(p), 6) for col, p in zip(PROB_COLUMNS, probs)},
                        "final_label": c.final_label,
                        "reviewed": "yes" if c.reviewed else "no",
                        "corrected": "yes" if c.corrected else "no",
                        "reviewer": c.reviewer,
                        "reviewed_at": c.reviewed_at,
                        **review_values(image, c.review_reasons(threshold)),
                    }
                )
    return len(ids)


def differential_row(
    diff: Differential, ranges: Mapping[str, ReferenceRange], signed: tuple[str, str] = ("", "")
) -> dict[str, str | int]:
    """One CSV row of a differential; ``signed`` is (reviewer, time) of a current sign-off."""
    pct, per100 = diff.percent, diff.per_100_wbc
    return {
        "scope": diff.scope,
        "name": diff.name,
        "cells": sum(diff.counts.values()) + diff.artefacts + diff.unclassified,
        "wbc": diff.wbc,
        **{f"n_{g}": diff.counts[g] for g in GROUPS},
        **{f"pct_{g}": number_text(pct.get(g, math.nan), 2) for g in WBC_GROUPS},
        **{f"{g.lower()}s_per_100_wbc": number_text(per100.get(g, math.nan), 2) for g in PER_100_WBC},
        "artefacts": diff.artefacts,
        "unclassified": diff.unclassified,
        "unreviewed": diff.unreviewed,
        "flags": "; ".join(f.message for f in diff.flags),
        "flag_codes": " ".join(f"{f.code}:{f.group}" if f.group else f.code for f in diff.flags),
        **{f"ref_low_{g}": f"{ranges[g].low:g}" if g in ranges else "" for g in WBC_GROUPS},
        **{f"ref_high_{g}": f"{ranges[g].high:g}" if g in ranges else "" for g in WBC_GROUPS},
        "signed_off_by": signed[0],
        "signed_off_at": signed[1],
    }


def export_differential(
    session: ReviewSession,
    path: str | os.PathLike[str],
    threshold: float,
    ranges: Mapping[str, ReferenceRange] = REFERENCE_RANGES,
    min_wbc: int = DEFAULT_MIN_WBC,
) -> list[Differential]:
    """Write the session's, each folder's and each smear field's differential to ``path``."""
    diffs = all_differentials(session, threshold, ranges, min_wbc)
    with atomic_write(path, encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=DIFFERENTIAL_COLUMNS)
        writer.writeheader()
        for diff in diffs:
            signed = ("", "")
            if diff.scope in (SESSION, FOLDER):
                sign = session.current_sign_off(diff.name or None)
                if sign is not None:
                    signed = (sign.reviewer, sign.at)
            writer.writerow(differential_row(diff, ranges, signed))
    return diffs
