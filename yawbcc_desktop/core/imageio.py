"""Robust reading of microscope images into RGB uint8 arrays.

Every failure becomes one ``ImageReadError`` that names the file and says why, so a batch
can report it in one line and carry on with the next file.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})

# 100 megapixels: a whole-slide tile is far smaller; anything bigger is a mistake or a
# decompression bomb, and decoding it would exhaust memory.
MAX_PIXELS = 100_000_000

# Pillow reports a damaged header (a TIFF's tag directory, a JPEG's EXIF) with warnings.warn,
# which would print a raw ``UserWarning`` line; read_rgb catches them while Pillow parses a
# header.  ``catch_warnings`` is process-wide, and the pipeline reads images on several
# threads, hence the lock (held for header parsing only, never while pixels are decoded).
_WARNINGS_LOCK = threading.Lock()


class ImageReadError(Exception):
    """A file could not be read as an image; ``str()`` is one line naming file and reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array.

    JPEG, PNG, TIFF (8/16-bit), BMP; greyscale, palette and RGBA are converted to RGB
    (alpha composited on white), EXIF orientation is applied, 16-bit data is scaled to 8 bit.
    Raises ``ImageReadError`` for anything that is not a readable, decodable image.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot access file ({exc.strerror})") from None
    if size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    damage: list[str] = []  # what Pillow warned about while parsing headers
    try:
        with open(path, "rb") as fh:
            with _pillow_warnings_into(damage, lambda: Image.open(fh)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise ImageReadError(path, f"image claims {width}x{height} pixels, over the {MAX_PIXELS:,}-pixel limit")
                img.load()
                # A readable image whose metadata Pillow warned about is used as it is.
                return _to_rgb(_pillow_warnings_into(damage, lambda: ImageOps.exif_transpose(img)))
    except ImageReadError:
        raise
    except PermissionError:
        raise ImageReadError(path, "permission denied: the file cannot be read") from None
    except UnidentifiedImageError:
        if damage:
            raise ImageReadError(path, f"corrupt or truncated image data ({'; '.join(damage)})") from None
        raise ImageReadError(path, "not an image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated or corrupt data as OSError/SyntaxError.
        raise ImageReadError(path, f"corrupt or truncated image data ({exc})") from None


T = TypeVar("T")


def _pillow_warnings_into(damage: list[str], call: Callable[[], T]) -> T:
    """``call()``, with the warnings Pillow gives meanwhile appended to ``damage`` as one-line
    texts (each once) instead of printed; other code's warnings are passed on unchanged."""
    others = []
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            try:
                return call()
            finally:
                for record in records:
                    if f"{os.sep}PIL{os.sep}" in record.filename:
                        text = " ".join(str(record.message).split()).rstrip(".")
                        if text not in damage:
                            damage.append(text)
                    else:
                        others.append(record)
    finally:
        for record in others:
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if img.mode == "RGB" and img.getbands() == ("R", "G", "B"):
        arr = np.asarray(img)
        if arr.dtype == np.uint8:
            return arr
    if img.mode.startswith("RGB") and np.asarray(img).dtype == np.uint16:
        return (np.asarray(img) >> 8).astype(np.uint8)[:, :, :3]
    return np.asarray(img.convert("RGB"))


def is_image_name(path: str | os.PathLike[str]) -> bool:
    """True if the file name has one of the image suffixes the application opens."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def iter_image_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into candidate image paths.

    A file given explicitly is always yielded (so that a bad one is reported, not skipped);
    inside folders only names with an image suffix are taken, hidden folders skipped.
    A folder whose name looks like an image is walked like any folder.
    """
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if is_image_name(name):
                        yield Path(root) / name
        else:
            yield p
