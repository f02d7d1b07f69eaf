"""The differential count, as a lab reports it, and its flags against reference ranges.

White cells (``WBC_GROUPS``) make up 100 %; erythroblasts and platelets are reported per
100 white cells; artefacts and cells never classified are left out.  A cell counts with
its final label: the reviewer's if reviewed, else the model's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .classes import ARTEFACT, DISPLAY_NAMES, GROUPS, REFERENCE_RANGES, WBC_GROUPS, ReferenceRange
from .preferences import DEFAULT_MIN_WBC
from .store import ReviewSession

# Flag codes, stable for exports and tests; each ``Flag`` also carries a sentence to show.
IG_PRESENT = "IG_PRESENT"  # a left shift
ERYTHROBLASTS_PRESENT = "ERYTHROBLASTS_PRESENT"
BELOW_RANGE = "BELOW_RANGE"
ABOVE_RANGE = "ABOVE_RANGE"
FEW_CELLS = "FEW_CELLS"  # fewer white cells than a routine count: percentages are imprecise

SESSION, FOLDER, IMAGE = "session", "folder", "image"
PER_100_WBC = ("ERYTHROBLAST", "PLATELET")


@dataclass(frozen=True)
class Flag:
    code: str
    group: str  # the class it is about, '' for the count as a whole
    message: str


@dataclass
class Differential:
    """The count of one image, one folder or the whole session."""

    scope: str  # SESSION, FOLDER or IMAGE
    name: str  # the folder's or image's path; '' for the session
    counts: dict[str, int]  # cells per group (all eight), by final label
    artefacts: int = 0
    unclassified: int = 0  # cells with no model prediction and no reviewer label
    unreviewed: int = 0  # cells still waiting in the to-review queue
    flags: list[Flag] = field(default_factory=list)

    @property
    def wbc(self) -> int:
        """White cells counted: the 100 % of the percentages."""
        return sum(self.counts[g] for g in WBC_GROUPS)

    @property
    def percent(self) -> dict[str, float]:
        """Percent of white cells per WBC group; empty when no white cell was counted."""
        n = self.wbc
        return {g: 100.0 * self.counts[g] / n for g in WBC_GROUPS} if n else {}

    @property
    def per_100_wbc(self) -> dict[str, float]:
        """Erythroblasts and platelets per 100 white cells; empty when no white cell was counted."""
        n = self.wbc
        return {g: 100.0 * self.counts[g] / n for g in PER_100_WBC} if n else {}

    @property
    def provisional(self) -> bool:
        """True while reviewing could still change it (cells left in the to-review queue)."""
        return self.unreviewed > 0

    def flag_codes(self) -> list[str]:
        return [f.code for f in self.flags]


def count(
    label_counts: Mapping[str, int],
    ranges: Mapping[str, ReferenceRange] = REFERENCE_RANGES,
    min_wbc: int = DEFAULT_MIN_WBC,
    scope: str = SESSION,
    name: str = "",
    unreviewed: int = 0,
) -> Differential:
    """The differential and its flags from cells per final label ('' = never classified)."""
    counts = {g: int(label_counts.get(g, 0)) for g in GROUPS}
    diff = Differential(
        scope,
        name,
        counts,
        artefacts=int(label_counts.get(ARTEFACT, 0)),
        unclassified=int(sum(n for label, n in label_counts.items() if label not in GROUPS and label != ARTEFACT)),
        unreviewed=unreviewed,
    )
    diff.flags = _flags(diff, ranges, min_wbc)
    return diff


def _flags(diff: Differential, ranges: Mapping[str, ReferenceRange], min_wbc: int) -> list[Flag]:
    flags = []
    n = diff.wbc
    if n < min_wbc:
        flags.append(Flag(FEW_CELLS, "", f"only {n} white cells counted (a differential needs {min_wbc})"))
    if diff.counts["IG"]:
        ig_pct = f", {diff.percent['IG']:.1f} %" if n else ""
        flags.append(Flag(IG_PRESENT, "IG", f"immature granulocytes present (left shift): {diff.counts['IG']} cells{ig_pct}"))
    if diff.counts["ERYTHROBLAST"]:
        per100 = f", {diff.per_100_wbc['ERYTHROBLAST']:.1f} per 100 WBC" if n else ""
        message = f"erythroblasts present: {diff.counts['ERYTHROBLAST']} cells{per100}"
        flags.append(Flag(ERYTHROBLASTS_PRESENT, "ERYTHROBLAST", message))
    for group, pct in diff.percent.items():
        r = ranges.get(group)
        if r is None:
            continue
        name = DISPLAY_NAMES[group].lower()
        if pct < r.low:
            flags.append(Flag(BELOW_RANGE, group, f"{name} {pct:.1f} % below the reference range {r.low:g}-{r.high:g} %"))
        elif pct > r.high:
            flags.append(Flag(ABOVE_RANGE, group, f"{name} {pct:.1f} % above the reference range {r.low:g}-{r.high:g} %"))
    return flags


def session_differential(
    session: ReviewSession,
    threshold: float,
    ranges: Mapping[str, ReferenceRange] = REFERENCE_RANGES,
    min_wbc: int = DEFAULT_MIN_WBC,
    image_id: int | None = None,
    folder: str | os.PathLike[str] | None = None,
) -> Differential:
    """The differential of the whole session, one folder, or one image (by id)."""
    if image_id is not None:
        scope = IMAGE
        image = session.image_by_id(image_id)
        name = image.path if image else ""
    elif folder is not None:
        scope, name = FOLDER, os.path.abspath(folder)
    else:
        scope, name = SESSION, ""
    return count(
        session.label_counts(image_id=image_id, folder=folder),
        ranges,
        min_wbc,
        scope,
        name,
        session.to_review_count(threshold, image_id=image_id, folder=folder),
    )


def all_differentials(
    session: ReviewSession,
    threshold: float,
    ranges: Mapping[str, ReferenceRange] = REFERENCE_RANGES,
    min_wbc: int = DEFAULT_MIN_WBC,
    smear_images: bool = True,
) -> list[Differential]:
    """The session's count, then each folder's, then (with ``smear_images``) each smear field's.

    Single-cell crops get no count of their own: one cell is not a differential.
    """
    out = [session_differential(session, threshold, ranges, min_wbc)]
    out += [session_differential(session, threshold, ranges, min_wbc, folder=f) for f in session.folders()]
    if smear_images:
        out += [
            session_differential(session, threshold, ranges, min_wbc, image_id=im.id)
            for im in session.images()
            if im.mode == "smear" and im.cell_count
        ]
    return out
