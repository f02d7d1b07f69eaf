"""The U-Net's training targets, built from each lab's annotations (training/unet_targets.py)."""

from __future__ import annotations

import cv2
import numpy as np

from training.unet import UnetConfig, random_patch
from training.unet_targets import bionet_cell_sample, field_sample, pbc_sample
from training.voc import read_voc_boxes

CFG = UnetConfig()


def test_field_targets_are_the_boxes_at_one_red_cell_scale(data_dir):
    root = data_dir / "deepbionet" / "fields"
    path = sorted((root / "JPEGImages").glob("*.jpg"))[0]
    s = field_sample(path, root / "Annotations" / f"{path.stem}.xml", "bionet", CFG)
    boxes = read_voc_boxes(root / "Annotations" / f"{path.stem}.xml")
    scale = s.image.shape[1] / 640
    inside = np.zeros(s.image.shape[:2], bool)
    for name, x0, y0, x1, y1 in boxes:
        if name in ("WBC", "W"):
            inside[int(y0 * scale) : int(np.ceil(y1 * scale)) + 1, int(x0 * scale) : int(np.ceil(x1 * scale)) + 1] = True
    wbc = s.target[..., 0].astype(bool)
    assert wbc.any() and not (wbc & ~inside).any()
    # No opinion along the outline; full opinion well inside and far outside.
    assert (s.weight[..., 0] == 0).sum() > 0 and s.weight[..., 0].max() == 1
    # The field was brought to about 16 px of red-cell radius (Bio-Net's are ~30 px).
    rbc = [((x1 - x0) + (y1 - y0)) / 4 * scale for n, x0, y0, x1, y1 in boxes if n == "RBC"]
    assert 11 < np.median(rbc) < 22


def test_bccd_platelet_opinion_is_weak_away_from_its_boxes(data_dir):
    root = data_dir / "bccd"
    annotated = sorted((root / "JPEGImages").glob("*.jpg"))
    path = next(p for p in annotated if any(b[0] == "Platelets" for b in read_voc_boxes(root / "Annotations" / f"{p.stem}.xml")))
    s = field_sample(path, root / "Annotations" / f"{path.stem}.xml", "bccd", CFG)
    assert s.target[..., 1].any()
    assert np.isclose(s.weight[..., 1], 1 / 3).any() and (s.weight[..., 1] == 1).any()


def test_bionet_labelled_field_has_one_white_cell_and_no_platelet_opinion(data_dir):
    path = sorted((data_dir / "deepbionet" / "cells" / "neutrophil").glob("*.jpg"))[0]
    s = bionet_cell_sample(path, CFG)
    n, _ = cv2.connectedComponents(s.target[..., 0])
    assert n == 2 and not s.weight[..., 1][s.target[..., 0] == 0].any()


def test_pbc_quality_filter_and_patches(pbc):
    neutrophils = [p for p in sorted((pbc / "neutrophil").glob("*.jpg")) if not p.name.startswith(".")][:6]
    kept = [pbc_sample(p, "NEUTROPHIL", "train", CFG) for p in neutrophils]
    kept = [s for s in kept if s is not None]
    assert kept, "the classic mask of ordinary neutrophils passes the filter"
    s = kept[0]
    h, w = s.image.shape[:2]
    assert s.target[h // 2, w // 2, 0] == 1 and not s.target[..., 1].any()
    # Called a platelet, a neutrophil-sized mask fails the filter.
    assert pbc_sample(neutrophils[0], "PLATELET", "train", CFG) is None
    img, tw = random_patch(s, 64, np.random.default_rng(1))
    assert img.shape == (64, 64, 3) and tw.shape == (64, 64, 4)
    assert set(np.unique(tw[..., :2])) <= {0.0, 1.0}
