"""What adapting a bundle to one lab needs, in one place: ``training/adapt.py`` fits, the
window counts the reviewed cells before it offers to start.

A bundle is adaptable when it carries a replay sample (pooled features of its own training
cells, so the old labs are replayed without their images).  A class is adapted from at
least ``MIN_PER_CLASS`` of the lab's cells, and an adaptation needs ``MIN_CELLS`` in all:
fewer cannot be checked by cross-validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPLAY_FILE = "replay.npz"
# An adapted bundle's session cells (unit pooled features, float16, and their classes: the
# reviewer's or the adapted model's call), for its rule's neighbour check.
LAB_CELLS_FILE = "lab_cells.npz"
# An adapted bundle's head before adapting (kernel and bias, the model's class order): a
# cell whose class the adaptation changed waits (``LabReviewRule.changed_calls``).
BASE_HEAD_FILE = "base_head.npz"
# The neighbour check needs a session of at least this many cells: with the reviewed ones
# alone a cell's 10 nearest would span classes by construction.
MIN_NEIGHBOUR_CELLS = 100
MIN_PER_CLASS = 5
MIN_CELLS = 30

# Adapting to a lab's images without corrections (``training/adapt_images.py``): the share of
# the lab's own batch-norm statistics in the adapted bundle's (the rest stays the base's), the
# cells it needs, and how many it samples.  Half and half did better than either end on both
# labs held out of training (README, *Adapting to a lab's images*); all-the-lab's lost 6 points
# on one of them.
IMAGE_STATISTICS_SHARE = 0.5
MIN_IMAGE_CELLS = 50
MAX_IMAGE_CELLS = 2000


def unit_replay(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """A bundle's replay sample as the per-cell check reads it: the training cells' features
    as unit rows (float32) and their classes (GROUPS indices)."""
    from .familiarity import unit_rows

    with np.load(folder / REPLAY_FILE) as rp:
        return unit_rows(rp["features"]), np.asarray(rp["labels"], np.int64)


# Once adapted with corrections, a bundle carries a review rule for that lab (``LabReviewRule``,
# in its card under ``lab_review``): cells the lab's corrections do not vouch for wait for
# review; the others stop waiting just because the lab is new.
@dataclass(frozen=True)
class LabReviewRule:
    """The review rule an adapted bundle brings for its lab."""

    lab: str
    # A cell below this waits: 0 since 2026-12-08; bundles adapted before then carry the
    # surest out-of-fold mistake of their corrections (or more) here.
    min_confidence: float
    unreliable_classes: tuple[str, ...]  # classes too few corrections taught (older bundles: or still confused)
    # With the session's cells kept (LAB_CELLS_FILE): a cell waits unless all its nearest
    # cells of the lab were called its class (core.familiarity.neighbour_agreement).
    session_neighbours: bool = False
    # With the head before adapting kept (BASE_HEAD_FILE): a cell waits when the adaptation
    # changed its class.  Such a call rests on a few dozen corrections alone; on Bio-Net the
    # sure mistakes left after adapting were mostly such changes (benchmarks/adaptation.py).
    changed_calls: bool = False

    def reasons(self, predicted: str, confidence: float, agreement: float | None = None, before: str | None = None) -> list[str]:
        """The reasons (words of ``review_rules``) this rule gives a cell, [] if none;
        ``agreement``: the cell's ``neighbour_agreement`` among the lab's cells, and
        ``before``: its class through the head before adapting, where measured."""
        from .review_rules import BELOW_LAB_BAR, CALLED_OTHERWISE_BEFORE, CLASS_NOT_YET_RELIABLE, NEIGHBOURS_CALLED_OTHERWISE

        out = []
        if confidence < self.min_confidence:
            out.append(BELOW_LAB_BAR)
        if predicted in self.unreliable_classes:
            out.append(CLASS_NOT_YET_RELIABLE)
        if self.session_neighbours and agreement is not None and agreement < 1.0:
            out.append(NEIGHBOURS_CALLED_OTHERWISE)
        if self.changed_calls and before is not None and before != predicted:
            out.append(CALLED_OTHERWISE_BEFORE)
        return out

    def to_card(self) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "min_confidence": self.min_confidence,
            "unreliable_classes": list(self.unreliable_classes),
            "session_neighbours": self.session_neighbours,
            "changed_calls": self.changed_calls,
        }

    @classmethod
    def from_card(cls, extra: dict[str, Any]) -> LabReviewRule | None:
        rule = extra.get("lab_review")
        if not isinstance(rule, dict):
            return None
        return cls(
            str(rule.get("lab", "")),
            float(rule.get("min_confidence", 0.0)),
            tuple(rule.get("unreliable_classes", ())),
            bool(rule.get("session_neighbours", False)),
            bool(rule.get("changed_calls", False)),
        )


def lab_cells(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """An adapted bundle's session cells: unit features (float32) and classes (GROUPS indices)."""
    with np.load(Path(folder) / LAB_CELLS_FILE) as lc:
        return lc["features"].astype(np.float32), np.asarray(lc["classes"], np.int64)


def base_head(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """An adapted bundle's head before adapting: kernel (D, C) and bias (C,), float32."""
    with np.load(Path(folder) / BASE_HEAD_FILE) as bh:
        return bh["kernel"].astype(np.float32), bh["bias"].astype(np.float32)
