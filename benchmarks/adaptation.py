"""Adapting a bundle to a lab it never saw, from k of that lab's reviewed cells and its others.

    .venv/bin/python benchmarks/adaptation.py --runs runs/lodo-lisc-v4 [--labs lisc] [--k 10 25 50] [--repeats 5]
        [--pick random suggested suggested-features] [--variants supervised semi] [--rules]

A first review session of a new lab, simulated on a lab a bundle never saw (a
leave-one-domain-out run, or any bundle with ``--labs``): every cell of the lab is in the
session; k of them are reviewed — drawn at random, stratified by their true class
(``random``), or the cells the window suggests (``suggested``: ``core.suggest`` on the
session's class probabilities; ``suggested-features``: the same on the cells' pooled
features) — and the bundle is adapted as ``yawbcc adapt --corrections`` adapts it
(``training.adapt.adapt``): ``supervised`` from the reviewed cells alone, ``semi`` with the
session's unreviewed cells as unlabelled data (``training/semi_supervised.py``).  The rest of
the lab (its unreviewed cells) is then scored as the adapted bundle scores it: the new head
on both views, the refitted temperature, the familiarity model that now knows the lab's
reviewed images, and the lab's review rule from cross-validation (``LabReviewRule``).

Printed per k, pick and variant (mean over the draws, and the worst): balanced accuracy over
neutrophil / lymphocyte / monocyte / eosinophil on the rest, before (the bundle as it was)
and after; the share of the rest queued and the share of its wrong cells queued — by
confidence and familiarity alone (``q0``) and with the lab's review rule (``queued``,
``w→q``, the rule's neighbour check included; and without it); PBC test accuracy through
the new head; minutes of the adaptation itself; how well confidence ranks the mistakes, and
how well the agreement of each cell's nearest neighbours in the session does.  With
``--rules``, the queue and its share of the wrong cells by the lab's rule with one part left
out, the classes cross-validation found confused added, and the rule shipped until 2026-12-08
(``rule_variants``).
The backbone is unchanged by adaptation, so every cell's pooled features are computed once.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.adapt import Adaptation, adapt, adapted_familiarity, view_mean  # noqa: E402
from training.adapt_images import measure_statistics  # noqa: E402
from training.corrections import Corrections, correction_inputs  # noqa: E402
from training.domain_fit import balanced_accuracy_four  # noqa: E402
from training.domains import all_cells, cells_as_rows  # noqa: E402
from training.head_fit import head_weights  # noqa: E402
from training.semi_supervised import LabCells  # noqa: E402
from yawbcc_desktop.core.adaptation import MIN_PER_CLASS, LabReviewRule  # noqa: E402
from yawbcc_desktop.core.classes import GROUPS  # noqa: E402
from yawbcc_desktop.core.classifier import TTA_VIEWS, ModelBundle  # noqa: E402
from yawbcc_desktop.core.familiarity import NEIGHBOURS, neighbour_agreement  # noqa: E402
from yawbcc_desktop.core.preferences import DEFAULT_REVIEW_THRESHOLD  # noqa: E402
from yawbcc_desktop.core.suggest import cells_to_review_for_adapting  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
FIGURES = ("before", "after", "accuracy", "q0", "w→q0", "queued", "w→q", "w→q@35", "w→q@35n", "w→q@10", "w→q@20")
FIGURES += ("unfam", "changed", "w→changed", "q without", "w→q without")
FIGURES += ("pseudo", "minutes")
# The lab's rule with one part left out, or the parts it had until 2026-12-08 put back, to see
# what each buys (``--rules``, ``rule_variants``).
RULE_VARIANTS = ("no changed calls", "no neighbour check", "with confused classes", "the rule before")
FIGURES += tuple(f"{share} {name}" for share in ("q", "w→q") for name in RULE_VARIANTS)
QUEUE_BUDGET = 0.35  # the share of a lab's cells its queue may hold once adapted (issue 24)


def draw(labels: np.ndarray, k: int, rng, sources: np.ndarray | None = None) -> np.ndarray:
    """k indices stratified over the classes present (each class at least one where k allows);
    with ``sources``, at most one copy of each source cell (a copy drawn at random)."""
    if sources is not None:
        one = np.array([rng.choice(np.flatnonzero(sources == s)) for s in np.unique(sources)])
        return one[draw(labels[one], k, rng)]
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(k * counts / counts.sum())).astype(int)
    while quota.sum() > k:
        quota[np.argmax(quota)] -= 1
    while quota.sum() < k:
        room = counts - quota
        quota[np.argmax(room * (room > 0))] += 1
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota)])


class Lab:
    """One lab's cells through one bundle: inputs framed once, features of both views."""

    def __init__(self, bundle: ModelBundle, cells, statistics_share: float = 0.0):
        self.bundle = bundle
        self.rows = cells_as_rows(cells)
        self.labels = cells["group"].map(GROUPS.index).to_numpy()
        self.sources = source_cells(cells)
        t0 = time.monotonic()
        inputs, self.signatures = correction_inputs(bundle, self.rows)
        if statistics_share:
            # The session's cells re-measure the backbone's batch-norm statistics before the
            # head is fitted (the bundle is changed in place: one lab per run).
            measure_statistics(bundle.model, inputs, statistics_share)
        self.plain = bundle.features(inputs)
        self.mirror = bundle.features(TTA_VIEWS["flip_lr"](inputs))
        self.seconds_per_cell = (time.monotonic() - t0) / len(self.rows)
        # What a session stores of each cell (64 at a time: a whole lab at once would not fit in memory).
        self.session_probs = np.concatenate([bundle.classify(inputs[i : i + 64])[0] for i in range(0, len(inputs), 64)])

    def probs(self, w: np.ndarray, b: np.ndarray, temperature: float, idx: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (GROUPS order) of cells ``idx`` through a head, views as the bundle averages them."""
        order = self.bundle.card.class_order
        out = view_mean(LabCells(self.plain[idx], self.mirror[idx]), w, b, temperature, bool(self.bundle.card.tta))
        return out[:, [order.index(g) for g in GROUPS]]


def source_cells(cells) -> np.ndarray:
    """A source-cell number per row: LISC's augmented copies of one cell share one
    (``training.source_cells.group_copies``, per class folder), every other cell is its own."""
    from training.source_cells import group_copies

    sources = np.arange(len(cells))
    lisc = cells["domain"].eq("lisc").to_numpy()
    for group in cells.loc[lisc, "group"].unique():
        idx = np.flatnonzero(lisc & cells["group"].eq(group).to_numpy())
        idx = idx[np.argsort(cells["path"].to_numpy()[idx])]  # file-number order, as group_copies reads them
        sources[idx] = len(cells) + 1000 * GROUPS.index(group) + group_copies(cells["path"].to_numpy()[idx])
    return sources


def one_session(lab: Lab, pick: np.ndarray, semi: bool, threshold: float, seed: int) -> dict:
    bundle = lab.bundle
    # The session is the reviewed cells and the lab's other cells: the other copies of a
    # reviewed source cell are neither (their labels would leak into the figures).
    rest = np.flatnonzero(~np.isin(lab.sources, lab.sources[pick]))
    rows = lab.rows.iloc[pick].reset_index(drop=True)
    unlabelled = LabCells(lab.plain[rest], lab.mirror[rest], [lab.signatures[i] for i in rest]) if semi else None
    t0 = time.monotonic()
    result = adapt(
        bundle,
        Corrections(rows, [], "", []),
        seed=seed,
        log=lambda _m: None,
        min_per_class=MIN_PER_CLASS,
        min_cells=5,
        features=lab.plain[pick],
        unlabelled=unlabelled,
    )
    minutes = (time.monotonic() - t0 + lab.seconds_per_cell * (len(pick) + (len(rest) if semi else 0))) / 60
    kept = rows["label"].isin(result.report["cells_per_class"]).to_numpy()
    probs = lab.probs(result.w, result.b, result.temperature, rest)
    # As the adapted bundle's familiarity knows them: the reviewed images, and with "semi" the others too.
    known = [lab.signatures[i] for i in pick[kept]] + (unlabelled.signatures if unlabelled is not None else [])
    fam = adapted_familiarity(bundle, lab.plain[pick][kept], result.lab_labels, known)
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    if fam is not None:
        cell = fam.cell_scores(lab.plain[rest])
        unfamiliar = np.array(
            [fam.is_unfamiliar(fam.image_score(cell[j : j + 1], lab.signatures[i])) for j, i in enumerate(rest)]
        )
    else:
        unfamiliar = np.zeros(len(rest), bool)
    q0 = (conf < threshold) | unfamiliar
    # The neighbour check as the adapted bundle runs it, on the session's cells it keeps (the
    # other copies of a LISC cell left out of its neighbours: the app would count them).
    agree = np.ones(len(rest))
    if result.session is not None:
        ref_sources = np.concatenate([lab.sources[pick[kept]], lab.sources[rest]])
        agree = neighbour_agreement(lab.plain[rest], pred, *result.session, lab.sources[rest][:, None] == ref_sources[None, :])
    w0, b0 = head_weights(bundle)
    base = lab.probs(w0, b0, bundle.card.temperature, rest).argmax(axis=1)
    ruled = queued_by(result.rule, pred, conf, agree, base)
    ruled_before = queued_by(replace(result.rule, session_neighbours=False), pred, conf, agree, base)
    changed = base != pred
    queue = q0 | ruled
    truth = lab.labels[rest]
    wrong = pred != truth
    # How well confidence ranks the mistakes: wrong cells among the least sure QUEUE_BUDGET of the rest.
    caught = {b: wrong_among_first(np.argsort(conf), wrong, b) for b in (0.1, 0.2, QUEUE_BUDGET)}
    # The same for the cells whose nearest cells of the session were called another class.
    caught_nb = wrong_among_first(np.lexsort((conf, agree)), wrong)
    without = q0 | ruled_before
    variants = rule_variants(result, bundle.card.class_order, conf if semi else None)
    by_variant = {name: q0 | queued_by(rule, pred, conf, agree, base) for name, rule in variants.items()}
    return {
        **{f"q {name}": float(q.mean()) for name, q in by_variant.items()},
        **{f"w→q {name}": float(q[wrong].mean()) if wrong.any() else 1.0 for name, q in by_variant.items()},
        "before": balanced_accuracy_four(truth, base),
        "after": balanced_accuracy_four(truth, pred),
        "accuracy": float(np.mean(~wrong)),
        "q0": float(q0.mean()),
        "w→q0": float(q0[wrong].mean()) if wrong.any() else 1.0,
        "queued": float(queue.mean()),
        "w→q": float(queue[wrong].mean()) if wrong.any() else 1.0,
        "w→q@35": caught[QUEUE_BUDGET],
        "w→q@35n": caught_nb,
        "q without": float(without.mean()),
        "w→q without": float(without[wrong].mean()) if wrong.any() else 1.0,
        "w→q@10": caught[0.1],
        "w→q@20": caught[0.2],
        "unfam": float(unfamiliar.mean()),
        "changed": float(changed.mean()),
        "w→changed": float(changed[wrong].mean()) if wrong.any() else 1.0,
        "pseudo": result.report["pseudo_labelled_cells"],
        "head": (result.w, result.b),
        "minutes": minutes,
        "rule": result.rule,
    }


def wrong_among_first(ranking: np.ndarray, wrong: np.ndarray, share: float = QUEUE_BUDGET) -> float:
    """The share of the wrong cells among the first ``share`` of the cells in ``ranking``
    (indices, the most doubtful first): how well a signal ranks the mistakes, for a queue of
    that size."""
    first = ranking[: int(round(share * len(ranking)))]
    return float(wrong[first].sum() / max(wrong.sum(), 1))


def queued_by(rule: LabReviewRule, pred: np.ndarray, conf: np.ndarray, agree: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Which cells (GROUPS calls, confidences, neighbour agreements, GROUPS calls before
    adapting) a lab's rule gives a reason to wait."""
    return np.array([bool(rule.reasons(GROUPS[p], c, a, GROUPS[w])) for p, c, a, w in zip(pred, conf, agree, before)])


def rule_variants(result: Adaptation, order: list[str], session_conf: np.ndarray | None) -> dict[str, LabReviewRule]:
    """The adapted rule (``order``: the bundle's class order) without its changed-call check,
    without its neighbour check, with the classes cross-validation found confused (more than
    a fifth of the out-of-fold cells called them wrong), and the rule shipped until 2026-12-08:
    those classes, the neighbour check, and a bar at the surest out-of-fold mistake, at least
    the confidence below which five times the out-of-fold error rate (20-30 %) of the
    session's unreviewed cells (``session_conf``, through the new head; None: none) fall."""
    said = result.oof.argmax(axis=1)
    wrong = said != result.lab_labels
    confused = tuple(order[c] for c in np.unique(said) if np.mean(wrong[said == c]) > 0.2)
    with_confused = replace(result.rule, unreliable_classes=tuple(sorted({*result.rule.unreliable_classes, *confused})))
    bar = float(result.oof.max(axis=1)[wrong].max()) if wrong.any() else 0.0
    share = float(np.clip(5.0 * np.mean(wrong), 0.2, 0.3))
    if session_conf is not None:
        bar = max(bar, float(np.quantile(session_conf, share)))
    bar = min(float(np.ceil(bar * 1000) / 1000), 0.999)
    return {
        "no changed calls": replace(result.rule, changed_calls=False),
        "no neighbour check": replace(result.rule, session_neighbours=False),
        "with confused classes": with_confused,
        "the rule before": replace(with_confused, min_confidence=bar, changed_calls=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--labs", nargs="+", help="labs to adapt to (default: each run's held-out lab)")
    parser.add_argument("--k", nargs="+", type=int, default=[10, 25, 50])
    parser.add_argument("--repeats", type=int, default=5, help="random draws per k")
    parser.add_argument(
        "--pick", nargs="+", default=["random", "suggested"], choices=["random", "suggested", "suggested-features"]
    )
    parser.add_argument("--variants", nargs="+", default=["supervised", "semi"], choices=["supervised", "semi"])
    parser.add_argument("--threshold", type=float, default=DEFAULT_REVIEW_THRESHOLD)
    parser.add_argument(
        "--lab-statistics",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="first re-measure the batch-norm statistics on the lab's cells, this share of them (0: no)",
    )
    parser.add_argument("--no-pbc", action="store_true", help="skip PBC test accuracy through the new heads")
    parser.add_argument("--rules", action="store_true", help="also score the lab's rule with each of its parts left out")
    args = parser.parse_args()
    cells = all_cells(DATA, ROOT / "runs" / "split.csv")
    pbc_test = cells[cells.domain.eq("pbc") & cells.split.eq("test")]
    head = f"{'bundle':18} {'lab':7} {'k':>3} {'pick':19} {'variant':10} {'before':>6} {'after (worst)':>14} {'acc':>6} "
    print(head + f"{'q0':>6} {'w→q0':>6} {'queued':>7} {'w→q':>6} {'w@35%':>6} {'pseudo':>6} {'PBC':>7} {'min':>5}")
    for run in args.runs:
        bundle = ModelBundle(run)
        pbc = None
        for lab_name in args.labs or [bundle.card.extra.get("held_out_domain")]:
            lab = Lab(bundle, cells[cells.domain.eq(lab_name)].reset_index(drop=True), args.lab_statistics)
            # After the lab's statistics (if any): PBC as the adapted bundle would see it.
            pbc = pbc or (None if args.no_pbc else Lab(bundle, pbc_test))
            for k in args.k:
                for how in args.pick:
                    if how == "random":
                        picks = [
                            draw(lab.labels, k, np.random.default_rng(1000 * k + r), lab.sources) for r in range(args.repeats)
                        ]
                    else:
                        feats = lab.plain if how == "suggested-features" else None
                        picks = [cells_to_review_for_adapting(lab.session_probs, k, feats)]
                    for variant in args.variants:
                        runs = [one_session(lab, p, variant == "semi", args.threshold, seed=i) for i, p in enumerate(picks)]
                        mean = {key: np.mean([r[key] for r in runs]) for key in FIGURES}
                        worst = min(r["after"] for r in runs)
                        pbc_acc = np.mean([_pbc_accuracy(pbc, *r["head"], bundle) for r in runs]) if pbc else float("nan")
                        print(
                            f"{bundle.name:18} {lab_name:7} {k:3d} {how:19} {variant:10} {mean['before']:6.3f} "
                            f"{mean['after']:6.3f} ({worst:.3f}) {mean['accuracy']:6.3f} {mean['q0']:6.3f} {mean['w→q0']:6.3f} "
                            f"{mean['queued']:7.3f} {mean['w→q']:6.3f} {mean['w→q@35']:6.3f} {mean['pseudo']:6.0f} "
                            f"{pbc_acc:7.4f} {mean['minutes']:5.2f}  unfamiliar {mean['unfam']:.3f}, "
                            f"class changed by adapting {mean['changed']:.3f} (wrong {mean['w→changed']:.3f}); "
                            "wrong among the least "
                            f"sure 10 / 20 %: {mean['w→q@10']:.3f} / {mean['w→q@20']:.3f}; among the 35 % whose "
                            f"neighbours agree least: {mean['w→q@35n']:.3f}; without the neighbour check queued "
                            f"{mean['q without']:.3f}, wrong queued {mean['w→q without']:.3f}",
                            flush=True,
                        )
                        if args.rules and variant == "semi":
                            parts = [f"{n}: {mean['q ' + n]:.3f} / {mean['w→q ' + n]:.3f}" for n in RULE_VARIANTS]
                            print("    queued / wrong queued, the lab's rule " + "; ".join(parts), flush=True)
    print("before/after: balanced accuracy over NEU/LYM/MON/EOS on the lab's unreviewed cells (worst of the draws);")
    print("q0: share of them queued by confidence and familiarity alone; queued, w→q: with the lab's review rule; w→q0, w→q:")
    print("share of the wrong ones queued; w@35%: share of the wrong ones among the least sure 35 % (how well confidence")
    print("ranks the mistakes); pseudo: unreviewed cells that joined the fit; min: minutes of the adaptation.")
    print(f"neighbours agree: the share of a cell's {NEIGHBOURS} most similar other cells of the session (the reviewed with")
    print("their class, copies of its source cell left out) called its class; the least agreeing first, the least sure among")
    print("equals. The lab's rule (queued, w→q) queues a cell unless all of them were; without the neighbour check: as before.")


def _pbc_accuracy(pbc: Lab, w: np.ndarray, b: np.ndarray, bundle: ModelBundle) -> float:
    probs = pbc.probs(w, b, bundle.card.temperature, np.arange(len(pbc.labels)))
    return float(np.mean(probs.argmax(axis=1) == pbc.labels))


if __name__ == "__main__":
    main()
