"""White-cell detection in smear fields and smear-vs-single-cell recognition (core.smear, core.field_or_crop).

The data tests read ../shared/data in place (BCCD fields with VOC boxes, PBC single cells)
and skip when it is absent; the full-set figures are benchmarks/bccd_detection.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import missing_data
from training.voc import box_iou, match_boxes, read_voc_boxes
from yawbcc_desktop.core.cells import PLATELET, WBC, CellRegion
from yawbcc_desktop.core.field_or_crop import looks_like_smear
from yawbcc_desktop.core.imageio import read_rgb
from yawbcc_desktop.core.smear import estimate_rbc_radius, find_cells_in_smear

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def bccd_dir() -> Path:
    if not (DATA / "bccd" / "JPEGImages").is_dir() or not (DATA / "bccd" / "Annotations").is_dir():
        missing_data(f"BCCD data not found at {DATA / 'bccd'} (expected JPEGImages/ and Annotations/)")
    return DATA / "bccd"


@pytest.fixture(scope="module")
def pbc_dir() -> Path:
    if not (DATA / "pbc").is_dir():
        missing_data(f"PBC data not found at {DATA / 'pbc'}")
    return DATA / "pbc"


@pytest.fixture(scope="module")
def bccd_subset(bccd_dir) -> list[tuple[Path, np.ndarray, list]]:
    """Every 4th BCCD field (fixed), with its WBC annotations."""
    fields = sorted((bccd_dir / "JPEGImages").glob("*.jpg"))[::4]
    assert len(fields) >= 50
    out = []
    for path in fields:
        truth = [b for b in read_voc_boxes(bccd_dir / "Annotations" / (path.stem + ".xml")) if b[0] == "WBC"]
        out.append((path, read_rgb(path), truth))
    return out


# ------------------------------------------------------------------------ real data


def test_wbc_recall_and_precision_on_bccd_subset(bccd_subset):
    tp = fp = fn = 0
    for _path, rgb, truth in bccd_subset:
        cells = find_cells_in_smear(rgb)
        h, w = rgb.shape[:2]
        for c in cells:
            assert isinstance(c, CellRegion) and c.kind in (WBC, PLATELET)
            assert c.mask.dtype == bool and c.mask.shape == (c.height, c.width) and c.mask.any()
            assert 0 <= c.x and 0 <= c.y and c.x + c.width <= w and c.y + c.height <= h
        a, b, d = match_boxes([c for c in cells if c.kind == WBC], truth, iou=0.5)
        tp, fp, fn = tp + a, fp + b, fn + d
    recall, precision = tp / (tp + fn), tp / (tp + fp)
    assert recall >= 0.95, f"recall {recall:.3f} ({tp}/{tp + fn})"
    assert precision >= 0.90, f"precision {precision:.3f} ({tp}/{tp + fp})"


def test_detection_does_not_depend_on_magnification(bccd_subset):
    """Half-size fields (red cells half as big) give the same white cells."""
    tp = fp = fn = 0
    for _path, rgb, truth in bccd_subset[::3]:
        small = cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        wbcs = [c for c in find_cells_in_smear(small) if c.kind == WBC]
        found = [(c.x * 2, c.y * 2, (c.x + c.width) * 2, (c.y + c.height) * 2) for c in wbcs]
        a, b, d = match_boxes(found, truth)
        tp, fp, fn = tp + a, fp + b, fn + d
    assert tp / (tp + fn) >= 0.9 and tp / (tp + fp) >= 0.85, (tp, fp, fn)


def test_red_cell_radius_is_measured(bccd_subset):
    # BCCD red cells are about 100 px across at 640x480.
    radii = [estimate_rbc_radius(rgb) for _p, rgb, _t in bccd_subset[::4]]
    assert 38 <= float(np.median(radii)) <= 62


def test_looks_like_smear_on_bccd_fields(bccd_subset):
    wrong = [p.name for p, rgb, _t in bccd_subset[::2] if not looks_like_smear(rgb)]
    assert not wrong, f"BCCD fields taken for single cells: {wrong}"


def test_looks_like_smear_on_pbc_single_cells(pbc_dir):
    files = sorted(p for p in pbc_dir.rglob("*.jpg") if not p.name.startswith("."))
    by_group: dict[str, list[Path]] = {}
    for p in files:
        by_group.setdefault(p.parent.name, []).append(p)
    rng = random.Random(1)
    sample = [p for group in sorted(by_group) for p in rng.sample(by_group[group], min(15, len(by_group[group])))]
    assert len(sample) >= 100
    wrong = [f"{p.parent.name}/{p.name}" for p in sample if looks_like_smear(read_rgb(p))]
    assert not wrong, f"single-cell images taken for smears: {wrong}"


# ------------------------------------------------------------------------ no data needed


def test_blank_and_odd_images_give_no_cells():
    assert find_cells_in_smear(np.full((480, 640, 3), 235, np.uint8)) == []
    assert find_cells_in_smear(np.zeros((1, 1, 3), np.uint8)) == []
    assert find_cells_in_smear(np.zeros((20, 30), np.uint8)) == []  # greyscale accepted
    # A greyscale field is read as the grey RGB image it stands for.
    grey = np.full((120, 160), 210, np.uint8)
    cv2.circle(grey, (80, 60), 25, 90, -1)
    as_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    assert [(c.kind, c.x, c.y, c.width, c.height) for c in find_cells_in_smear(grey)] == [
        (c.kind, c.x, c.y, c.width, c.height) for c in find_cells_in_smear(as_rgb)
    ]
    with pytest.raises(ValueError):
        find_cells_in_smear(np.zeros((10, 10, 2), np.uint8))


def test_synthetic_field_with_one_white_cell():
    """Pink red cells on a pale background, one violet nucleus in violet cytoplasm, one platelet."""
    img = np.full((480, 640, 3), (215, 215, 205), np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(60):
        x, y = int(rng.integers(0, 640)), int(rng.integers(0, 480))
        if abs(x - 320) < 130 and abs(y - 240) < 130:
            continue
        cv2.circle(img, (x, y), 40, (200, 150, 150), -1)
    cv2.circle(img, (320, 240), 80, (185, 165, 200), -1)  # cytoplasm
    cv2.ellipse(img, (300, 230), (45, 30), 30, 0, 360, (120, 100, 200), -1)  # nucleus lobes
    cv2.ellipse(img, (345, 260), (35, 25), -20, 0, 360, (120, 100, 200), -1)
    cv2.circle(img, (560, 60), 9, (150, 120, 200), -1)  # platelet on background
    img = cv2.GaussianBlur(img, (5, 5), 0)
    cells = find_cells_in_smear(img)
    wbcs = [c for c in cells if c.kind == WBC]
    assert len(wbcs) == 1
    assert box_iou((wbcs[0].x, wbcs[0].y, wbcs[0].x + wbcs[0].width, wbcs[0].y + wbcs[0].height), (240, 160, 400, 320)) >= 0.6
    assert any(c.kind == PLATELET and abs(c.centre[0] - 560) < 15 and abs(c.centre[1] - 60) < 15 for c in cells)
