"""Duplicate-aware stratified splits (train / valid / test), saved as CSV for reproducibility.

Byte-identical files are grouped and always land on the same side, so a test image never
has a twin in training.  Stratification is on the 13 file-name labels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

SPLIT_COLUMNS = ["path", "image", "group", "label", "sha1", "split"]


def make_split(images: pd.DataFrame, valid: float = 0.16, test: float = 0.20, seed: int = 42) -> pd.DataFrame:
    """Assign each row of a dataset index to ``train``, ``valid`` or ``test``.

    Duplicates (same ``sha1``) form one unit placed as a whole; a unit is stratified on the
    label of its first file.  Within each label the units are shuffled with ``seed`` and
    cut at the requested proportions (largest-remainder rounding, so small labels still get
    test and validation images).
    """
    if not 0 < valid < 1 or not 0 < test < 1 or valid + test >= 1:
        raise ValueError("valid and test must be fractions with valid + test < 1")
    rng = np.random.default_rng(seed)
    units = images.groupby("sha1", sort=True).agg(label=("label", "first"), n=("path", "size")).reset_index()
    assignment: dict[str, str] = {}
    for label in sorted(units["label"].unique()):
        shas = units.loc[units["label"] == label, "sha1"].to_numpy()
        shas = shas[rng.permutation(len(shas))]
        n = len(shas)
        n_test = int(round(n * test))
        n_valid = int(round(n * valid))
        if n >= 3:
            n_test, n_valid = max(n_test, 1), max(n_valid, 1)
        for i, sha in enumerate(shas):
            assignment[sha] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    out = images.copy()
    out["split"] = out["sha1"].map(assignment)
    return out[SPLIT_COLUMNS].sort_values("path").reset_index(drop=True)


def conflicting_duplicates(images: pd.DataFrame) -> pd.DataFrame:
    """Byte-identical files carrying different groups: the data set's labelling conflicts."""
    g = images.groupby("sha1")["group"].nunique()
    return images[images["sha1"].isin(g[g > 1].index)].sort_values("sha1")


def drop_conflicts(split: pd.DataFrame) -> pd.DataFrame:
    """Files whose byte-identical twin has another label cannot be trusted: leave them out."""
    bad = conflicting_duplicates(split)
    return split[~split["path"].isin(bad["path"])].reset_index(drop=True)


def split_checksum(split: pd.DataFrame) -> str:
    """SHA-1 over (file content, split) pairs: equal for equal splits, whatever the folder."""
    rows = sorted(f"{s}:{p}" for s, p in zip(split["sha1"], split["split"]))
    return hashlib.sha1("\n".join(rows).encode()).hexdigest()


def save_split(split: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    split.to_csv(tmp, index=False)
    tmp.replace(path)


def load_split(path: str | Path) -> pd.DataFrame:
    split = pd.read_csv(path)
    missing = set(SPLIT_COLUMNS) - set(split.columns)
    if missing:
        raise ValueError(f"{path}: not a split file (missing columns {sorted(missing)})")
    return split
