"""Segmentation figures for the core: PBC central-cell hit rate and ms per image.

    .venv/bin/python benchmarks/segmentation.py [--data ../shared/data] [--n 1000]

Prints: on a random sample of PBC single-cell images, how often the found box contains the
image centre, and the mean/median ms per single-cell image; on BCCD smear fields, ms per
field (the detection accuracy is benchmarks/bccd_detection.py).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yawbcc_desktop.core.imageio import read_rgb  # noqa: E402
from yawbcc_desktop.core.segmentation import find_cells, segment_single_cell  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = Path(args.data)

    files = sorted(p for p in (data / "pbc").rglob("*.jpg") if not p.name.startswith("."))
    sample = random.Random(args.seed).sample(files, min(args.n, len(files)))
    hits, times, misses = 0, [], []
    for path in sample:
        rgb = read_rgb(path)
        t = time.perf_counter()
        cell = segment_single_cell(rgb)
        times.append((time.perf_counter() - t) * 1000)
        inside = cell.box_holds(rgb.shape[1] / 2, rgb.shape[0] / 2)
        hits += inside
        if not inside:
            misses.append(path.name)
    print(
        f"PBC single-cell: central cell box contains the image centre on {hits}/{len(sample)} "
        f"= {100 * hits / len(sample):.2f} % (seed {args.seed})"
    )
    print(f"PBC single-cell segmentation: {statistics.mean(times):.1f} ms mean, {statistics.median(times):.1f} ms median")
    if misses:
        print("  misses:", ", ".join(misses[:10]))

    fields = sorted((data / "bccd" / "JPEGImages").glob("*.jpg"))
    times = []
    for path in fields:
        rgb = read_rgb(path)
        t = time.perf_counter()
        find_cells(rgb, "smear")
        times.append((time.perf_counter() - t) * 1000)
    print(
        f"BCCD smear field segmentation ({len(fields)} fields, 640x480): "
        f"{statistics.mean(times):.1f} ms mean, {statistics.median(times):.1f} ms median"
    )


if __name__ == "__main__":
    main()
