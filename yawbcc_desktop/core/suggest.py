"""Which cells a reviewer should label first when the model meets a new lab.

Adapting learns most from a few dozen labels when they cover every kind of cell the lab
shows, and when they are the cells the model is least sure of rather than the ones it
already gets right.  ``cells_to_review_for_adapting`` picks:

1. coverage: for each class the model sees in the session, the cell most typical of it
   (nearest its centre), so no class present is left without a label;
2. then, greedily, the cell farthest from every cell picked so far (k-centre), each
   distance weighted by the cell's uncertainty (1 - top-2 margin): spread over the lab's
   variety, leaning on what the model doubts.

It works on the pooled backbone features when the caller has them, else on the cells'
class probabilities (all a review session stores): ``benchmarks/adaptation.py`` measures both.
"""

from __future__ import annotations

import numpy as np

UNCERTAINTY_FLOOR = 0.25  # a sure cell keeps this much of its distance: diversity still counts


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (top-1 - top-2 probability) per cell: 0 for a sure cell, 1 for a tie."""
    top2 = np.sort(np.asarray(probs, np.float64), axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def _embedding(probs: np.ndarray, features: np.ndarray | None) -> np.ndarray:
    if features is not None:
        f = np.asarray(features, np.float64)
        f = f - f.mean(axis=0)
        return f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-12)
    # Log probabilities separate cells the softmax squeezes together near a corner.
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-4, 1.0))


def cells_to_review_for_adapting(probs: np.ndarray, k: int, features: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``k`` cells (of the rows of ``probs``, unreviewed cells) to label first, in
    the order to review them."""
    probs = np.asarray(probs, np.float64)
    n = len(probs)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, int)
    emb = _embedding(probs, features)
    weight = UNCERTAINTY_FLOOR + (1 - UNCERTAINTY_FLOOR) * uncertainty(probs)
    said = probs.argmax(axis=1)
    picked: list[int] = []
    # Coverage first, the commonest class first: its typical cell.
    classes, counts = np.unique(said, return_counts=True)
    for c in classes[np.argsort(-counts)]:
        if len(picked) == k:
            break
        members = np.flatnonzero(said == c)
        centre = emb[members].mean(axis=0)
        picked.append(int(members[np.argmin(((emb[members] - centre) ** 2).sum(axis=1))]))
    nearest = np.full(n, np.inf)
    for i in picked:
        nearest = np.minimum(nearest, ((emb - emb[i]) ** 2).sum(axis=1))
    while len(picked) < k:
        score = nearest * weight
        score[picked] = -1.0
        i = int(np.argmax(score))
        picked.append(i)
        nearest = np.minimum(nearest, ((emb - emb[i]) ** 2).sum(axis=1))
    return np.array(picked, int)
