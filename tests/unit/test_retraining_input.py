"""Retraining input: reviewers' folders and corrections CSVs merged into the training side."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
from PIL import Image

from training.__main__ import merge_extra
from yawbcc_desktop.core.dataset import file_sha1


def _base_split(paths, group):
    return pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "image": [p.name for p in paths],
            "group": group,
            "label": group,
            "sha1": [file_sha1(p) for p in paths],
            "split": "test",
        }
    )


def test_extra_folder_and_corrections_are_added_once(pbc, tmp_path):
    base_files = sorted((pbc / "monocyte").glob("*.jpg"))[:3]
    split = _base_split(base_files, "MONOCYTE")
    extra = tmp_path / "extra"
    (extra / "monocyte").mkdir(parents=True)
    shutil.copy(base_files[0], extra / "monocyte" / "MO_copy.jpg")  # already known: must not leak into train
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(extra / "monocyte" / "MO_1.jpg")
    new_cell = tmp_path / "reviewed.png"
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(new_cell)
    corrections = tmp_path / "cells.csv"
    pd.DataFrame(
        {
            "path": [str(new_cell), str(tmp_path / "gone.png"), str(new_cell)],
            "final_label": ["LYMPHOCYTE", "LYMPHOCYTE", "LYMPHOCYTE"],
        }
    ).to_csv(corrections, index=False, encoding="utf-8-sig")
    messages = []
    merged = merge_extra(split, [str(extra)], [str(corrections)], messages.append)
    added = merged[merged["split"] == "train"]
    assert sorted(added["image"]) == ["MO_1.jpg", "reviewed.png"]
    assert added.set_index("image").loc["reviewed.png", "group"] == "LYMPHOCYTE"
    assert (merged["split"] == "test").sum() == 3
    assert any("gone.png" in m for m in messages)
