"""Run-length encoding of masks as COCO stores them, with numpy alone (no pycocotools at run time).

COCO's RLE reads a mask column by column (Fortran order) and counts alternating runs,
starting with background (a first run of 0 when the mask starts with the cell).  The
compressed form writes those counts as text: each count, less the count two places
before it from the third on, in 5-bit groups with a continuation bit, offset by 48 into
printable ASCII (``maskApi.c``'s ``rleToString``, which ``pycocotools`` decodes).
"""

from __future__ import annotations

import numpy as np


def run_lengths(mask: np.ndarray) -> list[int]:
    """Alternating background / mask run lengths of ``mask`` read column by column."""
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def compress_counts(counts: list[int]) -> str:
    """COCO's compressed text of run lengths (``rleToString``)."""
    out = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: a negative difference ends at -1
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def decompress_counts(text: str) -> list[int]:
    """The run lengths of COCO's compressed text (``rleFrString``)."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> dict:
    """A COCO segmentation of ``mask`` (height x width): ``{"size": [h, w], "counts": text}``."""
    h, w = np.shape(mask)[:2]
    return {"size": [int(h), int(w)], "counts": compress_counts(run_lengths(mask))}


def decode(rle: dict) -> np.ndarray:
    """The bool mask of a COCO RLE segmentation (compressed text or a list of counts)."""
    h, w = rle["size"]
    counts = rle["counts"]
    counts = decompress_counts(counts) if isinstance(counts, str) else list(counts)
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    if flat.size != h * w:
        raise ValueError(f"RLE counts cover {flat.size} pixels, the size says {h} x {w}")
    return flat.reshape((h, w), order="F")


def area(rle: dict) -> int:
    """Mask pixels of an RLE segmentation, without decoding it."""
    counts = rle["counts"]
    counts = decompress_counts(counts) if isinstance(counts, str) else counts
    return int(sum(counts[1::2]))
