"""Smear field or single-cell crop: whether an image is a whole camera frame of a smear,
in which white cells lie anywhere, or a crop centred on one cell (CellaVision / PBC style).

Auto mode asks this of every image; the cells found on the way are the smear's cells, so
the detection runs once (``detect_field``).
"""

from __future__ import annotations

import numpy as np

from .cells import WBC, CellRegion
from .smear import find_cells_in_smear_measured, source_rbc_radius

FIELD_ASPECT = 1.2  # camera frames are 4:3 or wider, single-cell crops about square


def smear_score(rgb: np.ndarray) -> float:
    """Evidence that ``rgb`` is a whole smear field (> 0) rather than a single-cell crop (< 0).

    A single-cell crop (CellaVision / PBC style, or a box cut out of a field) is centred
    on its cell and spans few red cells; a smear field is a camera frame of many red cells
    in which white cells lie anywhere.  Points:

    * centre: distance from the image centre to the nearest stained object (nucleus,
      cell or platelet mask): <= 0.75 R -1 (a crop is centred on its cell), <= 2.5 R +1
      (some crops are off-centre), farther or none +3;
    * extent, in red-cell radii ``R`` along the short side: >= 16 (8 red cells across)
      +4, >= 13 +2, < 5 (a tight crop) -4, else 0;
    * frame shape (a weak hint: camera frames are 4:3 or wider, crops square): aspect
      >= 1.2 +2, <= 1.1 -2, else 0;
    * one white cell fills a quarter of the frame or more (a tight crop; in a field a
      white cell covers a few per cent): -3;
    * three or more white cells: +1.

    BCCD fields (640x480) and PBC crops (360x363) have the same short side in red-cell
    radii (about 9.5 R) and BCCD fields are often centred on their white cell, so for
    those two sources the frame shape is what separates them; the content terms take over
    for tight crops, fields at other magnifications and square fields without a
    centred cell.
    """
    cells, measured = find_cells_in_smear_measured(rgb)
    return _score(rgb, source_rbc_radius(rgb, measured), cells)


def detect_field(rgb: np.ndarray) -> tuple[bool, list[CellRegion]]:
    """Whether ``rgb`` looks like a smear field, and the cells found in it, from one detection.

    Auto mode needs both; detecting once halves its cost on smear fields.
    """
    is_smear, cells, _ = detect_field_measured(rgb)
    return is_smear, cells


def detect_field_measured(rgb: np.ndarray) -> tuple[bool, list[CellRegion], float | None]:
    """``detect_field`` and the red-cell radius it measured (None: no red cell found)."""
    cells, measured = find_cells_in_smear_measured(rgb)
    return _score(rgb, source_rbc_radius(rgb, measured), cells) > 0, cells, measured


def smear_score_of(rgb: np.ndarray, cells: list[CellRegion], measured: float | None) -> float:
    """``smear_score`` from cells another segmenter found (``measured``: the red-cell radius,
    None if no red cell was found)."""
    return _score(rgb, source_rbc_radius(rgb, measured), cells)


def field_shaped(rgb: np.ndarray) -> bool:
    """A camera frame's proportions (4:3 or wider); crops are square."""
    H, W = rgb.shape[:2]
    return bool(max(H, W) / max(1, min(H, W)) >= FIELD_ASPECT)


def _score(rgb: np.ndarray, r_src: float, cells: list[CellRegion]) -> float:
    H, W = rgb.shape[:2]
    cx, cy = W / 2.0, H / 2.0
    d_centre = np.inf
    for c in cells:
        # cheap box test first
        m = 2.5 * r_src
        if c.x - m > cx or c.x + c.width + m < cx or c.y - m > cy or c.y + c.height + m < cy:
            continue
        ys, xs = np.nonzero(c.mask)
        if len(xs):
            d = np.sqrt((xs + c.x + 0.5 - cx) ** 2 + (ys + c.y + 0.5 - cy) ** 2).min()
            d_centre = min(d_centre, float(d))
    if d_centre <= 0.75 * r_src:
        score = -1.0
    elif d_centre <= 2.5 * r_src:
        score = 1.0
    else:
        score = 3.0
    short = min(H, W) / r_src
    if short >= 16:
        score += 4.0
    elif short >= 13:
        score += 2.0
    elif short < 5:
        score -= 4.0
    aspect = max(H, W) / max(1, min(H, W))
    if aspect >= FIELD_ASPECT:
        score += 2.0
    elif aspect <= 1.1:
        score -= 2.0
    wbcs = [c for c in cells if c.kind == WBC]
    if wbcs and max(int(c.mask.sum()) for c in wbcs) >= 0.25 * H * W:
        score -= 3.0
    if len(wbcs) >= 3:
        score += 1.0
    return score


def looks_like_smear(rgb: np.ndarray) -> bool:
    """True for a whole smear field (many cells, red cells everywhere), False for a
    single-cell crop (one cell in the centre).  See :func:`smear_score`."""
    return smear_score(rgb) > 0
