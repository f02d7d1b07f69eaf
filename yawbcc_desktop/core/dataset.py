"""Index of a labelled single-cell data set (the report's ``load_barcelona_wbc``).

A folder of class folders (``<group>/<LABEL>_<id>.jpg``) becomes a DataFrame with one row
per image; files that are not readable images are listed separately with the reason.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from .classes import GROUPS, LABEL_TO_GROUP, label_of_filename
from .imageio import IMAGE_SUFFIXES

INDEX_COLUMNS = ["image", "group", "label", "width", "height", "path", "sha1"]


@dataclass
class DatasetIndex:
    """Images that can be used, and files that were skipped with the reason."""

    images: pd.DataFrame
    skipped: pd.DataFrame  # columns: path, reason


def file_sha1(path: str | os.PathLike[str]) -> str:
    """SHA-1 of a file's bytes: identical files share it, whatever their names."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def index_folder(root: str | os.PathLike[str]) -> DatasetIndex:
    """Index ``root/<group>/<LABEL>_<id>.<ext>``.

    The group comes from the folder name, the finer label from the file-name prefix; a
    label that is not one of the 13 known ones falls back to the group name.  Each file is
    opened (header only) to get its size and to prove it is an image.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    rows, skipped = [], []
    for group_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        group = group_dir.name.upper()
        if group not in GROUPS:
            skipped.append({"path": str(group_dir), "reason": f"folder name is not one of the classes {GROUPS}"})
            continue
        for file in sorted(group_dir.rglob("*")):
            if file.is_dir():
                continue
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append({"path": str(file), "reason": f"not an image file name ({file.suffix or 'no suffix'})"})
                continue
            try:
                with Image.open(file) as img:
                    width, height = img.size
            except (UnidentifiedImageError, OSError) as exc:
                reason = "not an image (unknown or corrupt format)" if isinstance(exc, UnidentifiedImageError) else str(exc)
                skipped.append({"path": str(file), "reason": reason})
                continue
            label = label_of_filename(file.name)
            if LABEL_TO_GROUP.get(label) != group:
                label = group  # unknown or inconsistent prefix: the folder is authoritative
            rows.append(
                {
                    "image": file.name,
                    "group": group,
                    "label": label,
                    "width": width,
                    "height": height,
                    "path": str(file),
                    "sha1": file_sha1(file),
                }
            )
    return DatasetIndex(pd.DataFrame(rows, columns=INDEX_COLUMNS), pd.DataFrame(skipped, columns=["path", "reason"]))


def table_counts(images: pd.DataFrame) -> pd.DataFrame:
    """Report Table 2.1: number of images per group and label."""
    return images.groupby(["group", "label"]).size().rename("count").reset_index()


def table_sizes(images: pd.DataFrame) -> pd.DataFrame:
    """Report Table 2.2: number of images per (width, height)."""
    return images.groupby(["width", "height"]).size().rename("count").reset_index().sort_values("count", ascending=False)


def duplicate_groups(images: pd.DataFrame) -> pd.DataFrame:
    """Byte-identical files (same SHA-1), with whether their labels disagree."""
    dup = images[images.duplicated("sha1", keep=False)]
    rows = []
    for sha1, grp in dup.groupby("sha1"):
        rows.append(
            {
                "sha1": sha1,
                "paths": ";".join(grp["path"]),
                "groups": ";".join(sorted(set(grp["group"]))),
                "conflicting_groups": grp["group"].nunique() > 1,
            }
        )
    return pd.DataFrame(rows, columns=["sha1", "paths", "groups", "conflicting_groups"])


def index_report(index: DatasetIndex) -> str:
    """The report's tables 2.1 and 2.2, the duplicates and the skipped files, as text."""
    lines = [f"{len(index.images)} images, {len(index.skipped)} skipped"]
    lines += ["", "Table 2.1 - images per group and label", table_counts(index.images).to_string(index=False)]
    lines += ["", "Table 2.2 - image sizes (width x height)", table_sizes(index.images).to_string(index=False)]
    dups = duplicate_groups(index.images)
    lines += ["", f"{len(dups)} sets of byte-identical files, {int(dups['conflicting_groups'].sum())} with conflicting groups"]
    lines += [f"  conflicting labels: {row['paths']}" for _, row in dups[dups["conflicting_groups"]].iterrows()]
    lines += [f"skipped: {row['path']}: {row['reason']}" for _, row in index.skipped.iterrows()]
    return "\n".join(lines)
