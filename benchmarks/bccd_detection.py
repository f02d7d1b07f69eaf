"""White-cell detection on BCCD smear fields, and smear-vs-single-cell recognition.

    .venv/bin/python benchmarks/bccd_detection.py [BCCD_DIR] [--pbc PBC_DIR] [--n-pbc 1000] [--seed 0]

BCCD_DIR defaults to ``../shared/data/bccd`` beside the repository (JPEGImages/ and
Annotations/ in Pascal VOC).  Prints:

* WBC recall and precision at IoU >= 0.5: greedy one-to-one matching, WBC-kind detections
  of ``find_cells_in_smear`` against the WBC annotations only (red cells and platelets
  are incompletely labelled in BCCD and are not scored);
* the number of images and ms per field (mean, median) of ``find_cells_in_smear``;
* ``looks_like_smear`` accuracy on every BCCD field (all smears) and on a random sample of
  PBC single-cell images (all classes, none a smear).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.voc import match_boxes, read_voc_boxes  # noqa: E402
from yawbcc_desktop.core.cells import WBC  # noqa: E402
from yawbcc_desktop.core.field_or_crop import looks_like_smear  # noqa: E402
from yawbcc_desktop.core.imageio import read_rgb  # noqa: E402
from yawbcc_desktop.core.smear import find_cells_in_smear  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bccd", nargs="?", default=str(REPO.parent / "shared" / "data" / "bccd"), help="BCCD folder")
    parser.add_argument("--pbc", default=None, help="PBC folder (default: pbc/ beside the BCCD folder)")
    parser.add_argument("--n-pbc", type=int, default=1000, help="PBC images to sample for looks_like_smear")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--verbose", action="store_true", help="list the fields with a miss or a false alarm")
    args = parser.parse_args()

    bccd = Path(args.bccd)
    fields = sorted((bccd / "JPEGImages").glob("*.jpg"))
    if not fields:
        sys.exit(f"no BCCD images under {bccd / 'JPEGImages'}")

    tp = fp = fn = 0
    times: list[float] = []
    smear_right = 0
    errors: list[str] = []
    for path in fields:
        rgb = read_rgb(path)
        t0 = time.perf_counter()
        cells = find_cells_in_smear(rgb)
        times.append((time.perf_counter() - t0) * 1000)
        found = [c for c in cells if c.kind == WBC]
        truth = [b for b in read_voc_boxes(bccd / "Annotations" / (path.stem + ".xml")) if b[0] == "WBC"]
        a, b, c = match_boxes(found, truth, iou=args.iou)
        tp, fp, fn = tp + a, fp + b, fn + c
        if b or c:
            errors.append(f"{path.stem}: {b} false, {c} missed")
        smear_right += looks_like_smear(rgb)

    recall = tp / max(1, tp + fn)
    precision = tp / max(1, tp + fp)
    print(f"BCCD WBC detection, {len(fields)} images, {tp + fn} WBC annotations, IoU >= {args.iou:g}:")
    print(f"  recall    {recall:.4f}  ({tp}/{tp + fn})")
    print(f"  precision {precision:.4f}  ({tp}/{tp + fp})")
    print(f"  find_cells_in_smear: {statistics.mean(times):.1f} ms/field mean, {statistics.median(times):.1f} ms median")
    if args.verbose and errors:
        print("  " + "\n  ".join(errors))

    print(f"looks_like_smear on BCCD fields: {smear_right}/{len(fields)} = {100 * smear_right / len(fields):.2f} % right")
    pbc = Path(args.pbc) if args.pbc else bccd.parent / "pbc"
    files = sorted(p for p in pbc.rglob("*.jpg") if not p.name.startswith("."))
    if not files:
        print(f"looks_like_smear on PBC: skipped, no images under {pbc}")
        return
    sample = random.Random(args.seed).sample(files, min(args.n_pbc, len(files)))
    right, wrong = 0, []
    for path in sample:
        if looks_like_smear(read_rgb(path)):
            wrong.append(f"{path.parent.name}/{path.name}")
        else:
            right += 1
    pct = 100 * right / len(sample)
    print(f"looks_like_smear on PBC single cells: {right}/{len(sample)} = {pct:.2f} % right (seed {args.seed})")
    if wrong:
        print("  taken for smears:", ", ".join(wrong[:10]))


if __name__ == "__main__":
    main()
