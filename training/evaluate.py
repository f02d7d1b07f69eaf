"""``python -m training evaluate``, and the evaluation every run ends with: a model's
probabilities on one side of a split, calibrated, written as a report and logged."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .run_log import RunLog

# One side of a split: its rows, their preprocessed images and their class indices.
Part = tuple[pd.DataFrame, np.ndarray, np.ndarray]


def predict(model: Any, images: np.ndarray) -> np.ndarray:
    """The model's raw probabilities (N, 8), 128 images at a time."""
    out = []
    for i in range(0, len(images), 128):
        out.append(np.asarray(model.predict_on_batch(np.asarray(images[i : i + 128], np.float32)), np.float64))
    return np.concatenate(out) if out else np.zeros((0, 8))


def evaluate(
    model: Any,
    part: Part,
    temperature: float,
    folder: Path,
    history: pd.DataFrame | None,
    frozen: int | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The report of ``model`` on one side of a split."""
    frame, images, labels = part
    return report(frame, labels, predict(model, images), temperature, folder, history, frozen, log)


def report(
    frame: pd.DataFrame,
    labels: np.ndarray,
    raw: np.ndarray,
    temperature: float,
    folder: Path,
    history: pd.DataFrame | None,
    frozen: int | None,
    log: Callable[[str], None],
    what: str = "test",
) -> dict[str, Any]:
    """The evaluation report of raw test probabilities calibrated by ``temperature``, logged."""
    from yawbcc_desktop.core.classifier import softmax_with_temperature

    from .report import write_report

    calibrated = softmax_with_temperature(raw, temperature)
    metrics = write_report(folder, frame, labels, raw, calibrated, history, frozen, {"temperature": temperature})
    log(
        f"{what}: accuracy {100 * metrics['accuracy']:.2f} %, macro F1 {metrics['macro_f1']:.4f}, "
        f"ECE {100 * metrics['ece_before']:.2f} % -> {100 * metrics['ece_after']:.2f} % after calibration "
        f"(n={metrics['n']})"
    )
    for g, m in metrics["per_class"].items():
        log(f"  {g:<13} precision {m['precision']:.4f} recall {m['recall']:.4f} F1 {m['f1']:.4f} n={m['support']}")
    return metrics


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="bundle or run folder (model.keras + model.json)")
    p.add_argument("--split", required=True)
    p.add_argument("--side", default="test", choices=["train", "valid", "test"])
    p.add_argument("--cache", default="cache")
    p.add_argument("--out", required=True)


def run(args: argparse.Namespace) -> int:
    """Evaluate a bundle (or run folder) on a split's test side."""
    from yawbcc_desktop.core.classifier import ModelBundle

    from .data import cached_arrays, labels_of
    from .splits import load_split

    bundle = ModelBundle(args.model)
    split = load_split(args.split)
    frame = split[split["split"] == args.side].reset_index(drop=True)
    card = bundle.card
    images = cached_arrays(list(frame["path"]), card.input_size, card.balance, card.cell_field, args.cache)
    log = RunLog(Path(args.out))
    evaluate(bundle.model, (frame, images, labels_of(frame)), card.temperature, Path(args.out), None, None, log)
    return 0
