"""Writing model cards: every card training writes is a ``core.classifier.ModelCard``.

The card's schema lives once, in ``ModelCard`` (``from_dict`` reads ``model.json``,
``to_dict`` writes it); training builds a ``ModelCard`` and hands it to ``write_card``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from yawbcc_desktop.core.atomic import atomic_write
from yawbcc_desktop.core.classifier import CARD_FILE, ModelCard

# The evaluation figures a card keeps as its ``test_metrics`` (training/report.py writes more).
CARD_METRICS = ("accuracy", "macro_f1", "ece_before", "ece_after", "n")


def card_metrics(metrics: dict) -> dict:
    """The card's ``test_metrics`` from an evaluation report's figures."""
    return {k: metrics[k] for k in CARD_METRICS}


def write_card(folder: str | os.PathLike[str], card: ModelCard) -> Path:
    """Write ``folder/model.json`` (atomically) from ``card``; returns its path.

    A figure that does not exist (the share of wrong cells queued, with no wrong cell) is
    written as null: NaN is not JSON, and strict readers refuse the whole file.
    """
    path = Path(folder) / CARD_FILE
    with atomic_write(path) as fh:
        fh.write(json.dumps(_without_nan(card.to_dict()), indent=2, allow_nan=False))
    return path


def _without_nan(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(v) for v in value]
    return value


def versions() -> dict:
    """The versions a card records beside its figures."""
    import keras
    import numpy
    import tensorflow as tf

    import yawbcc_desktop

    return {
        "yawbcc": yawbcc_desktop.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }
