"""The U-Net's training targets (``training/unet.py``): what each source can vouch for, per
pixel of an image brought to one red-cell radius, with a weight map saying where a target is
to be believed (0 = no opinion).  Channels: white cell (0) and platelet (1).

Sources: Pascal-VOC detection fields (BCCD, Bio-Net), Bio-Net's labelled fields, PBC crops,
and COCO exports of review sessions (``yawbcc export --coco``), whose masks are the
session's segmentation and whose labels are the reviewers'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd

from yawbcc_desktop.core import rle
from yawbcc_desktop.core.classes import ARTEFACT
from yawbcc_desktop.core.imageio import read_rgb
from yawbcc_desktop.core.segmentation import SegmentationError, segment_single_cell
from yawbcc_desktop.core.smear import measure_rbc_radius
from yawbcc_desktop.core.unet_segmentation import working_image

from .domains import field_split, find_nucleus
from .voc import read_voc_boxes

if TYPE_CHECKING:
    from .unet import UnetConfig

WBC_NAMES = {"WBC", "W"}
PLATELET_NAMES = {"Platelets", "Platlets", "Platelet"}
DOMAINS = ("pbc", "bccd", "bionet", "bionet_cells", "coco")


@dataclass
class Sample:
    image: np.ndarray  # working scale, uint8 RGB
    target: np.ndarray  # (h, w, 2) uint8: white cell, platelet
    weight: np.ndarray  # (h, w, 2) float32
    domain: str
    split: str
    name: str
    centres: np.ndarray  # (k, 2) x, y of labelled objects: patches are drawn around them half the time


# ------------------------------------------------------------------------------ targets


def _ellipse(shape, box, scale) -> np.ndarray:
    x0, y0, x1, y1 = (v * scale for v in box)
    m = np.zeros(shape[:2], np.uint8)
    centre = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)))
    axes = (max(1, int(round((x1 - x0) / 2))), max(1, int(round((y1 - y0) / 2))))
    cv2.ellipse(m, centre, axes, 0, 0, 360, 1, -1)
    return m.astype(bool)


def _band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of the mask's outline (no opinion there)."""
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    m = mask.astype(np.uint8)
    return (cv2.dilate(m, k) > 0) & ~(cv2.erode(m, k) > 0)


def _finish(img, wbc, plt, w_wbc, w_plt, band: int, domain, split, name) -> Sample:
    w_wbc = w_wbc * ~_band(wbc, band)
    w_plt = w_plt * ~_band(plt, max(1, band // 2))
    w_plt = np.where(wbc, 1.0, w_plt)  # no platelet inside a white cell
    target = np.stack([wbc, plt], -1).astype(np.uint8)
    weight = np.stack([w_wbc, w_plt], -1).astype(np.float32)
    # One centre per labelled object: platelets, a hundredth of a white cell's area, are
    # drawn as often as white cells.
    centres = [cv2.connectedComponentsWithStats(m.astype(np.uint8))[3][1:] for m in (wbc, plt)]
    return Sample(img, target, weight, domain, split, name, np.concatenate(centres).reshape(-1, 2))


def _scaled(rgb: np.ndarray, cfg: UnetConfig) -> tuple[np.ndarray, float]:
    return working_image(rgb, measure_rbc_radius(rgb), cfg.work_rbc_radius)


def field_sample(image_path: Path, xml_path: Path, domain: str, cfg: UnetConfig) -> Sample:
    rgb = read_rgb(image_path)
    img, s = _scaled(rgb, cfg)
    wbc = np.zeros(img.shape[:2], bool)
    plt = np.zeros(img.shape[:2], bool)
    near_plt = np.zeros(img.shape[:2], bool)
    for name, *box in read_voc_boxes(xml_path):
        if name in WBC_NAMES:
            wbc |= _ellipse(img.shape, box, s)
        elif name in PLATELET_NAMES:
            plt |= _ellipse(img.shape, box, s)
    if plt.any():
        near_plt = cv2.dilate(plt.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    # BCCD leaves some platelets unlabelled: away from its boxes, a weak opinion only.
    w_plt = np.where(near_plt, 1.0, 1.0 / 3 if domain == "bccd" else 1.0)
    band = max(1, round(0.15 * cfg.work_rbc_radius))
    return _finish(img, wbc, plt, np.ones(img.shape[:2]), w_plt, band, domain, field_split(image_path.stem), image_path.stem)


def bionet_cell_sample(image_path: Path, cfg: UnetConfig) -> Sample:
    rgb = read_rgb(image_path)
    img, s = _scaled(rgb, cfg)
    R = cfg.work_rbc_radius
    # The nucleus' extent (the locator's own component), then a third of a red cell of cytoplasm.
    nucleus = find_nucleus(rgb)
    x, y, w, h = (v * s for v in nucleus.box)
    if w > 0:
        radius = float(np.clip(max(w, h) / 2 + R / 3, 1.1 * R, 2.4 * R))
        cx, cy = x + w / 2, y + h / 2
    else:
        radius, cx, cy = 1.6 * R, nucleus.cx * s, nucleus.cy * s
    wbc = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(wbc, (int(round(cx)), int(round(cy))), int(round(radius)), 1, -1)
    band = max(2, round(0.25 * R))  # a guessed outline: a wider band without opinion
    split = field_split(image_path.stem + image_path.parent.name)
    zeros = np.zeros(img.shape[:2])
    return _finish(
        img,
        wbc.astype(bool),
        zeros.astype(bool),
        np.ones(img.shape[:2]),
        zeros,
        band,
        "bionet_cells",
        split,
        f"{image_path.parent.name}/{image_path.name}",
    )


def pbc_sample(image_path: Path, group: str, split: str, cfg: UnetConfig) -> Sample | None:
    """A PBC crop with the classic central mask, or None when that mask fails the quality
    filter (its size is not its class's, or it misses the centre)."""
    rgb = read_rgb(image_path)
    try:
        cell = segment_single_cell(rgb)
    except SegmentationError:
        return None
    img, s = _scaled(rgb, cfg)
    full = cv2.resize(cell.full_mask(rgb.shape).astype(np.uint8), img.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    h, w = img.shape[:2]
    if not full[h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3].any():
        return None
    # Diameter in red-cell radii.  Measured on PBC: platelet crops 1.2-1.8 R (a clump, or
    # the halo the threshold takes), other classes 1.9-4.0 R.
    d = 2 * np.sqrt(full.sum() / np.pi) / cfg.work_rbc_radius
    is_platelet = group.upper() == "PLATELET"
    if (is_platelet and not 0.3 <= d <= 2.0) or (not is_platelet and not 1.5 <= d <= 4.5):
        return None
    grey = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    _, stained = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    other = stained.astype(bool) & ~full
    wbc, plt = (np.zeros_like(full), full) if is_platelet else (full, np.zeros_like(full))
    w_plt = np.where(other, 0.0, 1.0)  # a neighbouring blob may be a platelet
    band = max(1, round(0.1 * cfg.work_rbc_radius))
    return _finish(img, wbc, plt, np.ones((h, w)), w_plt, band, "pbc", split, f"{group}/{image_path.name}")


def build_samples(data_root: str | Path, split_csv: str | Path, cfg: UnetConfig, log=print) -> list[Sample]:
    data_root = Path(data_root)
    out: list[Sample] = []
    for domain, root in (("bccd", data_root / "bccd"), ("bionet", data_root / "deepbionet" / "fields")):
        for path in sorted((root / "JPEGImages").glob("*.jpg")):
            xml = root / "Annotations" / f"{path.stem}.xml"
            if xml.exists():
                out.append(field_sample(path, xml, domain, cfg))
        log(f"{domain}: {sum(s.domain == domain for s in out)} fields")
    for path in sorted((data_root / "deepbionet" / "cells").glob("*/*.jpg")):
        out.append(bionet_cell_sample(path, cfg))
    log(f"bionet_cells: {sum(s.domain == 'bionet_cells' for s in out)} fields")
    split = pd.read_csv(split_csv)
    rng = np.random.default_rng(cfg.seed)
    kept = dropped = 0
    for (group, part), rows in split.groupby(["group", "split"]):
        n = cfg.pbc_per_class if part == "train" else cfg.pbc_per_class // 5
        for path in rows["path"].iloc[rng.permutation(len(rows))[:n]]:
            s = pbc_sample(Path(path), group, part, cfg)
            kept, dropped = kept + (s is not None), dropped + (s is None)
            if s is not None:
                out.append(s)
    log(f"pbc: {kept} crops kept, {dropped} dropped by the mask quality filter")
    return out


def coco_samples(folder: str | Path, cfg: UnetConfig, log=print) -> list[Sample]:
    """The images of a ``yawbcc export --coco`` folder with their cells' masks as targets.

    Platelets go to the platelet channel, every other cell to the white-cell channel, and a
    cell a reviewer marked not a cell to neither (a firm "no").  A cell nobody reviewed
    carries no weight: its mask is the segmenter's own guess.  A field keeps its held-out
    side (``domains.field_split`` of its file name), so held-out BCCD fields stay held out.
    """
    folder = Path(folder)
    data = json.loads((folder / "annotations.json").read_text(encoding="utf-8"))
    names = {c["id"]: c["name"] for c in data["categories"]}
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    out = []
    for image in data["images"]:
        rgb = read_rgb(folder / image["file_name"])
        img, _ = _scaled(rgb, cfg)
        size = img.shape[1::-1]
        wbc, plt, unsure = (np.zeros(img.shape[:2], bool) for _ in range(3))
        for ann in by_image.get(image["id"], []):
            mask = cv2.resize(rle.decode(ann["segmentation"]).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
            name = names[ann["category_id"]]
            if not ann.get("attributes", {}).get("reviewed", False):
                unsure |= mask
            elif name == "PLATELET":
                plt |= mask
            elif name != ARTEFACT:
                wbc |= mask
        weight = np.where(unsure & ~wbc & ~plt, 0.0, 1.0)
        band = max(1, round(0.1 * cfg.work_rbc_radius))
        stem = Path(image.get("source") or image["file_name"]).stem
        out.append(_finish(img, wbc, plt, weight, weight, band, "coco", field_split(stem), f"coco/{image['file_name']}"))
    log(f"coco {folder}: {len(out)} images, {len(data['annotations'])} cells")
    return out
