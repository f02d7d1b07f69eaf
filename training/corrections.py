"""A lab's reviewed cells as an adaptation reads them: the rows of a cells CSV (as
``yawbcc export --cells`` writes it), framed exactly as the application framed them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from yawbcc_desktop.core.adaptation import MIN_CELLS, MIN_PER_CLASS
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.classifier import ModelBundle
from yawbcc_desktop.core.familiarity import acquisition_signature
from yawbcc_desktop.core.imageio import ImageReadError, read_rgb
from yawbcc_desktop.core.scale import check_um_per_px, estimate_um_per_px


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
    # The export's classified, unreviewed rows (the lab's other cells: unlabelled data);
    # their images are read, and an unreadable one named, when their features are computed.
    unreviewed: pd.DataFrame = field(default_factory=pd.DataFrame)


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
    unreviewed = unreviewed_rows(frame)
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
    return Corrections(rows.reset_index(drop=True), skipped, hashlib.sha256(raw).hexdigest(), reviewers, unreviewed)


def unreviewed_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The classified, unreviewed rows of a cells CSV (its reviewed column saying no, a
    predicted class; an artefact or an unclassified cell is not one of the lab's cells)."""
    if "reviewed" not in frame.columns or "predicted" not in frame.columns:
        return frame.iloc[0:0]
    said = frame["predicted"].str.strip().str.upper()
    rows = frame[~frame["reviewed"].str.lower().isin(["yes", "true", "1"]) & said.isin(GROUPS)]
    return rows.reset_index(drop=True)


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
