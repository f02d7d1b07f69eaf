"""A ``python -m training`` command run from the application in a ``QProcess``.

``TrainingJob`` is what retraining (``retrain.RetrainJob``) and adaptation
(``adapt.AdaptJob``) share: a run folder holding the session's exported cells, the child
process in its own process group (cancel reaches every process it started), SIGTERM then
SIGKILL on cancel, output read line by line, and exactly one ending signal.  Subclasses say
what to run, how to read its lines and what to do when a step ends.

No widgets here: the dialogs (``widgets/job_dialog.py`` and its subclasses) and the tests
drive the same objects.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import sys
from collections import deque
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from ..core.classifier import list_bundles, user_models_dir
from ..core.review_export import export_cells
from ..core.store import ReviewSession

TRAINING_PYTHON_ENV = "YAWBCC_TRAINING_PYTHON"  # a source install's Python, for the installed build
CORRECTIONS_CSV = "corrections.csv"
LOG_TAIL = 40  # log lines quoted in a failure message
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# TensorFlow's start-up chatter (absl), which TF_CPP_MIN_LOG_LEVEL does not silence: kept out
# of the log pane and of failure messages.
LOG_NOISE = re.compile(r"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s|WARNING: All log messages before absl::InitializeLog)")


def json_event(line: str) -> dict | None:
    """A line of ``python -m training`` that is an event for the window (a JSON object with
    ``event``: adapt's, and fit's ``core.retraining.progress_event``); None for a log line."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def training_command(what: str = "Retraining") -> tuple[list[str] | None, str]:
    """``[python, "-m", "training"]``, or None and why ``what`` cannot run here."""
    python = os.environ.get(TRAINING_PYTHON_ENV)
    if python:
        if not Path(python).is_file():
            return None, f"{TRAINING_PYTHON_ENV} names {python}, which does not exist."
        return [python, "-m", "training"], ""
    if getattr(sys, "frozen", False):
        # sys.executable is the application itself here, and the build leaves training out.
        return None, (
            f"{what} is not part of this installation: it needs the source install of YAWBCC Desktop "
            f"(docs/training.md). To run it from here, set the environment variable "
            f"{TRAINING_PYTHON_ENV} to that installation's Python and restart the application."
        )
    if importlib.util.find_spec("training") is None:
        return None, "The training module is not installed with this Python; install YAWBCC Desktop from source."
    return [sys.executable, "-m", "training"], ""


def retraining_dir() -> Path:
    """Run folders: next to the user's models, so a finished bundle moves there by rename."""
    return user_models_dir().parent / "retraining"


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


class TrainingJob(QObject):
    """One ``python -m training`` run (maybe several commands in turn) started from the application.

    Signals: ``progress(done, total, text)`` with ``total == 0`` while no fraction is known;
    ``log_line(str)`` for every line the command prints for people; then exactly one of
    ``finished(bundle_folder)``, ``failed(message)`` or ``cancelled()``.
    """

    progress = Signal(int, int, str)
    log_line = Signal(str)
    finished = Signal(str)
    failed = Signal(str)
    cancelled = Signal()

    what = "training"  # in messages: "Could not start the training", "The training ended …"
    action = "Retraining"  # what the installed build cannot do (training_command)
    running_stages: tuple[str, ...] = ()
    separate_channels = False  # True: stdout is for programs (stdout_line), stderr for people
    log_name = "train.log"  # what the run folder's log is called in a failure message

    def __init__(
        self,
        session: ReviewSession,
        name: str,
        *,
        models_dir: str | os.PathLike[str] | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        kill_after_ms: int = 5000,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.name = name
        self.models_dir = Path(models_dir) if models_dir is not None else user_models_dir()
        self.work_dir = Path(work_dir) if work_dir is not None else retraining_dir()
        self.kill_after_ms = kill_after_ms
        self.run_folder: Path | None = None
        self.bundle_folder: Path | None = None
        self.stage = "idle"
        self._process: QProcess | None = None
        self._pgid: int | None = None
        self._buffers = {"out": b"", "err": b""}
        self._tail: deque[str] = deque(maxlen=LOG_TAIL)
        self._cancelling = False
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)
        self._command: list[str] | None = None

    @property
    def run_dir(self) -> Path:
        """The folder of the run under way (``start`` makes it)."""
        if self.run_folder is None:
            raise RuntimeError(f"the {self.what} has no run folder yet")
        return self.run_folder

    @property
    def running(self) -> bool:
        return self.stage in self.running_stages

    @property
    def process_id(self) -> int:
        """The running training process (0 when none): its process group on Linux and macOS."""
        return int(self._process.processId()) if self._process is not None else 0

    # -- for subclasses

    def _check(self) -> str | None:
        """Why the job cannot start (None: it can); called after the command is found."""
        return None

    def _first_step(self) -> tuple[str, list[str]]:
        """The first stage and its ``python -m training`` arguments (the run folder exists)."""
        raise NotImplementedError

    def _reset(self) -> None:
        """Forget what an earlier start of this job recorded."""

    def stdout_line(self, line: str) -> None:
        """A line of standard output (all output unless ``separate_channels``)."""
        self._log(line)

    def _log(self, line: str) -> None:
        if line.strip() and not LOG_NOISE.match(line):
            self._tail.append(line)
            self.log_line.emit(line)

    def _step_done(self, stage: str) -> None:
        """The command of ``stage`` ended well: launch the next or ``_succeed``."""
        raise NotImplementedError

    def _step_failed(self, stage: str, how: str) -> None:
        self._fail(f"The {self.what} {how}.", tail=True)

    def _after_process(self) -> None:
        """Every time a process ends, before anything else (temporary files)."""

    def _after_cancel(self) -> None:
        """A cancelled run has ended: remove what it made."""
        self._remove_run_folder()

    # -- starting

    def start(self) -> bool:
        """Check the inputs, write the cells CSV, start the first step; False (and ``failed``) if it cannot."""
        if self.running:
            return False
        self.stage, self._cancelling = "idle", False
        self._tail.clear()
        self._reset()
        self._command, why = training_command(self.action)
        problem = why if self._command is None else self._check()
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
        self.stage, args = self._first_step()
        self._launch(args)
        return True

    def _launch(self, args: list[str], env: dict[str, str] | None = None) -> None:
        proc = QProcess(self)
        if not self.separate_channels:
            proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.setWorkingDirectory(str(self.run_folder))
        environment = QProcessEnvironment.systemEnvironment()
        for key, value in {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}.items():
            environment.insert(key, value)
        proc.setProcessEnvironment(environment)
        if os.name == "posix":
            # Own process group: cancel also reaches the worker processes the command starts.
            proc.setUnixProcessParameters(QProcess.UnixProcessFlag.CreateNewSession)
        # Bound methods, not lambdas: a lambda holding the job would let the process's deletion
        # drop the job's last reference mid-destructor.
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._process_finished)
        proc.errorOccurred.connect(self._process_error)
        self._process = proc
        self._buffers = {"out": b"", "err": b""}
        if self._command is None:
            raise RuntimeError(f"the {self.what} has no command to run (start checks it)")
        proc.start(self._command[0], [*self._command[1:], *args])
        self._pgid = int(proc.processId()) or None

    # -- cancelling

    def cancel(self) -> None:
        """Stop the run: SIGTERM now, SIGKILL after ``kill_after_ms``; ends in ``cancelled``."""
        if not self.running or self._cancelling:
            return
        self._cancelling = True
        self.progress.emit(0, 0, "Cancelling…")
        if os.name == "posix" and self._pgid:
            self._signal_group(signal.SIGTERM)
        elif self._process is not None:
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
        if self._pgid is None:
            return
        try:
            os.killpg(self._pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # -- output

    def _read_stdout(self) -> None:
        self._read("out")

    def _read_stderr(self) -> None:
        self._read("err")

    def _read(self, channel: str) -> None:
        if self._process is None:
            return
        proc = self._process
        data = proc.readAllStandardOutput() if channel == "out" else proc.readAllStandardError()
        self._buffers[channel] += bytes(data.data())
        *lines, self._buffers[channel] = self._buffers[channel].split(b"\n")
        for raw in lines:
            self._dispatch(channel, raw.decode("utf-8", errors="replace").rstrip("\r"))

    def _dispatch(self, channel: str, line: str) -> None:
        if channel == "out":
            self.stdout_line(line)
        else:
            self._log(line)

    # -- endings

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._process = None
            self._fail(
                f"Could not start the {self.what} ({' '.join(self._command or [])}): the program was not found or not runnable."
            )

    def _process_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        if self._process is not None:
            for channel in ("out", "err"):
                self._read(channel)
        for channel, rest in self._buffers.items():
            if rest:
                self._dispatch(channel, rest.decode("utf-8", errors="replace"))
        self._buffers = {"out": b"", "err": b""}
        self._kill_timer.stop()
        stage, finished_process, self._process = self.stage, self._process, None
        if finished_process is not None:
            finished_process.deleteLater()
        self._after_process()
        if self._cancelling:
            # Stragglers of the group (pool workers) go with it.
            if os.name == "posix" and self._pgid:
                self._signal_group(signal.SIGKILL)
            self._cancelling = False
            self.stage = "cancelled"
            self._after_cancel()
            self.cancelled.emit()
            return
        if status != QProcess.ExitStatus.NormalExit or code != 0:
            how = "stopped unexpectedly" if status != QProcess.ExitStatus.NormalExit else f"ended with exit status {code}"
            self._step_failed(stage, how)
            return
        self._step_done(stage)

    def _succeed(self, folder: Path, text: str) -> None:
        self.bundle_folder = folder
        self.stage = "finished"
        self.progress.emit(1, 1, text)
        self.finished.emit(str(folder))

    def _fail(self, message: str, tail: bool = False) -> bool:
        self.stage = "failed"
        if tail and self._tail:
            message += f"\n\nLast lines of the {self.what} log:\n" + "\n".join(self._tail)
        if self.run_folder is not None and self.run_folder.exists():
            message += f"\n\nRun folder (with {self.log_name}): {self.run_folder}"
        self.failed.emit(message)
        return False

    def _remove_run_folder(self) -> None:
        if self.run_folder is not None:
            shutil.rmtree(self.run_folder, ignore_errors=True)
