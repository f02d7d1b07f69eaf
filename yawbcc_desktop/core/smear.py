"""Find white cells and platelets in a whole stained blood-smear field.

Qt-free: numpy, OpenCV and scikit-image only.

Everything is relative to the image.  The red-cell radius ``R`` is measured first (Hough
circles on the green channel, see :func:`estimate_rbc_radius`) and the field is resized so
that ``R`` is 20 px; every size below is a multiple of ``R`` (or of the red-cell area),
and every grey-level threshold comes from the image itself (Otsu, background level and
spread), so fields taken at other magnifications or with another stain intensity go
through the same code.

White cells (:func:`find_cells_in_smear`):

1. nuclear-stain channel: optical density of the violet stain, ``OD_red - OD_blue``
   against the background colour (= ``log(B/R)`` normalised), high for pale-lilac and
   dark-purple nuclei and platelets alike, near zero for background, negative for pink
   red cells and orange eosinophil granules;
2. nuclei = that channel above an Otsu threshold (split again on the upper class when the
   first split only separates red cells from background; never closer to the background
   than a few background spreads); specks and small holes are cleaned;
3. cell bodies: ``B - G`` (nucleus, violet cytoplasm and eosinophil/neutrophil granules
   are bluer than green; red cells and background are not) above a fifth of the way from
   the background to the nuclei, opened to cut thin contacts, holes filled; the lobes of
   a segmented nucleus lie in one body, so they make one cell;
4. a body holding enough nucleus (>= 0.3 red-cell area, clearly above the background
   noise) is a white cell; touching cells
   are split by distance transform + watershed (one maximum per round body, basins
   without a nucleus of their own are merged back);
5. the box is the cell body's box (nucleus + cytoplasm); cells cut by the image border
   are kept, as in the BCCD annotations;
6. stained objects outside white cells and much smaller than a nucleus are platelets
   (close ones grouped into a clump); a lower threshold, halfway to the nuclei, catches
   the paler ones.

Smear field or single-cell crop (``looks_like_smear``, ``smear_score``): ``field_or_crop.py``.
Scoring found cells against Pascal VOC boxes is training's (``training/voc.py``).
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from .cells import PLATELET, WBC, CellRegion
from .preprocess import uint8_percentiles

__all__ = [
    "find_cells_in_smear",
    "find_cells_in_smear_measured",
    "estimate_rbc_radius",
    "measure_rbc_radius",
    "source_rbc_radius",
    "to_region",
]

# Working scale: red-cell radius in pixels after resizing.
_WORK_RBC_RADIUS = 20.0
_MIN_WORK_RBC_RADIUS = 12.0
_PLATELET_LEVEL = 0.5  # platelet threshold: this far from the background up to the nuclei


# ----------------------------------------------------------------------------- helpers


def _as_rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] < 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {a.shape}")
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.max(initial=0) <= 1.0:
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _fill_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Fill background holes (not touching the border) smaller than ``max_area``."""
    m = mask.astype(np.uint8)
    h, w = m.shape
    n, lab, st, _ = cv2.connectedComponentsWithStats((m == 0).astype(np.uint8), connectivity=4)
    if n <= 1:
        return m.astype(bool)
    x, y, ww, hh, area = st[:, 0], st[:, 1], st[:, 2], st[:, 3], st[:, 4]
    inner = (x > 0) & (y > 0) & (x + ww < w) & (y + hh < h) & (area < max_area)
    inner[0] = False
    filled: np.ndarray = m.astype(bool) | inner[lab]
    return filled


def _otsu(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if values.size < 2 or values.min() == values.max():
        return float(values.max()) if values.size else 0.0
    return float(threshold_otsu(values))


def _foreground(rgb: np.ndarray) -> np.ndarray:
    """Cells (red and white) against the bright background, on the green channel."""
    g = cv2.GaussianBlur(rgb[:, :, 1], (0, 0), 1.0)
    t = _otsu(g.ravel()[:: max(1, g.size // 60000)])
    return g < t


def _granulometry_radius(fg: np.ndarray) -> float | None:
    """Radius of the commonest round object of a mask (peak of the pattern spectrum)."""
    sh, sw = fg.shape
    fg = _fill_holes(fg, 0.02 * sh * sw)
    dt = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 5)
    radii = np.geomspace(1.5, max(3.0, 0.22 * min(sh, sw)), 26)
    areas = []
    for r in radii:
        core = (dt > r).astype(np.uint8)
        if not core.any():
            areas.append(0.0)
            continue
        d2 = cv2.distanceTransform(1 - core, cv2.DIST_L2, 5)
        areas.append(float((d2 <= r).sum()))
    loss = -np.diff(np.asarray(areas))
    if loss.max(initial=0) <= 0:
        return None
    k = int(np.argmax(loss))
    return float(np.sqrt(radii[k] * radii[k + 1]))


def estimate_rbc_radius(rgb: np.ndarray) -> float:
    """Typical red-cell radius in source pixels (``measure_rbc_radius``, else a fixed
    fraction of the image)."""
    r = measure_rbc_radius(rgb)
    return r if r is not None else 0.08 * min(rgb.shape[:2])


def measure_rbc_radius(rgb: np.ndarray) -> float | None:
    """Typical red-cell radius in source pixels, or None when the image shows no red cells.

    Circles are found on the contrast-stretched green channel (red cells absorb green
    and have sharp round outlines) with a Hough transform over a wide range of radii;
    the upper quartile of the radii is taken, because partial arcs, central pallor and
    platelets give small circles while a red cell gives the largest common one.  Falls
    back to a granulometry of the cell mask.
    """
    rgb = _as_rgb_uint8(rgb)
    h, w = rgb.shape[:2]
    s = min(1.0, 240.0 / min(h, w))
    small = cv2.resize(rgb, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    g = cv2.GaussianBlur(small[:, :, 1], (0, 0), 1.0)
    lo, hi = uint8_percentiles(g.reshape(-1, 1), (1, 99))[0]
    if hi - lo > 5:
        # The stretch as a lookup table over the 256 grey levels (the same values as
        # computing it per pixel).
        levels = np.arange(256, dtype=np.float32)
        g = cv2.LUT(g, np.clip((levels - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8))
        m = min(g.shape)
        circles = cv2.HoughCircles(
            g,
            cv2.HOUGH_GRADIENT_ALT,
            dp=1.0,
            minDist=0.04 * m,
            param1=60,
            param2=0.5,
            minRadius=max(3, int(0.02 * m)),
            maxRadius=int(0.25 * m),
        )
        if circles is not None and circles.shape[1] >= 3:
            return float(np.percentile(circles[0, :, 2], 75) / s)
        r = _granulometry_radius(_foreground(small))
        if r is not None:
            return float(r / s)
    return None


def _nucleus_channel(f: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Optical density of the violet (nuclear) stain: absorbs red, lets blue through.

    ``OD_R - OD_B`` relative to the background colour (x100): high for nuclei and
    platelets whether pale lilac or dark purple, near zero for the background, negative
    for pink red cells and orange eosinophil granules.
    """
    if background.sum() > 100:
        r0 = float(np.median(f[:, :, 0][background]))
        b0 = float(np.median(f[:, :, 2][background]))
    else:
        r0 = float(np.percentile(f[:, :, 0], 95))
        b0 = float(np.percentile(f[:, :, 2], 95))
    od_r = np.log((r0 + 1.0) / (f[:, :, 0] + 1.0))
    od_b = np.log((b0 + 1.0) / (f[:, :, 2] + 1.0))
    return (100.0 * (od_r - od_b)).astype(np.float32)


def _nucleus_threshold(stain: np.ndarray, background: np.ndarray) -> tuple[float, float, float]:
    """(threshold, background level, background spread) for violet-stained objects.

    ``background`` marks the bright cell-free pixels.
    """
    step = max(1, stain.size // 80000)
    v = stain.ravel()[::step]
    t = _otsu(v)
    # The first split often separates red cells from background; the stained objects
    # are then a small upper class: split again above it.
    for _ in range(2):
        upper = v[v > t]
        if upper.size and upper.size > 0.25 * v.size:
            t = _otsu(upper)
        else:
            break
    bg = stain[background]
    if bg.size < 100:
        bg = v
    bg = bg.ravel()[:: max(1, bg.size // 40000)]
    med = float(np.median(bg))
    mad = float(np.median(np.abs(bg - med))) * 1.4826 + 0.5
    # Never too close to the background: with no stained object in the field the Otsu
    # split would otherwise cut noise.
    t = max(t, med + 4.0 * mad)
    return t, med, mad


def _split_cells(
    comp: np.ndarray, nuc: np.ndarray, R: float, min_nucleus: float, at_border: tuple[bool, bool, bool, bool]
) -> list[np.ndarray]:
    """Split a cell-body mask holding several touching cells (distance transform + watershed).

    A white cell is a round body of at least about 1.5 red-cell radii; touching cells
    give one distance-transform maximum each, with a neck between them.  Basins without
    enough nucleus of their own (a lobe, a platelet, a bit of cytoplasm) are given back
    to the nearest kept basin.  ``at_border`` (top, bottom, left, right) tells which sides
    of the window are the image border: a cell cut there is measured as if it went on.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    padded = np.pad(comp, 1).astype(np.uint8)
    top, bottom, left, right = at_border
    if top:
        padded[0, 1:-1] = comp[0]
    if bottom:
        padded[-1, 1:-1] = comp[-1]
    if left:
        padded[1:-1, 0] = comp[:, 0]
    if right:
        padded[1:-1, -1] = comp[:, -1]
    # Outside the image counts as foreground for OpenCV's distance transform.
    dt = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    peaks = peak_local_max(dt, min_distance=max(2, int(1.4 * R)), threshold_abs=0.9 * R, exclude_border=False)
    if len(peaks) < 2:
        return [comp]
    markers = np.zeros(comp.shape, np.int32)
    for k, (py, px) in enumerate(peaks, 1):
        markers[py, px] = k
    ws = watershed(-dt, markers, mask=comp)
    good = [k for k in range(1, len(peaks) + 1) if (nuc & (ws == k)).sum() >= min_nucleus]
    if len(good) < 2:
        return [comp]
    # Give the pixels of rejected basins to the nearest kept basin.
    lab = np.zeros(comp.shape, np.int32)
    for j, k in enumerate(good, 1):
        lab[ws == k] = j
    rest = comp & (lab == 0)
    if rest.any():
        d_min = np.full(comp.shape, np.inf, np.float32)
        owner = np.zeros(comp.shape, np.int32)
        for j in range(1, len(good) + 1):
            d = cv2.distanceTransform((lab != j).astype(np.uint8), cv2.DIST_L2, 3)
            better = d < d_min
            d_min[better] = d[better]
            owner[better] = j
        lab[rest] = owner[rest]
    return [lab == j for j in range(1, len(good) + 1)]


# ---------------------------------------------------------------------------- detection


def find_cells_in_smear(rgb: np.ndarray) -> list[CellRegion]:
    """White cells (kind WBC) and platelets / platelet clumps (kind PLATELET) in a smear field.

    ``rgb`` is an HxWx3 uint8 RGB image.  Boxes are in source-image pixels; each mask is
    a bool array of the box's shape.  Red cells are not reported.
    """
    return _detect(_as_rgb_uint8(rgb))[1]


def find_cells_in_smear_measured(rgb: np.ndarray) -> tuple[list[CellRegion], float | None]:
    """``find_cells_in_smear`` and the red-cell radius it measured (None: no red cell found)."""
    _, cells, measured = _detect(_as_rgb_uint8(rgb))
    return cells, measured


def source_rbc_radius(rgb: np.ndarray, measured: float | None) -> float:
    """The red-cell radius to size everything by: as measured, else guessed from the frame."""
    H, W = rgb.shape[:2]
    r_src = measured if measured is not None else 0.08 * min(H, W)
    return float(np.clip(r_src, 0.01 * min(H, W), 0.3 * min(H, W)))


def _detect(rgb: np.ndarray) -> tuple[float, list[CellRegion], float | None]:
    """(red-cell radius in source pixels, cells found, the radius as measured or None when
    no red cell was found) for an RGB uint8 image."""
    H, W = rgb.shape[:2]
    measured = measure_rbc_radius(rgb)
    r_src = source_rbc_radius(rgb, measured)
    # Shrink fields with big red cells to R = 20 px; leave R in 12..20 px as it is (no
    # point upsampling); upsample only small ones, to R = 12 px at most 2x.
    if r_src > _WORK_RBC_RADIUS:
        s = _WORK_RBC_RADIUS / r_src
    elif r_src >= _MIN_WORK_RBC_RADIUS:
        s = 1.0
    else:
        s = min(2.0, _MIN_WORK_RBC_RADIUS / r_src)
    ws, hs = max(8, round(W * s)), max(8, round(H * s))
    img = cv2.resize(rgb, (ws, hs), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    sx, sy = W / ws, H / hs
    R = r_src * (ws / W)  # red-cell radius at the working scale
    rbc_area = np.pi * R * R

    f = img.astype(np.float32)
    background = ~_foreground(img)
    stain = cv2.GaussianBlur(_nucleus_channel(f, background), (0, 0), 0.06 * R)  # nuclei, platelets
    body = cv2.GaussianBlur(f[:, :, 2] - f[:, :, 1], (0, 0), 0.15 * R)  # + cytoplasm, granules

    # Nuclei (and platelets).
    t, bulk, spread = _nucleus_threshold(stain, background)
    nuc = stain > t
    nuc = cv2.morphologyEx(nuc.astype(np.uint8), cv2.MORPH_OPEN, _disk(0.06 * R)).astype(bool)
    nuc = _fill_holes(nuc, 0.3 * rbc_area)
    n, lab, st, _ = cv2.connectedComponentsWithStats(nuc.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = st[1:, 4] >= 0.01 * rbc_area
    nuc = keep[lab]

    # Cell bodies: nucleus + cytoplasm (+ eosinophil granules), everything bluer than green
    # well above the background level; red cells and background are not.
    bg_body = float(np.median(body[background])) if background.sum() > 100 else float(np.median(body))
    nuc_body = float(np.median(body[nuc])) if nuc.any() else bg_body + 8.0 * spread
    bodies: np.ndarray = (body > bg_body + 0.2 * max(nuc_body - bg_body, 4.0 * spread)).astype(np.uint8)
    bodies = cv2.morphologyEx(bodies, cv2.MORPH_OPEN, _disk(0.25 * R))
    cells = _fill_holes(bodies, 3.0 * rbc_area) | nuc

    wbc_min = 0.3 * rbc_area
    regions: list[tuple[np.ndarray, str, int, int]] = []  # (mask in window, kind, ox, oy)
    nb, blab, bst, _ = cv2.connectedComponentsWithStats(cells.astype(np.uint8), connectivity=8)
    for g in range(1, nb):
        gx, gy, gw, gh, _ = bst[g]
        win = (slice(gy, gy + gh), slice(gx, gx + gw))
        comp = blab[win] == g
        cn = comp & nuc[win]
        area = float(cn.sum())
        if area < wbc_min:
            continue
        vals = stain[win][cn]
        strength = (float(np.median(vals)) - bulk) / spread
        if strength <= 3.5:
            continue
        at_border = (gy == 0, gy + gh == hs, gx == 0, gx + gw == ws)
        for part in _split_cells(comp, cn, R, 0.4 * rbc_area, at_border):
            regions.append((part, WBC, gx, gy))

    # Platelets: stained objects outside white cells, grouped when close.  They are often
    # paler than nuclei: a lower threshold, part of the way from the background up.
    t_pl = bulk + max(4.0 * spread, _PLATELET_LEVEL * (t - bulk))
    pl = stain > t_pl
    pl = cv2.morphologyEx(pl.astype(np.uint8), cv2.MORPH_OPEN, _disk(0.06 * R)).astype(bool)
    wbc_cells = np.zeros_like(nuc)
    for m, _, ox, oy in regions:
        wbc_cells[oy : oy + m.shape[0], ox : ox + m.shape[1]] |= m
    rest = (pl | nuc) & ~cv2.dilate(wbc_cells.astype(np.uint8), _disk(0.1 * R)).astype(bool)
    grouped = cv2.morphologyEx(rest.astype(np.uint8), cv2.MORPH_CLOSE, _disk(0.15 * R))
    n, lab, st, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
    for k in range(1, n):
        gx, gy, gw, gh, a = st[k]
        m = lab[gy : gy + gh, gx : gx + gw] == k
        # Sized on the part above the nucleus threshold, like white cells: a pale halo
        # must not turn a platelet into a non-platelet.
        if a < 0.02 * rbc_area or (m & nuc[gy : gy + gh, gx : gx + gw]).sum() >= wbc_min:
            continue
        regions.append((m, PLATELET, gx, gy))

    out: list[CellRegion] = []
    for m, kind, ox, oy in regions:
        if m.any():
            pad = 0.05 * R if kind == WBC else 0.1 * R
            out.append(to_region(m, ox, oy, pad, sx, sy, W, H, kind))
    return r_src, out, measured


def to_region(m: np.ndarray, ox: int, oy: int, pad: float, sx: float, sy: float, W: int, H: int, kind: str) -> CellRegion:
    """Map a working-scale object mask (window at ``ox, oy``) to a source-pixel CellRegion.

    The cell mask is the object's convex hull grown by ``pad`` working pixels; the box is
    that mask's extent, clipped to the image.
    """
    p = int(np.ceil(pad)) + 1
    canvas = np.zeros((m.shape[0] + 2 * p, m.shape[1] + 2 * p), np.uint8)
    ys, xs = np.nonzero(m)
    pts = np.column_stack([xs + p, ys + p]).astype(np.int32)
    cv2.fillConvexPoly(canvas, cv2.convexHull(pts), 1)
    canvas[ys + p, xs + p] = 1
    if pad >= 0.5:
        canvas = cv2.dilate(canvas, _disk(pad))
    ox, oy = ox - p, oy - p
    cys, cxs = np.nonzero(canvas)
    # Working pixel centre (x + 0.5) * s covers source pixels [x * s, (x + 1) * s).
    X0 = int(np.clip(np.floor((cxs.min() + ox) * sx), 0, W - 1))
    Y0 = int(np.clip(np.floor((cys.min() + oy) * sy), 0, H - 1))
    X1 = int(np.clip(np.ceil((cxs.max() + ox + 1) * sx), X0 + 1, W))
    Y1 = int(np.clip(np.ceil((cys.max() + oy + 1) * sy), Y0 + 1, H))
    # Source pixel (X, Y) samples working point ((X + 0.5) / sx - 0.5, ...).
    M = np.array(
        [[1.0 / sx, 0.0, (X0 + 0.5) / sx - 0.5 - ox], [0.0, 1.0 / sy, (Y0 + 0.5) / sy - 0.5 - oy]],
        np.float64,
    )
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    mask = cv2.warpAffine(canvas, M, (X1 - X0, Y1 - Y0), flags=flags, borderValue=0).astype(bool)
    return CellRegion(X0, Y0, X1 - X0, Y1 - Y0, mask, kind)
