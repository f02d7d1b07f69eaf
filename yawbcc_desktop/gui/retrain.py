"""Retraining with the reviewers' corrections, started from the application.

``RetrainJob`` writes the session's cells CSV into a new run folder, runs
``python -m training fit --corrections`` on the base data set in a ``QProcess`` (with the
recipe's options, ``core.retraining.FitRecipe.fit_args``; by default ``LITE0_FAST``, the
bundled lite0-fast model's recipe), then
``python -m training export``, and moves the finished bundle into the user's models folder
(``classifier.user_models_dir()``), where the model chooser lists it.  The bundle appears
there by one rename, so a cancelled or failed run never leaves a half-written model.

The process machinery (run folder, process group, cancel, endings) is ``TrainingJob``'s
(``training_job.py``), shared with adaptation.  No widgets here: the dialog
(``widgets/retrain_dialog.py``) and tests drive the same object.  The installed (PyInstaller)
build leaves ``training`` and its dependencies out, so there retraining needs a source
install's Python (``YAWBCC_TRAINING_PYTHON``).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject

from ..core.classes import GROUPS
from ..core.classifier import CARD_FILE, MODEL_FILE
from ..core.retraining import FILE_MISSING, LITE0_FAST, NOT_A_CLASS, PROGRESS_ENV, SMEAR_CELL, FitRecipe, left_out
from ..core.store import ReviewSession, SessionCell
from .training_job import (  # noqa: F401  re-exported: the dialog and tests import them from here
    CORRECTIONS_CSV,
    TRAINING_PYTHON_ENV,
    TrainingJob,
    check_model_name,
    json_event,
    retraining_dir,
    training_command,
)

# -- what goes in --------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainCells:
    """The reviewed cells of a session as training sees them."""

    usable: int  # reviewed single-cell images with one of the eight labels and a file on disk
    corrected: int  # of those, labelled otherwise than the model
    smear: int  # reviewed cells of smear fields: left out, training reads single-cell images
    artefacts: int  # reviewed as not a cell: left out
    missing: int  # reviewed single-cell images whose file is gone


def reviewed_cells(session: ReviewSession) -> Iterator[tuple[SessionCell, str]]:
    """Every reviewed cell of the session with its image's mode (cell or smear)."""
    modes = {im.id: im.mode for im in session.images()}
    ids = session.cell_ids()
    for start in range(0, len(ids), 2000):
        for c in session.cells(ids[start : start + 2000]):
            if c.reviewed:
                yield c, modes.get(c.image_id, "")


def count_retraining_cells(session: ReviewSession) -> RetrainCells:
    """What ``fit --corrections`` will take from this session's cells CSV."""
    left: Counter[str] = Counter()
    corrected = 0
    for c, mode in reviewed_cells(session):
        why = left_out(mode, c.label, c.path)
        left[why] += 1
        corrected += not why and c.corrected
    return RetrainCells(left[""], corrected, left[SMEAR_CELL], left[NOT_A_CLASS], left[FILE_MISSING])


# -- the job -------------------------------------------------------------------------------

_STAGE_TEXT = {"frozen": "Training the new classifier head", "fine": "Fine-tuning the network"}


class RetrainJob(TrainingJob):
    """One retraining: export the reviewed cells, fit, export the bundle.

    ``progress(done, total, text)``: ``total == 0`` while no fraction is known (preparing
    images, testing, saving), otherwise hundredths of an epoch over all epochs.  The bundle is
    exported into the run folder and moved into the user's models folder by one rename.
    """

    running_stages = ("fit", "export")  # then finished, failed or cancelled

    def __init__(
        self,
        session: ReviewSession,
        base_data: str | os.PathLike[str],
        name: str,
        recipe: FitRecipe | None = None,
        *,
        models_dir: str | os.PathLike[str] | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        kill_after_ms: int = 5000,
        parent: QObject | None = None,
    ):
        super().__init__(session, name, models_dir=models_dir, work_dir=work_dir, kill_after_ms=kill_after_ms, parent=parent)
        self.base_data = Path(base_data)
        self.recipe = recipe or LITE0_FAST
        self._train_started: float | None = None

    # -- starting

    def _reset(self) -> None:
        self._train_started = None

    def _check(self) -> str | None:
        if not self.base_data.is_dir():
            return (
                f"The base data folder {self.base_data} does not exist. Choose the folder of class folders "
                "(basophil, eosinophil, …) the models were trained on."
            )
        if not any((self.base_data / g.lower()).is_dir() for g in GROUPS):
            return f"{self.base_data} holds no class folder (basophil, eosinophil, …); choose the folder above them."
        problem = check_model_name(self.name, self.models_dir)
        if problem:
            return problem
        if count_retraining_cells(self.session).usable == 0:
            return (
                "This session has no reviewed single-cell image to learn from. Confirm or correct cells of "
                "single-cell images first (cells of smear fields and artefacts are not used)."
            )
        return None

    def _first_step(self) -> tuple[str, list[str]]:
        args = ["fit", "--data", str(self.base_data), "--corrections", str(self.run_dir / CORRECTIONS_CSV)]
        # A cache per run: the training side's cache changes with every session (~0.7 GB for PBC at
        # 128 px), and preparing the images again takes a minute or two of a run of tens.
        args += [*self.recipe.fit_args(), "--cache", str(self.run_dir / "cache")]
        args += ["--name", self.name, "--out", str(self.run_dir / "run")]
        self.progress.emit(0, 0, "Starting the training…")
        return "fit", args

    def _launch(self, args: list[str], env: dict[str, str] | None = None) -> None:
        super()._launch(args, {PROGRESS_ENV: "1", **(env or {})})

    # -- output

    def stdout_line(self, line: str) -> None:
        event = json_event(line)
        if event is None:
            if line.strip():
                self._log(line)
            return
        kind = event["event"]
        if self._cancelling:
            return
        # fit's progress events (core.retraining.progress_event); its log lines go to the log.
        if kind == "preparing":
            self.progress.emit(0, 0, f"Preparing {event.get('images', 0)} {event.get('split', '')} images…")
        elif kind == "phase":
            if self._train_started is None:
                self._train_started = time.monotonic()
            self._report(str(event.get("phase")), 0.0)
        elif kind == "batch":
            epoch, batch, batches = int(event.get("epoch", 1)), int(event.get("batch", 0)), int(event.get("batches", 1))
            self._report(str(event.get("phase")), epoch - 1 + batch / max(1, batches))
        elif kind == "testing":
            self.progress.emit(0, 0, "Calibrating and testing the new model…")

    def _report(self, phase: str, epochs_done: float) -> None:
        """Progress over both phases, with a remaining time from the rate so far."""
        if self._cancelling:
            return
        r = self.recipe
        done = epochs_done + (r.epochs_frozen if phase == "fine" else 0)
        total = max(r.epochs, 1)
        done = min(done, total)
        epoch = min(int(epochs_done) + 1, r.epochs_frozen if phase == "frozen" else r.epochs_fine)
        of = r.epochs_frozen if phase == "frozen" else r.epochs_fine
        text = f"{_STAGE_TEXT[phase]}, epoch {max(epoch, 1)} of {of}"
        if self._train_started is not None and done > 0.05:
            left = (time.monotonic() - self._train_started) * (total - done) / done
            text += f" · about {_minutes(left)} left"
        self.progress.emit(round(100 * done), 100 * total, text)

    # -- endings

    def _after_process(self) -> None:
        if self.run_folder is not None:
            shutil.rmtree(self.run_folder / "cache", ignore_errors=True)

    def _step_failed(self, stage: str, how: str) -> None:
        self._fail(f"The {'training' if stage == 'fit' else 'export'} {how}.", tail=True)

    def _step_done(self, stage: str) -> None:
        run = self.run_dir / "run"
        if stage == "fit":
            if not (run / MODEL_FILE).is_file() or not (run / CARD_FILE).is_file():
                self._fail(f"The training ended without a model in {run}.", tail=True)
                return
            self.stage = "export"
            self.progress.emit(0, 0, "Saving the new model…")
            self._launch(["export", str(run), "--name", self.name, "--dest", str(self.run_dir / "bundle")])
            return
        self._install()

    def _install(self) -> None:
        staged = self.run_dir / "bundle" / self.name
        target = self.models_dir / self.name
        if target.exists():
            self._fail(f"A model named {self.name!r} appeared in {self.models_dir} meanwhile; the new one is in {staged}.")
            return
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staged), str(target))  # a rename on one disk: the chooser never sees half a bundle
        except OSError as exc:
            self._fail(f"Could not move the new model into {self.models_dir}: {exc}. It is in {staged}.")
            return
        self._succeed(target, f"Model {self.name} is ready")


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return "1 min"
    if seconds < 5400:
        return f"{math.ceil(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
