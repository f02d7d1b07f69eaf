"""Adapt a bundle to a new lab from its reviewers' corrections, in minutes.

What a few dozen cells can fit without undoing what the bundle knows: the classification
head (the last dense layer, on the backbone's pooled features), refitted on the lab's cells
together with the bundle's *replay* sample — pooled features of its own training cells,
stored in the bundle (``replay.npz``), so the old labs are not forgotten and no base image
is needed at the lab.  The backbone stays as it is, so a fit is a few seconds of numpy.

Honest figures: the head is fitted k-fold on the corrections, and every correction is
scored by a head that never saw it (accuracy before = the base bundle, after = out of fold).
The temperature is refitted on those out-of-fold predictions when there are enough cells.
The lab's images are added to the bundle's familiarity model, so they stop being flagged
*unfamiliar*; the base bundle's own test figures stay in the card beside the new ones.
The command around it is ``training/adapt_command.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from yawbcc_desktop.core.adaptation import (
    BASE_HEAD_FILE,
    LAB_CELLS_FILE,
    MIN_CELLS,
    MIN_NEIGHBOUR_CELLS,
    MIN_PER_CLASS,
    REPLAY_FILE,
    LabReviewRule,
)
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.classifier import MODEL_FILE, ModelBundle, softmax_with_temperature
from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE, Familiarity, unit_rows

from .card import write_card
from .corrections import Corrections, CorrectionsError, ProgressFn, _no_progress, correction_features, usable_rows
from .head_fit import _folds, _softmax, head_weights
from .semi_supervised import LabCells, fit_lab_head
from .whole_folder import write_whole

MIN_ERRORS_FOR_TEMPERATURE = 3  # fewer out-of-fold mistakes say nothing about how sure to be


@dataclass
class Adaptation:
    w: np.ndarray
    b: np.ndarray
    temperature: float
    report: dict
    lab_features: np.ndarray
    lab_labels: np.ndarray
    signatures: list[np.ndarray]
    rule: LabReviewRule  # the lab's review rule (lab named when written)
    # The corrected cells' calibrated out-of-fold probabilities (benchmarks/adaptation.py
    # scores other rules on them).
    oof: np.ndarray
    # The session's cells as the bundle keeps them for the rule's neighbour check: unit pooled
    # features and classes (GROUPS indices: the reviewer's, else the adapted head's call);
    # None when the session is too small.
    session: tuple[np.ndarray, np.ndarray] | None = None


def adapt(
    bundle: ModelBundle,
    corrections: Corrections,
    seed: int = 0,
    log=print,
    min_per_class: int = MIN_PER_CLASS,
    min_cells: int = MIN_CELLS,
    features: np.ndarray | None = None,
    progress: ProgressFn = _no_progress,
    unlabelled: LabCells | None = None,
) -> Adaptation:
    """Fit the head to the lab's corrections (with replay; with ``unlabelled``, the lab's
    unreviewed cells, self-trained on their pseudo-labels) and measure it out of fold.

    ``features``: the rows' pooled features when the caller has them already (benchmarks)."""
    t0 = time.monotonic()
    replay_path = bundle.folder / REPLAY_FILE
    if not replay_path.is_file():
        raise CorrectionsError(f"{bundle.folder}: this bundle has no {REPLAY_FILE}, so it cannot be adapted (retrain it instead)")
    order = bundle.card.class_order
    keep, usable, counts = usable_rows(corrections.rows, order, min_per_class, min_cells)
    rows = corrections.rows[keep].reset_index(drop=True)
    log(f"adapting {bundle.name} to {len(rows)} cells: " + ", ".join(f"{g} {int(counts[g])}" for g in usable))
    if features is None:
        feats, signatures = correction_features(bundle, rows, progress)
    else:
        feats, signatures = features[keep], []
    labels = np.array([order.index(g) for g in rows["label"]])
    with np.load(replay_path) as rp:
        r_feats, r_labels = rp["features"].astype(np.float64), rp["labels"]
        r_domains = rp["domains"]
    # Replay labels are stored in GROUPS order; the head works in the card's order.
    r_labels = np.array([order.index(GROUPS[i]) for i in r_labels])
    w0, b0 = head_weights(bundle)
    base_probs = softmax_with_temperature(_softmax(feats @ w0 + b0), bundle.card.temperature)

    k = int(min(5, counts[usable].min(), len(rows)))
    fold = _folds(labels, k, seed)
    oof = np.zeros((len(rows), len(order)))
    for f in range(k):
        progress("fitting", f, k + 1)
        tr = fold != f
        w, b, _ = fit_lab_head(feats[tr], labels[tr], r_feats, r_labels, w0, b0, unlabelled)
        oof[~tr] = _softmax(feats[~tr] @ w + b)
    progress("fitting", k, k + 1)
    w, b, pseudo = fit_lab_head(feats, labels, r_feats, r_labels, w0, b0, unlabelled)
    oof_errors = int(np.sum(oof.argmax(axis=1) != labels))
    if len(rows) >= 40 and oof_errors >= MIN_ERRORS_FOR_TEMPERATURE:
        from .calibration import fit_temperature

        temperature, how = fit_temperature(oof, labels), "refitted on out-of-fold predictions"
    elif len(rows) < 40:
        temperature, how = bundle.card.temperature, "kept from the base bundle (under 40 cells)"
    else:
        # Without mistakes to learn from, the likelihood is best at the sharpest temperature
        # allowed: every later cell would look certain.  The base bundle's is kept.
        temperature, how = bundle.card.temperature, f"kept from the base bundle ({oof_errors} out-of-fold errors)"
    replay_acc_before = float(np.mean((r_feats @ w0 + b0).argmax(axis=1) == r_labels))
    replay_acc_after = float(np.mean((r_feats @ w + b).argmax(axis=1) == r_labels))
    before, after = base_probs.argmax(axis=1), oof.argmax(axis=1)
    report = {
        "cells": int(len(rows)),
        "cells_per_class": {g: int(counts[g]) for g in usable},
        "classes_not_adapted": {g: int(counts[g]) for g in counts.index if g not in usable},
        "folds": k,
        "unreviewed_cells": len(unlabelled) if unlabelled is not None else 0,
        "pseudo_labelled_cells": pseudo,
        "accuracy_before": float(np.mean(before == labels)),
        "accuracy_after_cross_validated": float(np.mean(after == labels)),
        "balanced_accuracy_before": _balanced(labels, before),
        "balanced_accuracy_after_cross_validated": _balanced(labels, after),
        "replay_accuracy_before": replay_acc_before,
        "replay_accuracy_after": replay_acc_after,
        "replay_domains": sorted(set(map(str, r_domains))),
        "temperature": temperature,
        "temperature_how": how,
        "seconds": round(time.monotonic() - t0, 1),
    }
    progress("fitting", k + 1, k + 1)
    log(
        f"cross-validated ({k} folds) on the lab's cells: accuracy {report['accuracy_before']:.3f} -> "
        f"{report['accuracy_after_cross_validated']:.3f}, balanced {report['balanced_accuracy_before']:.3f} -> "
        f"{report['balanced_accuracy_after_cross_validated']:.3f}; "
        f"replay sample {replay_acc_before:.3f} -> {replay_acc_after:.3f}"
    )
    session = None
    if unlabelled is not None and len(unlabelled) and len(rows) + len(unlabelled) >= MIN_NEIGHBOUR_CELLS:
        called = view_mean(unlabelled, w, b, temperature, bool(bundle.card.tta))
        classes = np.concatenate([labels, called.argmax(axis=1)])
        session = (
            unit_rows(np.concatenate([feats, unlabelled.plain])),
            np.array([GROUPS.index(order[c]) for c in classes], np.int8),
        )
    oof = softmax_with_temperature(oof, temperature)
    rule = lab_review_rule(order, usable, "", session is not None)
    report["session_cells_kept"] = len(session[1]) if session is not None else 0
    # The lab's images, reviewed or not, join the familiarity model: the lab is known now.
    signatures = list(signatures) + (list(unlabelled.signatures) if unlabelled is not None else [])
    report["lab_review"] = rule.to_card()
    return Adaptation(w, b, temperature, report, feats, labels, signatures, rule, oof, session)


def lab_review_rule(order: list[str], adapted: list[str], lab: str, session_neighbours: bool = False) -> LabReviewRule:
    """The adapted bundle's review rule for its lab: a cell waits when called a class too few
    corrections taught, when the adaptation changed its class (the head before adapting is
    kept beside the new one), and with ``session_neighbours`` (the session's cells kept in the
    bundle) when not all its nearest cells of the lab were called its class.  The user's
    confidence threshold and the familiarity model still apply, on the refitted temperature.

    No confidence bar of the lab's own: the surest out-of-fold mistake (at least the least
    sure fifth of the session), shipped until 2026-12-08, queued 48-95 % of the lab's other
    cells and let Bio-Net's sure mistakes through; the changed calls hold them for a smaller
    queue (benchmarks/adaptation.py --rules)."""
    unreliable = tuple(g for g in order if g not in adapted)
    return LabReviewRule(lab, 0.0, unreliable, session_neighbours, changed_calls=True)


def view_mean(cells: LabCells, w: np.ndarray, b: np.ndarray, temperature: float, mirror: bool) -> np.ndarray:
    """Calibrated probabilities (the head's order) of the cells through a head, their plain and,
    with ``mirror``, mirror views averaged as the bundle averages them."""
    logs = np.log(np.clip(_softmax(cells.plain @ w + b), 1e-30, 1.0))
    if mirror:
        logs = (logs + np.log(np.clip(_softmax(cells.mirror @ w + b), 1e-30, 1.0))) / 2
    raw = np.exp(logs - logs.max(axis=1, keepdims=True))
    return softmax_with_temperature(raw / raw.sum(axis=1, keepdims=True), temperature)


def _balanced(labels: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)]))


def write_adapted(
    bundle: ModelBundle,
    result: Adaptation,
    corrections: Corrections,
    name: str,
    dest: Path,
    lab: str,
    progress: ProgressFn = _no_progress,
) -> Path:
    """The adapted bundle: the base model with the new head, its card, familiarity and replay.

    Written into ``.NAME.partial`` (a stale one from a killed run is replaced) and renamed at
    the end; on any error or interruption the partial folder is removed."""
    out = write_whole(dest, name, lambda tmp: _write_partial(bundle, result, corrections, name, tmp, lab, progress))
    progress("writing", 4, 4)
    return out


def _write_partial(
    bundle: ModelBundle, result: Adaptation, corrections: Corrections, name: str, tmp: Path, lab: str, progress: ProgressFn
) -> None:
    from .fit import save_for_inference

    progress("writing", 0, 4)
    tmp.mkdir(parents=True)
    layer = bundle.model.get_layer("logits")
    old = layer.get_weights()
    layer.set_weights([result.w.astype(np.float32), result.b.astype(np.float32)])
    try:
        save_for_inference(bundle.model, tmp / MODEL_FILE)
    finally:
        layer.set_weights(old)
    np.savez(tmp / BASE_HEAD_FILE, kernel=old[0], bias=old[1])
    progress("writing", 1, 4)
    _adapt_familiarity(bundle, result, tmp / FAMILIARITY_FILE)
    progress("writing", 2, 4)
    with np.load(bundle.folder / REPLAY_FILE) as rp:
        # The lab's cells join the replay sample, so a later adaptation keeps this lab too.
        order = bundle.card.class_order
        np.savez_compressed(
            tmp / REPLAY_FILE,
            features=np.concatenate([rp["features"], result.lab_features.astype(np.float16)]),
            labels=np.concatenate([rp["labels"], [GROUPS.index(order[i]) for i in result.lab_labels]]).astype(rp["labels"].dtype),
            domains=np.concatenate([rp["domains"], np.full(len(result.lab_labels), lab)]).astype(str),
        )
    if result.session is not None:
        unit, classes = result.session
        np.savez_compressed(tmp / LAB_CELLS_FILE, features=unit.astype(np.float16), classes=classes)
    progress("writing", 3, 4)
    base = bundle.card
    extra = {
        # The base's per-cell check does not run in the adapted bundle (adapted_familiarity).
        **{k: v for k, v in base.extra.items() if k != "neighbour_check"},
        "adapted_from": bundle.name,
        "adaptation": {
            **result.report,
            "lab": lab,
            "corrections_sha256": corrections.sha256,
            "reviewers": corrections.reviewers,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "method": "head refitted on the lab's cells with the base bundle's replay sample"
            + (
                ", self-trained on the unreviewed cells whose two views agreed (pseudo-labels)"
                if result.report.get("pseudo_labelled_cells")
                else ""
            )
            + "; backbone unchanged",
        },
        "base_test_metrics": base.metrics,
        "lab_review": replace(result.rule, lab=lab).to_card(),
        "training_domains": [*base.extra.get("training_domains", []), lab],
    }
    write_card(tmp, replace(base, name=name, temperature=result.temperature, extra=extra))


def _adapt_familiarity(bundle: ModelBundle, result: Adaptation, path: Path) -> None:
    fam = adapted_familiarity(bundle, result.lab_features, result.lab_labels, result.signatures)
    if fam is not None:
        fam.save(path)


def adapted_familiarity(
    bundle: ModelBundle, lab_features: np.ndarray, lab_labels: np.ndarray, signatures: list[np.ndarray]
) -> Familiarity | None:
    """The lab becomes a training domain of the familiarity model: its cells join the feature
    model (threshold rescaled so the replay sample keeps its share under it) and its images
    join the acquisition references.  ``lab_labels`` in the card's class order."""
    fam = bundle.familiarity
    if fam is None:
        return None
    with np.load(bundle.folder / REPLAY_FILE) as rp:
        r_feats, r_labels = rp["features"].astype(np.float64), rp["labels"]
    order = bundle.card.class_order
    lab_groups = np.array([GROUPS.index(order[i]) for i in lab_labels])
    share = float(np.mean(fam.cell_scores(r_feats) <= fam.threshold))
    new = Familiarity.fit(np.concatenate([r_feats, lab_features]), np.concatenate([r_labels, lab_groups]))
    new.threshold = float(np.quantile(new.cell_scores(r_feats), share))
    # No per-cell check against the replay sample (neighbour_threshold stays infinite): it
    # would judge the lab's cells by other labs' and a few dozen reviewed ones.  On the lab,
    # its rule's neighbour check against the session's own cells stands in for it.
    if fam.acquisition is not None:
        new.acquisition = fam.acquisition.with_references(np.stack(signatures)) if len(signatures) else fam.acquisition
    return new
