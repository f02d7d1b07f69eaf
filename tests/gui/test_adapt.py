"""Adapt model to this lab: the dialog's counts, a real ``python -m training adapt`` in a
QProcess on reviewed PBC cells, the new model in Choose model, Cancel, and removal.

The bundle is the tests' tiny one with a replay sample (random weights, 64 px): these tests
check the plumbing -- counts, events, the bundle in the user's models folder, a cancel that
leaves no process and no folder -- never what the model learns.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from yawbcc_desktop.core.cells import CellRegion
from yawbcc_desktop.core.classes import ARTEFACT, GROUPS
from yawbcc_desktop.core.classifier import list_bundles, read_card, user_models_dir
from yawbcc_desktop.core.pipeline import CellRecord, ImageResult
from yawbcc_desktop.core.store import ReviewSession
from yawbcc_desktop.gui.adapt import MIN_CELLS, MIN_PER_CLASS, AdaptJob, count_adaptation_cells
from yawbcc_desktop.gui.training_job import TRAINING_PYTHON_ENV
from yawbcc_desktop.gui.widgets.adapt_dialog import AdaptDialog
from yawbcc_desktop.gui.widgets.model_chooser import ModelChooser

from .conftest import started_window
from .test_retrain import processes_in_group

RUN_TIMEOUT_MS = 180_000  # a 2-core machine shared with other work; typical is 10-20 s
SHOTS = Path(__file__).resolve().parents[2] / "runs" / "adapt-screenshots"  # only with YAWBCC_TEST_SCREENSHOTS=1


def pbc_images(pbc: Path, group: str, count: int, start: int = 40) -> list[Path]:
    found = sorted(p for p in (pbc / group.lower()).glob("*.jpg") if not p.name.startswith("."))
    return found[start : start + count]


def cell_result(path: Path, predicted: str) -> ImageResult:
    probs = np.full(len(GROUPS), 0.3 / (len(GROUPS) - 1), np.float32)
    probs[GROUPS.index(predicted)] = 0.7
    region = CellRegion(100, 100, 160, 160, np.ones((160, 160), bool), "PLATELET" if predicted == "PLATELET" else "WBC")
    return ImageResult(str(path), "cell", 360, 363, [CellRecord(str(path), 0, region, probs, "tiny-adaptable")])


def reviewed_session(path: Path, pbc: Path, per_class: dict[str, int], unreviewed: int = 3) -> ReviewSession:
    """Real PBC cells (read in place), each reviewed with its true class; the model called them all neutrophils."""
    s = ReviewSession.create(path)
    for group, n in per_class.items():
        ids = s.add_images([cell_result(p, "NEUTROPHIL") for p in pbc_images(pbc, group, n)])
        for cell_id in ids:
            if group == "NEUTROPHIL":
                s.confirm(cell_id, "Ann")
            else:
                s.set_label(cell_id, group, "Ann")
    s.add_images([cell_result(p, "LYMPHOCYTE") for p in pbc_images(pbc, "LYMPHOCYTE", unreviewed, start=90)])
    return s


ENOUGH = {"NEUTROPHIL": 7, "LYMPHOCYTE": 7, "MONOCYTE": 6, "EOSINOPHIL": 6, "PLATELET": 6, "BASOPHIL": 2}


@pytest.fixture
def user_data(tmp_path, monkeypatch, adaptable_bundle, tiny_bundle) -> Path:
    """The user's data folder in a temporary folder; the adaptable and the plain tiny bundle on the search path."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("YAWBCC_MODELS", f"{adaptable_bundle.parent}:{tiny_bundle.parent}")
    monkeypatch.delenv(TRAINING_PYTHON_ENV, raising=False)
    assert str(user_models_dir()).startswith(str(tmp_path))
    return tmp_path / "xdg"


@pytest.fixture
def session(tmp_path, pbc):
    s = reviewed_session(tmp_path / "lab.yawbcc", pbc, ENOUGH)
    yield s
    s.close()


def open_dialog(qtbot, session, bundle, name: str = "", lab_um_per_px: float | None = None) -> AdaptDialog:
    dialog = AdaptDialog(session, current_model=bundle, lab_um_per_px=lab_um_per_px)
    qtbot.addWidget(dialog)
    dialog.show()
    if name:
        dialog.name.setText(name)
    return dialog


def shot(widget, name: str) -> None:
    import os

    if os.environ.get("YAWBCC_TEST_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        widget.grab().save(str(SHOTS / f"{name}.png"))


def test_dialog_counts_the_reviewed_cells_and_refuses_below_the_minimum(qtbot, tmp_path, pbc, user_data, adaptable_bundle):
    few = {"NEUTROPHIL": 8, "LYMPHOCYTE": 6, "MONOCYTE": 5, "EOSINOPHIL": 4, "PLATELET": 3}
    with reviewed_session(tmp_path / "few.yawbcc", pbc, few) as s:
        # An artefact, and a reviewed cell whose image is gone: both left out.
        art = s.add_images([cell_result(p, "NEUTROPHIL") for p in pbc_images(pbc, "IG", 1)])[0]
        s.set_label(art, ARTEFACT, "Ann")
        gone = s.add_image(cell_result(tmp_path / "deleted.jpg", "NEUTROPHIL"))
        s.confirm(gone, "Ann")
        cells = count_adaptation_cells(s)
        assert cells.per_class["NEUTROPHIL"] == 8 and cells.per_class["EOSINOPHIL"] == 4 and cells.per_class["IG"] == 0
        assert (cells.total, cells.artefacts, cells.missing) == (19, 1, 1)  # 8 + 6 + 5: classes with at least 5
        assert set(cells.adapted) == {"NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE"} and not cells.enough

        dialog = open_dialog(qtbot, s, adaptable_bundle)
        shot(dialog, "adapt-too-few")
        table = {
            dialog.table.item(r, 0).text(): (dialog.table.item(r, 1).text(), dialog.table.item(r, 2).text()) for r in range(8)
        }
        assert table["Neutrophil"] == ("8", "yes") and table["Monocyte"] == ("5", "yes")
        assert table["Eosinophil"] == ("4", f"no: under {MIN_PER_CLASS}") and table["Basophil"] == ("0", "no cell")
        assert ">19<" in dialog.totals.text() and f"at least {MIN_CELLS}" in dialog.totals.text()
        assert "1 artefact" in dialog.totals.text() and "no longer on disk" in dialog.totals.text()
        assert not dialog.start_button.isEnabled()
        assert "Not enough reviewed cells yet: 19" in dialog.message.text() and dialog.message.isVisible()
        assert dialog.name.text() == f"tiny-adaptable-{__import__('datetime').date.today():%Y%m%d}"

        # More reviewed cells: the minimum is met once the dialog counts again.
        for group in ("EOSINOPHIL", "PLATELET", "BASOPHIL"):
            for cell_id in s.add_images([cell_result(p, "NEUTROPHIL") for p in pbc_images(pbc, group, 5, start=70)]):
                s.set_label(cell_id, group, "Ann")
        dialog.refresh()
        assert dialog.cells.total == 19 + 9 + 8 + 5 and dialog.start_button.isEnabled() and not dialog.message.isVisible()
        # The lab's name makes the default name; a name already taken is refused.
        dialog.lab.setText("St Mary's lab")
        assert dialog.name.text() == "tiny-adaptable-St-Mary-s-lab"
        dialog.name.setText("tiny-test")
        assert not dialog.start_button.isEnabled() and "already exists" in dialog.message.text()
        dialog.name.setText("fine-name")
        assert dialog.start_button.isEnabled()
        # A model without a replay sample cannot be adapted, and the dialog says why.
        dialog.base.setCurrentIndex(dialog.base.findText("tiny-test  (no replay sample: from images only)"))
        assert not dialog.start_button.isEnabled() and "no replay sample" in dialog.message.text()


def test_the_installed_build_says_adapting_needs_the_source_install(qtbot, session, user_data, adaptable_bundle, monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    dialog = open_dialog(qtbot, session, adaptable_bundle)
    assert not dialog.start_button.isEnabled() and "source install" in dialog.message.text()
    assert TRAINING_PYTHON_ENV in dialog.message.text()


@pytest.mark.skipif(sys.platform != "linux", reason="process groups are read from /proc")
def test_adaptation_in_the_dialog_adds_a_model_choose_model_lists(qtbot, session, user_data, adaptable_bundle):
    dialog = open_dialog(qtbot, session, adaptable_bundle)
    dialog.lab.setText("Lab A")
    assert dialog.name.text() == "tiny-adaptable-Lab-A" and dialog.start_button.isEnabled(), dialog.message.text()
    assert dialog.cells.total == 32 and dialog.cells.per_class["BASOPHIL"] == 2
    shot(dialog, "adapt-before")
    progress, adapted = [], []
    dialog.model_adapted.connect(adapted.append)
    with qtbot.waitSignal(dialog.model_adapted, timeout=RUN_TIMEOUT_MS, raising=False) as blocker:
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
        job = dialog.job
        job.progress.connect(lambda d, t, text: progress.append((d, t, text)))
        pgid = job.process_id
        assert job.running and not dialog.lab.isEnabled() and dialog.cancel_button.text() == "Cancel adaptation"
    assert blocker.signal_triggered, (dialog.message.text(), dialog.log.toPlainText()[-2000:])
    folder = Path(adapted[0])
    assert folder == user_models_dir() / "tiny-adaptable-Lab-A"
    card = read_card(folder)
    assert card.extra["adapted_from"] == "tiny-adaptable" and card.extra["adaptation"]["lab"] == "Lab A"
    assert card.extra["adaptation"]["cells"] == 32 and card.extra["adaptation"]["reviewers"] == ["Ann"]
    assert card.extra["adaptation"]["classes_not_adapted"] == {"BASOPHIL": 2}
    # The session's three unreviewed cells came along as unlabelled cells.
    assert card.extra["adaptation"]["unreviewed_cells"] == 3 and "lab_review" in card.extra
    assert (folder / "replay.npz").is_file() and not any(p.name.startswith(".") for p in user_models_dir().iterdir())
    # Progress came from the command's events, stage by stage; its human lines are in the log.
    texts = [t for _d, _t, t in progress]
    for step in ("Step 1 of 6", "Step 2 of 6", "Step 3 of 6", "Step 4 of 6", "Step 5 of 6", "Step 6 of 6"):
        assert any(t.startswith(step) for t in texts), texts
    assert any(d == t == 32 for d, t, text in progress if "Framing" in text)
    log = dialog.log.toPlainText()
    assert "adapt: cross-validated" in log and '"event"' not in log
    assert (job.run_folder / "corrections.csv").is_file() and "cross-validated" in (job.run_folder / "adapt.log").read_text()
    # The figures: before and after on the lab's cells and on the replay sample.
    results = dialog.results.text()
    assert dialog.results.isVisible() and "before" in results and "after" in results
    assert "Accuracy on this lab's cells (cross-validated, 5 folds)" in results and "replay sample" in results
    assert "Not adapted (fewer than 5 cells): Basophil 2" in results
    assert job.report["accuracy_after_cross_validated"] is not None
    assert not dialog.start_button.isEnabled() and dialog.cancel_button.text() == "Close"
    shot(dialog, "adapt-after")
    qtbot.waitUntil(lambda: not processes_in_group(pgid), timeout=10_000)

    # Choose model lists it with its base and date; a lab's model can be removed, a bundled one cannot.
    chooser = ModelChooser(str(adaptable_bundle))
    qtbot.addWidget(chooser)
    rows = {chooser.table.item(r, 0).text(): r for r in range(chooser.table.rowCount())}
    row = rows["tiny-adaptable-Lab-A"]
    assert chooser.table.item(row, 5).text() == f"from tiny-adaptable, {card.extra['adaptation']['date'][:10]}"
    chooser.table.selectRow(row)
    assert "Adapted from tiny-adaptable for Lab A" in chooser.card_text.text() and chooser.remove.isEnabled()
    chooser.table.selectRow(rows["tiny-test"])
    assert not chooser.remove.isEnabled() and "cannot be removed" in chooser.remove.toolTip()
    chooser.table.selectRow(rows["tiny-adaptable"])  # in use (and not the lab's)
    assert not chooser.remove.isEnabled()
    chooser.table.selectRow(rows["tiny-adaptable-Lab-A"])
    chooser._confirm_removal = lambda folder: False  # the reviewer says Cancel
    assert not chooser.remove_selected() and folder.is_dir()
    chooser._confirm_removal = lambda folder: True
    assert chooser.remove_selected()
    assert not folder.exists() and not any(user_models_dir().iterdir())
    assert "tiny-adaptable-Lab-A" not in {chooser.table.item(r, 0).text() for r in range(chooser.table.rowCount())}
    assert not any(f.name == "tiny-adaptable-Lab-A" for f, _card in list_bundles())


@pytest.mark.skipif(sys.platform != "linux", reason="process groups are read from /proc")
def test_cancel_leaves_no_model_and_no_partial_folder(qtbot, session, user_data, adaptable_bundle):
    dialog = open_dialog(qtbot, session, adaptable_bundle, "never-finished")
    added = []
    dialog.model_adapted.connect(added.append)
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    job = dialog.job
    pgid = job.process_id
    # Mid-run: once the command has read the cells and loads the model.
    qtbot.waitUntil(lambda: "Loading the model" in dialog.status.text() or not job.running, timeout=RUN_TIMEOUT_MS)
    assert job.running, dialog.message.text()
    # What a process killed while writing would leave behind.
    partial = user_models_dir() / ".never-finished.partial"
    partial.mkdir(parents=True)
    (partial / "model.keras").write_bytes(b"half")
    with qtbot.waitSignal(job.cancelled, timeout=30_000):
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert not job.running and dialog.isVisible() and "cancelled" in dialog.status.text()
    assert dialog.start_button.isEnabled()  # the same inputs can be started again
    qtbot.waitUntil(lambda: not processes_in_group(pgid), timeout=10_000)
    assert not (user_models_dir() / "never-finished").exists() and not partial.exists() and not added
    assert not job.run_folder.exists()
    assert not any(f.name.endswith("never-finished") for f, _card in list_bundles())


def test_a_failed_adaptation_shows_the_commands_message(qtbot, session, user_data, adaptable_bundle, tmp_path):
    """The command's error event is the message (here: the bundle's replay sample vanished after the dialog looked)."""
    job = AdaptJob(session, adaptable_bundle, "will-fail", models_dir=tmp_path / "models", work_dir=tmp_path / "runs")
    job._check = lambda: None  # the dialog checked; the command checks again
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text(json.dumps({"name": "broken"}))
    job.base_model = broken
    with qtbot.waitSignal(job.failed, timeout=RUN_TIMEOUT_MS) as blocker:
        assert job.start()
    assert "has no replay.npz" in blocker.args[0] and "Run folder (with adapt.log)" in blocker.args[0]
    assert not (tmp_path / "models" / "will-fail").exists()


def test_review_menu_adapts_and_the_new_model_takes_new_images(qtbot, tmp_path, pbc, user_data, adaptable_bundle):
    """Review › Adapt model to this lab… opens the dialog on the current model; the adapted model
    then classifies new images while the cells already analysed keep their results."""
    images = [str(p) for p in pbc_images(pbc, "NEUTROPHIL", 2)]
    with started_window(tmp_path / "config", adaptable_bundle) as win:
        win.new_session()
        with qtbot.waitSignal(win.controller.run_finished, timeout=RUN_TIMEOUT_MS):
            assert win.open_paths(images) == 2
        review_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&Review")
        assert win.adapt_action in review_menu.actions() and win.adapt_action.isEnabled()
        assert win.banner.adapt_button.defaultAction() is win.adapt_action
        win.adapt_action.trigger()
        dialog = win.models.adapt_dialog
        assert dialog.isVisible() and dialog.base.currentData() == str(adaptable_bundle)
        assert dialog.cells.total == 0 and not dialog.start_button.isEnabled()
        # As if the run had ended: the new model is used for new analyses.
        adapted = user_models_dir() / "tiny-adaptable-lab"
        shutil.copytree(adaptable_bundle, adapted)
        dialog.model_adapted.emit(str(adapted))
        qtbot.waitUntil(
            lambda: win.controller.model_state == "ready" and win.controller.model_folder == str(adapted), timeout=60_000
        )
        assert win.settings.value("model") == str(adapted) and "tiny-adaptable-lab" in win.statusBar().currentMessage()
        assert {c.model for c in win.review.session.cells()} == {"tiny-adaptable"}  # analysed cells keep their results
        dialog.close()


@pytest.mark.skipif(sys.platform != "linux", reason="process groups are read from /proc")
def test_adapting_to_the_sessions_images_needs_no_correction(qtbot, tmp_path, pbc, user_data, adaptable_bundle, tiny_bundle):
    """Learn from this session's images: no reviewed cell, any model (no replay sample needed); the
    command re-finds the cells of the listed images and measures the image statistics on them."""
    with ReviewSession.create(tmp_path / "images.yawbcc") as s:
        groups = ("NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE", "EOSINOPHIL", "PLATELET")
        s.add_images([cell_result(p, "NEUTROPHIL") for g in groups for p in pbc_images(pbc, g, 9)])
        s.add_image(cell_result(tmp_path / "deleted.jpg", "NEUTROPHIL"))
        dialog = open_dialog(qtbot, s, tiny_bundle, lab_um_per_px=0.0965)  # the lab set its pixel size
        assert not dialog.start_button.isEnabled() and "no replay sample" in dialog.message.text()
        assert "Or learn from this session's images" not in dialog.message.text()  # 45 cells: not enough either
        dialog.source.setCurrentIndex(1)
        assert dialog.from_images and not dialog.table.isVisible() and "image statistics" in dialog.intro.text()
        totals = dialog.totals.text()
        assert ">45<" in totals and "45 images" in totals and "1 image no longer on disk" in totals
        assert not dialog.start_button.isEnabled()
        assert "Not enough cells in this session's images yet: 45" in dialog.message.text()

        s.add_images([cell_result(p, "NEUTROPHIL") for p in pbc_images(pbc, "IG", 10)])
        dialog.refresh()
        assert dialog.images.cells == 55 and dialog.start_button.isEnabled(), dialog.message.text()
        dialog.source.setCurrentIndex(0)
        assert "Or learn from this session's images, without corrections" in dialog.message.text()
        dialog.source.setCurrentIndex(1)
        dialog.name.setText("tiny-lab-images")
        progress, adapted = [], []
        dialog.model_adapted.connect(adapted.append)
        with qtbot.waitSignal(dialog.model_adapted, timeout=RUN_TIMEOUT_MS, raising=False) as blocker:
            qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
            job = dialog.job
            job.progress.connect(lambda d, t, text: progress.append(text))
        assert blocker.signal_triggered, (dialog.message.text(), dialog.log.toPlainText()[-2000:])
        folder = Path(adapted[0])
        assert folder == user_models_dir() / "tiny-lab-images"
        card = read_card(folder)
        assert card.extra["adapted_from"] == "tiny-test" and card.extra["adaptation"]["source"] == "images"
        assert card.extra["adaptation"]["cells"] == 55 and card.extra["adaptation"]["images"] == 55
        assert card.extra["adaptation"]["lab_um_per_px"] == 0.0965  # framed as the window frames them
        listed = (job.run_folder / "images.txt").read_text(encoding="utf-8").splitlines()
        assert len(listed) == 55 and str(tmp_path / "deleted.jpg") not in listed
        for step in ("Step 1 of 4", "Step 2 of 4", "Step 3 of 4", "Step 4 of 4"):
            assert any(t.startswith(step) for t in progress), progress
        results = dialog.results.text()
        assert "image statistics measured on 55 cells of 55 images (50.0 % this lab's)" in results
        assert "stay flagged unfamiliar" in results and "before" in results
        shot(dialog, "adapt-images-after")
