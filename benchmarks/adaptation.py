"""Adapting a bundle to a lab it never saw, from k of that lab's labelled cells.

    .venv/bin/python benchmarks/adaptation.py [--runs runs/lodo-bccd runs/lodo-bionet] [--k 10 25 50 100] [--repeats 3]

For each leave-one-domain-out bundle (trained without domain D, see benchmarks/cross_lab.py)
k cells of D are drawn (stratified as far as D's classes allow), the head is adapted with
``training.adapt`` exactly as ``python -m training adapt`` does, and the rest of D is
scored.  Printed: balanced accuracy over neutrophil / lymphocyte / monocyte / eosinophil on
the rest of D before and after, PBC test-split accuracy after (before in brackets), the
minutes the adaptation took (framing, features and fit of the k cells).  Each k is repeated
with different draws; mean and range are shown.  The cells are framed by the application's
own code (``pipeline.model_input`` at each image's estimated µm per pixel); the backbone is
unchanged by adaptation, so the rest of D and the PBC test cells are scored on their pooled
features with the new head, which is exactly what the adapted bundle computes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.adapt import Corrections, _softmax, adapt, correction_inputs, head_weights  # noqa: E402
from training.domain_fit import balanced_accuracy_four  # noqa: E402
from training.domains import all_cells, cells_as_rows  # noqa: E402
from yawbcc_desktop.core.classes import GROUPS  # noqa: E402
from yawbcc_desktop.core.classifier import ModelBundle  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def draw(labels: np.ndarray, k: int, rng) -> np.ndarray:
    """k indices stratified over the classes present (each class at least one where k allows)."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(k * counts / counts.sum())).astype(int)
    while quota.sum() > k:
        quota[np.argmax(quota)] -= 1
    while quota.sum() < k:
        room = counts - quota
        quota[np.argmax(room * (room > 0))] += 1
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=[str(ROOT / "runs" / "lodo-bccd"), str(ROOT / "runs" / "lodo-bionet")])
    parser.add_argument("--k", nargs="+", type=int, default=[10, 25, 50, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--labs", nargs="+", help="labs to adapt to (default: each run's held-out lab); for bundles trained on PBC alone"
    )
    args = parser.parse_args()
    cells = all_cells(DATA, ROOT / "runs" / "split.csv")
    pbc_test = cells[cells.domain.eq("pbc") & cells.split.eq("test")]
    pbc_labels = pbc_test["group"].map(GROUPS.index).to_numpy()
    print(
        f"{'bundle':16} {'lab':7} {'k':>4} {'rest':>5} {'bal-4 before':>12} {'bal-4 after':>18} "
        f"{'PBC acc after':>20} {'minutes':>8}"
    )
    for run, lab in [(r, lab) for r in args.runs for lab in args.labs or [ModelBundle(r).card.extra.get("held_out_domain")]]:
        bundle = ModelBundle(run)
        order = bundle.card.class_order
        dom = cells[cells.domain.eq(lab)].reset_index(drop=True)
        rows = cells_as_rows(dom)
        t0 = time.monotonic()
        inputs, _ = correction_inputs(bundle, rows)
        feats = bundle.features(inputs)
        per_cell_s = (time.monotonic() - t0) / len(rows)
        pbc_inputs, _ = correction_inputs(bundle, cells_as_rows(pbc_test))
        pbc_feats = bundle.features(pbc_inputs)
        w0, b0 = head_weights(bundle)
        to_groups = np.array([GROUPS.index(g) for g in order])
        labels = dom["group"].map(GROUPS.index).to_numpy()
        base_pred = to_groups[(feats @ w0 + b0).argmax(axis=1)]
        pbc_before = float(np.mean(to_groups[(pbc_feats @ w0 + b0).argmax(axis=1)] == pbc_labels))
        for k in args.k:
            before, after, pbc_after, minutes = [], [], [], []
            for rep in range(args.repeats):
                rng = np.random.default_rng(1000 * k + rep)
                pick = draw(labels, k, rng)
                rest = np.setdiff1d(np.arange(len(dom)), pick)
                t1 = time.monotonic()
                result = adapt(
                    bundle,
                    Corrections(rows.iloc[pick].reset_index(drop=True), [], "", []),
                    seed=rep,
                    log=lambda _m: None,
                    min_per_class=1,
                    min_cells=k,
                    features=feats[pick],
                )
                # Framing and features of the k cells as the command computes them, plus its fit.
                minutes.append((time.monotonic() - t1 + per_cell_s * k) / 60)
                pred = to_groups[_softmax(feats[rest] @ result.w + result.b).argmax(axis=1)]
                before.append(balanced_accuracy_four(labels[rest], base_pred[rest]))
                after.append(balanced_accuracy_four(labels[rest], pred))
                pbc_after.append(float(np.mean(to_groups[(pbc_feats @ result.w + result.b).argmax(axis=1)] == pbc_labels)))
            print(
                f"{bundle.name:16} {lab:7} {k:4d} {len(dom) - k:5d} {np.mean(before):12.3f} "
                f"{np.mean(after):6.3f} ({min(after):.3f}-{max(after):.3f}) {np.mean(pbc_after):7.4f} ({pbc_before:.4f}) "
                f"{np.mean(minutes):8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
