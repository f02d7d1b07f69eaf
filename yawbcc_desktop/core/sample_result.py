"""What a lab reports for one sample: the content of the printed report and of the LIS message.

One sample is one of the differential's own units: the whole session, one folder, or one
smear field.  ``sample_result`` gathers, from the session and the preferences, everything
either output says (the differential with reference ranges and flags, the sample's
identifier and morphology comments, who reviewed and signed it off, the model, the pixel
size); ``core.lis`` and the PDF report (``yawbcc_desktop.report``) only lay it out.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import __version__
from .classes import DISPLAY_NAMES, REFERENCE_RANGES, WBC_GROUPS, ReferenceRange
from .classifier import ModelBundleError, read_card, resolve_bundle
from .differential import (
    ABOVE_RANGE,
    BELOW_RANGE,
    FOLDER,
    IMAGE,
    PER_100_WBC,
    SESSION,
    Differential,
    session_differential,
)
from .preferences import DEFAULT_MIN_WBC
from .review_export import number_text
from .store import COMMENTS, SAMPLE_ID, ReviewSession, SessionCell, SessionImage, SignOff

FINAL, PRELIMINARY = "final", "preliminary"
PERCENT, PER_100 = "%", "/100 WBC"


@dataclass(frozen=True)
class ResultRow:
    """One line of the differential: a class, its cells, its value and how it compares."""

    group: str
    count: int
    value: float  # percent of white cells, or per 100 white cells; nan when none was counted
    unit: str  # PERCENT or PER_100
    reference: ReferenceRange | None
    flag: str  # 'L' below, 'H' above the reference range, 'A' abnormal when present at all, '' none

    @property
    def name(self) -> str:
        return DISPLAY_NAMES[self.group]

    @property
    def value_text(self) -> str:
        """The value as the differential CSV writes it (two decimals)."""
        return number_text(self.value, 2)


@dataclass
class SampleResult:
    """Everything a report or a LIS message of one sample says."""

    lab: str
    sample_id: str
    scope: str  # differential.SESSION, FOLDER or IMAGE
    name: str  # the folder's or the smear field's path; '' for the session
    session_path: str
    differential: Differential
    rows: list[ResultRow]
    comments: str
    comments_by: str  # who wrote the comments last, and when
    comments_at: str
    sign_off: SignOff | None  # the current sign-off covering this sample
    reviewers: list[str]  # who reviewed its cells, in the order they first did
    models: list[str]  # the models that classified its cells, with their version
    software: str
    pixel_size: str
    analysed_from: str
    analysed_to: str
    images: int
    cells: list[SessionCell] = field(repr=False, default_factory=list)

    @property
    def final(self) -> bool:
        """Signed off, nothing changed since: a final result; else preliminary (provisional)."""
        return self.sign_off is not None

    @property
    def status(self) -> str:
        return FINAL if self.final else PRELIMINARY

    @property
    def reviewed(self) -> int:
        return sum(c.reviewed for c in self.cells)

    @property
    def responsible(self) -> str:
        """Who answers for the result: the signer, else the latest reviewer ('' none yet)."""
        if self.sign_off is not None:
            return self.sign_off.reviewer
        return self.reviewers[-1] if self.reviewers else ""


def result_rows(diff: Differential, ranges: Mapping[str, ReferenceRange]) -> list[ResultRow]:
    """The white-cell groups in percent, then erythroblasts and platelets per 100 white cells."""
    flags = {(f.group, f.code) for f in diff.flags}
    rows = []
    for group in WBC_GROUPS:
        flag = "L" if (group, BELOW_RANGE) in flags else "H" if (group, ABOVE_RANGE) in flags else ""
        if not flag and group == "IG" and diff.counts[group]:
            flag = "A"  # any immature granulocyte is a finding (left shift)
        rows.append(ResultRow(group, diff.counts[group], diff.percent.get(group, math.nan), PERCENT, ranges.get(group), flag))
    for group in PER_100_WBC:
        flag = "A" if group == "ERYTHROBLAST" and diff.counts[group] else ""
        rows.append(ResultRow(group, diff.counts[group], diff.per_100_wbc.get(group, math.nan), PER_100, None, flag))
    return rows


def model_version(name: str) -> str:
    """A model's name with what identifies its version (backbone, training date), as its card says."""
    try:
        card = read_card(resolve_bundle(name))
    except ModelBundleError:
        return f"{name} (its bundle is not on this computer)"
    trained = str(card.extra.get("trained", ""))[:10]
    return f"{name} ({card.backbone}" + (f", trained {trained})" if trained else ")")


def _pixel_size(images: list[SessionImage]) -> str:
    measured = [(im.um_per_px, im.scale_source) for im in images if math.isfinite(im.um_per_px)]
    if not measured:
        return "not measured"
    values = [v for v, _ in measured]
    sources = sorted({s for _, s in measured if s})
    low, high = min(values), max(values)
    span = f"{low:.3f}" if high - low < 0.0005 else f"{low:.3f}-{high:.3f} (median {statistics.median(values):.3f})"
    return f"{span} µm per pixel" + (f", from {', '.join(sources)}" if sources else "")


def sample_result(
    session: ReviewSession,
    threshold: float,
    ranges: Mapping[str, ReferenceRange] = REFERENCE_RANGES,
    min_wbc: int = DEFAULT_MIN_WBC,
    lab: str = "",
    sample_id: str | None = None,
    folder: str | os.PathLike[str] | None = None,
    image_id: int | None = None,
) -> SampleResult:
    """The result of the session, one folder, or one smear field (by image id).

    ``sample_id``: the identifier to print (default: the one the session keeps for that
    scope, else for the whole session).  A folder or a field is final when its own
    sign-off, or the session's, is current.
    """
    diff = session_differential(session, threshold, ranges, min_wbc, image_id=image_id, folder=folder)
    images = [im for im in session.images() if _in_scope(im, diff)]
    folder_of_scope = diff.name if diff.scope == FOLDER else (images[0].folder if diff.scope == IMAGE and images else None)
    sign = session.current_sign_off(folder_of_scope) if folder_of_scope else None
    sign = sign or session.current_sign_off(None)
    notes = session.notes(folder_of_scope) if folder_of_scope else session.notes()
    session_notes = session.notes()
    history = [n for n in session.note_history(folder_of_scope) if n.field == COMMENTS] if folder_of_scope else []
    history = history or [n for n in session.note_history() if n.field == COMMENTS]
    cells = session.cells(image_id=image_id, folder=folder)
    reviewers = list(dict.fromkeys(c.reviewer for c in sorted(cells, key=lambda c: c.reviewed_at) if c.reviewer))
    times = sorted(im.analysed_at for im in images)
    return SampleResult(
        lab=lab,
        sample_id=sample_id if sample_id is not None else (notes[SAMPLE_ID] or session_notes[SAMPLE_ID]),
        scope=diff.scope,
        name=diff.name,
        session_path=session.location,
        differential=diff,
        rows=result_rows(diff, ranges),
        comments=notes[COMMENTS] or session_notes[COMMENTS],
        comments_by=history[-1].reviewer if history else "",
        comments_at=history[-1].at if history else "",
        sign_off=sign,
        reviewers=reviewers,
        models=[model_version(m) for m in dict.fromkeys(c.model for c in cells if c.model)],
        software=f"YAWBCC Desktop {__version__}",
        pixel_size=_pixel_size(images),
        analysed_from=times[0] if times else "",
        analysed_to=times[-1] if times else "",
        images=len(images),
        cells=cells,
    )


def _in_scope(image: SessionImage, diff: Differential) -> bool:
    if diff.scope == SESSION:
        return True
    if diff.scope == FOLDER:
        return image.folder == diff.name
    return image.path == diff.name
