"""``python -m training index`` and ``split``: what a folder of class folders holds, and the
duplicate-aware train / valid / test split every later run reads."""

from __future__ import annotations

import argparse
from pathlib import Path

# The PBC data set beside the checkout (../shared/data/pbc), where every command looks first.
DEFAULT_DATA = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pbc")


def add_index_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out")


def run_index(args: argparse.Namespace) -> int:
    """Print the index report (the report's tables 2.1, 2.2); write the index CSV with ``--out``."""
    from yawbcc_desktop.core.dataset import index_folder, index_report

    index = index_folder(args.data)
    print(index_report(index))
    if args.out:
        index.images.to_csv(args.out, index=False)
    return 0


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--valid", type=float, default=0.16)
    p.add_argument("--test", type=float, default=0.20)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default="runs/split.csv")


def run_split(args: argparse.Namespace) -> int:
    """Split the data set, name the files it skipped or found twice with two labels, save the CSV."""
    from yawbcc_desktop.core.dataset import index_folder

    from .splits import conflicting_duplicates, make_split, save_split, split_checksum

    index = index_folder(args.data)
    for _, row in index.skipped.iterrows():
        print(f"skipped: {row['path']}: {row['reason']}")
    split = make_split(index.images, args.valid, args.test, args.seed)
    for _, row in conflicting_duplicates(split).iterrows():
        print(f"identical file with conflicting labels: {row['path']} ({row['group']}, {row['split']})")
    save_split(split, args.out)
    print(split.groupby(["split"]).size().to_string())
    print(f"split checksum {split_checksum(split)} -> {args.out}")
    return 0
