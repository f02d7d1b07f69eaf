"""What the window's retraining and ``python -m training fit`` agree on, in one place.

The window runs training as a separate process (it never imports ``training``); both sides
import this light module instead: which reviewed cells train, and the progress events
``fit`` writes for the window.
"""

from __future__ import annotations

import json
import os

from .classes import GROUPS

# Set to "1" by the application's retraining: ``fit`` then writes progress events on stdout
# (``progress_event``), one JSON object a line, besides its log lines: an epoch on the full
# data set takes minutes, and the window shows how far it is.
PROGRESS_ENV = "YAWBCC_TRAINING_PROGRESS"

# Why a reviewed cell does not train (``left_out``).
SMEAR_CELL = "smear"  # its path is the whole smear field; training reads single-cell images
NOT_A_CLASS = "artefact"  # reviewed as not a cell (or a label outside the eight classes)
FILE_MISSING = "missing"  # its image file is no longer on disk


def left_out(mode: str, label: object, path: str) -> str:
    """Why a reviewed cell is left out of retraining, '' when it trains: the rule
    ``fit --corrections`` applies to a session's cells CSV and the window counts before it starts."""
    if mode == "smear":
        return SMEAR_CELL
    if label not in GROUPS:
        return NOT_A_CLASS
    if not os.path.isfile(path):
        return FILE_MISSING
    return ""


def progress_event(kind: str, **fields) -> None:
    """One event for the window on stdout (only when it asked, ``PROGRESS_ENV``):
    ``preparing`` (split, images), ``phase`` (phase, epochs), ``batch`` (phase, epoch,
    epochs, batch, batches), ``testing``."""
    if os.environ.get(PROGRESS_ENV) == "1":
        print(json.dumps({"event": kind, **fields}), flush=True)
