"""Per-cell signals that a model cannot vouch for a cell, measured on labs a run never saw.

    .venv/bin/python benchmarks/cell_signals.py --runs runs/lodo-lisc-v4 runs/lodo-bccd-v4 runs/lodo-bionet-v4
        [--extra-queue 0.01]

The image-level familiarity (``core/familiarity.py``) misses a lab whose images resemble the
training labs' while its cells do not.  For each leave-one-domain-out run, every cell of the
held-out lab and the valid and test cells of the trained labs are framed by the application's
own code and scored; then each candidate per-cell signal is given the threshold at which it
queues ``--extra-queue`` of the trained labs' *valid* cells that confidence alone does not
queue (the home lab's queue must stay small), and what it adds to confidence alone is
measured on the held-out lab and on the trained labs' *test* cells.  The image flag is left
out of the queue here (its share is printed): the held-out labs are flagged image by image,
and the signal is for the lab whose images pass while its cells do not.

- ``class distance``: the cell's features to the training cells of its predicted class
  (whitened distance in the familiarity model's principal subspace, plus the residual);
- ``nearest class``: the same to the nearest class (the familiarity model's cell score);
- ``kNN replay``: mean cosine distance to the 10 nearest replay cells of the predicted class
  (``core.familiarity.neighbour_distances``, the check the application ships);
- ``view disagreement``: 1 - the probability the mirror view gives the plain view's class;
- ``energy``: minus the log-sum-exp of the head's logits (Liu et al. 2020), higher = less known;
- ``margin``: 1 - (top-1 - top-2 probability).

Printed per run and lab: cells, wrong cells, the share of images flagged unfamiliar, the
share queued by confidence alone and the share of wrong cells it holds, then with each
signal added: wrong cells held and ``q`` the share of cells queued.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.corrections import correction_inputs  # noqa: E402
from training.domains import all_cells, cells_as_rows  # noqa: E402
from training.head_fit import head_weights  # noqa: E402
from yawbcc_desktop.core.adaptation import unit_replay  # noqa: E402
from yawbcc_desktop.core.classes import GROUPS  # noqa: E402
from yawbcc_desktop.core.classifier import TTA_VIEWS, ModelBundle, softmax_with_temperature  # noqa: E402
from yawbcc_desktop.core.familiarity import neighbour_distances  # noqa: E402
from yawbcc_desktop.core.preferences import DEFAULT_REVIEW_THRESHOLD  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def cell_outputs(bundle: ModelBundle, rows) -> dict[str, np.ndarray]:
    """Calibrated probabilities (views averaged as the bundle does), plain and mirror view
    probabilities, pooled features, image familiarity flags."""
    import keras

    from yawbcc_desktop.core.classifier import pooled_features

    both = keras.Model(bundle.model.input, [bundle.model.output, pooled_features(bundle.model)])
    x, signatures = correction_inputs(bundle, rows)
    plain, mirror, feats = [], [], []
    for i in range(0, len(x), 64):
        b = x[i : i + 64].astype(np.float32)
        p, f = both.predict_on_batch(np.concatenate([b, TTA_VIEWS["flip_lr"](b)]))
        p = np.asarray(p, np.float64)
        plain.append(p[: len(b)])
        mirror.append(p[len(b) :])
        feats.append(np.asarray(f, np.float64)[: len(b)])
    plain, mirror, feats = np.concatenate(plain), np.concatenate(mirror), np.concatenate(feats)
    logs = (np.log(np.clip(plain, 1e-30, 1)) + (np.log(np.clip(mirror, 1e-30, 1)) if bundle.card.tta else 0)) / (
        2 if bundle.card.tta else 1
    )
    raw = np.exp(logs - logs.max(axis=1, keepdims=True))
    raw /= raw.sum(axis=1, keepdims=True)
    probs = softmax_with_temperature(raw, bundle.card.temperature)
    fam = bundle.familiarity
    cell = fam.cell_scores(feats)
    unfamiliar = np.array([fam.is_unfamiliar(fam.image_score(cell[i : i + 1], s)) for i, s in enumerate(signatures)])
    return {"probs": probs, "plain": plain, "mirror": mirror, "feats": feats, "unfamiliar": unfamiliar}


def signals(bundle: ModelBundle, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    fam = bundle.familiarity
    feats, probs = out["feats"], out["probs"]
    pred = probs.argmax(axis=1)
    centred = feats - fam.mean
    z = centred @ fam.components.T
    per_class = ((z[:, None, :] - fam.class_means[None]) ** 2 / fam.variances).mean(axis=2)
    resid = np.sum((centred - z @ fam.components) ** 2, axis=1) / fam.residual_scale
    # The shipped check itself (core.familiarity), against the bundle's replay sample.
    knn = neighbour_distances(feats, pred, *unit_replay(bundle.folder))
    w, b = head_weights(bundle)
    logits = feats @ w + b
    m = logits.max(axis=1, keepdims=True)
    energy = -(m[:, 0] + np.log(np.exp(logits - m).sum(axis=1)))
    top2 = np.sort(probs, axis=1)[:, -2:]
    return {
        "class distance": 0.5 * (per_class[np.arange(len(pred)), pred] + resid),
        "nearest class": 0.5 * (per_class.min(axis=1) + resid),
        "kNN replay": knn,
        "view disagreement": 1 - out["mirror"][np.arange(len(pred)), out["plain"].argmax(axis=1)],
        "energy": energy,
        "margin": 1 - (top2[:, 1] - top2[:, 0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--extra-queue", type=float, default=0.01, help="share of trained labs' valid cells a signal may add")
    parser.add_argument("--threshold", type=float, default=DEFAULT_REVIEW_THRESHOLD)
    args = parser.parse_args()
    cells = all_cells(DATA, ROOT / "runs" / "split.csv")
    for run in args.runs:
        bundle = ModelBundle(run)
        held = bundle.card.extra.get("held_out_domain")
        parts = {"valid": cells[cells.split.eq("valid") & ~cells.domain.eq(held)]}
        parts["held-out " + held] = cells[cells.domain.eq(held)]
        for d in sorted(set(cells.domain) - {held}):
            parts[f"{d} test"] = cells[cells.domain.eq(d) & cells.split.eq("test")]
        scored = {}
        for name, part in parts.items():
            out = cell_outputs(bundle, cells_as_rows(part))
            labels = part["group"].map(GROUPS.index).to_numpy()
            scored[name] = (out, signals(bundle, out), labels)
        # The image flag is left out on purpose: the signal must catch what confidence misses on
        # a lab whose images look familiar (each held-out lab here is flagged image by image).
        out, sig, labels = scored["valid"]
        base = out["probs"].max(axis=1) < args.threshold
        cuts = {}
        for s, v in sig.items():
            rest = v[~base]  # the cut is set on the cells the queue does not hold yet
            cuts[s] = float(np.quantile(rest, 1 - args.extra_queue)) if len(rest) else np.inf
        print(f"\n{Path(run).name} (held out: {held}); each signal's cut queues {args.extra_queue:.1%} more of the valid cells")
        head = ["cells", "wrong", "unfamiliar", "queued", "w→q"] + [f"+{s}" for s in sig]
        print(f"{'part':16} " + " ".join(f"{h:>18}" for h in head))
        for name, (out, sig, labels) in scored.items():
            if name == "valid":
                continue
            wrong = out["probs"].argmax(axis=1) != labels
            base = out["probs"].max(axis=1) < args.threshold
            cols = [f"{len(labels):18d}", f"{int(wrong.sum()):18d}", f"{out['unfamiliar'].mean():18.3f}", f"{base.mean():18.3f}"]
            cols.append(f"{_caught(base, wrong):>18}")
            for s, v in sig.items():
                q = base | (v > cuts[s])
                cols.append(f"{_caught(q, wrong)} q{q.mean():.3f}".rjust(18))
            print(f"{name:16} " + " ".join(cols), flush=True)


def _caught(queue: np.ndarray, wrong: np.ndarray) -> str:
    return f"{queue[wrong].mean():.3f}" if wrong.any() else "-"


if __name__ == "__main__":
    main()
