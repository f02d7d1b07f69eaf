"""What the window's retraining and ``python -m training fit`` agree on, in one place.

The window runs training as a separate process (it never imports ``training``); both sides
import this light module instead: the recipe of a fit and its command line (``FitRecipe``;
``training.fit.FitConfig`` is one, ``python -m training fit`` takes its defaults from it),
which reviewed cells train, and the progress events ``fit`` writes for the window.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from typing import Any

from .classes import GROUPS

# -- the recipe ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FitRecipe:
    """What a ``python -m training fit`` run is trained with, as far as its command line says.

    The defaults are ``python -m training fit``'s (``FIT_DEFAULTS``); the window retrains with
    ``LITE0_FAST``, the bundled lite0-fast model's recipe.  ``fit_args()`` is the command line
    that gives a run this recipe; training's ``FitConfig`` adds what only training sets (the
    head's learning rate, early stopping, the card's extras).
    """

    backbone: str = "efficientnet-lite0"
    input_size: int = 160  # --size
    cell_field: int = 288  # --field
    balance: bool = True  # the report's colour balance (--balance / --no-balance)
    weights: str = "imagenet"  # imagenet, none, or a .weights.h5 path
    batch_size: int = 32
    epochs_frozen: int = 1
    epochs_fine: int = 8  # --epochs
    lr_fine: float = 3e-4  # --lr
    fine_tune_layers: int | None = None  # None: the report's N for the backbone; -1 all
    class_weighting: str = "balanced"  # balanced | sqrt | none
    augment: str = "full"  # full: flips, 90-degree turns, small rotations, colour jitter; light: flips and turns
    train_bn: bool = False  # fine-tune batch-norm statistics too (helps when the domain is far from ImageNet)
    seed: int = 42

    @property
    def epochs(self) -> int:
        """Both phases' epochs."""
        return self.epochs_frozen + self.epochs_fine

    def fit_args(self) -> list[str]:
        """The ``python -m training fit`` options that give a run this recipe, defaults written too."""
        args = ["--backbone", self.backbone, "--weights", self.weights, "--size", str(self.input_size)]
        args += ["--field", str(self.cell_field), "--batch-size", str(self.batch_size)]
        args += ["--epochs-frozen", str(self.epochs_frozen), "--epochs", str(self.epochs_fine), "--lr", repr(float(self.lr_fine))]
        args += ["--class-weighting", self.class_weighting, "--augment", self.augment, "--seed", str(self.seed)]
        args += ["--balance" if self.balance else "--no-balance", "--train-bn" if self.train_bn else "--no-train-bn"]
        if self.fine_tune_layers is not None:  # None: fit's own default, the backbone's N
            args += ["--fine-tune-layers", str(self.fine_tune_layers)]
        return args

    def recipe(self) -> FitRecipe:
        """Just the recipe (a ``FitConfig`` less what only training sets)."""
        return FitRecipe(**{f.name: getattr(self, f.name) for f in fields(FitRecipe)})

    @classmethod
    def from_card_training(cls, training: dict[str, Any]) -> FitRecipe:
        """The recipe a bundle was trained with (its card's ``training`` block); what the
        block does not say is ``FIT_DEFAULTS``'s."""
        known = {f.name: training[f.name] for f in fields(FitRecipe) if f.name in training}
        if "epochs_fine" not in known and "epochs" in training:
            known["epochs_fine"] = training["epochs"]
        weighting = known.get("class_weighting")
        if isinstance(weighting, bool):  # older cards stored on/off
            known["class_weighting"] = "balanced" if weighting else "none"
        return FitRecipe(**known)


# ``python -m training fit`` without options.
FIT_DEFAULTS = FitRecipe()
# The bundled lite0-fast model's recipe (its card's ``training`` block; 42 min on 2 CPU
# cores for the PBC set): what the window's "Retrain with corrections" trains.
LITE0_FAST = replace(FIT_DEFAULTS, input_size=128, epochs_fine=7, lr_fine=4e-4)


# -- which cells train, progress -----------------------------------------------------------

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


def progress_event(kind: str, **fields: Any) -> None:
    """One event for the window on stdout (only when it asked, ``PROGRESS_ENV``):
    ``preparing`` (split, images), ``phase`` (phase, epochs), ``batch`` (phase, epoch,
    epochs, batch, batches), ``testing``."""
    if os.environ.get(PROGRESS_ENV) == "1":
        print(json.dumps({"event": kind, **fields}), flush=True)
