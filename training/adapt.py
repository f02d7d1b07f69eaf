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

    python -m training adapt --model NAME|DIR --corrections CELLS.csv --name NEW [--dest DIR]
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.classifier import (
    CARD_FILE,
    MODEL_FILE,
    ModelBundle,
    ModelBundleError,
    resolve_bundle,
    softmax_with_temperature,
)
from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE, acquisition_signature
from yawbcc_desktop.core.imageio import ImageReadError, read_rgb

REPLAY_FILE = "replay.npz"
# A class is adapted from at least this many of the lab's cells, and an adaptation needs
# at least this many in all: fewer cannot be checked by cross-validation.
MIN_PER_CLASS = 5
MIN_CELLS = 30
LAB_SHARE = 0.5  # weight of the lab's cells against the replay sample in the head's loss
L2_TO_BASE = 1e-3  # pull towards the base head: few cells must not swing it far


class CorrectionsError(Exception):
    """The corrections file cannot be used; the message names the file, rows and problem."""


@dataclass
class Corrections:
    rows: pd.DataFrame  # usable rows: path, label, mode, x, y, width, height
    skipped: list[str]  # one line per row left out, naming it and why
    sha256: str
    reviewers: list[str]


def read_corrections(csv_path: str | Path) -> Corrections:
    """Reviewed rows of a ``yawbcc export --cells`` file (or any CSV with ``path`` and a label
    column); rows with an unknown label or an unreadable image are left out and named."""
    csv_path = Path(csv_path)
    try:
        raw = csv_path.read_bytes()
        frame = pd.read_csv(csv_path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CorrectionsError(f"{csv_path}: cannot read the corrections file ({exc})") from None
    label_col = next((c for c in ("final_label", "label", "group") if c in frame.columns), None)
    if "path" not in frame.columns or label_col is None:
        raise CorrectionsError(f"{csv_path}: needs the columns path and final_label (as yawbcc export --cells writes)")
    frame = frame.assign(row=np.arange(2, len(frame) + 2))  # spreadsheet row numbers (header is row 1)
    if "reviewed" in frame.columns:
        frame = frame[frame["reviewed"].str.lower().isin(["yes", "true", "1"])]
    skipped = []
    keep = []
    readable: dict[str, bool] = {}
    for r in frame.itertuples(index=False):
        label = getattr(r, label_col).strip().upper()
        if label == "ARTEFACT":
            continue  # not a cell: nothing to learn for a cell class
        if label not in GROUPS:
            skipped.append(f"row {r.row}: unknown label {getattr(r, label_col)!r} (expected one of {', '.join(GROUPS)})")
            continue
        if r.path not in readable:
            try:
                read_rgb(r.path)
                readable[r.path] = True
            except ImageReadError as exc:
                readable[r.path] = False
                skipped.append(f"row {r.row}: {r.path}: {exc.reason}")
                continue
        if not readable[r.path]:
            skipped.append(f"row {r.row}: {r.path}: unreadable (see above)")
            continue
        keep.append(r)
    rows = pd.DataFrame(keep, columns=frame.columns) if keep else frame.iloc[0:0]
    rows = rows.assign(label=rows[label_col].str.strip().str.upper())
    reviewers = sorted({v for v in rows.get("reviewer", pd.Series(dtype=str)) if v})
    return Corrections(rows.reset_index(drop=True), skipped, hashlib.sha256(raw).hexdigest(), reviewers)


def correction_inputs(bundle: ModelBundle, rows: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Model inputs of the corrected cells, framed exactly as the application framed them, and
    the acquisition signature of each row's image."""
    from yawbcc_desktop.core.cells import CellRegion
    from yawbcc_desktop.core.pipeline import model_input
    from yawbcc_desktop.core.scale import estimate_um_per_px

    inputs, signatures = [], []
    cache: dict[str, tuple[np.ndarray, float]] = {}
    for r in rows.itertuples(index=False):
        if r.path not in cache:
            rgb = read_rgb(r.path)
            cache = {r.path: (rgb, estimate_um_per_px(rgb).um_per_px)}  # rows come image by image
        rgb, um = cache[r.path]
        mode = getattr(r, "mode", "") or "cell"
        if mode == "smear":
            x, y, w, h = (int(float(getattr(r, k))) for k in ("x", "y", "width", "height"))
            region = CellRegion(x, y, max(w, 1), max(h, 1), np.ones((max(h, 1), max(w, 1)), bool))
        else:
            mode = "cell"
            region = CellRegion(0, 0, rgb.shape[1], rgb.shape[0], np.ones(rgb.shape[:2], bool))
        inputs.append(model_input(rgb, mode, [region], bundle.card, um)[0])
        signatures.append(acquisition_signature(rgb, um))
    return np.stack(inputs), signatures


def pooled(bundle: ModelBundle, inputs: np.ndarray) -> np.ndarray:
    import keras

    from yawbcc_desktop.core.classifier import pooled_features

    extractor = keras.Model(bundle.model.input, pooled_features(bundle.model))
    return np.concatenate(
        [np.asarray(extractor.predict_on_batch(inputs[i : i + 64].astype(np.float32))) for i in range(0, len(inputs), 64)]
    )


def head_weights(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray]:
    """The logits layer's kernel (D, C) and bias (C,), in the model's output order."""
    w, b = bundle.model.get_layer("logits").get_weights()
    return np.asarray(w, np.float64), np.asarray(b, np.float64)


def fit_head(
    feats: np.ndarray, labels: np.ndarray, weights: np.ndarray, w0: np.ndarray, b0: np.ndarray, steps: int = 300, lr: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted softmax regression from the base head (Adam, full batch), with an L2 pull to it."""
    w, b = w0.copy(), b0.copy()
    onehot = np.eye(w.shape[1])[labels]
    weights = weights / weights.sum()
    m = [np.zeros_like(w), np.zeros_like(b)]
    v = [np.zeros_like(w), np.zeros_like(b)]
    for t in range(1, steps + 1):
        logits = feats @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * weights[:, None]
        grads = [feats.T @ g + L2_TO_BASE * (w - w0), g.sum(axis=0)]
        for i, (param, grad) in enumerate(zip((w, b), grads)):
            m[i] = 0.9 * m[i] + 0.1 * grad
            v[i] = 0.999 * v[i] + 0.001 * grad**2
            param -= lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
    return w, b


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sample_weights(n_lab: int, n_replay: int) -> np.ndarray:
    return np.concatenate([np.full(n_lab, LAB_SHARE / max(n_lab, 1)), np.full(n_replay, (1 - LAB_SHARE) / max(n_replay, 1))])


def _folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Stratified fold number per cell (round robin within each class after a shuffle)."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), int)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = np.arange(len(idx)) % k
    return fold


@dataclass
class Adaptation:
    w: np.ndarray
    b: np.ndarray
    temperature: float
    report: dict
    lab_features: np.ndarray
    lab_labels: np.ndarray
    signatures: list[np.ndarray]


def adapt(
    bundle: ModelBundle,
    corrections: Corrections,
    seed: int = 0,
    log=print,
    min_per_class: int = MIN_PER_CLASS,
    min_cells: int = MIN_CELLS,
    features: np.ndarray | None = None,
) -> Adaptation:
    """Fit the head to the lab's corrections (with replay) and measure it out of fold.

    ``features``: the rows' pooled features when the caller has them already (benchmarks)."""
    t0 = time.monotonic()
    replay_path = bundle.folder / REPLAY_FILE
    if not replay_path.is_file():
        raise CorrectionsError(f"{bundle.folder}: this bundle has no {REPLAY_FILE}, so it cannot be adapted (retrain it instead)")
    order = bundle.card.class_order
    rows = corrections.rows
    counts = rows["label"].value_counts()
    usable = [g for g in order if counts.get(g, 0) >= min_per_class]
    keep = rows["label"].isin(usable).to_numpy()
    rows = rows[keep].reset_index(drop=True)
    if len(rows) < min_cells:
        raise CorrectionsError(
            f"only {len(rows)} corrected cells in classes with at least {min_per_class} cells; "
            f"adapting needs at least {min_cells} (per class now: {dict(counts)})"
        )
    log(f"adapting {bundle.name} to {len(rows)} cells: " + ", ".join(f"{g} {int(counts[g])}" for g in usable))
    if features is None:
        inputs, signatures = correction_inputs(bundle, rows)
        feats = pooled(bundle, inputs)
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
        tr = fold != f
        w, b = fit_head(
            np.concatenate([feats[tr], r_feats]),
            np.concatenate([labels[tr], r_labels]),
            _sample_weights(int(tr.sum()), len(r_feats)),
            w0,
            b0,
        )
        oof[~tr] = _softmax(feats[~tr] @ w + b)
    w, b = fit_head(
        np.concatenate([feats, r_feats]), np.concatenate([labels, r_labels]), _sample_weights(len(feats), len(r_feats)), w0, b0
    )
    if len(rows) >= 40:
        from .calibration import fit_temperature

        temperature, how = fit_temperature(oof, labels), "refitted on out-of-fold predictions"
    else:
        temperature, how = bundle.card.temperature, "kept from the base bundle (under 40 cells)"
    replay_acc_before = float(np.mean((r_feats @ w0 + b0).argmax(axis=1) == r_labels))
    replay_acc_after = float(np.mean((r_feats @ w + b).argmax(axis=1) == r_labels))
    before, after = base_probs.argmax(axis=1), oof.argmax(axis=1)
    report = {
        "cells": int(len(rows)),
        "cells_per_class": {g: int(counts[g]) for g in usable},
        "classes_not_adapted": {g: int(counts[g]) for g in counts.index if g not in usable},
        "folds": k,
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
    log(
        f"cross-validated ({k} folds) on the lab's cells: accuracy {report['accuracy_before']:.3f} -> "
        f"{report['accuracy_after_cross_validated']:.3f}, balanced {report['balanced_accuracy_before']:.3f} -> "
        f"{report['balanced_accuracy_after_cross_validated']:.3f}; "
        f"replay sample {replay_acc_before:.3f} -> {replay_acc_after:.3f}"
    )
    return Adaptation(w, b, temperature, report, feats, labels, signatures)


def _balanced(labels: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)]))


def write_adapted(bundle: ModelBundle, result: Adaptation, corrections: Corrections, name: str, dest: Path, lab: str) -> Path:
    """The adapted bundle: the base model with the new head, its card, familiarity and replay."""
    from .fit import save_for_inference

    out = Path(dest) / name
    if out.exists():
        raise CorrectionsError(f"{out} exists already; choose another name")
    tmp = out.with_name(f".{name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    layer = bundle.model.get_layer("logits")
    old = layer.get_weights()
    layer.set_weights([result.w.astype(np.float32), result.b.astype(np.float32)])
    try:
        save_for_inference(bundle.model, tmp / MODEL_FILE)
    finally:
        layer.set_weights(old)
    _adapt_familiarity(bundle, result, tmp / FAMILIARITY_FILE)
    with np.load(bundle.folder / REPLAY_FILE) as rp:
        # The lab's cells join the replay sample, so a later adaptation keeps this lab too.
        order = bundle.card.class_order
        np.savez_compressed(
            tmp / REPLAY_FILE,
            features=np.concatenate([rp["features"], result.lab_features.astype(np.float16)]),
            labels=np.concatenate([rp["labels"], [GROUPS.index(order[i]) for i in result.lab_labels]]).astype(rp["labels"].dtype),
            domains=np.concatenate([rp["domains"], np.full(len(result.lab_labels), lab)]).astype(str),
        )
    card = json.loads((bundle.folder / CARD_FILE).read_text(encoding="utf-8"))
    base_metrics = card.get("test_metrics", {})
    card.update(
        {
            "name": name,
            "temperature": result.temperature,
            "adapted_from": bundle.name,
            "adaptation": {
                **result.report,
                "lab": lab,
                "corrections_sha256": corrections.sha256,
                "reviewers": corrections.reviewers,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "method": "head refitted on the lab's cells with the base bundle's replay sample; backbone unchanged",
            },
            "base_test_metrics": base_metrics,
            "training_domains": [*card.get("training_domains", []), lab],
        }
    )
    (tmp / CARD_FILE).write_text(json.dumps(card, indent=2), encoding="utf-8")
    tmp.rename(out)
    return out


def _adapt_familiarity(bundle: ModelBundle, result: Adaptation, path: Path) -> None:
    """The lab becomes a training domain of the familiarity model: its cells join the feature
    model (threshold rescaled so the replay sample keeps its share under it) and its images
    join the acquisition references."""
    from yawbcc_desktop.core.familiarity import Familiarity

    fam = bundle.familiarity
    if fam is None:
        return
    with np.load(bundle.folder / REPLAY_FILE) as rp:
        r_feats, r_labels = rp["features"].astype(np.float64), rp["labels"]
    order = bundle.card.class_order
    lab_groups = np.array([GROUPS.index(order[i]) for i in result.lab_labels])
    share = float(np.mean(fam.cell_scores(r_feats) <= fam.threshold))
    new = Familiarity.fit(np.concatenate([r_feats, result.lab_features]), np.concatenate([r_labels, lab_groups]))
    new.threshold = float(np.quantile(new.cell_scores(r_feats), share))
    if fam.acquisition is not None:
        new.acquisition = fam.acquisition.with_references(np.stack(result.signatures)) if result.signatures else fam.acquisition
    new.save(path)


def add_arguments(p) -> None:
    from yawbcc_desktop.core.classifier import user_models_dir

    p.add_argument("--model", help="bundle to adapt (name or folder; default: the default bundle)")
    p.add_argument("--corrections", required=True, help="cells CSV as yawbcc export --cells writes it (reviewed rows are used)")
    p.add_argument("--name", required=True, help="name of the adapted bundle")
    p.add_argument("--lab", default="", help="the lab's name in the card (default: the new bundle's name)")
    p.add_argument("--dest", default=str(user_models_dir()), help="folder the new bundle goes to (default: the user's models)")
    p.add_argument("--minutes", type=float, default=10.0, help="time budget (the head fit takes seconds; kept for the record)")
    p.add_argument("--seed", type=int, default=0)


def run(args, log=print) -> int:
    try:
        corrections = read_corrections(args.corrections)
        for line in corrections.skipped:
            log(f"{args.corrections}: {line}")
        bundle = ModelBundle(resolve_bundle(args.model))
        result = adapt(bundle, corrections, args.seed, log)
        out = write_adapted(bundle, result, corrections, args.name, Path(args.dest), args.lab or args.name)
    except (CorrectionsError, ModelBundleError) as exc:
        log(f"adapt: {exc}")
        return 2
    log(f"adapted bundle written to {out}")
    print(json.dumps({"bundle": str(out), **result.report}), flush=True)
    return 0
