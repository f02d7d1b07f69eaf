"""Physical scale: how many micrometres one pixel of an image spans, and cells resampled
to one fixed scale before the model.

Labs image at different magnifications and cameras (PBC's CellaVision about 0.10 µm per
pixel, BCCD about 0.07, Bio-Net 0.09-0.12), so a cell framed by pixels looks bigger or
smaller to the model from one lab to the next.  Red cells are the ruler every smear carries:
their diameter is about 7.5 µm in any healthy lab's smear.  The training module and the
application both frame cells with ``scaled_cell_input``, so a model sees the same
micrometres per pixel at run time as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .cells import CellRegion
from .preprocess import cell_crop, colour_balance, resize

RBC_DIAMETER_UM = 7.5
# Fallback ruler when an image shows no red cells: a white cell's segmented outline is
# about this wide (median over 280 PBC nucleated cells, scaled by their red cells: 13.3 µm;
# class medians 10.1 erythroblast to 14.9 monocyte).
WBC_DIAMETER_UM = 13.0
# Last resort, a CellaVision DM96 crop (PBC), the scale most single-cell exports share.
DEFAULT_UM_PER_PX = 0.097
# Estimates outside this range are a failed measurement, not a microscope.
PLAUSIBLE_UM_PER_PX = (0.02, 1.0)
# Images measured on their red cells needed to set a lab's pixel size from its own images.
# More images of more patients give a steadier value: PBC's first 40 neutrophil crops gave
# 0.0938, 300 training images of every class 0.0966 µm per pixel.
MIN_IMAGES_FOR_LAB_SCALE = 20

# Sources of an estimate, in the words the session and the CSV show.
FROM_RED_CELLS, FROM_WHITE_CELL, FROM_DEFAULT = "red cells", "white cell", "default"
# The lab's own pixel size (calibrated, or the median of its images' red cells), set once.
FROM_LAB = "set by the lab"


@dataclass(frozen=True)
class ScaleEstimate:
    um_per_px: float
    source: str


def estimate_um_per_px(
    rgb: np.ndarray, regions: Sequence[CellRegion] = (), rbc_radius: float | None = -1.0, lab_um_per_px: float | None = None
) -> ScaleEstimate:
    """The image's pixel size: the lab's when it set one, else from the image's red cells, else
    from its white cells' size.

    ``rbc_radius``: the red-cell radius already measured by the segmentation (None when it
    found none); negative (the default) measures it here.  One image's red cells give its
    pixel size to about ±7 % (PBC, whose analyser has one); a lab's fixed value removes that
    spread, which the model otherwise reads as cells larger or smaller than they are.
    """
    from .smear import measure_rbc_radius

    if lab_um_per_px:
        return ScaleEstimate(check_um_per_px(lab_um_per_px), FROM_LAB)
    lo, hi = PLAUSIBLE_UM_PER_PX
    radius = measure_rbc_radius(rgb) if rbc_radius is not None and rbc_radius < 0 else rbc_radius
    if radius:
        um = RBC_DIAMETER_UM / (2.0 * radius)
        if lo <= um <= hi:
            return ScaleEstimate(um, FROM_RED_CELLS)
    diameters = [equivalent_diameter_px(r) for r in regions if r.mask is not None and r.mask.any()]
    if diameters:
        um = WBC_DIAMETER_UM / float(np.median(diameters))
        if lo <= um <= hi:
            return ScaleEstimate(um, FROM_WHITE_CELL)
    return ScaleEstimate(DEFAULT_UM_PER_PX, FROM_DEFAULT)


def check_um_per_px(value: float) -> float:
    """A pixel size a lab typed, or ValueError saying why it cannot be one."""
    lo, hi = PLAUSIBLE_UM_PER_PX
    value = float(value)
    if not lo <= value <= hi:
        raise ValueError(f"a pixel size of {value:g} µm is outside {lo:g}-{hi:g} µm: not a microscope image")
    return value


def red_cell_estimates(estimates: list[tuple[float, str]]) -> list[float]:
    """Of (µm per pixel, source) pairs, the values measured on red cells: those a lab's own
    pixel size may be taken from."""
    return [um for um, source in estimates if source == FROM_RED_CELLS and np.isfinite(um)]


def lab_pixel_size(estimates: list[tuple[float, str]]) -> float | None:
    """The median of the images' red-cell estimates ((µm per pixel, source) pairs), or None
    with fewer than :data:`MIN_IMAGES_FOR_LAB_SCALE`: a lab's value measured on its own images."""
    values = red_cell_estimates(estimates)
    return float(np.median(values)) if len(values) >= MIN_IMAGES_FOR_LAB_SCALE else None


def equivalent_diameter_px(region: CellRegion) -> float:
    """Diameter of the disc with the area of the cell's mask, in source pixels."""
    return float(np.sqrt(4.0 * np.count_nonzero(region.mask) / np.pi))


def cell_diameter_um(region: CellRegion, um_per_px: float) -> float:
    return equivalent_diameter_px(region) * um_per_px


def scaled_cell_input(
    rgb: np.ndarray, centre: tuple[float, float], um_per_px: float, side: int, target_um_per_px: float, balance: bool
) -> np.ndarray:
    """A ``side`` x ``side`` model input centred on ``centre``, at ``target_um_per_px``.

    The square spans ``side * target_um_per_px`` micrometres of the slide whatever the
    microscope; edges are replicated where it leaves the image.
    """
    span_px = max(8.0, side * target_um_per_px / um_per_px)
    # cell_crop frames a square of side context x the region's larger side; a 1-px region
    # at the centre makes that exactly span_px.
    point = CellRegion(int(round(centre[0] - 0.5)), int(round(centre[1] - 0.5)), 1, 1, np.ones((1, 1), bool))
    crop = cell_crop(rgb, point, span_px)
    if balance:
        crop = colour_balance(crop)
    return resize(crop, side)
