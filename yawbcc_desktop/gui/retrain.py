"""Retraining with the reviewers' corrections, started from the application.

``RetrainJob`` writes the session's cells CSV into a new run folder, runs
``python -m training fit --corrections`` on the base data set in a ``QProcess``, then
``python -m training export``, and moves the finished bundle into the user's models folder
(``classifier.user_models_dir()``), where the model chooser lists it.  The bundle appears
there by one rename, so a cancelled or failed run never leaves a half-written model.

No widgets here: the dialog (``widgets/retrain_dialog.py``) and tests drive the same object.
The installed (PyInstaller) build leaves ``training`` and its dependencies out, so there
retraining needs a source install's Python (``YAWBCC_TRAINING_PYTHON``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from ..core.classes import GROUPS
from ..core.classifier import CARD_FILE, FALLBACK_MODEL, MODEL_FILE, list_bundles, resource_root, user_models_dir
from ..core.review_export import export_cells
from ..core.store import ReviewSession

TRAINING_PYTHON_ENV = "YAWBCC_TRAINING_PYTHON"  # a source install's Python, for the installed build
PROGRESS_ENV = "YAWBCC_TRAINING_PROGRESS"  # training.fit.PROGRESS_ENV; not imported: that pulls in pandas
CORRECTIONS_CSV = "corrections.csv"
LOG_TAIL = 40  # log lines quoted in a failure message
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# -- the recipe ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """The ``fit`` options of a retraining; ``fast_recipe()`` is the bundled lite0-fast's."""

    backbone: str = "efficientnet-lite0"
    weights: str = "imagenet"
    input_size: int = 128
    cell_field: int = 288
    balance: bool = True
    batch_size: int = 32
    epochs_frozen: int = 1
    epochs_fine: int = 7
    lr_fine: float = 4e-4
    fine_tune_layers: int | None = None
    class_weighting: str = "balanced"
    augment: str = "full"
    train_bn: bool = False
    seed: int = 42

    @property
    def epochs(self) -> int:
        return self.epochs_frozen + self.epochs_fine

    def fit_args(self) -> list[str]:
        args = ["--backbone", self.backbone, "--weights", self.weights, "--size", str(self.input_size)]
        args += ["--field", str(self.cell_field), "--batch-size", str(self.batch_size)]
        args += ["--epochs-frozen", str(self.epochs_frozen), "--epochs", str(self.epochs_fine), "--lr", f"{self.lr_fine:g}"]
        args += ["--class-weighting", self.class_weighting, "--augment", self.augment, "--seed", str(self.seed)]
        if self.fine_tune_layers is not None:
            args += ["--fine-tune-layers", str(self.fine_tune_layers)]
        if not self.balance:
            args.append("--no-balance")
        if self.train_bn:
            args.append("--train-bn")
        return args

    @classmethod
    def from_card_training(cls, training: dict) -> Recipe:
        """The recipe a bundle was trained with (its card's ``training`` block)."""
        known = {k: training[k] for k in asdict(cls()) if k in training}
        if "epochs_fine" not in known and "epochs" in training:
            known["epochs_fine"] = training["epochs"]
        weighting = known.get("class_weighting")
        if isinstance(weighting, bool):  # older cards stored on/off
            known["class_weighting"] = "balanced" if weighting else "none"
        return cls(**known)


def fast_recipe() -> Recipe:
    """The recipe of the bundled lite0-fast model (42 min on 2 CPU cores for the PBC set)."""
    card = resource_root() / "models" / FALLBACK_MODEL / CARD_FILE
    try:
        return Recipe.from_card_training(json.loads(card.read_text(encoding="utf-8"))["training"])
    except (OSError, ValueError, KeyError, TypeError):
        return Recipe()  # the same figures, written down


# -- what goes in --------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainCells:
    """The reviewed cells of a session as training sees them."""

    usable: int  # reviewed single-cell images with one of the eight labels and a file on disk
    corrected: int  # of those, labelled otherwise than the model
    smear: int  # reviewed cells of smear fields: left out, training reads single-cell images
    artefacts: int  # reviewed as not a cell: left out
    missing: int  # reviewed single-cell images whose file is gone


def count_retraining_cells(session: ReviewSession) -> RetrainCells:
    """What ``fit --corrections`` will take from this session's cells CSV."""
    modes = {im.id: im.mode for im in session.images()}
    usable = corrected = smear = artefacts = missing = 0
    ids = session.cell_ids()
    for start in range(0, len(ids), 2000):
        for c in session.cells(ids[start : start + 2000]):
            if not c.reviewed:
                continue
            if modes.get(c.image_id) == "smear":
                smear += 1
            elif c.label not in GROUPS:
                artefacts += 1
            elif not Path(c.path).is_file():
                missing += 1
            else:
                usable += 1
                corrected += c.corrected
    return RetrainCells(usable, corrected, smear, artefacts, missing)


def check_model_name(name: str, models_dir: Path | None = None) -> str | None:
    """Why ``name`` cannot be the new bundle's name, or None when it can."""
    if not NAME_PATTERN.match(name):
        return "Model names use letters, digits, '.', '_' and '-' (up to 64), starting with a letter or digit."
    taken = {folder.name for folder, _card in list_bundles()}
    if models_dir is not None and (models_dir / name).exists():
        taken.add(name)
    if name in taken:
        # A user bundle is searched first: reusing a name would hide the other model.
        return f"A model named {name!r} already exists; choose another name."
    return None


def training_command() -> tuple[list[str] | None, str]:
    """``[python, "-m", "training"]``, or None and why retraining cannot run here."""
    python = os.environ.get(TRAINING_PYTHON_ENV)
    if python:
        if not Path(python).is_file():
            return None, f"{TRAINING_PYTHON_ENV} names {python}, which does not exist."
        return [python, "-m", "training"], ""
    if getattr(sys, "frozen", False):
        # sys.executable is the application itself here, and the build leaves training out.
        return None, (
            "Retraining is not part of this installation: it needs the source install of YAWBCC Desktop "
            "(README, Training). To retrain from here, set the environment variable "
            f"{TRAINING_PYTHON_ENV} to that installation's Python and restart the application."
        )
    if importlib.util.find_spec("training") is None:
        return None, "The training module is not installed with this Python; install YAWBCC Desktop from source."
    return [sys.executable, "-m", "training"], ""


def retraining_dir() -> Path:
    """Run folders: next to the user's models, so a finished bundle moves there by rename."""
    return user_models_dir().parent / "retraining"


# -- the job -------------------------------------------------------------------------------

_PREPROCESS = re.compile(r"preprocessing (\w+): (\d+) images")
_PHASE = re.compile(r"\bphase (frozen|fine):")
_EPOCH = re.compile(r"\[(frozen|fine)\] epoch (\d+)/(\d+)")
_BATCH = re.compile(r"^@progress (frozen|fine) epoch (\d+)/(\d+) batch (\d+)/(\d+)")
_STAGE_TEXT = {"frozen": "Training the new classifier head", "fine": "Fine-tuning the network"}


class RetrainJob(QObject):
    """One retraining: export the reviewed cells, fit, export the bundle.

    Signals: ``progress(done, total, text)`` with ``total == 0`` while no fraction is known
    (preparing images, testing, saving) and otherwise hundredths of an epoch over all
    epochs; ``log_line(str)`` for every line the training prints; then exactly one of
    ``finished(bundle_folder)``, ``failed(message)`` or ``cancelled()``.
    """

    progress = Signal(int, int, str)
    log_line = Signal(str)
    finished = Signal(str)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(
        self,
        session: ReviewSession,
        base_data: str | os.PathLike,
        name: str,
        recipe: Recipe | None = None,
        *,
        models_dir: str | os.PathLike | None = None,
        work_dir: str | os.PathLike | None = None,
        kill_after_ms: int = 5000,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.base_data = Path(base_data)
        self.name = name
        self.recipe = recipe or fast_recipe()
        self.models_dir = Path(models_dir) if models_dir is not None else user_models_dir()
        self.work_dir = Path(work_dir) if work_dir is not None else retraining_dir()
        self.kill_after_ms = kill_after_ms
        self.run_folder: Path | None = None
        self.bundle_folder: Path | None = None
        self.stage = "idle"  # idle, fit, export, finished, failed, cancelled
        self._process: QProcess | None = None
        self._pgid: int | None = None
        self._buffer = b""
        self._tail: deque[str] = deque(maxlen=LOG_TAIL)
        self._cancelling = False
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)
        self._command: list[str] | None = None
        self._train_started: float | None = None

    @property
    def running(self) -> bool:
        return self.stage in ("fit", "export")

    @property
    def process_id(self) -> int:
        """The running training process (0 when none): its process group on Linux and macOS."""
        return int(self._process.processId()) if self._process is not None else 0

    # -- starting

    def start(self) -> bool:
        """Check the inputs, write the cells CSV, start ``fit``; False (and ``failed``) if it cannot."""
        if self.running:
            return False
        self.stage, self._train_started, self._cancelling = "idle", None, False
        self._tail.clear()
        problem = self._check()
        if problem:
            return self._fail(problem)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.run_folder = self.work_dir / f"{self.name}-{stamp}"
        for n in range(2, 100):  # two starts in one second: keep both runs' logs
            if not self.run_folder.exists():
                break
            self.run_folder = self.work_dir / f"{self.name}-{stamp}-{n}"
        try:
            self.run_folder.mkdir(parents=True, exist_ok=False)
            export_cells(self.session, self.run_folder / CORRECTIONS_CSV)
        except Exception as exc:  # disk full, permissions, a closed session: say which
            return self._fail(f"Could not write the reviewed cells to {self.run_folder}: {exc}")
        args = ["fit", "--data", str(self.base_data), "--corrections", str(self.run_folder / CORRECTIONS_CSV)]
        # A cache per run: the training side's cache changes with every session (~0.7 GB for PBC at
        # 128 px), and preparing the images again takes a minute or two of a run of tens.
        args += [*self.recipe.fit_args(), "--cache", str(self.run_folder / "cache")]
        args += ["--name", self.name, "--out", str(self.run_folder / "run")]
        self.stage = "fit"
        self.progress.emit(0, 0, "Starting the training…")
        self._launch(args)
        return True

    def _check(self) -> str | None:
        self._command, why = training_command()
        if self._command is None:
            return why
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

    def _launch(self, args: list[str]) -> None:
        proc = QProcess(self)
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.setWorkingDirectory(str(self.run_folder))
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        env.insert("TF_CPP_MIN_LOG_LEVEL", "2")
        env.insert(PROGRESS_ENV, "1")
        proc.setProcessEnvironment(env)
        if os.name == "posix":
            # Own process group: cancel also reaches the preprocessing pool's worker processes.
            proc.setUnixProcessParameters(QProcess.UnixProcessFlag.CreateNewSession)
        proc.readyReadStandardOutput.connect(self._read_output)
        proc.finished.connect(self._process_finished)
        proc.errorOccurred.connect(self._process_error)
        self._process = proc
        self._buffer = b""
        proc.start(self._command[0], [*self._command[1:], *args])
        self._pgid = int(proc.processId()) or None

    # -- cancelling

    def cancel(self) -> None:
        """Stop the training: SIGTERM now, SIGKILL after ``kill_after_ms``; ends in ``cancelled``."""
        if not self.running or self._cancelling:
            return
        self._cancelling = True
        self.progress.emit(0, 0, "Cancelling…")
        if os.name == "posix" and self._pgid:
            self._signal_group(signal.SIGTERM)
        else:
            self._process.kill()  # terminate() on Windows asks a window to close: a console process has none
        self._kill_timer.start(self.kill_after_ms)

    def shutdown(self, wait_ms: int = 5000) -> None:
        """Cancel and wait (blocking) for the process to end; for closing the application."""
        if not self.running:
            return
        proc = self._process
        self.cancel()
        if proc is not None and not proc.waitForFinished(wait_ms):
            self._kill()
            proc.waitForFinished(2000)

    def _kill(self) -> None:
        if self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning:
            if os.name == "posix" and self._pgid:
                self._signal_group(signal.SIGKILL)
            else:
                self._process.kill()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self._pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # -- output

    def _read_output(self) -> None:
        self._buffer += bytes(self._process.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            self._line(raw.decode("utf-8", errors="replace").rstrip("\r"))

    def _line(self, line: str) -> None:
        batch = _BATCH.match(line)
        if batch:
            phase, epoch, _epochs, step, steps = batch.groups()
            self._report(phase, int(epoch) - 1 + int(step) / max(1, int(steps)))
            return
        if not line.strip():
            return
        self._tail.append(line)
        self.log_line.emit(line)
        if self._cancelling:
            return
        if m := _PREPROCESS.search(line):
            self.progress.emit(0, 0, f"Preparing {m.group(2)} {m.group(1)} images…")
        elif m := _PHASE.search(line):
            if self._train_started is None:
                self._train_started = time.monotonic()
            self._report(m.group(1), 0.0)
        elif m := _EPOCH.search(line):
            self._report(m.group(1), float(m.group(2)))
        elif "training took" in line:
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

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._process = None
            self._fail(f"Could not start the training ({' '.join(self._command)}): the program was not found or not runnable.")

    def _process_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        if self._buffer:
            self._line(self._buffer.decode("utf-8", errors="replace"))
            self._buffer = b""
        self._kill_timer.stop()
        stage, finished_process, self._process = self.stage, self._process, None
        if finished_process is not None:
            finished_process.deleteLater()
        if self.run_folder is not None:
            shutil.rmtree(self.run_folder / "cache", ignore_errors=True)
        if self._cancelling:
            # Stragglers of the group (pool workers) go with it; the run folder is never exported.
            if os.name == "posix" and self._pgid:
                self._signal_group(signal.SIGKILL)
            self._cancelling = False
            self.stage = "cancelled"
            self._remove_run_folder()
            self.cancelled.emit()
            return
        if status != QProcess.ExitStatus.NormalExit or code != 0:
            how = "stopped unexpectedly" if status != QProcess.ExitStatus.NormalExit else f"ended with exit status {code}"
            self._fail(f"The {'training' if stage == 'fit' else 'export'} {how}.", tail=True)
            return
        run = self.run_folder / "run"
        if stage == "fit":
            if not (run / MODEL_FILE).is_file() or not (run / CARD_FILE).is_file():
                self._fail(f"The training ended without a model in {run}.", tail=True)
                return
            self.stage = "export"
            self.progress.emit(0, 0, "Saving the new model…")
            self._launch(["export", str(run), "--name", self.name, "--dest", str(self.run_folder / "bundle")])
            return
        self._install()

    def _install(self) -> None:
        staged = self.run_folder / "bundle" / self.name
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
        self.bundle_folder = target
        self.stage = "finished"
        self.progress.emit(1, 1, f"Model {self.name} is ready")
        self.finished.emit(str(target))

    def _fail(self, message: str, tail: bool = False) -> bool:
        self.stage = "failed"
        if tail and self._tail:
            message += "\n\nLast lines of the training log:\n" + "\n".join(self._tail)
        if self.run_folder is not None and self.run_folder.exists():
            message += f"\n\nRun folder (with train.log): {self.run_folder}"
        self.failed.emit(message)
        return False

    def _remove_run_folder(self) -> None:
        if self.run_folder is not None:
            shutil.rmtree(self.run_folder, ignore_errors=True)


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return "1 min"
    if seconds < 5400:
        return f"{math.ceil(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
