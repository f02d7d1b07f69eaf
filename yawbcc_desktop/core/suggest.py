"""Which cells a reviewer should label first when the model meets a new lab.

Adapting learns most from a few dozen labels when they cover the kinds of cell the lab
shows, each label standing for many cells like it (with a budget this small, typical cells
teach more than the odd ones: Hacohen et al. 2022, "TypiClust").
``cells_to_review_for_adapting`` splits the session's cells into k groups of alike cells
(k-means) and picks from each group its most typical cell (nearest the group's centre),
the largest groups first; every class the model sees in the session then has a cell, since
a class's cells form groups of their own.  Uncertainty picked first (the least sure cells,
spread by k-centre) did worse on LISC (``benchmarks/adaptation.py``, docs/measurements.md).

It works on the pooled backbone features when the caller has them, else on the cells'
class probabilities (all a review session stores): ``benchmarks/adaptation.py`` measures both.
"""

from __future__ import annotations

import numpy as np

SUGGESTED_CELLS = 50  # what a reviewer's first session of a new lab is expected to review


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (top-1 - top-2 probability) per cell: 0 for a sure cell, 1 for a tie."""
    top2 = np.sort(np.asarray(probs, np.float64), axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def _embedding(probs: np.ndarray, features: np.ndarray | None) -> np.ndarray:
    if features is not None:
        from .familiarity import unit_rows

        f = np.asarray(features, np.float64)
        return unit_rows(f - f.mean(axis=0), np.float64)
    # Log probabilities separate cells the softmax squeezes together near a corner.
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-4, 1.0))


def cells_to_review_for_adapting(probs: np.ndarray, k: int, features: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` cells (of the rows of ``probs``, unreviewed cells) to label first, in
    the order to review them."""
    probs = np.asarray(probs, np.float64)
    n = len(probs)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, int)
    emb = _embedding(probs, features)
    group = _kmeans(emb, k, seed)
    picked = []
    sizes = np.bincount(group, minlength=k)
    for g in np.argsort(-sizes, kind="stable"):
        members = np.flatnonzero(group == g)
        if len(members):
            centre = emb[members].mean(axis=0)
            picked.append(int(members[np.argmin(((emb[members] - centre) ** 2).sum(axis=1))]))
    # Empty groups (fewer distinct cells than k): the least sure of the rest.
    rest = np.setdiff1d(np.argsort(-uncertainty(probs), kind="stable"), picked, assume_unique=False)
    order = np.argsort(-uncertainty(probs[rest]), kind="stable")
    picked += [int(i) for i in rest[order][: k - len(picked)]]
    return np.array(picked, int)


def _kmeans(x: np.ndarray, k: int, seed: int, rounds: int = 20) -> np.ndarray:
    """Group of each row: k-means from a k-means++ start (numpy; a session's few thousand cells)."""
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    nearest = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = nearest.sum()
        i = int(rng.choice(len(x), p=nearest / total)) if total > 0 else int(rng.integers(len(x)))
        centres.append(x[i])
        nearest = np.minimum(nearest, ((x - x[i]) ** 2).sum(axis=1))
    c = np.stack(centres)
    group = np.zeros(len(x), int)
    for _ in range(rounds):
        d = (x**2).sum(axis=1)[:, None] - 2 * x @ c.T + (c**2).sum(axis=1)[None]
        group = d.argmin(axis=1)
        for j in range(k):
            if np.any(group == j):
                c[j] = x[group == j].mean(axis=0)
    return group
