"""The lab's unreviewed cells as unlabelled data for adapting the head (self-training).

A session holds far more cells than a reviewer corrects on the first day.  The head fitted
on the corrections labels the others; a cell joins the fit with that pseudo-label only when
the cell and its mirror image get the same class, both at least ``PSEUDO_CONFIDENCE`` sure
(agreement between views, FixMatch's rule without its strong augmentation), and the fit is
repeated ``PSEUDO_ROUNDS`` times with the improved head.  The pseudo-labelled cells weigh
``PSEUDO_SHARE`` of the lab's half of the loss, shared by class so that the commonest cell
of a lab does not take the head over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from yawbcc_desktop.core.classifier import TTA_VIEWS, ModelBundle
from yawbcc_desktop.core.imageio import ImageReadError

from .corrections import ProgressFn, _no_progress, correction_inputs
from .head_fit import LAB_SHARE, _sample_weights, _softmax, fit_head, head_weights

PSEUDO_CONFIDENCE = 0.9
PSEUDO_ROUNDS = 2
PSEUDO_SHARE = 0.5  # of the lab's weight; the rest is the reviewed cells'
MAX_UNLABELLED = 3000  # cells a run uses (sampled evenly): the fit stays within seconds


@dataclass
class LabCells:
    """Pooled features of the lab's unreviewed cells and of their mirror views."""

    plain: np.ndarray
    mirror: np.ndarray
    # Acquisition signatures of their images (core.familiarity): the lab's images the adapted
    # familiarity model knows, besides the reviewed ones.
    signatures: list[np.ndarray] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # rows left out, named with the reason

    def __len__(self) -> int:
        return len(self.plain)


def lab_cells(bundle: ModelBundle, rows: pd.DataFrame, progress: ProgressFn = _no_progress, seed: int = 0) -> LabCells:
    """Features of ``rows`` (at most ``MAX_UNLABELLED``, sampled evenly) and of their mirror
    views; an image that cannot be read is named once and its rows left out."""
    if len(rows) > MAX_UNLABELLED:
        rows = rows.iloc[np.sort(np.random.default_rng(seed).choice(len(rows), MAX_UNLABELLED, replace=False))]
    plain, mirror, signatures, skipped = [], [], [], []
    progress("unlabelled", 0, len(rows))
    done = 0
    # An image's rows are framed together (one read); an unreadable image is named once.
    for path, group in rows.groupby("path", sort=False):
        try:
            x, sigs = correction_inputs(bundle, group)
        except (ImageReadError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            first = ", ".join(str(v) for v in group["row"].head(3)) if "row" in group else "?"
            more = f" and {len(group) - 3} more" if len(group) > 3 else ""
            skipped.append(f"rows {first}{more}: {path}: {reason} (unreviewed cells: left out)")
        else:
            plain.append(bundle.features(x))
            signatures += sigs
            mirror.append(bundle.features(TTA_VIEWS["flip_lr"](x)))
        done += len(group)
        progress("unlabelled", done, len(rows))
    empty = np.zeros((0, head_weights(bundle)[0].shape[0]))  # the head reads the pooled features
    return LabCells(np.concatenate(plain) if plain else empty, np.concatenate(mirror) if mirror else empty, signatures, skipped)


def pseudo_labels(unlabelled: LabCells, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the unlabelled cells whose two views agree, both sure, and their class."""
    p0 = _softmax(unlabelled.plain @ w + b)
    p1 = _softmax(unlabelled.mirror @ w + b)
    said = p0.argmax(axis=1)
    keep = (said == p1.argmax(axis=1)) & (np.minimum(p0.max(axis=1), p1.max(axis=1)) >= PSEUDO_CONFIDENCE)
    idx = np.flatnonzero(keep)
    return idx, said[idx]


def fit_lab_head(
    feats: np.ndarray,
    labels: np.ndarray,
    r_feats: np.ndarray,
    r_labels: np.ndarray,
    w0: np.ndarray,
    b0: np.ndarray,
    unlabelled: LabCells | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The head fitted on the reviewed cells with the replay sample, then, with unreviewed
    cells, self-trained on their agreeing pseudo-labels; and how many pseudo-labels it used."""
    w, b = fit_head(
        np.concatenate([feats, r_feats]), np.concatenate([labels, r_labels]), _sample_weights(len(feats), len(r_feats)), w0, b0
    )
    if unlabelled is None or not len(unlabelled):
        return w, b, 0
    used = 0
    for _ in range(PSEUDO_ROUNDS):
        idx, said = pseudo_labels(unlabelled, w, b)
        if not len(idx):
            break
        used = len(idx)
        w, b = fit_head(
            np.concatenate([feats, unlabelled.plain[idx], r_feats]),
            np.concatenate([labels, said, r_labels]),
            session_weights(len(feats), said, w.shape[1], len(r_feats)),
            w0,
            b0,
        )
    return w, b, used


def session_weights(reviewed: int, said: np.ndarray, classes: int, replay: int) -> np.ndarray:
    """Each cell's weight in a fit on the reviewed cells, then the pseudo-labelled ones (their
    classes ``said``), then the replay sample: half the lab's, half the replay's, and of the
    lab's half ``PSEUDO_SHARE`` for the pseudo-labels, shared by class."""
    per_class = np.bincount(said, minlength=classes)
    return np.concatenate(
        [
            np.full(reviewed, LAB_SHARE * (1 - PSEUDO_SHARE) / reviewed),
            LAB_SHARE * PSEUDO_SHARE / (np.count_nonzero(per_class) * per_class[said]),
            np.full(replay, (1 - LAB_SHARE) / replay),
        ]
    )
