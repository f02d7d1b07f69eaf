"""Both segmenters on each lab's held-out images: what ``--segmenter auto`` is chosen from.

    .venv/bin/python benchmarks/segmentation_domains.py [--data ../shared/data] [--split runs/split.csv]
        [--segmenters classic unet] [--n-pbc 1000]

Per segmenter (through ``core.segmentation.find_cells_measured``, as the app runs it):

* held-out BCCD and Bio-Net detection fields (``field_split == "test"``, never trained on):
  white-cell recall and precision at IoU 0.5, platelet recall at IoU 0.3 (platelet boxes
  are small and hand-drawn), ms per field (640x480);
* held-out Bio-Net labelled fields (cyan, one white cell each, no boxes): share whose
  white cell is found at its nucleus, extra white cells per field;
* PBC test crops (cell mode): share whose found central cell holds the image centre, ms
  per crop.

``--write-card`` stores the U-Net's figures, with this command, under ``per_lab`` in the
bundled segmenter's ``segmenter.json``.

First, how ``--mode auto`` reads each source (the share taken for smear fields), since
``--segmenter auto`` chooses by that.

The PBC split is ``python -m training split --out runs/split.csv``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from training.unet import bionet_cells_figures, held_out_fields, object_figures, pbc_central_figures  # noqa: E402
from yawbcc_desktop.core.imageio import read_rgb  # noqa: E402
from yawbcc_desktop.core.segmentation import find_cells_measured  # noqa: E402
from yawbcc_desktop.core.unet_segmentation import SegmenterCard, segmenter_folder  # noqa: E402


class Timed:
    """``find_cells_measured`` in one mode with one segmenter, timing every call."""

    def __init__(self, mode: str, segmenter: str):
        self.mode, self.segmenter, self.ms = mode, segmenter, []

    def __call__(self, rgb):
        t = time.perf_counter()
        cells = find_cells_measured(rgb, self.mode, self.segmenter)[1]
        self.ms.append(1000 * (time.perf_counter() - t))
        return cells[0] if self.mode == "cell" else cells

    def mean_ms(self) -> float:
        # The first call loads the network (seconds): not a field's cost.
        rest = self.ms[1:] or self.ms
        return sum(rest) / len(rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--split", default=str(REPO / "runs" / "split.csv"))
    parser.add_argument("--segmenters", nargs="+", default=["classic", "unet", "auto"])
    parser.add_argument("--n-pbc", type=int, default=1000)
    parser.add_argument("--write-card", action="store_true", help="store the U-Net's figures per lab in its segmenter.json")
    args = parser.parse_args()
    data = Path(args.data)
    sources = {
        "BCCD fields": held_out_fields(data / "bccd"),
        "Bio-Net detection fields": held_out_fields(data / "deepbionet" / "fields"),
        "Bio-Net labelled fields": sorted((data / "deepbionet" / "cells").glob("*/*.jpg")),
        "PBC crops": [Path(p) for p in pd.read_csv(args.split).query("split == 'test'")["path"].sample(300, random_state=0)],
    }
    for segmenter in args.segmenters:
        for name, paths in sources.items():
            smear = sum(find_cells_measured(read_rgb(p), "auto", segmenter)[0] == "smear" for p in paths)
            print(f"{segmenter:8s} mode auto: {smear}/{len(paths)} {name} read as smear fields", flush=True)
    for segmenter in args.segmenters:
        per_lab = {}
        for lab, name, root in (("bccd", "BCCD", data / "bccd"), ("bionet", "Bio-Net", data / "deepbionet" / "fields")):
            find = Timed("smear", segmenter)
            f = per_lab[lab] = object_figures(root, find) | {"ms_per_field": round(find.mean_ms(), 1)}
            print(
                f"{segmenter:8s} {name} held-out fields ({f['fields']}): WBC recall {f['wbc_recall']:.3f}, "
                f"precision {f['wbc_precision']:.3f}, platelet recall {f['platelet_recall_iou0.3']:.3f}; "
                f"{find.mean_ms():.1f} ms per field",
                flush=True,
            )
        find = Timed("smear", segmenter)
        f = per_lab["bionet_labelled"] = bionet_cells_figures(data / "deepbionet" / "cells", find)
        print(
            f"{segmenter:8s} Bio-Net labelled held-out fields ({f['fields']}): white cell found {f['wbc_found']:.3f}, "
            f"{f['extra_wbc_per_field']:.2f} extra white cells per field; {find.mean_ms():.1f} ms per field",
            flush=True,
        )
        find = Timed("cell", segmenter)
        f = per_lab["pbc"] = pbc_central_figures(args.split, args.n_pbc, find) | {"ms_per_crop": round(find.mean_ms(), 1)}
        print(
            f"{segmenter:8s} PBC test crops ({f['crops']}): central cell found {100 * f['central_found']:.2f} %; "
            f"{find.mean_ms():.1f} ms per crop",
            flush=True,
        )
        if args.write_card and segmenter == "unet":
            write_card(per_lab, args)


def write_card(per_lab: dict, args) -> None:
    """The bundled U-Net's figures per lab, with the command behind them, in its card."""
    folder = segmenter_folder()
    card = SegmenterCard.read(folder)
    command = f".venv/bin/python benchmarks/segmentation_domains.py --segmenters unet --n-pbc {args.n_pbc}"
    card.extra["per_lab"] = {
        "command": command,
        "images": "held-out test fields of BCCD and Bio-Net (field_split), PBC's test split; never trained on",
    } | per_lab
    card.write(folder)
    print(f"figures per lab written to {folder / 'segmenter.json'}")


if __name__ == "__main__":
    main()
