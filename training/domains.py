"""The four staining domains as one table of labelled cells, and their model inputs at one
physical scale.

- ``pbc``: CellaVision single-cell crops (the duplicate-aware split of ``training split``);
  the cell is the image's centre.
- ``bccd``: smear fields with Pascal-VOC WBC boxes and ``labels.csv``; a field is used when
  its classes can be matched to its boxes (one box and one class, or every class the same).
- ``bionet``: Bio-Net fields holding one white cell of a known class and no box; the cell
  is found by its nucleus (``locate_nucleus``).
- ``lisc``: LISC's single-cell crops (about 250 source cells, each augmented about five
  times: ``lisc_cells`` groups the copies of one cell, ``training/source_cells.py``, and
  splits by source cell); the cell is the crop's centre, as the application frames a crop.
- platelets of BCCD and of Bio-Net's detection series, from their boxes (``platelet_cells``):
  without them the platelet class was PBC's alone, and other labs' platelets were read as
  white cells (mostly neutrophils).

Fields of BCCD and Bio-Net are split by field (train / valid / test, seeded by the file
name), so a held-out field is never trained on.  Every cell is cut by the core's
``scaled_cell_input`` at the image's own estimated µm per pixel — the framing the
application uses at run time.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from yawbcc_desktop.core.familiarity import acquisition_signature
from yawbcc_desktop.core.imageio import read_rgb
from yawbcc_desktop.core.scale import estimate_um_per_px, scaled_cell_input

from .voc import read_voc_boxes

DOMAINS = ("pbc", "bccd", "bionet", "lisc")
CELL_COLUMNS = ["path", "domain", "group", "cx", "cy", "split", "box_w", "box_h"]
# Share of a smear domain's fields held out for testing (never trained on) and for validation.
FIELD_TEST, FIELD_VALID = 0.25, 0.15


def field_split(name: str, seed: int = 42) -> str:
    u = int(hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if u < FIELD_TEST else "valid" if u < FIELD_TEST + FIELD_VALID else "train"


def pbc_cells(split_csv: str | Path) -> pd.DataFrame:
    from .splits import drop_conflicts

    split = drop_conflicts(pd.read_csv(split_csv))
    out = split[["path", "group", "split"]].copy()
    out["domain"], out["cx"], out["cy"], out["box_w"], out["box_h"] = "pbc", np.nan, np.nan, np.nan, np.nan
    return out[CELL_COLUMNS]


# An annotated "WBC" box narrower than this on its longer side holds no white cell: at
# BCCD's 0.075 µm per pixel 60 px is 4.5 µm, and white cells are 7-20 µm.  BCCD's boxes run
# from 96 px up, but for one platelet boxed as a WBC (BloodImage_00113, 31 px).
MIN_WBC_BOX_PX = 60


def wbc_box_too_small(box: tuple) -> bool:
    """Whether a Pascal-VOC box ``(name, x0, y0, x1, y1)`` is too small for a white cell."""
    _name, x0, y0, x1, y1 = box
    return max(x1 - x0, y1 - y0) < MIN_WBC_BOX_PX


def bccd_cells(root: str | Path) -> pd.DataFrame:
    """WBC boxes of the BCCD fields whose labels can be matched to their boxes (a box too
    small for a white cell left out: an annotation slip, ``MIN_WBC_BOX_PX``)."""
    root = Path(root)
    labels = pd.read_csv(root / "labels.csv", dtype=str).fillna("")
    rows = []
    for image, classes in zip(labels["image"], labels["wbc_classes"]):
        names = [c.strip() for c in classes.split(";") if c.strip()]
        xml = root / "Annotations" / f"{image}.xml"
        if not names or not xml.exists() or len(set(names)) != 1:
            continue
        boxes = [b for b in read_voc_boxes(xml) if b[0] == "WBC"]
        if not boxes or (len(names) > 1 and len(boxes) != len(names)):
            continue
        group = names[0]
        for _name, x0, y0, x1, y1 in [b for b in boxes if not wbc_box_too_small(b)]:
            path = root / "JPEGImages" / f"{image}.jpg"
            rows.append((str(path), "bccd", group, (x0 + x1) / 2, (y0 + y1) / 2, field_split(image), x1 - x0, y1 - y0))
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def bionet_cells(root: str | Path) -> pd.DataFrame:
    """One white cell per labelled Bio-Net field; the centre is filled in by ``prepare_domain_cache``."""
    rows = []
    for group_dir in sorted(Path(root, "cells").iterdir()):
        if not group_dir.is_dir():
            continue
        for path in sorted(group_dir.glob("*.jpg")):
            split = field_split(path.stem + group_dir.name)
            rows.append((str(path), "bionet", group_dir.name.upper(), np.nan, np.nan, split, np.nan, np.nan))
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def lisc_cells(root: str | Path) -> pd.DataFrame:
    """LISC's crops, split by source cell: the copies of one cell (``group_copies``) share the
    split of the cell's first file."""
    from .source_cells import group_copies

    rows = []
    for group_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        paths = sorted(group_dir.glob("*.jpg"))
        cells = group_copies(paths)
        first = {c: paths[int(np.flatnonzero(cells == c)[0])].stem for c in np.unique(cells)}
        for path, cell in zip(paths, cells):
            split = field_split(f"lisc/{group_dir.name}/{first[cell]}")
            rows.append((str(path), "lisc", group_dir.name.upper(), np.nan, np.nan, split, np.nan, np.nan))
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


# Platelets per smear lab, at most one per field: about PBC's share of platelets among a
# lab's cells, so that they do not crowd its few white cells out of its batches.
PLATELETS_PER_LAB = 60
PLATELET_NAMES = ("Platelets", "Platlets")  # Bio-Net misspells it in a few files


def platelet_cells(data_root: str | Path) -> pd.DataFrame:
    """One platelet box per field of BCCD and of Bio-Net's detection series, for
    ``PLATELETS_PER_LAB`` fields of each lab chosen by a hash of the field's name (stable)."""
    data_root = Path(data_root)
    rows = []
    for domain, folder in (("bccd", data_root / "bccd"), ("bionet", data_root / "deepbionet" / "fields")):
        # Bio-Net's detection fields share numbers with its labelled ones: their split key says which.
        prefix = "" if domain == "bccd" else "fields/"
        xmls = sorted(folder.glob("Annotations/*.xml"), key=lambda x: hashlib.sha1(f"platelet:{x.stem}".encode()).hexdigest())
        taken = 0
        for xml in xmls:
            boxes = [b for b in read_voc_boxes(xml) if b[0] in PLATELET_NAMES and b[3] > b[1] and b[4] > b[2]]
            path = folder / "JPEGImages" / f"{xml.stem}.jpg"
            if not boxes or not path.exists():
                continue
            _n, x0, y0, x1, y1 = boxes[0]
            split = field_split(prefix + xml.stem)
            rows.append((str(path), domain, "PLATELET", (x0 + x1) / 2, (y0 + y1) / 2, split, x1 - x0, y1 - y0))
            taken += 1
            if taken == PLATELETS_PER_LAB:
                break
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def box_platelets(table: pd.DataFrame) -> np.ndarray:
    """Rows that ``platelet_cells`` added (platelets cut from a smear lab's boxes)."""
    return (table["group"].eq("PLATELET") & ~table["domain"].eq("pbc")).to_numpy()


# Bumped when locate_nucleus changes: the crop cache is keyed by it (Bio-Net's centres are
# found while the cache is made).
NUCLEUS_LOCATOR = "violet-2"


@dataclass(frozen=True)
class Nucleus:
    """The most strongly stained nucleus of a field, in source pixels: its centroid and box
    (a box of width 0 when nothing was stained: the centroid is then the field's centre)."""

    cx: float
    cy: float
    box: tuple[int, int, int, int]  # x, y, width, height


def find_nucleus(rgb: np.ndarray) -> Nucleus:
    """The field's most strongly stained nucleus; components touching the frame lose to any
    inside it.

    Violet is green absorbed and blue let through (OD_G - OD_B): high for nuclei and
    platelets in every lab's stain, low for red cells whether pink (PBC, BCCD, Bio-Net's
    yellow series) or blue (Bio-Net's cyan series).  Red absorbed (OD_R - OD_B), the first
    measure, is as high for the cyan series' blue red cells: it put 37 of Bio-Net's 361
    labelled cells on a red cell, where this one puts none (the centre falls inside a white
    cell the application's smear segmentation finds in 361 of 361 fields).
    """
    h, w = rgb.shape[:2]
    f = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), 2)
    od = -np.log((f + 1.0) / 256.0)
    stain = od[..., 1] - od[..., 2]
    top, mid = np.percentile(stain, 99.0), np.percentile(stain, 50)
    thr = mid + 0.5 * (top - mid)
    n, lab, stats, centres = cv2.connectedComponentsWithStats((stain > thr).astype(np.uint8))
    if n < 2:
        return Nucleus(w / 2, h / 2, (0, 0, 0, 0))
    best, best_score = 1, -np.inf
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        score = float(stain[lab == i].sum() - thr * area)
        if x == 0 or y == 0 or x + bw >= w or y + bh >= h:
            score -= 1e9
        if score > best_score:
            best, best_score = i, score
    bx, by, bw, bh = (int(v) for v in stats[best][:4])
    return Nucleus(float(centres[best][0]), float(centres[best][1]), (bx, by, bw, bh))


def locate_nucleus(rgb: np.ndarray) -> tuple[float, float]:
    """Centre of the field's most strongly stained nucleus (``find_nucleus``)."""
    nucleus = find_nucleus(rgb)
    return nucleus.cx, nucleus.cy


def all_cells(data_root: str | Path, split_csv: str | Path) -> pd.DataFrame:
    data_root = Path(data_root)
    return pd.concat(
        [
            pbc_cells(split_csv),
            bccd_cells(data_root / "bccd"),
            bionet_cells(data_root / "deepbionet"),
            lisc_cells(data_root / "lisc"),
            platelet_cells(data_root),
        ],
        ignore_index=True,
    )


def _prepare(args) -> tuple[np.ndarray, float, float, float]:
    path, cx, cy, side, um_target, balance = args
    rgb = read_rgb(path)
    if np.isnan(cx):
        if "deepbionet" in path:
            cx, cy = locate_nucleus(rgb)
        else:  # a single-cell crop is centred on its cell
            cx, cy = rgb.shape[1] / 2, rgb.shape[0] / 2
    um = estimate_um_per_px(rgb).um_per_px
    return scaled_cell_input(rgb, (cx, cy), um, side, um_target, balance), um, cx, cy


def prepare_domain_cache(
    cells: pd.DataFrame, side: int, um_per_px: float, balance: bool, cache_dir: str | Path, log=print
) -> tuple[np.ndarray, pd.DataFrame]:
    """uint8 inputs (N, side, side, 3) at ``um_per_px`` and the table with each image's
    estimated ``um_per_px`` and cell centre; cached on disk by content."""
    rows = "\n".join(f"{p}|{x}|{y}" for p, x, y in zip(cells.path, cells.cx, cells.cy))
    key_src = f"{side}|{um_per_px}|{balance}|{NUCLEUS_LOCATOR}|{rows}"
    key = hashlib.sha1(key_src.encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"domains_{side}_{key}.npz"
    if cache.exists():
        data = np.load(cache)
        table = cells.copy()
        table["um_per_px"], table["cx"], table["cy"] = data["um"], data["cx"], data["cy"]
        return data["images"], table
    cache.parent.mkdir(parents=True, exist_ok=True)
    images = np.zeros((len(cells), side, side, 3), np.uint8)
    um = np.zeros(len(cells))
    cx, cy = cells["cx"].to_numpy(float).copy(), cells["cy"].to_numpy(float).copy()
    jobs = [(p, x, y, side, um_per_px, balance) for p, x, y in zip(cells.path, cx, cy)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for i, (arr, u, x, y) in enumerate(pool.map(_prepare, jobs, chunksize=32)):
            images[i], um[i], cx[i], cy[i] = arr, u, x, y
            if (i + 1) % 2000 == 0:
                log(f"  prepared {i + 1}/{len(cells)} cells")
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, um=um, cx=cx, cy=cy)
    tmp.replace(cache)
    table = cells.copy()
    table["um_per_px"], table["cx"], table["cy"] = um, cx, cy
    return images, table


def _signature(args) -> np.ndarray:
    path, um = args
    return acquisition_signature(read_rgb(path), um)


def image_signatures(table: pd.DataFrame, cache_dir: str | Path) -> np.ndarray:
    """(N, d) acquisition signature of each row's image (``table`` from ``prepare_domain_cache``)."""
    key = hashlib.sha1("\n".join(f"{p}|{u:.5f}" for p, u in zip(table.path, table.um_per_px)).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"signatures_{key}.npy"
    if cache.exists():
        return np.load(cache)
    first = table.drop_duplicates("path")
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        sigs = dict(zip(first.path, pool.map(_signature, zip(first.path, first.um_per_px), chunksize=64)))
    out = np.stack([sigs[p] for p in table.path])
    np.save(cache, out)
    return out


def cells_as_rows(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells as rows of a ``yawbcc export --cells`` file: single-cell crops in cell mode,
    field cells in smear mode with their box (Bio-Net: a white cell's size around its nucleus)."""
    from yawbcc_desktop.core.scale import WBC_DIAMETER_UM

    rows = []
    for path, cx, cy, w, h, group in zip(cells.path, cells.cx, cells.cy, cells.box_w, cells.box_h, cells.group):
        if np.isnan(cx) and "deepbionet" not in path:
            rows.append((path, group, "cell", 0, 0, 0, 0))
            continue
        if np.isnan(cx) or np.isnan(w):
            rgb = read_rgb(path)
            if np.isnan(cx):
                cx, cy = locate_nucleus(rgb)
            w = h = WBC_DIAMETER_UM / estimate_um_per_px(rgb).um_per_px
        rows.append((path, group, "smear", int(round(cx - w / 2)), int(round(cy - h / 2)), int(round(w)), int(round(h))))
    return pd.DataFrame(rows, columns=["path", "label", "mode", "x", "y", "width", "height"])
