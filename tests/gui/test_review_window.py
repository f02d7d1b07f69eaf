"""The review window end to end: real images, the real worker thread, the tests' tiny bundle.

One window (one model load) serves the whole module; each test starts by closing what the
previous one opened.  Predictions of the tiny bundle are meaningless: only the plumbing is
checked -- the same cells as the headless command, panes filled, cancel, errors, threads.
"""

from __future__ import annotations

import functools
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import Qt

from yawbcc_desktop.cli import EXIT_OK
from yawbcc_desktop.cli import main as yawbcc
from yawbcc_desktop.core import pipeline
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.vocabulary import ANALYSED, CANCELLED, FAILED, QUEUED
from yawbcc_desktop.gui import worker as worker_module
from yawbcc_desktop.gui.cell_table_model import RowIdRole
from yawbcc_desktop.gui.main_window import MainWindow
from yawbcc_desktop.gui.palette import display_name

from .conftest import started_window

RUN_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def window(qapp, tiny_bundle, tmp_path_factory):
    with started_window(tmp_path_factory.mktemp("config"), tiny_bundle) as win:
        yield win


def open_and_wait(qtbot, win: MainWindow, paths: list) -> None:
    win.close_all()
    with qtbot.waitSignal(win.controller.run_finished, timeout=RUN_TIMEOUT_MS):
        assert win.open_paths([str(p) for p in paths]) > 0


@pytest.fixture(scope="module")
def headless_rows(tiny_bundle, cell_folder, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("headless") / "cells.csv"
    args = ["classify", str(cell_folder), "--model", str(tiny_bundle), "--mode", "cell", "--out", str(out), "--quiet"]
    assert yawbcc(args) == EXIT_OK
    return pd.read_csv(out, encoding="utf-8-sig")


def test_folder_gives_the_same_cells_as_the_headless_command(window, qtbot, qtmodeltester, cell_folder, headless_rows):
    open_and_wait(qtbot, window, [cell_folder])
    controller = window.controller
    assert controller.store.image_count == 16  # recursive: two per class, in nested folders
    assert controller.store.status_counts() == {ANALYSED: 16}
    assert controller.cells.rowCount() == len(headless_rows) == 16
    assert window.table.model().rowCount() == len(headless_rows)
    assert sum(window.gallery.counts().values()) == len(headless_rows)
    gui = {(c.path, c.cell_index): c for c in controller.store.cells()}
    for _, row in headless_rows.iterrows():
        cell = gui[(row["path"], row["cell_id"])]
        assert (cell.x, cell.y, cell.width, cell.height) == (row["x"], row["y"], row["width"], row["height"])
        assert np.allclose(cell.probs, row[[f"prob_{g}" for g in GROUPS]].to_numpy(float), atol=1e-4)
    qtmodeltester.check(controller.cells, force_py=True)


@pytest.mark.parametrize("model", ["cells", "cell_filter", "images"])
def test_live_models_pass_the_model_tester(window, qtbot, qtmodeltester, cell_folder, model):
    # One model per test: a ModelTester follows only the last model it was given.
    if window.controller.store.cell_count != 16:
        open_and_wait(qtbot, window, [cell_folder])
    qtmodeltester.check(getattr(window.controller, model), force_py=True)


def test_selecting_a_cell_shows_it_everywhere_with_probabilities_and_gradcam(window, qtbot, cell_folder):
    if window.controller.store.cell_count != 16:
        open_and_wait(qtbot, window, [cell_folder])
    store, selection = window.controller.store, window.selection
    row = 5
    cell = store.cell(row)
    other = next(r for r in range(store.cell_count) if store.cell(r).path != cell.path)
    selection.select_image(store.cell(other).path)  # as if picked in the image list: its first cell is shown
    assert selection.row == other
    # The viewer shows the cell's image; clicking its box selects it everywhere.
    window.viewer.show_image(cell.path)
    qtbot.waitUntil(lambda: window.viewer.centre_of(row) is not None, timeout=10_000)
    qtbot.mouseClick(window.viewer.viewport(), Qt.MouseButton.LeftButton, pos=window.viewer.centre_of(row))
    assert selection.row == row and window.detail.row == row
    assert window.table.currentIndex().data(RowIdRole) == row
    # The selected box carries the outline of the cell's segmentation mask, from the session.
    mask = window.controller.cell_mask(row)
    assert mask is not None and mask.shape == (cell.height, cell.width) and mask.any()
    outline = window.viewer.outline().sceneBoundingRect()
    ys, xs = np.nonzero(mask)
    assert abs(outline.width() - np.ptp(xs) - 1) <= 2 and abs(outline.height() - np.ptp(ys) - 1) <= 2
    assert cell.x - 2 <= outline.left() and outline.right() <= cell.x + cell.width + 2
    section = window.gallery.sections[cell.predicted]
    assert section.grid.currentIndex().data(RowIdRole) == row
    assert window.image_list.view.currentIndex().data(Qt.ItemDataRole.DisplayRole) == cell.file_name
    # Probabilities pane: calibrated values, predicted class highlighted by the chart.
    assert np.allclose(window.detail.chart.values(), cell.probs, atol=1e-6)
    assert display_name(cell.predicted) in window.detail.title.text()
    qtbot.waitUntil(lambda: window.detail.crop.has_image(), timeout=10_000)
    # Grad-CAM pane: computed by the worker on demand.
    qtbot.waitUntil(lambda: window.detail.gradcam.state == "shown", timeout=10_000)
    assert window.detail.gradcam.has_heatmap()
    assert window.controller.last_gradcam_latency is not None
    before = window.detail.gradcam.picture.image().copy()
    window.detail.gradcam.opacity.setValue(90)
    assert window.detail.gradcam.picture.image() != before
    # Selecting in the table moves the viewer and the detail too.
    window.table.selectRow(window.table.model().mapFromSource(window.controller.cells.index_of_id(other)).row())
    assert selection.row == other and window.viewer.path == store.cell(other).path and window.detail.row == other


def test_filters_apply_to_table_and_gallery(window, qtbot, cell_folder):
    if window.controller.store.cell_count != 16:
        open_and_wait(qtbot, window, [cell_folder])
    bar, shown = window.filter_bar, window.table.model()
    group = window.controller.store.cell(0).predicted
    bar.show_only(group)
    expected = sum(c.predicted == group for c in window.controller.store.cells())
    assert shown.rowCount() == expected == window.gallery.counts()[group]
    assert all(n == 0 for g, n in window.gallery.counts().items() if g != group)
    assert "Showing" in bar.summary.text()
    bar.reset()
    assert shown.rowCount() == 16 and bar.summary.text() == "16 cells"


def test_cancel_takes_effect_within_a_second(window, qtbot, many_cells):
    window.close_all()
    controller = window.controller
    with qtbot.waitSignal(controller.images_analysed, timeout=RUN_TIMEOUT_MS):
        window.open_paths(many_cells)
    assert controller.progress.active
    started = time.perf_counter()
    with qtbot.waitSignal(controller.worker.run_idle, timeout=1000):
        controller.cancel()
    assert time.perf_counter() - started < 1.0
    counts = controller.store.status_counts()
    assert counts[CANCELLED] > 0 and counts[ANALYSED] > 0 and counts[QUEUED] == 0
    assert not controller.progress.active and window.analyse_action.isEnabled()
    cells = controller.store.cell_count
    qtbot.wait(700)
    assert controller.store.cell_count == cells  # nothing more arrives after a cancel
    # The reviewer changes their mind: the rest is analysed.
    with qtbot.waitSignal(controller.run_finished, timeout=RUN_TIMEOUT_MS):
        assert controller.analyse_remaining() == counts[CANCELLED]
    assert controller.store.status_counts() == {ANALYSED: len(many_cells)}


def test_bad_files_fail_with_a_reason_and_the_run_goes_on(window, qtbot, pbc, tmp_path):
    good = sorted((pbc / "monocyte").glob("*.jpg"))[:3]
    for src in good:
        shutil.copy(src, tmp_path / src.name)
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not a picture")
    data = good[0].read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 5])
    open_and_wait(qtbot, window, [tmp_path])
    store = window.controller.store
    reasons = {e.file_name: e.reason for e in map(store.image_at, range(store.image_count)) if e.status == FAILED}
    assert set(reasons) == {"zero.jpg", "notes.png", "truncated.jpg"}
    assert "empty" in reasons["zero.jpg"] and "not an image" in reasons["notes.png"]
    assert "corrupt" in reasons["truncated.jpg"] or "truncated" in reasons["truncated.jpg"]
    assert store.status_counts()[ANALYSED] == 3 and store.cell_count == 3
    window.image_list.filter.set_statuses(frozenset({FAILED}))
    assert window.image_list.filter.rowCount() == 3
    window.image_list.filter.set_statuses(frozenset({ANALYSED, FAILED}))


BUGGY = {"name": ""}
REAL_GUARD = worker_module.segment_safely


def _raise(*args, **kwargs):
    raise RuntimeError("simulated library bug")


def segment_with_a_bug(path, mode, card, settings=pipeline.DEFAULT_ANALYSIS, *, buggy_name):
    """The worker's real guard around a segmentation that raises on one file.  It runs where
    the worker segments (a child process), so the bug is planted there, for that call only."""
    real = pipeline.segment_image
    if path.endswith(buggy_name):
        pipeline.segment_image = _raise
    try:
        return REAL_GUARD(path, mode, card, settings)
    finally:
        pipeline.segment_image = real


def test_unexpected_error_on_one_image_is_reported_and_the_run_goes_on(window, qtbot, monkeypatch, pbc):
    paths = sorted((pbc / "eosinophil").glob("*.jpg"))[:4]
    monkeypatch.setattr(worker_module, "segment_safely", functools.partial(segment_with_a_bug, buggy_name=paths[1].name))
    reported = len(window.notifier.history)
    open_and_wait(qtbot, window, paths)
    entry = window.controller.store.image(str(paths[1]))
    assert entry.status == FAILED and "simulated library bug" in entry.reason
    assert window.controller.store.status_counts()[ANALYSED] == 3
    assert window.notifier.history[reported][0] == "Unexpected error during the analysis"
    assert window.controller.worker.isRunning()


def test_segmentation_runs_in_a_child_process_that_is_replaced_if_it_dies(window, qtbot, pbc):
    helpers = window.controller.worker._helpers
    assert type(helpers).__name__ == "ProcessPoolExecutor"  # the GIL of the GUI's process stays free
    assert helpers.submit(os.getpid).result(timeout=60) != os.getpid()
    for process in list(helpers._processes.values()):
        process.kill()  # as an out-of-memory kill would
    paths = sorted((pbc / "monocyte").glob("*.jpg"))[:3]
    worker = window.controller.worker
    open_and_wait(qtbot, window, paths)
    store = window.controller.store
    assert all(store.image(str(p)).status == ANALYSED for p in paths)  # a new child took over
    assert window.controller.worker is worker and worker.isRunning()  # the worker itself carried on
    assert window.controller.worker._helpers is not helpers


def test_a_dead_worker_is_reported_and_replaced(window, qtbot, monkeypatch, pbc):
    paths = sorted((pbc / "lymphocyte").glob("*.jpg"))[:3]
    real = worker_module.AnalysedImage.from_result
    calls = {"n": 0}

    def dies_once(result):
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemError("simulated fault outside the per-image guard")
        return real(result)

    monkeypatch.setattr(worker_module.AnalysedImage, "from_result", staticmethod(dies_once))
    old = window.controller.worker
    reported = len(window.notifier.history)
    open_and_wait(qtbot, window, paths)
    assert window.notifier.history[reported][0] == "The analysis worker stopped"
    assert window.controller.worker is not old and window.controller.worker.isRunning()  # the old one is deleted
    assert window.controller.store.status_counts() == {ANALYSED: 3}


def test_switching_model_reanalyses_the_open_images(window, qtbot, tiny_bundle, cell_folder, tmp_path):
    twin = tmp_path / "tiny-twin"
    shutil.copytree(tiny_bundle, twin)
    card = (twin / "model.json").read_text().replace('"tiny-test"', '"tiny-twin"')
    (twin / "model.json").write_text(card)
    open_and_wait(qtbot, window, [cell_folder])
    with qtbot.waitSignal(window.controller.run_finished, timeout=RUN_TIMEOUT_MS):
        window.switch_model(str(twin), reanalyse=True)
    store = window.controller.store
    assert store.cell_count == 16 and {c.model for c in store.cells()} == {"tiny-twin"}
    assert window.controller.model_card.name == "tiny-twin" and "tiny-twin" in window.model_button.text()
