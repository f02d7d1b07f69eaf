"""The per-cell check of a bundle: how far a cell may sit from the training cells of the class
it was called (``core.familiarity.neighbour_distances`` to the bundle's replay sample) before
it waits for review.

The threshold is the highest of each training lab's ``QUANTILE`` of the distances of its
*valid* cells (cells the model did not train on), so that PBC's many cells do not set the bar
a smaller lab is judged by.  At the 99th percentile BCCD's 45 valid cells (their farthest)
set a bar that one in ten of LISC's cells passed and only 1 of 12 of its wrong ones (40 crops
through ``lite0-multilab``); the 95th is kept.  ``python -m training domains`` fits it with the run; this command
fits it for a bundle made before the check existed:

    python -m training neighbours --model lite0-multilab [--data ../shared/data] [--split runs/split.csv]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from yawbcc_desktop.core.adaptation import REPLAY_FILE, unit_replay
from yawbcc_desktop.core.classifier import ModelBundle, read_card, resolve_bundle
from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE, neighbour_distances

from .card import write_card

QUANTILE = 0.95


def neighbour_threshold(distances: np.ndarray, domains: np.ndarray) -> float:
    """The highest of each lab's ``QUANTILE`` of its valid cells' distances."""
    return float(max(np.quantile(distances[domains == d], QUANTILE) for d in np.unique(domains)))


def fit(model: str, data: str, split: str, log=print) -> dict:
    """Fit and store the threshold of bundle ``model`` on its training labs' valid cells."""
    from .corrections import correction_inputs
    from .domains import all_cells, cells_as_rows

    folder = resolve_bundle(model)
    bundle = ModelBundle(folder)
    if bundle.familiarity is None or not (folder / REPLAY_FILE).is_file():
        raise SystemExit(f"{folder}: needs a familiarity model and a replay sample")
    trained = bundle.card.extra.get("training_domains") or ["pbc"]
    cells = all_cells(data, split)
    valid = cells[cells.split.eq("valid") & cells.domain.isin(trained)].reset_index(drop=True)
    log(f"{bundle.name}: framing {len(valid)} valid cells of {', '.join(trained)}")
    feats, preds = [], []
    rows = cells_as_rows(valid)
    for i in range(0, len(rows), 64):
        x, _ = correction_inputs(bundle, rows.iloc[i : i + 64])
        feats.append(bundle.features(x))
        preds.append(bundle.classify(x).probs.argmax(axis=1))
    distances = neighbour_distances(np.concatenate(feats), np.concatenate(preds), *unit_replay(folder))
    threshold = neighbour_threshold(distances, valid["domain"].to_numpy())
    fam = bundle.familiarity
    fam.neighbour_threshold = threshold
    tmp = folder / f".{FAMILIARITY_FILE}.partial.npz"
    fam.save(tmp)
    tmp.replace(folder / FAMILIARITY_FILE)
    report = {
        "threshold": threshold,
        "quantile": QUANTILE,
        "valid_cells": {d: int(n) for d, n in valid["domain"].value_counts().items()},
        "command": f"python -m training neighbours --model {model}",
    }
    card = read_card(folder)
    write_card(folder, replace(card, extra={**card.extra, "neighbour_check": report}))
    for d in sorted(set(valid.domain)):
        share = float(np.mean(distances[valid["domain"].to_numpy() == d] > threshold))
        log(f"  {d}: {share:.3f} of its valid cells beyond the threshold {threshold:.4f}")
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .domain_command import add_data_arguments

    add_data_arguments(p)
    p.add_argument("--model", required=True, help="bundle name or folder (needs familiarity.npz and replay.npz)")


def run(args: argparse.Namespace) -> int:
    fit(args.model, args.data, args.split)
    return 0
