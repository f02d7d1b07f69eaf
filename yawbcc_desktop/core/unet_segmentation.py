"""The report's second segmentation method (§3.3): a U-Net, here trained across labs.

The network sees the image at one physical scale — resized so that the red-cell radius
(``smear.measure_rbc_radius``, the pixel-size estimate the app makes anyway) is
``work_rbc_radius`` pixels — and answers per pixel "white cell" and "platelet" (two
sigmoid channels).  Connected parts of each map are the cells; their boxes and masks go
back to source pixels exactly as the classic method's do (``smear.to_region``).

A segmenter bundle is a folder with ``unet.keras`` and ``segmenter.json`` (its card: input
scale, thresholds, how it was trained and what it scored), in ``resources/models`` beside
the classifiers (which it does not pretend to be: it has no ``model.json``).  TensorFlow
is imported only when a bundle is loaded.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .cells import PLATELET, WBC, CellRegion
from .smear import source_rbc_radius, to_region

SEGMENTER_FILE = "segmenter.json"
WEIGHTS_FILE = "unet.keras"
DEFAULT_SEGMENTER = "unet-multilab"
# The network's input side must divide by 2 ** (levels - 1); images are padded up to it.
_PAD_TO = 16


class SegmenterError(Exception):
    """A segmenter bundle is missing or unreadable."""


@dataclass
class SegmenterCard:
    """What the app must know to run a U-Net bundle, and what it scored."""

    name: str
    work_rbc_radius: float = 16.0  # red-cell radius in pixels at the network's input
    colour: str = "xyz"  # input colour space (inside the network; the app always feeds RGB)
    wbc_threshold: float = 0.5
    platelet_threshold: float = 0.5
    wbc_min_area: float = 0.5  # smallest white cell, in red-cell areas at the working scale
    platelet_min_area: float = 0.02
    extra: dict[str, Any] = field(default_factory=dict)  # training recipe, data, figures

    @classmethod
    def read(cls, folder: Path) -> SegmenterCard:
        try:
            data = json.loads((folder / SEGMENTER_FILE).read_text(encoding="utf-8"))
            extra = data.pop("extra", {})
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__}, extra=extra)
        except (OSError, ValueError, TypeError, AttributeError) as exc:  # unreadable, not JSON, no name
            raise SegmenterError(f"{folder}: cannot read {SEGMENTER_FILE} ({exc})") from exc

    def write(self, folder: Path) -> None:
        from .atomic import atomic_write

        with atomic_write(folder / SEGMENTER_FILE) as fh:
            json.dump(asdict(self), fh, indent=2)


def working_image(rgb: np.ndarray, radius: float | None, work_rbc_radius: float) -> tuple[np.ndarray, float]:
    """``rgb`` resized so that its red-cell radius (source pixels; None: no red cell found,
    guessed from the frame as the classic method does) is ``work_rbc_radius``, and the factor."""
    scale = work_rbc_radius / source_rbc_radius(rgb, radius)
    h, w = rgb.shape[:2]
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR), scale


def padded(img: np.ndarray, multiple: int = _PAD_TO) -> np.ndarray:
    """``img`` grown at the bottom and right by edge reflection to a multiple of ``multiple``."""
    h, w = img.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    return cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REFLECT_101) if ph or pw else img


def regions_from_maps(probs: np.ndarray, card: SegmenterCard, shape: tuple[int, int]) -> list[CellRegion]:
    """White cells and platelets from the per-pixel maps (working scale), in source pixels."""
    H, W = shape[:2]
    hs, ws = probs.shape[:2]
    rbc_area = np.pi * card.work_rbc_radius**2
    wbc = (probs[..., 0] > card.wbc_threshold).astype(np.uint8)
    # A platelet inside or against a white cell is the white cell's granules.
    platelet = (probs[..., 1] > card.platelet_threshold) & ~cv2.dilate(wbc, np.ones((3, 3), np.uint8)).astype(bool)
    out: list[CellRegion] = []
    for kind, found, min_area in ((WBC, wbc, card.wbc_min_area), (PLATELET, platelet, card.platelet_min_area)):
        n, lab, st, _ = cv2.connectedComponentsWithStats(found.astype(np.uint8), connectivity=8)
        for k in range(1, n):
            x, y, w, h, a = st[k]
            if a >= min_area * rbc_area:
                out.append(to_region(lab[y : y + h, x : x + w] == k, x, y, 0.0, W / ws, H / hs, W, H, kind))
    return out


def central_region(regions: list[CellRegion], shape: tuple[int, int]) -> CellRegion | None:
    """The region a single-cell crop is about: the one holding the image centre, else the
    nearest to it; None when there is none."""
    if not regions:
        return None
    cy, cx = shape[0] / 2.0, shape[1] / 2.0

    def distance(r: CellRegion) -> float:
        iy, ix = int(cy) - r.y, int(cx) - r.x
        if 0 <= iy < r.height and 0 <= ix < r.width and r.mask[iy, ix]:
            return -1.0
        ys, xs = np.nonzero(r.mask)
        return float(np.min((xs + r.x - cx) ** 2 + (ys + r.y - cy) ** 2))

    return min(regions, key=distance)


class UnetSegmenter:
    """One loaded U-Net bundle.  Thread-safe: calls into the network take a lock."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.card = SegmenterCard.read(self.folder)
        weights = self.folder / WEIGHTS_FILE
        if not weights.is_file():
            raise SegmenterError(f"{self.folder}: no {WEIGHTS_FILE}")
        import keras

        try:
            self.model = keras.saving.load_model(weights, compile=False)
        except Exception as exc:  # a truncated or foreign file: say which bundle
            raise SegmenterError(f"{weights}: not a readable U-Net ({type(exc).__name__}: {exc})") from exc
        import tensorflow as tf

        # One graph for every image size: an eager call pays ~30 ms of per-layer overhead.
        self._predict = tf.function(
            lambda x: self.model(x, training=False), input_signature=[tf.TensorSpec((1, None, None, 3), tf.float32)]
        )
        self._lock = threading.Lock()

    def maps(self, rgb: np.ndarray, radius: float | None) -> np.ndarray:
        """Per-pixel (white cell, platelet) probabilities of ``rgb`` at the working scale."""
        return self.maps_of_working_image(working_image(rgb, radius, self.card.work_rbc_radius)[0])

    def maps_of_working_image(self, img: np.ndarray) -> np.ndarray:
        """The maps of an image already at the working scale (``working_image``)."""
        x = padded(img)[None].astype(np.float32)
        with self._lock:
            probs: np.ndarray = self._predict(x).numpy()[0]
        return probs[: img.shape[0], : img.shape[1]]

    def find_cells(self, rgb: np.ndarray, radius: float | None) -> list[CellRegion]:
        """Every white cell and platelet of ``rgb`` (source pixels); ``radius``: its red-cell
        radius in source pixels, None when it has no red cell to measure."""
        return regions_from_maps(self.maps(rgb, radius), self.card, rgb.shape)


_loaded: dict[str, UnetSegmenter] = {}  # by the name or folder asked for
_loading = threading.Lock()


def segmenter_folder(name: str | os.PathLike[str] | None = None) -> Path:
    """A segmenter bundle folder by name on the model search path, or a folder path."""
    from .classifier import model_search_path

    candidate = Path(name) if name else None
    if candidate is not None and candidate.is_dir():
        return candidate
    wanted = str(name or DEFAULT_SEGMENTER)
    for base in model_search_path():
        if (base / wanted / SEGMENTER_FILE).is_file():
            return base / wanted
    raise SegmenterError(f"no U-Net segmenter {wanted!r} on the model search path")


def load_segmenter(name: str | os.PathLike[str] | None = None) -> UnetSegmenter:
    """The segmenter bundle, loaded once per process (the analysis child keeps it); asked
    for every image, so a name already loaded is not looked up on disk again."""
    key = str(name or DEFAULT_SEGMENTER)
    with _loading:
        if key not in _loaded:
            _loaded[key] = UnetSegmenter(segmenter_folder(name))
        return _loaded[key]
