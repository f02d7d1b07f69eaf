"""Scoring found cells against Pascal VOC boxes (the BCCD annotations): read the boxes,
measure overlap, match one to one. Training, the benchmarks and the tests score with it;
the application never does, so it lives here and not in the core."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from yawbcc_desktop.core.cells import CellRegion

# (xmin, ymin, xmax, ymax) in pixels.
Box = tuple[float, float, float, float]
# (name, xmin, ymin, xmax, ymax), as an annotation file names and places it.
VocBox = tuple[str, int, int, int, int]
# What the scoring takes: a found region, a Box, or a VocBox.
AnyBox = CellRegion | Sequence[Any]


def box_iou(a: Box, b: Box) -> float:
    """IoU of two (xmin, ymin, xmax, ymax) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def as_xyxy(box: AnyBox) -> Box:
    """The (xmin, ymin, xmax, ymax) of a region, a box, or an annotation's named box."""
    if isinstance(box, CellRegion):
        return float(box.x), float(box.y), float(box.x + box.width), float(box.y + box.height)
    b = tuple(box)
    if len(b) == 5:  # (name, xmin, ymin, xmax, ymax) as read_voc_boxes gives
        b = b[1:]
    x0, y0, x1, y1 = (float(v) for v in b[:4])
    return x0, y0, x1, y1


def match_boxes(found: Iterable[AnyBox], truth: Iterable[AnyBox], iou: float = 0.5) -> tuple[int, int, int]:
    """Greedy one-to-one matching of boxes; returns (true pos, false pos, false neg).

    ``found`` and ``truth`` hold CellRegions, (xmin, ymin, xmax, ymax) tuples or
    (name, xmin, ymin, xmax, ymax) tuples.  Pairs are taken in decreasing IoU order and
    count when IoU >= ``iou``.
    """
    f = [as_xyxy(b) for b in found]
    t = [as_xyxy(b) for b in truth]
    pairs = []
    for i, fb in enumerate(f):
        for j, tb in enumerate(t):
            v = box_iou(fb, tb)
            if v >= iou:
                pairs.append((v, i, j))
    pairs.sort(key=lambda p: -p[0])
    used_f: set[int] = set()
    used_t: set[int] = set()
    for _, i, j in pairs:
        if i in used_f or j in used_t:
            continue
        used_f.add(i)
        used_t.add(j)
    tp = len(used_f)
    return tp, len(f) - tp, len(t) - tp


def read_voc_boxes(xml_path: str | Path) -> list[VocBox]:
    """Boxes of a Pascal VOC annotation file as (name, xmin, ymin, xmax, ymax)."""
    root = ET.parse(str(xml_path)).getroot()
    out = []
    for obj in root.iter("object"):
        name_el = obj.find("name")
        bb = obj.find("bndbox")
        if name_el is None or bb is None or name_el.text is None:
            continue
        vals = []
        for k in ("xmin", "ymin", "xmax", "ymax"):
            el = bb.find(k)
            vals.append(int(round(float(el.text))) if el is not None and el.text else 0)
        out.append((name_el.text.strip(), vals[0], vals[1], vals[2], vals[3]))
    return out
