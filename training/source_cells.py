"""Copies of one source cell in an augmented data set, grouped so a split keeps them together.

LISC as distributed here holds each of about 250 white cells about five times (shifted,
flipped, turned, zoomed).  Copies share their colours whatever the geometry, so each image
is described by its L*a*b* histogram (black padding left out), and two images of a class
are one cell when their histograms are close: consecutive file numbers (how the copies were
written) below ``NEAR_NEIGHBOUR``, any two below ``NEAR_ANY``.  On LISC's 1,287 images this
finds 249 cells (basophil 57, eosinophil 37, lymphocyte 51, monocyte 50, neutrophil 54;
the source paper lists 53 / 39 / 52 / 48 / 50); merging two cells by mistake costs nothing,
splitting one would leak its copies across a split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from yawbcc_desktop.core.imageio import read_rgb

# Hellinger distances between histograms.  Measured on LISC: copies of one cell 0.01-0.05,
# consecutive files of two cells mostly above 0.09.
NEAR_NEIGHBOUR = 0.09
NEAR_ANY = 0.02
PADDING_BELOW = 20  # a pixel darker than this in every channel is the augmentation's black fill


def colour_descriptor(rgb: np.ndarray) -> np.ndarray:
    """Square root of the image's 8x8x8 L*a*b* histogram (unit length), padding left out."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    keep = rgb.reshape(-1, rgb.shape[-1])[:, :3].max(axis=1) > PADDING_BELOW
    hist, _ = np.histogramdd(lab[keep].astype(float), bins=(8, 8, 8), range=((0, 256),) * 3)
    hist = hist.ravel() / max(hist.sum(), 1.0)
    return np.sqrt(hist)


def group_copies(paths: Sequence[str | Path]) -> np.ndarray:
    """A source-cell number per path (paths of one class, in file-number order)."""
    desc = np.stack([colour_descriptor(read_rgb(p)) for p in paths]) if len(paths) else np.zeros((0, 512))
    dist = np.sqrt(np.maximum(0.0, 1.0 - desc @ desc.T))
    parent = list(range(len(paths)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = [(i, i + 1) for i in range(len(paths) - 1) if dist[i, i + 1] < NEAR_NEIGHBOUR]
    pairs += list(zip(*np.nonzero(np.triu(dist < NEAR_ANY, 1))))
    for i, j in pairs:
        parent[root(int(i))] = root(int(j))
    roots = [root(i) for i in range(len(paths))]
    return np.unique(roots, return_inverse=True)[1]
