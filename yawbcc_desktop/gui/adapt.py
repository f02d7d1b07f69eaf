"""Adapting a model to this lab from the session's reviewed cells, started from the application.

``AdaptJob`` exports the session's cells into a run folder and runs ``python -m training
adapt`` in a ``QProcess`` (the machinery is ``TrainingJob``'s, shared with retraining).  The
command says what it does in JSON lines on stdout (progress by stage, rows it skipped, the
final report or the error), read here as events, never parsed out of log text; its lines
for people (stderr) go to the log pane and ``adapt.log`` in the run folder.

The command writes the new bundle into ``<models>/.NAME.partial`` and renames it to
``<models>/NAME`` at the end.  On Cancel it is stopped (SIGTERM, then SIGKILL), and the job
removes a partial folder a killed process could not, and the bundle itself when the command
had just finished it: a cancelled adaptation adds no model.

No widgets here: the dialog (``widgets/adapt_dialog.py``) and tests drive the same object.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject

from ..core.adaptation import MIN_CELLS, MIN_IMAGE_CELLS, MIN_PER_CLASS, REPLAY_FILE
from ..core.classes import ARTEFACT, GROUPS
from ..core.store import ReviewSession
from .retrain import reviewed_cells
from .training_job import CORRECTIONS_CSV, TrainingJob, check_model_name, json_event

STAGES = ("reading", "loading", "features", "unlabelled", "fitting", "writing")
IMAGE_STAGES = ("loading", "features", "measuring", "writing")  # adapting to the images, no corrections
STAGE_TEXT = {
    "reading": "Checking the reviewed cells' images",
    "loading": "Loading the model",
    "features": "Framing the cells and computing their features",
    "unlabelled": "Framing the session's unreviewed cells (they teach the model too)",
    "fitting": "Fitting the classifier head (cross-validation, then all cells)",
    "measuring": "Measuring the model's image statistics on this lab's cells",
    "writing": "Writing the new model",
}
IMAGE_LIST = "images.txt"  # the session's images, for --image-list


@dataclass(frozen=True)
class AdaptCells:
    """The reviewed cells of a session as an adaptation sees them."""

    per_class: dict[str, int]  # reviewed cells per class (every class of GROUPS), image on disk
    artefacts: int  # reviewed as not a cell: left out
    missing: int  # reviewed cells whose image file is gone: left out

    @property
    def adapted(self) -> dict[str, int]:
        """The classes with enough cells to be adapted."""
        return {g: n for g, n in self.per_class.items() if n >= MIN_PER_CLASS}

    @property
    def total(self) -> int:
        """Cells in the classes that will be adapted: what the minimum is counted on."""
        return sum(self.adapted.values())

    @property
    def enough(self) -> bool:
        return self.total >= MIN_CELLS


def count_adaptation_cells(session: ReviewSession) -> AdaptCells:
    """What ``training adapt`` will take from this session's cells CSV (cells of smear fields
    too: adaptation frames each cell from its box, as the analysis did)."""
    per_class = dict.fromkeys(GROUPS, 0)
    artefacts = missing = 0
    present: dict[str, bool] = {}
    for c, _mode in reviewed_cells(session):
        if c.label == ARTEFACT or c.label not in per_class:
            artefacts += 1
            continue
        if c.path not in present:
            present[c.path] = Path(c.path).is_file()
        if present[c.path]:
            per_class[c.label] += 1
        else:
            missing += 1
    return AdaptCells(per_class, artefacts, missing)


@dataclass(frozen=True)
class AdaptImages:
    """The session's images as adapting to them, without corrections, sees them."""

    paths: list[str]  # analysed images with cells, file on disk
    cells: int  # their cells
    missing: int  # analysed images whose file is gone: left out

    @property
    def enough(self) -> bool:
        return self.cells >= MIN_IMAGE_CELLS


def count_adaptation_images(session: ReviewSession) -> AdaptImages:
    """What ``training adapt --image-list`` will take: every image of the session with cells."""
    paths, cells, missing = [], 0, 0
    for image in session.images():
        if image.cell_count <= 0:
            continue
        if Path(image.path).is_file():
            paths.append(image.path)
            cells += image.cell_count
        else:
            missing += 1
    return AdaptImages(paths, cells, missing)


def images_problem(images: AdaptImages) -> str | None:
    """Why these images are not enough (None: they are)."""
    if images.enough:
        return None
    return (
        f"Not enough cells in this session's images yet: {images.cells}, and measuring a lab's image statistics "
        f"needs at least {MIN_IMAGE_CELLS}. Open more of the lab's images first."
    )


def cannot_adapt(bundle_folder: str | os.PathLike[str] | None) -> str | None:
    """Why the bundle cannot be adapted from corrections (None: it can)."""
    if not bundle_folder:
        return "No model is loaded yet: choose a model first (Analysis › Choose model…)."
    folder = Path(bundle_folder)
    if not (folder / REPLAY_FILE).is_file():
        return (
            f"Model {folder.name} cannot be adapted from corrections: it has no replay sample ({REPLAY_FILE}, the features of a "
            "sample of the cells it was trained on, which keep it from forgetting them). Choose a model that has "
            "one, or use Review › Retrain with corrections…."
        )
    return None


def adaptation_problem(cells: AdaptCells) -> str | None:
    """Why these cells are not enough (None: they are)."""
    if cells.enough:
        return None
    return (
        f"Not enough reviewed cells yet: {cells.total} in classes with at least {MIN_PER_CLASS} cells, and an "
        f"adaptation needs at least {MIN_CELLS}. Confirm or correct more cells first."
    )


class AdaptJob(TrainingJob):
    """One adaptation: export the session's cells, ``python -m training adapt``, the new bundle.

    ``progress(done, total, text)`` per stage (``total == 0`` while the model loads);
    ``report`` holds the command's final report (cells, figures before and after, the base
    model's own test figures) once ``finished`` is emitted; ``skipped`` the rows it left out.
    """

    what = "adaptation"
    action = "Adapting a model"
    running_stages = ("adapt",)
    separate_channels = True
    log_name = "adapt.log"

    def __init__(
        self,
        session: ReviewSession,
        base_model: str | os.PathLike[str],
        name: str,
        lab: str = "",
        *,
        models_dir: str | os.PathLike[str] | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        kill_after_ms: int = 5000,
        from_images: bool = False,
        lab_um_per_px: float | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(session, name, models_dir=models_dir, work_dir=work_dir, kill_after_ms=kill_after_ms, parent=parent)
        self.from_images = from_images  # the session's images, no corrections: the image statistics only
        self.lab_um_per_px = lab_um_per_px  # the lab's pixel size: the images framed as the window frames them
        self._images: AdaptImages | None = None  # counted when the job starts
        self.base_model = Path(base_model)
        self.lab = lab.strip()
        self.report: dict | None = None
        self.skipped: list[str] = []
        self._error = ""

    # -- starting

    def _reset(self) -> None:
        self.report, self.skipped, self._error = None, [], ""

    def _check(self) -> str | None:
        if self.from_images:
            self._images = count_adaptation_images(self.session)  # what the image list will hold
            return check_model_name(self.name, self.models_dir) or images_problem(self._images)
        return (
            check_model_name(self.name, self.models_dir)
            or cannot_adapt(self.base_model)
            or adaptation_problem(count_adaptation_cells(self.session))
        )

    def _first_step(self) -> tuple[str, list[str]]:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        if self.from_images:
            if self._images is None:
                raise RuntimeError("the adaptation's images were not counted (start counts them)")
            image_list = self.run_dir / IMAGE_LIST
            image_list.write_text("".join(f"{p}\n" for p in self._images.paths), encoding="utf-8")
            args = ["adapt", "--model", str(self.base_model), "--image-list", str(image_list)]
            args += ["--um-per-px", f"{self.lab_um_per_px:g}"] if self.lab_um_per_px else []
        else:
            args = ["adapt", "--model", str(self.base_model), "--corrections", str(self.run_dir / CORRECTIONS_CSV)]
        args += ["--name", self.name, "--dest", str(self.models_dir), "--lab", self.lab or self.name]
        self.progress.emit(0, 0, "Starting…")
        return "adapt", args

    # -- output

    def stdout_line(self, line: str) -> None:
        event = json_event(line)
        if event is None:
            self._log(line)  # not an event: a library's print
            return
        kind = event["event"]
        if kind == "progress" and not self._cancelling:
            stage, done, total = str(event.get("stage", "")), int(event.get("done", 0)), int(event.get("total", 0))
            text = STAGE_TEXT.get(stage, stage)
            stages = IMAGE_STAGES if self.from_images else STAGES
            if stage in stages:
                text = f"Step {stages.index(stage) + 1} of {len(stages)}: {text}"
            self.progress.emit(done, total, f"{text} ({done} of {total})" if total else f"{text}…")
        elif kind == "skipped":
            self.skipped.append(str(event.get("message", "")))
        elif kind == "done":
            self.report = event
        elif kind == "error":
            self._error = str(event.get("message", ""))

    def _log(self, line: str) -> None:
        super()._log(line)
        if line.strip() and self.run_folder is not None and self.run_folder.is_dir():
            with open(self.run_folder / self.log_name, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    # -- endings

    def partial_folder(self) -> Path:
        """Where the command writes the bundle before renaming it (training.whole_folder.partial_folder)."""
        return self.models_dir / f".{self.name}.partial"

    def _step_failed(self, stage: str, how: str) -> None:
        if self._error:
            message = self._error[:1].upper() + self._error[1:]
            if self.skipped:
                message += "\n\nRows left out of the cells file:\n" + "\n".join(self.skipped[:20])
                if len(self.skipped) > 20:
                    message += f"\n… and {len(self.skipped) - 20} more (see {self.log_name})"
            self._fail(message)
        else:
            super()._step_failed(stage, how)
        shutil.rmtree(self.partial_folder(), ignore_errors=True)

    def _step_done(self, stage: str) -> None:
        folder = Path(self.report["bundle"]) if self.report and self.report.get("bundle") else None
        if folder is None or not folder.is_dir():
            self._fail("The adaptation ended without a new model.", tail=True)
            return
        self._succeed(folder, f"Model {self.name} is ready")

    def _after_cancel(self) -> None:
        # A killed process leaves its partial folder; one that had just finished, its bundle.
        shutil.rmtree(self.partial_folder(), ignore_errors=True)
        made = Path(self.report["bundle"]).resolve() if self.report and self.report.get("bundle") else None
        if made is not None and made == (self.models_dir / self.name).resolve():
            shutil.rmtree(made, ignore_errors=True)
        self.report = None
        super()._after_cancel()
