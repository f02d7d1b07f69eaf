"""Matching an unseen lab's colours to the home lab's at test time: what it gives, and whether
anything without labels could tell when to do it.

    .venv/bin/python benchmarks/lab_colour.py --runs runs/lodo-lisc-v4 runs/lodo-bccd-v4 runs/lodo-bionet-v4

For each leave-one-domain-out run, every cell of the held-out lab is framed by the application's
own code, then scored three ways: as is; with the lab's L*a*b* mean and spread (over all its
cells' model inputs) moved to those of 400 PBC training cells (Reinhard et al. 2001, per lab);
and the same on a* and b* alone (lightness left as it is). Printed per variant: balanced
accuracy over neutrophil / lymphocyte / monocyte / eosinophil, accuracy, and what the
application could see without labels — mean confidence, mean entropy, the familiarity model's
median cell score. Then a logistic head on the run's pooled features, fitted on 50 of the lab's
cells (stratified at random, 5 draws; classes with fewer than 5 cells left out) and scored on
the others, with and without the matching: does it help once a reviewer has labelled cells?
(LISC's copies of one source cell are not grouped here: compare its two rows, not the level.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.corrections import correction_inputs  # noqa: E402
from training.domain_fit import balanced_accuracy_four  # noqa: E402
from training.domains import all_cells, cells_as_rows  # noqa: E402
from yawbcc_desktop.core.classes import GROUPS  # noqa: E402
from yawbcc_desktop.core.classifier import ModelBundle  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def to_lab(x: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(np.clip(c, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB) for c in x]).astype(np.float32)


def to_rgb(lab: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(np.clip(c, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB) for c in lab])


def lab_statistics(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread per L*a*b* channel, each cell's averaged over the cells."""
    flat = lab.reshape(len(lab), -1, 3)
    return flat.mean(axis=1).mean(axis=0), flat.std(axis=1).mean(axis=0) + 1e-3


def head_on_50(features: np.ndarray, labels: np.ndarray, draws: int = 5) -> list[float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    kept = np.isin(labels, [c for c in np.unique(labels) if (labels == c).sum() >= 5])
    f, y = features[kept] / np.linalg.norm(features[kept], axis=1, keepdims=True), labels[kept]
    scores = []
    for seed in range(draws):
        tr, te = train_test_split(np.arange(len(y)), train_size=50, stratify=y, random_state=seed)
        head = LogisticRegression(C=10, max_iter=2000, class_weight="balanced").fit(f[tr], y[tr])
        scores.append(balanced_accuracy_four(y[te], head.predict(f[te])))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="leave-one-domain-out run folders")
    args = parser.parse_args()
    cells = all_cells(DATA, ROOT / "runs" / "split.csv")
    home = cells[cells.domain.eq("pbc") & cells.split.eq("train")].sample(400, random_state=0)
    for run in args.runs:
        bundle = ModelBundle(run)
        held = bundle.card.extra.get("held_out_domain")
        familiarity = bundle.familiarity
        if familiarity is None:
            raise SystemExit(f"{run} has no familiarity model (familiarity.npz)")
        ref_mean, ref_std = lab_statistics(to_lab(correction_inputs(bundle, cells_as_rows(home))[0]))
        part = cells[cells.domain.eq(held)]
        x = correction_inputs(bundle, cells_as_rows(part))[0]
        labels = part["group"].map(GROUPS.index).to_numpy()
        lab = to_lab(x)
        mean, std = lab_statistics(lab)
        matched = (lab - mean) / std * ref_std + ref_mean
        variants = {
            "as is": x.astype(np.uint8),
            "matched": to_rgb(matched),
            "matched a*b* only": to_rgb(np.concatenate([lab[..., :1], matched[..., 1:]], axis=-1)),
        }
        print(f"\n{Path(run).name} (held out: {held}, {len(x)} cells)")
        print(f"  L*a*b* mean {mean.round(1)} spread {std.round(1)}; PBC's {ref_mean.round(1)} {ref_std.round(1)}")
        features = {}
        for name, v in variants.items():
            p = np.concatenate([bundle.probabilities(v[i : i + 64]) for i in range(0, len(v), 64)])
            pred = p.argmax(axis=1)
            features[name] = bundle.features(v)
            entropy = -(p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1)
            print(
                f"  {name:18} bal-4 {balanced_accuracy_four(labels, pred):.3f} accuracy {np.mean(pred == labels):.3f}"
                f" | confidence {p.max(axis=1).mean():.3f} entropy {entropy.mean():.3f}"
                f" familiarity cell score (median) {np.median(familiarity.cell_scores(features[name])):.2f}",
                flush=True,
            )
        for name in ("as is", "matched"):
            s = head_on_50(features[name], labels)
            print(f"  50 reviewed, logistic head on features {name:8}: bal-4 {np.mean(s):.3f}, worst {min(s):.3f}", flush=True)


if __name__ == "__main__":
    main()
