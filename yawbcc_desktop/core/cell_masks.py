"""Cell masks as files a lab can reuse: one image-sized PNG per cell (non-zero = the cell).

Written by ``yawbcc segment --masks DIR`` as ``<image stem>_<cell id>.png``.  Two images
with one stem (in different folders) would overwrite each other's masks, so the second
and later get their folder's name in front; the caller is told.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .pipeline import ImageResult


class UniqueStems:
    """File stems for images of several folders in one output folder (masks, data sets)."""

    def __init__(self) -> None:
        self._stems: dict[str, str] = {}  # file stem used -> source image path

    def stem_for(self, image_path: str) -> str:
        """``<image stem>``, or ``<folder>_<image stem>`` when another image took that stem
        (and, should that be taken too, a number after it)."""
        path = Path(image_path)
        stem, n = path.stem, 1
        while self._stems.get(stem, image_path) != image_path:
            stem = f"{path.parent.name}_{path.stem}" + (f"_{n}" if n > 1 else "")
            n += 1
        self._stems[stem] = image_path
        return stem


class MaskWriter(UniqueStems):
    """Writes the masks of analysed images into one folder, keeping names unique."""

    def __init__(self, folder: str | os.PathLike[str]):
        super().__init__()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written = 0

    def write_image(self, result: ImageResult) -> list[Path]:
        """One PNG per cell of ``result`` (0 outside the cell, 255 inside); the paths written."""
        if not result.cells:
            return []
        stem = self.stem_for(result.path)
        shape = (result.height, result.width)
        out = []
        for cell in result.cells:
            target = self.folder / f"{stem}_{cell.cell_id}.png"
            ok, data = cv2.imencode(".png", cell.region.full_mask(shape).astype(np.uint8) * 255)
            if not ok:
                raise OSError(f"{target}: the mask could not be encoded as PNG")
            target.write_bytes(data.tobytes())  # bytes, not cv2.imwrite: any path on Windows
            out.append(target)
        self.written += len(out)
        return out
