"""Finding cells: the central cell of a single-cell image, or every cell of a smear field.

``find_cells(rgb, mode)`` is the one entry point the pipeline uses; ``mode`` is
``"cell"`` (CellaVision-style crop), ``"smear"`` (whole field of view) or ``"auto"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from .cells import WBC, CellRegion
from .vocabulary import MODES, SEGMENTERS

if TYPE_CHECKING:  # the U-Net module loads lazily, only when a network is asked for
    from .unet_segmentation import UnetSegmenter


class SegmentationError(Exception):
    """No cell could be found where one was expected."""


# Single-cell images are segmented at about this many pixels on the long side: the
# watershed cost grows with the pixel count, and half of a CellaVision crop still holds
# every cell outline the report's pipeline needs.
WORK_SIDE = 200


def segment_single_cell(rgb: np.ndarray, threshold: int = 200, min_distance: int = 20) -> CellRegion:
    """The report's 10-step watershed pipeline: box and mask of the cell nearest the centre.

    grey -> 5x5 Gaussian -> inverse threshold -> external contours filled -> distance
    transform -> peak_local_max -> watershed -> region centroids -> region nearest the centre.
    ``min_distance`` is in source pixels.  Raises ``SegmentationError`` when nothing darker
    than the background is found.
    """
    h, w = rgb.shape[:2]
    if h < 8 or w < 8:
        raise SegmentationError(f"image of {w}x{h} pixels is too small to hold a cell")
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = rgb if scale == 1.0 else cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    labels, central = _central_region(small, threshold, max(2, round(min_distance * scale)))
    if scale == 1.0:
        ys, xs = np.nonzero(labels == central)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        return CellRegion(int(x0), int(y0), int(x1 - x0), int(y1 - y0), labels[y0:y1, x0:x1] == central, WBC)
    # Back to source pixels: the region's mask upsampled, its box taken from that mask.
    full = cv2.resize((labels == central).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR) > 0
    ys, xs = np.nonzero(full)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return CellRegion(int(x0), int(y0), int(x1 - x0), int(y1 - y0), full[y0:y1, x0:x1], WBC)


def _central_region(rgb: np.ndarray, threshold: int, min_distance: int) -> tuple[np.ndarray, int]:
    h, w = rgb.shape[:2]
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    _, thresh = cv2.threshold(grey, threshold, 255, cv2.THRESH_BINARY_INV)
    if thresh.mean() > 0.95 * 255 or thresh.mean() < 0.01 * 255:
        # A darker or paler acquisition than CellaVision's: let Otsu pick the level.
        _, thresh = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    contours, _ = cv2.findContours(thresh, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    mask = cv2.drawContours(np.zeros_like(thresh), contours, -1, 255, cv2.FILLED)
    if not mask.any():
        raise SegmentationError("no cell found: the image has no region darker than its background")
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    coords = peak_local_max(dist, min_distance=min_distance, labels=mask > 0)
    markers = np.zeros(dist.shape, dtype=np.int32)
    if len(coords):
        markers[tuple(coords.T)] = np.arange(1, len(coords) + 1)
    else:
        markers, _ = ndi.label(mask > 0)
    labels = watershed(-dist, markers, mask=mask > 0)
    # The region whose centroid is nearest the centre, from per-label pixel sums: the same
    # centroids as regionprops, without building a Python object per region.
    flat = labels.ravel()
    counts = np.bincount(flat)
    present = np.flatnonzero(counts[1:]) + 1
    if not len(present):
        raise SegmentationError("no cell found after watershed")
    rows, cols = np.indices(labels.shape)
    cy = np.bincount(flat, rows.ravel(), len(counts))[present] / counts[present]
    cx = np.bincount(flat, cols.ravel(), len(counts))[present] / counts[present]
    return labels, int(present[np.argmin((w / 2.0 - cx) ** 2 + (h / 2.0 - cy) ** 2)])


def looks_like_smear(rgb: np.ndarray) -> bool:
    """True for a whole field of view, False for a single-cell crop."""
    from .field_or_crop import looks_like_smear as _looks_like_smear

    return _looks_like_smear(rgb)


def find_cells(rgb: np.ndarray, mode: str = "auto", segmenter: str = "auto") -> tuple[str, list[CellRegion]]:
    """See ``find_cells_measured``, without the red-cell radius."""
    return find_cells_measured(rgb, mode, segmenter)[:2]


# The red-cell radius was not measured by the segmentation (it did not need it).
NOT_MEASURED = -1.0

# What ``segmenter="auto"`` runs for each kind of image, from benchmarks/segmentation_domains.py
# (figures in docs/models.md): on held-out fields of the three labs the U-Net finds white
# cells the classic method merges or misses on Bio-Net's smears; on single-cell crops the
# classic central cell is as reliable and costs no network.
AUTO_SEGMENTER = {"smear": "unet", "cell": "classic"}


def network_for(mode: str, segmenter: str) -> UnetSegmenter | None:
    """The U-Net to use for an image of ``mode`` ("cell" or "smear"), or None for the classic
    method.  ``auto`` quietly keeps the classic method when no U-Net bundle is installed;
    an explicit ``unet`` without one is an error."""
    from .unet_segmentation import SegmenterError, load_segmenter

    choice = AUTO_SEGMENTER[mode] if segmenter == "auto" else segmenter
    if choice == "classic":
        return None
    try:
        return load_segmenter()
    except SegmenterError as exc:
        if segmenter == "auto":
            return None
        raise SegmentationError(str(exc)) from exc


def find_cells_measured(
    rgb: np.ndarray, mode: str = "auto", segmenter: str = "auto"
) -> tuple[str, list[CellRegion], float | None]:
    """Cells of one image and the mode actually used (``"cell"`` or ``"smear"``).

    In cell mode the result is the one central cell; in smear mode every WBC and platelet
    cluster found (possibly none).  ``segmenter`` is one of SEGMENTERS.  The third value is
    the red-cell radius in source pixels that the segmentation measured on the way (None: it
    found no red cell; NOT_MEASURED: it did not look), so the pixel size need not be
    measured twice.  Raises ``SegmentationError`` in cell mode when no cell is found,
    ``ValueError`` for an unknown mode or segmenter.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if segmenter not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {segmenter!r}; expected one of {', '.join(SEGMENTERS)}")
    from .field_or_crop import detect_field_measured, field_shaped, smear_score_of
    from .smear import find_cells_in_smear_measured, measure_rbc_radius
    from .unet_segmentation import central_region

    radius: float | None = NOT_MEASURED
    classic: list[CellRegion] | None = None
    if mode == "auto":
        # The classic detection tells a field from a crop (and measures the red cells) in
        # about 20 ms; a network is run only on top of it where it does better.
        is_smear, classic, radius = detect_field_measured(rgb)
        mode = "smear" if is_smear else "cell"
        # A camera frame the classic cells call a crop: on Bio-Net's smears they merge red
        # cells into one frame-filling "white cell" (26 of 140 held-out fields misread).
        # The network's cells decide instead; square crops never load it.
        net = network_for("smear", segmenter) if not is_smear and field_shaped(rgb) else None
        if net is not None:
            cells = net.find_cells(rgb, radius)
            if smear_score_of(rgb, cells, radius) > 0:
                return "smear", cells, radius
    net = network_for(mode, segmenter)
    if net is None:
        if mode == "cell":
            return mode, [segment_single_cell(rgb)], radius
        if classic is None:
            classic, radius = find_cells_in_smear_measured(rgb)
        return mode, classic, radius
    if radius == NOT_MEASURED:
        radius = measure_rbc_radius(rgb)
    cells = net.find_cells(rgb, radius)
    if mode == "smear":
        return mode, cells, radius
    # A crop the network finds nothing in still has its central cell by the classic method.
    central = central_region(cells, rgb.shape)
    return mode, [central if central is not None else segment_single_cell(rgb)], radius
