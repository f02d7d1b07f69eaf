"""Retrain with corrections: a real ``python -m training fit`` and ``export`` in a QProcess.

The data set is tiny (four PBC images per class, 32 px, random initial weights, one epoch):
these tests check the plumbing -- cells CSV, progress, the bundle in the user's models
folder, cancel that leaves no process and no bundle -- never what the model learns.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from yawbcc_desktop.core.cells import CellRegion
from yawbcc_desktop.core.classes import ARTEFACT, GROUPS
from yawbcc_desktop.core.classifier import list_bundles, read_card, user_models_dir
from yawbcc_desktop.core.pipeline import CellRecord, ImageResult
from yawbcc_desktop.core.retraining import FIT_DEFAULTS, LITE0_FAST, FitRecipe
from yawbcc_desktop.core.store import ReviewSession
from yawbcc_desktop.gui.retrain import (
    CORRECTIONS_CSV,
    TRAINING_PYTHON_ENV,
    RetrainJob,
    count_retraining_cells,
    retraining_dir,
)
from yawbcc_desktop.gui.settings import AppSettings
from yawbcc_desktop.gui.widgets.retrain_dialog import BASE_DATA_KEY, RetrainDialog

TINY = FitRecipe(weights="none", input_size=32, batch_size=8, epochs_frozen=0, epochs_fine=1, augment="light")
RUN_TIMEOUT_MS = 180_000  # a 2-core machine shared with other work; typical is well under a minute


def images(pbc: Path, group: str, start: int, count: int) -> list[Path]:
    found = sorted(p for p in (pbc / group.lower()).glob("*.jpg") if not p.name.startswith("."))
    return found[start : start + count]


@pytest.fixture(scope="module")
def base_data(tmp_path_factory, pbc) -> Path:
    """Four images per class: the base data set the new model is trained on."""
    root = tmp_path_factory.mktemp("base")
    for group in GROUPS:
        (root / group.lower()).mkdir()
        for src in images(pbc, group, 0, 4):
            shutil.copy(src, root / group.lower() / src.name)
    return root


def cell_result(path: Path, predicted: str, mode: str = "cell") -> ImageResult:
    probs = np.full(len(GROUPS), 0.3 / (len(GROUPS) - 1), np.float32)
    probs[GROUPS.index(predicted)] = 0.7
    region = CellRegion(100, 100, 160, 160, np.ones((160, 160), bool), "PLATELET" if predicted == "PLATELET" else "WBC")
    return ImageResult(str(path), mode, 360, 363, [CellRecord(str(path), 0, region, probs, "tiny-test")])


@pytest.fixture
def session(tmp_path, pbc):
    """Six single-cell images not in the base data (four reviewed, one an artefact) and a
    reviewed smear field."""
    lab = tmp_path / "lab"
    lab.mkdir()
    paths = []
    for group in ("NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE"):
        for src in images(pbc, group, 20, 2):
            paths.append(Path(shutil.copy(src, lab / src.name)))
    s = ReviewSession.create(tmp_path / "review.yawbcc")
    # The model called everything a neutrophil: the reviewer corrects two, confirms one.
    ids = s.add_images([cell_result(p, "NEUTROPHIL") for p in paths])
    smear = s.add_image(cell_result(lab / "field.png", "NEUTROPHIL", mode="smear"))
    s.set_label(ids[2], "LYMPHOCYTE", "Ann")
    s.set_label(ids[4], "MONOCYTE", "Ann")
    s.confirm(ids[0], "Ann")
    s.set_label(ids[5], ARTEFACT, "Ann")
    s.set_label(smear, "BASOPHIL", "Ann")
    yield s
    s.close()


@pytest.fixture
def user_data(tmp_path, monkeypatch) -> Path:
    """The user's data folder (models, retraining runs) in a temporary folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("YAWBCC_MODELS", raising=False)
    monkeypatch.delenv(TRAINING_PYTHON_ENV, raising=False)
    assert str(user_models_dir()).startswith(str(tmp_path))
    return tmp_path / "xdg"


def processes_in_group(pgid: int) -> list[str]:
    """Processes (zombies included) whose process group is ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            found.append(f"{stat.parent.name} {fields[0]}")
    return found


def test_reviewed_cells_are_counted_as_training_reads_them(session):
    cells = count_retraining_cells(session)
    assert (cells.usable, cells.corrected, cells.smear, cells.artefacts, cells.missing) == (3, 2, 1, 1, 0)


def test_the_window_retrains_with_the_bundled_lite0_fast_recipe(qtbot, tmp_path, session, user_data):
    assert RetrainJob(session, tmp_path, "x").recipe is LITE0_FAST
    dialog = RetrainDialog(session, settings=AppSettings(tmp_path / "config"))
    qtbot.addWidget(dialog)
    assert dialog.recipe is LITE0_FAST != FIT_DEFAULTS
    assert (dialog.recipe.backbone, dialog.recipe.input_size, dialog.epochs.value()) == ("efficientnet-lite0", 128, 7)
    assert any("efficientnet-lite0, 128 px" in label.text() for label in dialog.findChildren(type(dialog.summary)))


def test_the_dialog_runs_fit_with_the_recipe_and_the_chosen_epochs(qtbot, tmp_path, session, base_data, user_data, monkeypatch):
    """The command line the window starts is the shared recipe's, the epochs the reviewer chose,
    and ``python -m training fit`` reads it back as that recipe."""
    launched = []

    def launch(job, args, env=None):  # record the command instead of starting a process
        launched.append((list(args), env))
        job._fail("not started by the test")

    monkeypatch.setattr(RetrainJob, "_launch", launch)
    dialog = RetrainDialog(session, settings=AppSettings(tmp_path / "config"), work_dir=tmp_path / "runs")
    qtbot.addWidget(dialog)
    dialog.base_data.setText(str(base_data))
    dialog.epochs.setValue(3)
    dialog.start()
    ((args, _env),) = launched
    assert args[0] == "fit" and args[args.index("--data") + 1] == str(base_data)
    chosen = replace(LITE0_FAST, epochs_fine=3)
    assert dialog.job.recipe == chosen
    start = args.index("--backbone")
    assert args[start : start + len(chosen.fit_args())] == chosen.fit_args()
    from training.__main__ import build_parser  # the test may import training; the GUI does not
    from training.fit_command import fit_config

    assert fit_config(build_parser().parse_args(args)).recipe() == chosen


@pytest.mark.skipif(sys.platform != "linux", reason="process groups are read from /proc")
def test_retraining_adds_a_bundle_the_model_chooser_lists(qtbot, session, base_data, user_data):
    job = RetrainJob(session, base_data, "lab-retrained", TINY)
    progress, lines = [], []
    job.progress.connect(lambda done, total, text: progress.append((done, total, text)))
    job.log_line.connect(lines.append)
    failures = []
    job.failed.connect(failures.append)
    with qtbot.waitSignal(job.finished, timeout=RUN_TIMEOUT_MS, raising=False) as blocker:
        assert job.start(), failures
        pgid = job.process_id
    assert blocker.signal_triggered, failures or lines[-20:]
    folder = Path(blocker.args[0])
    assert folder == user_models_dir() / "lab-retrained"
    assert read_card(folder).name == "lab-retrained" and read_card(folder).input_size == 32
    assert any(f == folder for f, _card in list_bundles())
    # The reviewers' images went in: three reviewed single-cell images, the smear cell and the artefact left out.
    assert any("extra images: 3," in line for line in lines), lines
    assert any("1 smear-field cells skipped" in line for line in lines)
    assert (job.run_folder / CORRECTIONS_CSV).is_file() and job.run_folder.parent == retraining_dir()
    assert not (job.run_folder / "cache").exists()
    # Progress: busy while preparing, then fractions of the epoch, then done.
    assert any(total == 0 for _d, total, _t in progress)
    fractions = [(d, t) for d, t, _text in progress if t == 100]
    assert fractions and fractions[-1] == (100, 100) and any(0 < d < 100 for d, _t in fractions)
    assert progress[-1][0] == progress[-1][1] == 1
    assert not any(line.startswith("{") for line in lines)  # progress events stay out of the log
    assert not processes_in_group(pgid) and job.stage == "finished"


@pytest.mark.skipif(sys.platform != "linux", reason="process groups are read from /proc")
def test_cancel_stops_the_training_and_adds_no_bundle(qtbot, session, base_data, user_data):
    settings = AppSettings(user_data.parent / "config")
    dialog = RetrainDialog(session, settings=settings, recipe=TINY)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.base_data.setText(str(base_data))
    dialog.name.setText("never-finished")
    added = []
    dialog.bundle_added.connect(added.append)
    assert dialog.start_button.isEnabled()
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    job = dialog.job
    assert job.running and settings.value(BASE_DATA_KEY) == str(base_data)
    pgid = job.process_id
    # Cancel in the middle of the fit: once the network is being trained.
    qtbot.waitUntil(lambda: "phase fine" in dialog.log.toPlainText() or not job.running, timeout=RUN_TIMEOUT_MS)
    assert job.running, dialog.message.text()
    with qtbot.waitSignal(job.cancelled, timeout=30_000):
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert not job.running and dialog.isVisible()  # the Cancel button stops the training, not the dialog
    assert "cancelled" in dialog.status.text() and dialog.start_button.isEnabled()
    qtbot.waitUntil(lambda: not processes_in_group(pgid), timeout=10_000)
    assert not (user_models_dir() / "never-finished").exists() and not added
    assert not job.run_folder.exists()  # the partial run is never exported
    assert not any(f.name == "never-finished" for f, _card in list_bundles())
    # Closing the dialog (Esc, the window's close button) while training cancels, then closes.
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    second = dialog.job
    assert second is not job and second.running
    qtbot.waitUntil(lambda: "preprocessing" in dialog.log.toPlainText() or not second.running, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(second.cancelled, timeout=30_000):
        dialog.reject()
        assert dialog.isVisible()  # until the process has ended
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5_000)
    assert not (user_models_dir() / "never-finished").exists() and not added


def test_dialog_refuses_a_session_without_reviewed_cells(qtbot, tmp_path, pbc, user_data):
    with ReviewSession.create(tmp_path / "fresh.yawbcc") as s:
        s.add_images([cell_result(p, "NEUTROPHIL") for p in images(pbc, "NEUTROPHIL", 0, 2)])
        dialog = RetrainDialog(s, settings=AppSettings(tmp_path / "config"), recipe=TINY)
        qtbot.addWidget(dialog)
        assert not dialog.start_button.isEnabled()
        assert "no single-cell image of this session has been reviewed" in dialog.message.text()
        assert "<b>0</b>" in dialog.summary.text()


def test_dialog_says_when_the_base_folder_is_missing(qtbot, tmp_path, session, user_data):
    dialog = RetrainDialog(session, settings=AppSettings(tmp_path / "config"), recipe=TINY)
    qtbot.addWidget(dialog)
    assert "<b>3</b>" in dialog.summary.text() and "smear" in dialog.summary.text()
    dialog.base_data.setText(str(tmp_path / "nowhere"))
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert dialog.job is None and "does not exist" in dialog.message.text()
    dialog.base_data.setText(str(tmp_path))
    dialog.name.setText("lite0-fast")  # a bundled model's name would be hidden by the new one
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert dialog.job is None and "already exists" in dialog.message.text()


def test_installed_build_says_retraining_needs_the_source_install(qtbot, tmp_path, session, base_data, user_data, monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    job = RetrainJob(session, base_data, "frozen-try", TINY)
    with qtbot.waitSignal(job.failed, timeout=1000) as blocker:
        assert not job.start()
    assert "source install" in blocker.args[0] and TRAINING_PYTHON_ENV in blocker.args[0]
    dialog = RetrainDialog(session, settings=AppSettings(tmp_path / "config"), recipe=TINY)
    qtbot.addWidget(dialog)
    assert not dialog.start_button.isEnabled() and "source install" in dialog.message.text()
    assert not os.path.exists(retraining_dir())  # nothing written
