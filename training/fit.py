"""The two-phase schedule: transfer learning (backbone frozen), then fine-tuning.

Checkpoints after every epoch and a small ``state.json`` let an interrupted run resume
where it stopped (``--resume``); the optimiser restarts fresh on resume, its state is not
worth the extra file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.retraining import PROGRESS_ENV, FitRecipe, progress_event

from .factory import BACKBONES, build_model, set_trainable


@dataclass(frozen=True)
class FitConfig(FitRecipe):
    """A fit's recipe (``core.retraining.FitRecipe``, the defaults of ``python -m training fit``)
    and what only training sets."""

    lr_frozen: float = 1e-3
    patience: int = 3  # fine-tuning epochs without a better validation accuracy before it stops
    extra: dict = field(default_factory=dict)

    def tuned_layers(self) -> int:
        return BACKBONES[self.backbone].fine_tune_layers if self.fine_tune_layers is None else self.fine_tune_layers


def class_weights(labels: np.ndarray, mode: str = "balanced") -> dict[int, float]:
    """Weights that make rare classes (basophils) count more: ``balanced`` n / (k * count);
    ``sqrt`` the square root of that, a milder push that costs the common classes less."""
    counts = np.bincount(labels, minlength=len(GROUPS)).astype(float)
    present = counts > 0
    w = np.where(present, len(labels) / (present.sum() * np.maximum(counts, 1)), 0.0)
    if mode == "sqrt":
        w = np.sqrt(w)
    return {i: float(w[i]) for i in range(len(GROUPS))}


def _callbacks(out: Path, phase: str, log, total_epochs: int, steps: int = 0):
    import keras

    class EpochLog(keras.callbacks.Callback):
        """One line per epoch with the metrics and an ETA for the phase, and the resume state."""

        def on_train_begin(self, logs=None):
            self.t0 = time.monotonic()
            self.first = None

        def on_epoch_begin(self, epoch, logs=None):
            if self.first is None:
                self.first = epoch

        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1 - self.first
            per = (time.monotonic() - self.t0) / done
            left = (total_epochs - epoch - 1) * per
            vals = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
            log(f"[{phase}] epoch {epoch + 1}/{total_epochs} {vals} ({per / 60:.1f} min/epoch, ETA {left / 60:.1f} min)")
            (out / "state.json").write_text(json.dumps({"phase": phase, "epoch": epoch + 1}))

    class BatchProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (batch + 1) % max(1, steps // 20) == 0 or batch + 1 == steps:
                progress_event("batch", phase=phase, epoch=self.epoch + 1, epochs=total_epochs, batch=batch + 1, batches=steps)

    progress = [BatchProgress()] if steps and os.environ.get(PROGRESS_ENV) == "1" else []
    return [
        keras.callbacks.ModelCheckpoint(str(out / "checkpoint.weights.h5"), save_weights_only=True),
        keras.callbacks.ModelCheckpoint(
            str(out / f"best_{phase}.weights.h5"), save_weights_only=True, monitor="val_accuracy", save_best_only=True
        ),
        keras.callbacks.CSVLogger(str(out / f"history_{phase}.csv"), append=True),
        EpochLog(),
        *progress,
    ]


def fit(
    config: FitConfig,
    train_x: np.ndarray,
    train_y: np.ndarray,
    valid_x: np.ndarray,
    valid_y: np.ndarray,
    out: Path,
    resume: bool = False,
    log=print,
):
    """Train and return the model with the best validation weights of the last phase."""
    import keras

    from .data import make_dataset

    keras.utils.set_random_seed(config.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    state = json.loads((out / "state.json").read_text()) if resume and (out / "state.json").exists() else None
    model = build_model(config.backbone, config.input_size, None if resume and state else config.weights)
    if state:
        model.load_weights(out / "checkpoint.weights.h5")
        log(f"resuming after {state['phase']} epoch {state['epoch']}")

    train_ds = make_dataset(train_x, train_y, config.batch_size, training=True, seed=config.seed, light=config.augment == "light")
    valid_ds = make_dataset(valid_x, valid_y, 64, training=False)
    weights = class_weights(train_y, config.class_weighting) if config.class_weighting != "none" else None
    steps = int(np.ceil(len(train_x) / config.batch_size))

    phases = [("frozen", 0, config.epochs_frozen, config.lr_frozen)]
    phases.append(("fine", config.tuned_layers(), config.epochs_fine, config.lr_fine))
    for phase, n_layers, epochs, lr in phases:
        start = 0
        if state:
            if state["phase"] == "frozen" and phase == "frozen":
                start = state["epoch"]
            elif state["phase"] == "fine":
                start = state["epoch"] if phase == "fine" else epochs
        if epochs == 0 or start >= epochs:
            continue
        set_trainable(model, n_layers, config.train_bn)
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * steps), alpha=0.02)
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        if start:
            model.optimizer.iterations.assign(start * steps)
        cbs = _callbacks(out, phase, log, epochs, steps)
        if phase == "fine":
            cbs.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.patience, restore_best_weights=True))
        log(f"phase {phase}: {n_layers if n_layers >= 0 else 'all'} backbone layers trainable, lr {lr}, epochs {epochs}")
        progress_event("phase", phase=phase, epochs=epochs)
        model.fit(
            train_ds,
            validation_data=valid_ds,
            epochs=epochs,
            initial_epoch=start,
            class_weight=weights,
            verbose=0,
            callbacks=cbs,
        )
        if (out / f"best_{phase}.weights.h5").exists():
            model.load_weights(out / f"best_{phase}.weights.h5")
    save_for_inference(model, out / "model.keras")
    return model


def save_for_inference(model, path: Path) -> None:
    """Save weights and graph without the optimiser state (a third of the size of a bundle).

    A model saved while compiled for training carries its optimiser variables; a copy
    loaded uncompiled does not.
    """
    import keras

    tmp = path.with_name(path.stem + ".training.keras")
    model.save(tmp)
    keras.saving.load_model(tmp, compile=False).save(path)
    tmp.unlink()


def read_history(out: Path) -> tuple[pd.DataFrame, int]:
    """Both phases' histories end to end and the number of frozen epochs (where fine-tuning starts)."""
    parts = [pd.read_csv(out / f"history_{p}.csv") for p in ("frozen", "fine") if (out / f"history_{p}.csv").exists()]
    frozen = len(parts[0]) if (out / "history_frozen.csv").exists() else 0
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()), frozen
