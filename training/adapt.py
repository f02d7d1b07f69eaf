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
    python -m training adapt --model NAME|DIR --images FOLDER... --name NEW [--share 0.5]   # no corrections

With ``--images`` only the batch-norm statistics are measured again on the lab's cells
(``training/adapt_images.py``); the events and exit statuses are the same, with the stages
"loading", "features", "measuring" and "writing".

What a run says: human lines on stderr; on stdout one JSON object a line for programs (the
application reads them): ``{"event": "progress", "stage": "reading"|"loading"|"features"|
"fitting"|"writing", "done": i, "total": n}`` (``total`` 0 while no fraction is known),
``{"event": "skipped", "message": ...}`` per row left out, then exactly one of
``{"event": "done", "bundle": FOLDER, ...report...}``, ``{"event": "error", "message": ...}``
or ``{"event": "cancelled"}``.  Exit status: 0 done, 2 unusable input (corrections file,
too few cells, bundle without a replay sample, name taken), 130 cancelled (Ctrl-C or
SIGTERM), 1 anything else.  The bundle is written to ``DEST/.NEW.partial`` and renamed to
``DEST/NEW`` at the end, so a run cancelled or killed never leaves half a bundle under its name.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from yawbcc_desktop.core.adaptation import IMAGE_STATISTICS_SHARE, MIN_CELLS, MIN_PER_CLASS, REPLAY_FILE
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.classifier import (
    MODEL_FILE,
    ModelBundle,
    ModelBundleError,
    resolve_bundle,
    softmax_with_temperature,
)
from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE, acquisition_signature
from yawbcc_desktop.core.imageio import ImageReadError, read_rgb
from yawbcc_desktop.core.scale import check_um_per_px, estimate_um_per_px

from .adapt_images import ImagesError, adapt_to_images, write_adapted_to_images
from .adapt_images import summary_lines as images_summary
from .card import write_card

MIN_ERRORS_FOR_TEMPERATURE = 3  # fewer out-of-fold mistakes say nothing about how sure to be
LAB_SHARE = 0.5  # weight of the lab's cells against the replay sample in the head's loss
L2_TO_BASE = 1e-3  # pull towards the base head: few cells must not swing it far


class CorrectionsError(Exception):
    """The corrections file cannot be used; the message names the file, rows and problem."""


# progress(stage, done, total): what a long step reports; total 0 while no fraction is known.
ProgressFn = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


@dataclass
class Corrections:
    rows: pd.DataFrame  # usable rows: path, label, mode, x, y, width, height
    skipped: list[str]  # one line per row left out, naming it and why
    sha256: str
    reviewers: list[str]


def read_corrections(csv_path: str | Path, progress: ProgressFn = _no_progress) -> Corrections:
    """Reviewed rows of a ``yawbcc export --cells`` file (or any CSV with ``path`` and a label
    column); rows with an unknown label or an unreadable image are left out and named."""
    csv_path = Path(csv_path)
    try:
        raw = csv_path.read_bytes()
        frame = pd.read_csv(csv_path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise CorrectionsError(f"{csv_path}: no such corrections file") from None
    except pd.errors.EmptyDataError:
        raise CorrectionsError(f"{csv_path}: the corrections file is empty") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
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
    for i, r in enumerate(frame.itertuples(index=False)):
        progress("reading", i, len(frame))
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
    progress("reading", len(frame), len(frame))
    rows = pd.DataFrame(keep, columns=frame.columns) if keep else frame.iloc[0:0]
    rows = rows.assign(label=rows[label_col].str.strip().str.upper())
    reviewers = sorted({v for v in rows.get("reviewer", pd.Series(dtype=str)) if v})
    return Corrections(rows.reset_index(drop=True), skipped, hashlib.sha256(raw).hexdigest(), reviewers)


def _stored_pixel_size(row) -> float | None:
    """The pixel size the window framed the row's image at (its ``um_per_px``), else None."""
    try:
        return check_um_per_px(float(getattr(row, "um_per_px", "nan") or "nan"))
    except (TypeError, ValueError):  # absent, empty, not a number or impossible: measure it again
        return None


def correction_inputs(bundle: ModelBundle, rows: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Model inputs of the corrected cells, framed exactly as the application framed them (at
    the row's ``um_per_px`` when it has one: the lab may have set its pixel size), and the
    acquisition signature of each row's image."""
    from yawbcc_desktop.core.cells import CellRegion
    from yawbcc_desktop.core.pipeline import model_input

    inputs, signatures = [], []
    path = rgb = measured = None  # the image being read: rows come image by image
    for r in rows.itertuples(index=False):
        if r.path != path:
            path, rgb, measured = r.path, read_rgb(r.path), None
        um = _stored_pixel_size(r)
        if um is None:  # measured only when the row does not say (an older export), once per image
            measured = measured or estimate_um_per_px(rgb).um_per_px
            um = measured
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


FEATURE_CHUNK = 32  # cells framed and passed through the backbone at a time (progress steps)


def correction_features(bundle: ModelBundle, rows: pd.DataFrame, progress: ProgressFn = _no_progress) -> tuple[np.ndarray, list]:
    """``bundle.features(correction_inputs(bundle, rows))`` a chunk of cells at a time, saying
    how far it is: the same features and signatures."""
    feats, signatures = [], []
    progress("features", 0, len(rows))
    for start in range(0, len(rows), FEATURE_CHUNK):
        inputs, sigs = correction_inputs(bundle, rows.iloc[start : start + FEATURE_CHUNK])
        feats.append(bundle.features(inputs))
        signatures += sigs
        progress("features", min(start + FEATURE_CHUNK, len(rows)), len(rows))
    return np.concatenate(feats), signatures


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


def counts_text(counts: pd.Series | dict, min_per_class: int = MIN_PER_CLASS) -> str:
    """``NEUTROPHIL 12, BASOPHIL 2 (under 5)``: cells per class, most first."""
    items = sorted(((str(g), int(n)) for g, n in dict(counts).items()), key=lambda item: -item[1])
    return ", ".join(f"{g} {n}" + (f" (under {min_per_class})" if n < min_per_class else "") for g, n in items) or "none"


def usable_rows(
    rows: pd.DataFrame, order: list[str], min_per_class: int = MIN_PER_CLASS, min_cells: int = MIN_CELLS
) -> tuple[np.ndarray, list[str], pd.Series]:
    """Which rows an adaptation uses (classes with at least ``min_per_class`` cells), the classes
    adapted and the cells per class; CorrectionsError when fewer than ``min_cells`` remain."""
    counts = rows["label"].value_counts()
    usable = [g for g in order if counts.get(g, 0) >= min_per_class]
    keep = rows["label"].isin(usable).to_numpy()
    if keep.sum() < min_cells:
        raise CorrectionsError(
            f"only {int(keep.sum())} reviewed cells in classes with at least {min_per_class} cells; adapting needs at "
            f"least {min_cells} (cells per class: {counts_text(counts, min_per_class)}). Review more cells first."
        )
    return keep, usable, counts


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
    progress: ProgressFn = _no_progress,
) -> Adaptation:
    """Fit the head to the lab's corrections (with replay) and measure it out of fold.

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
        w, b = fit_head(
            np.concatenate([feats[tr], r_feats]),
            np.concatenate([labels[tr], r_labels]),
            _sample_weights(int(tr.sum()), len(r_feats)),
            w0,
            b0,
        )
        oof[~tr] = _softmax(feats[~tr] @ w + b)
    progress("fitting", k, k + 1)
    w, b = fit_head(
        np.concatenate([feats, r_feats]), np.concatenate([labels, r_labels]), _sample_weights(len(feats), len(r_feats)), w0, b0
    )
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
    return Adaptation(w, b, temperature, report, feats, labels, signatures)


def _balanced(labels: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)]))


def partial_folder(dest: str | Path, name: str) -> Path:
    """Where a bundle is written before it is renamed to ``dest/name``."""
    return Path(dest) / f".{name}.partial"


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


def write_whole(dest: str | Path, name: str, fill: Callable[[Path], None]) -> Path:
    """``dest/name``, written whole or not at all: ``fill(folder)`` writes the bundle into
    ``.NAME.partial`` (a stale one from a killed run is replaced first), which is renamed at
    the end; on any error or interruption the partial folder is removed."""
    out = Path(dest) / name
    if out.exists():
        raise CorrectionsError(f"{out} exists already; choose another name")
    tmp = partial_folder(dest, name)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
    progress("writing", 3, 4)
    base = bundle.card
    extra = {
        **base.extra,
        "adapted_from": bundle.name,
        "adaptation": {
            **result.report,
            "lab": lab,
            "corrections_sha256": corrections.sha256,
            "reviewers": corrections.reviewers,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "method": "head refitted on the lab's cells with the base bundle's replay sample; backbone unchanged",
        },
        "base_test_metrics": base.metrics,
        "training_domains": [*base.extra.get("training_domains", []), lab],
    }
    write_card(tmp, replace(base, name=name, temperature=result.temperature, extra=extra))


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


STAGE_TEXT = {
    "reading": "checking the corrected cells' images",
    "loading": "loading the model",
    "features": "framing the cells and computing their features",
    "fitting": "fitting the classifier head (cross-validation folds, then all cells)",
    "measuring": "measuring the batch-norm statistics on the lab's cells",
    "writing": "writing the new bundle",
}


class Reporter:
    """What a run says.  Human lines on stderr (progress at most every ``interval`` seconds
    and at each new stage); with ``events``, one JSON object a line on stdout for programs
    (the application reads them; progress at most every ``event_interval`` seconds, and at
    each new stage and its end); the closing figures in plain words go to stdout when there
    are no events (the command line's result), else to stderr with the other human lines."""

    def __init__(self, events: bool = True, interval: float = 2.0, prefix: str = "adapt: ", event_interval: float = 0.1):
        self.events, self.interval, self.prefix, self.event_interval = events, interval, prefix, event_interval
        self._stage, self._last = "", 0.0
        self._event_stage, self._last_event = "", 0.0

    def log(self, message: str) -> None:
        print(f"{self.prefix}{message}", file=sys.stderr, flush=True)

    def event(self, kind: str, **fields) -> None:
        if self.events:
            print(json.dumps({"event": kind, **fields}, default=str), file=sys.stdout, flush=True)

    def progress(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self._event_stage or now - self._last_event >= self.event_interval or (total and done >= total):
            self._event_stage, self._last_event = stage, now
            self.event("progress", stage=stage, done=int(done), total=int(total))
        new_stage = stage != self._stage
        if new_stage or now - self._last >= self.interval or (total and done >= total):
            if new_stage or done or not total:
                self._stage, self._last = stage, now
                self.log(STAGE_TEXT.get(stage, stage) + (f" {done}/{total}" if total else "…"))

    def result(self, lines: list[str]) -> None:
        for line in lines:
            if self.events:
                self.log(line)
            else:
                print(line, file=sys.stdout, flush=True)


def _run_images(args, rep: Reporter, folder: Path, name: str, dest: Path, t0: float) -> dict:
    if not 0.0 < args.share <= 1.0:
        raise CorrectionsError(f"--share must be above 0 and at most 1, got {args.share:g}")
    if args.um_per_px is not None:
        try:
            check_um_per_px(args.um_per_px)
        except ValueError as exc:
            raise CorrectionsError(f"--um-per-px: {exc}") from None

    def skip(message: str) -> None:
        rep.log(message)
        rep.event("skipped", message=message)

    sources = args.images or _image_list(args.image_list)
    rep.progress("loading", 0, 0)
    bundle = ModelBundle(folder)
    report = adapt_to_images(bundle, sources, args.share, args.seed, rep.log, rep.progress, skip, args.um_per_px)
    lab = args.lab or name
    out = write_adapted_to_images(bundle, report, name, dest, lab, rep.progress)
    seconds = round(time.monotonic() - t0, 1)
    return {**report, "bundle": str(out), "name": name, "base": bundle.name, "lab": lab, "seconds": seconds}


def _image_list(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CorrectionsError(f"{path}: no such image list") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorrectionsError(f"{path}: cannot read the image list ({exc})") from None
    paths = [line.strip() for line in lines if line.strip()]
    if not paths:
        raise CorrectionsError(f"{path}: the image list is empty")
    return paths


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def summary_lines(report: dict) -> list[str]:
    """The figures of a ``done`` report in plain words (the command line's closing lines)."""
    if report.get("source") == "images":
        return images_summary(report)
    lines = [
        f"Adapted {report['base']} to {report['lab']} as {report['name']}: {report['cells']} cells "
        f"({counts_text(report['cells_per_class'])}).",
    ]
    if report.get("classes_not_adapted"):
        lines.append(
            f"Not adapted (fewer than {MIN_PER_CLASS} cells): {counts_text(report['classes_not_adapted'])}; "
            "the base model's head stands for them."
        )
    lines.append(
        f"On the lab's cells, cross-validated ({report['folds']} folds, each cell scored by a head that never saw it): "
        f"accuracy {_pct(report['accuracy_before'])} before, {_pct(report['accuracy_after_cross_validated'])} after; "
        f"balanced accuracy {_pct(report['balanced_accuracy_before'])} before, "
        f"{_pct(report['balanced_accuracy_after_cross_validated'])} after."
    )
    lines.append(
        f"On the base model's replay sample (its training labs: {', '.join(report.get('replay_domains') or ['?'])}): "
        f"accuracy {_pct(report['replay_accuracy_before'])} before, {_pct(report['replay_accuracy_after'])} after."
    )
    base = report.get("base_test_metrics") or {}
    if base.get("accuracy") is not None:
        f1 = f", macro F1 {base['macro_f1']:.3f}" if base.get("macro_f1") is not None else ""
        lines.append(f"The base model's own test figures (not measured again): accuracy {_pct(base['accuracy'])}{f1}.")
    lines.append(f"Temperature {report['temperature']:.3f} ({report['temperature_how']}).")
    lines.append(f"New bundle: {report['bundle']} ({report['seconds']:.0f} s). Use it with --model {report['name']}.")
    return lines


def add_arguments(p) -> None:
    from yawbcc_desktop.core.classifier import user_models_dir

    p.add_argument("--model", help="bundle to adapt (name or folder; default: the default bundle)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corrections", help="cells CSV as yawbcc export --cells writes it (reviewed rows are used)")
    source.add_argument(
        "--images",
        nargs="+",
        metavar="PATH",
        help="the lab's image files or folders, no corrections: only the batch-norm statistics are measured again",
    )
    source.add_argument(
        "--image-list", metavar="FILE", help="as --images, with the paths one a line in FILE (the application writes one)"
    )
    p.add_argument(
        "--share",
        type=float,
        default=IMAGE_STATISTICS_SHARE,
        help=f"with --images: the lab's share of the statistics, the rest the base's (default {IMAGE_STATISTICS_SHARE:g})",
    )
    p.add_argument(
        "--um-per-px",
        type=float,
        help="with --images: the lab's pixel size in micrometres, as its Preferences set it (default: each image's own)",
    )
    p.add_argument("--name", required=True, help="name of the adapted bundle")
    p.add_argument("--lab", default="", help="the lab's name in the card (default: the new bundle's name)")
    p.add_argument("--dest", default=str(user_models_dir()), help="folder the new bundle goes to (default: the user's models)")
    p.add_argument("--minutes", type=float, default=10.0, help="time budget (the head fit takes seconds; kept for the record)")
    p.add_argument("--seed", type=int, default=0)


def _one_blas_thread():
    """The head's fits are small matrix products: BLAS threads cost more than they give
    (5 s against 2 s for a replay-sized fit on two busy cores), and the results are the same."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args, reporter: Reporter | None = None) -> int:
    """``python -m training adapt`` (JSON events on stdout) and ``yawbcc adapt`` (``reporter``
    without events).  SIGTERM cancels like Ctrl-C: the partial bundle is removed."""
    rep = reporter or Reporter(events=True)
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        report = _run(args, rep)
    except KeyboardInterrupt:
        rep.log("cancelled; no bundle was written")
        rep.event("cancelled")
        return 130
    except (CorrectionsError, ImagesError, ModelBundleError) as exc:
        rep.log(str(exc))
        rep.event("error", message=str(exc))
        return 2
    except OSError as exc:
        message = f"could not write the new bundle in {args.dest}: {exc}"
        rep.log(message)
        rep.event("error", message=message)
        return 2
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        rep.event("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    rep.event("done", **report)
    rep.result(summary_lines(report))
    if report["seconds"] > 60 * args.minutes:
        rep.log(f"the adaptation took {report['seconds'] / 60:.1f} min, over the {args.minutes:g}-minute budget")
    return 0


def _run(args, rep: Reporter) -> dict:
    from yawbcc_desktop.core.classifier import read_card

    t0 = time.monotonic()
    name, dest = args.name, Path(args.dest).resolve()
    if not name or name != Path(name).name or name.startswith(".") or name in (".", ".."):
        raise CorrectionsError(f"{name!r} cannot be a bundle name: use letters, digits, '.', '_' and '-'")
    if (dest / name).exists():
        raise CorrectionsError(f"{dest / name} exists already; choose another name")
    # Everything that can be checked before the model loads (seconds) is checked first.
    folder = resolve_bundle(args.model)
    if args.images or args.image_list:
        return _run_images(args, rep, folder, name, dest, t0)
    if args.um_per_px is not None:
        raise CorrectionsError("--um-per-px goes with --images: corrections carry the pixel size of each image (um_per_px)")
    if not (folder / REPLAY_FILE).is_file():
        raise CorrectionsError(
            f"{folder}: this bundle has no {REPLAY_FILE} (a sample of its training cells' features), so it cannot be "
            "adapted from corrections; adapt a bundle made by python -m training domains, retrain with python -m training "
            "fit --corrections, or adapt it to the lab's images alone (--images)"
        )
    card = read_card(folder)
    corrections = read_corrections(args.corrections, rep.progress)
    for line in corrections.skipped:
        rep.log(f"{args.corrections}: {line}")
        rep.event("skipped", message=f"{args.corrections}: {line}")
    usable_rows(corrections.rows, card.class_order)
    rep.progress("loading", 0, 0)
    bundle = ModelBundle(folder)
    with _one_blas_thread():
        result = adapt(bundle, corrections, args.seed, rep.log, progress=rep.progress)
    lab = args.lab or name
    out = write_adapted(bundle, result, corrections, name, dest, lab, rep.progress)
    return {
        "bundle": str(out),
        "name": name,
        "base": bundle.name,
        "lab": lab,
        **result.report,
        "seconds": round(time.monotonic() - t0, 1),
        "skipped": len(corrections.skipped),
        "base_test_metrics": bundle.card.metrics,
    }
