"""What adapting a bundle to a lab's images, without corrections, gives on a lab it never saw.

    .venv/bin/python benchmarks/adapt_images.py --runs runs/lodo-bccd-v3 runs/lodo-bionet-v3 [--shares 0.5 1.0] [--pbc]

Each run is a leave-one-domain-out bundle (``python -m training domains --held-out D``).  Its
batch-norm statistics are measured on the held-out lab's *train and valid* fields, as
``python -m training adapt --images`` measures them (``adapt_images.lab_inputs`` and
``measure_statistics``: cells found and framed by the application, no label read), then
the lab's *test* fields are scored as the application scores them (``cross_lab.score``:
calibration, test-time view, familiarity, size rules), and all of the lab's cells too.
Printed per run and share of the lab's statistics (0: the run as trained): balanced
accuracy over neutrophil / lymphocyte / monocyte / eosinophil, accuracy, the share of
images flagged unfamiliar and of wrong cells in the to-review queue; ``--pbc``: PBC's test
split through the adapted bundle too (it is meant for the lab only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from cross_lab import DATA, score  # noqa: E402
from cross_lab import ROOT as PROJECT  # noqa: E402

from training.adapt_images import lab_inputs, measure_statistics  # noqa: E402
from training.domains import all_cells  # noqa: E402
from yawbcc_desktop.core.adaptation import IMAGE_STATISTICS_SHARE  # noqa: E402
from yawbcc_desktop.core.classifier import ModelBundle, resolve_bundle  # noqa: E402
from yawbcc_desktop.core.preferences import DEFAULT_REVIEW_THRESHOLD  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="leave-one-domain-out run folders")
    parser.add_argument("--shares", nargs="+", type=float, default=[IMAGE_STATISTICS_SHARE, 1.0])
    parser.add_argument("--pbc", action="store_true", help="score PBC's test split through each adapted bundle too")
    args = parser.parse_args()
    cells = all_cells(DATA, PROJECT / "runs" / "split.csv")
    print(f"{'run':22} {'share':>5} {'cells':>6} {'part':10} {'bal-4':>6} {'acc':>6} {'unfam':>6} {'w→q':>6}", flush=True)
    for run in args.runs:
        folder = resolve_bundle(run)
        held = ModelBundle(folder).card.extra.get("held_out_domain")
        if not held:
            print(f"{run}: not a leave-one-domain-out run (its card names no held-out domain)")
            continue
        lab = cells[cells.domain.eq(held)]
        fields = sorted(set(lab.path[~lab.split.eq("test")]))
        parts = {f"{held} test": lab[lab.split.eq("test")], f"{held} all": lab}
        if args.pbc:
            parts["pbc test"] = cells[cells.domain.eq("pbc") & cells.split.eq("test")]
        # The lab's cells are found and framed once; each share starts from the run as trained.
        inputs, _images = lab_inputs(ModelBundle(folder), fields)
        for share in [0.0, *args.shares]:
            bundle = ModelBundle(folder)
            used = "-"
            if share > 0:
                measure_statistics(bundle.model, inputs, share)
                used = len(inputs)
            for part, frame in parts.items():
                m = score(bundle, frame, DEFAULT_REVIEW_THRESHOLD)
                print(
                    f"{Path(run).name:22} {share:5.2f} {used!s:>6} {part:10} {m['balanced_accuracy_4']:6.3f} "
                    f"{m['accuracy']:6.3f} {m['flagged_unfamiliar']:6.3f} {m['wrong_in_queue']:6.3f}",
                    flush=True,
                )
    print("share: the lab's share of the batch-norm statistics, measured on its train and valid fields (no label read);")
    print("0 is the run as trained. cells: the lab's cells they were measured on. 'all' counts those fields' cells too.")


if __name__ == "__main__":
    main()
