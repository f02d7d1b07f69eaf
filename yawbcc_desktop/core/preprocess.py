"""Preprocessing of the report's chapter 3: size standardisation, colour balance, cell crops.

The training module and the application call these same functions, so a model sees at
run time exactly what it saw in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .cells import CellRegion

# The CellaVision export size the report standardises on (width x height).
PBC_SIZE = (360, 363)


def central_pad_and_crop(image: np.ndarray, size: tuple[int, int] = PBC_SIZE) -> np.ndarray:
    """Bring ``image`` to ``size`` = (width, height) without touching its centre.

    Where the image is smaller than the target it is padded by replicating edge pixels;
    where it is larger it is cropped.  An odd difference puts the extra pixel at the
    bottom/right, so 362x360 -> 360x363 crops 1 px left and right and pads 1 px on top,
    2 px at the bottom, as in the report.
    """
    width, height = size
    out = image
    h, w = out.shape[:2]
    # Pass 1: pad the dimensions that are too small.
    pad_h, pad_w = max(height - h, 0), max(width - w, 0)
    if pad_h or pad_w:
        pads = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)]
        pads += [(0, 0)] * (out.ndim - 2)
        out = np.pad(out, pads, mode="edge")
    # Pass 2: crop the dimensions that are too large.
    h, w = out.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return out[top : top + height, left : left + width]


def colour_balance(image: np.ndarray) -> np.ndarray:
    """Grey-world colour balance (report formula 3.1).

    Each channel is multiplied by mean(grey image) / mean(channel), which removes the
    colour cast that different JPEG encoders left on the data set.  The gains are applied
    as one lookup table per channel (uint8 in, uint8 out): a tenth of the float arithmetic's
    cost per image, the same values bar rounding of the means (one grey level, rare pixels).
    """
    grey_mean = np.float32(cv2.mean(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))[0])
    channel_means = np.asarray(cv2.mean(image)[:3], np.float32)
    gains = grey_mean / np.maximum(channel_means, 1e-6)
    lut = np.clip(np.arange(256, dtype=np.float32)[:, None] * gains + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(image), lut.reshape(256, 1, 3))


def resize(image: np.ndarray, side: int) -> np.ndarray:
    """Square resize to ``side`` pixels with area interpolation (sharp when shrinking)."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if side < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (side, side), interpolation=interp)


def cell_crop(image: np.ndarray, region: CellRegion, context: float) -> np.ndarray:
    """A square crop centred on ``region``, of side ``context`` x the cell's larger side.

    Edge pixels are replicated where the square leaves the image, as central_pad_and_crop
    does for single-cell images.  ``context`` should match the framing the model was
    trained on (a CellaVision crop shows the cell at about half the field width).
    """
    cx, cy = region.centre
    side = int(round(max(region.width, region.height) * context))
    side = max(side, 8)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    h, w = image.shape[:2]
    pad = [(max(0, -y0), max(0, y0 + side - h)), (max(0, -x0), max(0, x0 + side - w)), (0, 0)]
    padded = np.pad(image, pad, mode="edge")
    y0 += pad[0][0]
    x0 += pad[1][0]
    return padded[y0 : y0 + side, x0 : x0 + side]


def prepare_cell_image(image: np.ndarray, side: int, balance: bool, field: int = PBC_SIZE[0]) -> np.ndarray:
    """A single-cell image as the models take it: the central ``field`` x ``field`` square
    (report's central_pad_and_crop), colour-balanced if asked, resized to ``side``.

    A field smaller than 360 drops background around the centred cell, so more of the
    model's pixels fall on the cell.
    """
    square = central_pad_and_crop(image, (field, field))
    if balance:
        square = colour_balance(square)
    return resize(square, side)


def prepare_cell_mask(mask: np.ndarray, side: int, field: int = PBC_SIZE[0]) -> np.ndarray:
    """A whole-image bool mask framed exactly as ``prepare_cell_image`` frames its image."""
    square = central_pad_and_crop(mask.astype(np.uint8), (field, field))
    return cv2.resize(square, (side, side), interpolation=cv2.INTER_NEAREST).astype(bool)


def uint8_percentiles(values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, qs, axis=0).T`` (linear interpolation) of (N, C) uint8 values,
    read off each channel's histogram: the same numbers, four times faster than sorting
    (the acquisition signature and the red-cell contrast stretch take them per image)."""
    n = values.shape[0]
    pos = np.asarray(qs, np.float64) / 100.0 * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi, frac = np.minimum(lo + 1, n - 1), pos - lo
    out = np.empty((values.shape[1], len(pos)))
    for c in range(values.shape[1]):
        # The k-th smallest value is the first level whose cumulative count exceeds k.
        cum = np.cumsum(np.bincount(values[:, c], minlength=256))
        a, b = np.searchsorted(cum, lo, side="right"), np.searchsorted(cum, hi, side="right")
        out[c] = a + (b - a) * frac
    return out
