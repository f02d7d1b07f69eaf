"""Data set index (report tables 2.1/2.2) and duplicate-aware splits, on the real PBC folder."""

from __future__ import annotations

import pandas as pd
import pytest

from training.splits import conflicting_duplicates, make_split, split_checksum
from yawbcc_desktop.core.classes import GROUPS, LABELS
from yawbcc_desktop.core.dataset import duplicate_groups, index_folder, table_counts, table_sizes


@pytest.fixture(scope="module")
def index(pbc):
    return index_folder(pbc)


def test_index_lists_every_image_and_the_skipped_file(index):
    images, skipped = index.images, index.skipped
    assert len(images) == 11965  # and the one non-image file beside them
    assert list(skipped["path"].str.rsplit("/", n=1).str[-1]) == [".DS_169665.jpg"]
    assert "not an image" in skipped["reason"].iloc[0]
    assert set(images["group"]) == set(GROUPS)
    assert set(images["label"]) <= set(LABELS)


def test_tables(index):
    counts = table_counts(index.images)
    assert counts["count"].sum() == len(index.images)
    assert counts.set_index(["group", "label"]).loc[("NEUTROPHIL", "SNE"), "count"] > 0
    sizes = table_sizes(index.images)
    top = sizes.iloc[0]
    assert (top["width"], top["height"]) == (360, 363)


def test_duplicates_found_with_the_conflicting_pair(index):
    dups = duplicate_groups(index.images)
    assert len(dups) >= 1
    conflict = dups[dups["conflicting_groups"]]
    assert len(conflict) >= 1
    assert set(conflict["groups"].iloc[0].split(";")) == {"EOSINOPHIL", "NEUTROPHIL"}


def test_split_invariants(index):
    split = make_split(index.images, valid=0.16, test=0.20, seed=42)
    assert set(split["split"]) == {"train", "valid", "test"}
    # identical files never straddle two sides
    assert (split.groupby("sha1")["split"].nunique() == 1).all()
    frac = split["split"].value_counts(normalize=True)
    assert abs(frac["test"] - 0.20) < 0.01 and abs(frac["valid"] - 0.16) < 0.01
    # stratified by label: each label within 2 points of the global test share
    per_label = split.groupby("label")["split"].apply(lambda s: (s == "test").mean())
    assert ((per_label - 0.20).abs() < 0.03).all(), per_label
    # same seed, same split; another seed, another split
    assert split_checksum(split) == split_checksum(make_split(index.images, seed=42))
    assert split_checksum(split) != split_checksum(make_split(index.images, seed=7))
    assert not conflicting_duplicates(split).empty


def test_split_on_small_synthetic_index():
    frame = pd.DataFrame(
        {
            "path": [f"p{i}" for i in range(12)],
            "image": [f"p{i}" for i in range(12)],
            "group": ["IG"] * 12,
            "label": ["MY"] * 12,
            "sha1": ["a", "a", "a"] + [f"s{i}" for i in range(9)],
        }
    )
    split = make_split(frame, seed=0)
    assert split[split["sha1"] == "a"]["split"].nunique() == 1
    assert (split["split"] == "test").sum() >= 1
