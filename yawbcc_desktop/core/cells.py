"""What segmentation finds: a cell's box and mask inside its source image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Kinds of object the segmentation reports.  Erythroblasts are nucleated, so they are
# found as WBC; the classifier tells them apart.
WBC = "WBC"
PLATELET = "PLATELET"


@dataclass
class CellRegion:
    """One cell found in an image.

    ``x, y, width, height`` is the bounding box in source-image pixels; ``mask`` is a bool
    array of shape ``(height, width)`` covering that box (True inside the cell).
    """

    x: int
    y: int
    width: int
    height: int
    mask: np.ndarray
    kind: str = WBC

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height

    def box_holds(self, x: float, y: float) -> bool:
        """Whether the point (source pixels) lies in the cell's box (how a found cell is
        matched to a known position: an image centre, a located nucleus)."""
        return self.x <= x <= self.x + self.width and self.y <= y <= self.y + self.height

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.width / 2.0, self.y + self.height / 2.0

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The mask placed in a zero image of ``shape`` (height, width)."""
        out = np.zeros(shape[:2], dtype=bool)
        out[self.y : self.y + self.height, self.x : self.x + self.width] = self.mask
        return out
