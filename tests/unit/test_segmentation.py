"""Single-cell segmentation on a random sample of real PBC images."""

from __future__ import annotations

import random

import numpy as np
import pytest

from yawbcc_desktop.core.imageio import read_rgb
from yawbcc_desktop.core.segmentation import SegmentationError, find_cells, segment_single_cell


def test_central_cell_found_on_real_sample(pbc):
    files = sorted(p for p in pbc.rglob("*.jpg") if not p.name.startswith("."))
    sample = random.Random(0).sample(files, 150)  # the 1,000-image figure is benchmarks/segmentation.py
    hits = 0
    for path in sample:
        rgb = read_rgb(path)
        cell = segment_single_cell(rgb)
        h, w = rgb.shape[:2]
        assert cell.mask.shape == (cell.height, cell.width) and cell.mask.any()
        hits += cell.x <= w / 2 <= cell.x + cell.width and cell.y <= h / 2 <= cell.y + cell.height
    assert hits / len(sample) >= 0.98


def test_blank_and_tiny_images_raise_clear_errors():
    with pytest.raises(SegmentationError, match="no cell"):
        segment_single_cell(np.full((100, 100, 3), 255, np.uint8))
    with pytest.raises(SegmentationError, match="too small"):
        segment_single_cell(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError):
        find_cells(np.zeros((50, 50, 3), np.uint8), "nonsense")


def test_central_region_is_the_one_regionprops_centroids_pick(pbc, bccd):
    """The per-label centroid sums choose the region the report's regionprops step chose."""
    from skimage.measure import regionprops

    from yawbcc_desktop.core.segmentation import _central_region

    files = random.Random(1).sample(sorted(pbc.rglob("*.jpg")), 20) + sorted(bccd.rglob("*.jpg"))[:10]
    for path in files:
        rgb = read_rgb(path)[::2, ::2].copy()
        labels, central = _central_region(rgb, 200, 10)
        h, w = labels.shape
        nearest = min(regionprops(labels), key=lambda r: (w / 2 - r.centroid[1]) ** 2 + (h / 2 - r.centroid[0]) ** 2)
        assert central == nearest.label, path.name
