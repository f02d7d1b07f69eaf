"""The review workflow in the window: keys, undo, multi-select, queue, differential, sign-off,
sessions on disk (reopened, killed, corrupt, locked, newer).

One window with the tests' tiny bundle (random weights: its classes mean nothing, only the
bookkeeping is checked) over real PBC images.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtTest import QTest

from yawbcc_desktop.core.classes import ARTEFACT, GROUPS
from yawbcc_desktop.core.review_rules import CONFIRMED, CORRECTED, TO_REVIEW
from yawbcc_desktop.core.store import ReviewSession
from yawbcc_desktop.gui.cell_table_model import COLUMN, RowIdRole
from yawbcc_desktop.gui.widgets.label_bar import LABEL_KEYS

from .conftest import started_window, wait_until
from .test_review_window import RUN_TIMEOUT_MS


@pytest.fixture(scope="module")
def window(qapp, tiny_bundle, tmp_path_factory):
    with started_window(tmp_path_factory.mktemp("config"), tiny_bundle, (1600, 1000)) as win:
        win.review.prefs.reviewer = "tester"
        yield win


@pytest.fixture
def reviewed(window, qtbot, cell_folder):
    """A new session with the 16 images of cell_folder analysed.  The random model is unsure
    of everything (~1/8 per class): with the default threshold every cell waits for review."""
    window.new_session()
    with qtbot.waitSignal(window.controller.run_finished, timeout=RUN_TIMEOUT_MS):
        assert window.open_paths([str(cell_folder)]) == 16
    window.cell_tabs.setCurrentWidget(window.gallery)
    window.filter_bar.reset()
    window._update_counts()
    return window


def recount(window, qtbot) -> None:
    """Refresh the differential panel and wait for the count (made off the GUI thread)."""
    with qtbot.waitSignal(window.differential.refreshed, timeout=10000):
        window.differential.refresh()


def press(window, key) -> None:
    window.activateWindow()
    QTest.keyClick(window, key)


def test_analysed_images_are_in_the_session_file(reviewed):
    store, session = reviewed.controller.store, reviewed.review.session
    assert session is not None and session.path.is_file()
    assert len(session.images()) == store.image_count == 16
    assert sorted(c.id for c in store.cells()) == session.cell_ids()
    assert store.to_review_count() == session.to_review_count(store.review_threshold) == 16
    assert reviewed.to_review_button.text() == "To review: 16"


def test_number_keys_correct_commit_and_move_on_then_undo_redo(reviewed, qtbot):
    w, store, session = reviewed, reviewed.controller.store, reviewed.review.session
    # Each class shows its key in the label bar, and that key is the action's shortcut.
    for label, key in LABEL_KEYS.items():
        assert w.detail.label_bar.buttons[label].text().startswith(key)
        assert w.label_actions[label].shortcut().toString() == key
    row = store.image(store.paths()[0]).cell_rows[0]
    w.selection.select_cell(row)
    cell = store.cell(row)
    new = next(g for g in GROUPS if g != cell.predicted)
    key = getattr(Qt.Key, f"Key_{LABEL_KEYS[new]}")
    press(w, key)
    qtbot.waitUntil(lambda: store.cell(row).label == new, timeout=2000)
    assert session.cell(cell.id).label == new and session.cell(cell.id).reviewer == "tester"
    assert store.status(row) == CORRECTED
    assert w.selection.row != row  # moved on to the next cell
    # Corrected looks different everywhere: bold final label, dashed box, its new gallery section.
    final = w.controller.cells.index_of_id(row, COLUMN["final"])
    assert final.data(Qt.ItemDataRole.FontRole).bold()
    w.selection.select_cell(row)
    qtbot.waitUntil(lambda: row in w.viewer._boxes, timeout=5000)  # the image loads off the GUI thread
    assert w.viewer._boxes[row].pen().style() == Qt.PenStyle.DashLine
    assert w.gallery.sections[new].index_of(row).isValid()
    assert "corrected" in w.detail.title.text()
    history = session.history(cell.id)
    assert [(h.previous, h.label) for h in history] == [(None, new)] and history[0].predicted == cell.predicted
    # Undo and redo: the label comes and goes, each step appended to the audit trail.
    w.activateWindow()
    QTest.keyClick(w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert store.cell(row).label is None and session.cell(cell.id).label is None
    assert w.redo_action.isEnabled()
    w.redo_action.trigger()
    assert store.cell(row).label == new and len(session.history(cell.id)) == 3


def test_arrow_keys_walk_the_gallery_in_order(reviewed):
    w = reviewed
    first = w.gallery.neighbour(-1, 1)
    w.selection.select_cell(first)
    press(w, Qt.Key.Key_Down)
    second = w.selection.row
    assert second == w.gallery.neighbour(first, 1) != first
    press(w, Qt.Key.Key_Up)
    assert w.selection.row == first


def test_multi_select_and_artefacts_leave_the_count(reviewed):
    w, store = reviewed, reviewed.controller.store
    w.cell_tabs.setCurrentWidget(w.table)
    selection = w.table.selectionModel()
    for r in range(3):
        selection.select(
            w.table.model().index(r, 0), QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        )
    chosen = w.selected_rows()
    assert len(chosen) == 3
    before = w.review.differential()
    w.label_actions[ARTEFACT].trigger()  # the context menu holds these same actions
    assert all(store.cell(r).label == ARTEFACT for r in chosen)
    after = w.review.differential()
    assert after.artefacts == before.artefacts + 3
    assert sum(after.counts.values()) == sum(before.counts.values()) - 3
    assert w.gallery.sections[ARTEFACT].count() == 3
    w.undo_action.trigger()  # one undo reverts the three
    assert not any(store.cell(r).label == ARTEFACT for r in chosen)


def test_queue_filter_and_sign_off_only_when_it_is_empty(reviewed, qtbot):
    w, store, session = reviewed, reviewed.controller.store, reviewed.review.session
    w.show_to_review()
    shown = w.controller.cell_filter
    assert shown.rowCount() == store.to_review_count() == 16
    assert all(store.status(shown.index(i, 0).data(RowIdRole)) == TO_REVIEW for i in range(16))
    recount(w, qtbot)
    assert not w.differential.sign_button.isEnabled()
    assert not w.sign_off() and "still wait in the to-review queue" in w.notifier.history[-1][1]
    # Select every cell of the queue and confirm them (Enter).
    w.select_all_shown()
    assert len(w.selected_rows()) == 16
    press(w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: store.to_review_count() == 0, timeout=2000)
    assert shown.rowCount() == 0
    qtbot.waitUntil(lambda: w.to_review_button.text() == "To review: 0", timeout=2000)  # updated within 250 ms
    assert all(store.status(r) == CONFIRMED for r in range(store.cell_count) if store.cell(r).reviewed)
    recount(w, qtbot)
    assert w.differential.sign_button.isEnabled()
    assert w.sign_off()
    done = session.current_sign_off()
    assert done is not None and done.reviewer == "tester"
    recount(w, qtbot)
    assert "Signed off" in w.differential.signed.text() and not w.differential.sign_button.isEnabled()
    w.filter_bar.reset()


def test_differential_panel_follows_corrections(reviewed, qtbot):
    w, store = reviewed, reviewed.controller.store
    recount(w, qtbot)
    before = dict(w.differential.diff.counts)
    row = next(r for r in range(store.cell_count) if store.cell(r).final_label != "IG")
    old = store.cell(row).final_label
    w.selection.select_cell(row)
    w.set_label("IG")
    recount(w, qtbot)
    counts = w.differential.diff.counts
    assert counts["IG"] == before["IG"] + 1 and counts[old] == before[old] - 1
    assert "IG_PRESENT" in w.differential.diff.flag_codes()
    assert "immature granulocytes present" in w.differential.flags.text()


def test_reopening_a_session_restores_every_correction(reviewed, qtbot):
    w, store = reviewed, reviewed.controller.store
    row = 5
    w.selection.select_cell(row)
    w.set_label("MONOCYTE")
    path = w.review.session.path
    labels = {c.id: c.label for c in store.cells()}
    w.close_all()
    assert w.review.session is None and store.cell_count == 0
    with qtbot.waitSignal(w.controller.session_loaded, timeout=10000):  # read off the GUI thread
        assert w.review.open_session(path)
    assert {c.id: c.label for c in store.cells()} == labels
    assert store.image_count == 16 and w.controller.cells.rowCount() == 16
    assert w.review.prefs.last_session == str(path)


def test_a_session_is_read_off_the_gui_thread_and_images_opened_meanwhile_join_it(
    reviewed, qtbot, monkeypatch, many_cells, tmp_path
):
    from yawbcc_desktop.gui import analysis

    w, store, c = reviewed, reviewed.controller.store, reviewed.controller
    path = w.review.session.path
    w.close_all()
    gate, real = threading.Event(), analysis.read_session

    def held(session, abandoned):  # a read that takes as long as the test wants (and can be dropped)
        while not gate.is_set() and not abandoned():
            time.sleep(0.01)
        return real(session, abandoned)

    monkeypatch.setattr(analysis, "read_session", held)
    assert w.review.open_session(path)
    # The window answers meanwhile, and says what it waits for.
    assert c.loading and store.cell_count == 0 and w.review.session.path == path
    assert w.status_fields.cell_count.text() == "Loading session…"
    assert not w.gallery.empty.isHidden() and w.gallery.empty.text() == "Loading session…"
    extra = os.path.abspath(many_cells[0])
    assert w.open_paths([extra]) == 0  # waits for the session: its images come first
    with qtbot.waitSignal(c.run_finished, timeout=RUN_TIMEOUT_MS):
        gate.set()
    assert not c.loading and store.image_count == 17 and store.paths()[-1] == extra
    assert "17 images" in w.status_fields.cell_count.text()
    assert len(w.review.session.images()) == 17

    # Another session opened while one loads: the first one's cells never show.
    empty = tmp_path / "empty.yawbcc"
    ReviewSession.create(empty).close()
    gate.clear()
    w.close_all()
    assert w.review.open_session(path) and c.loading
    with qtbot.waitSignal(c.session_loaded, timeout=10000):
        assert w.review.open_session(empty)
        gate.set()
    qtbot.wait(200)  # a late result of the first load would arrive by now
    assert w.review.session.path == empty and store.cell_count == 0 and store.image_count == 0


def test_bad_session_files_get_a_message_and_are_left_as_they_were(window, tmp_path):
    w = window
    w.new_session()
    current = w.review.session.path
    corrupt = tmp_path / "corrupt.yawbcc"
    corrupt.write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
    newer = tmp_path / "newer.yawbcc"
    ReviewSession.create(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 99")
    locked = tmp_path / "locked.yawbcc"
    holder = ReviewSession.create(locked)  # another instance has it open
    try:
        for path, words in ((corrupt, "cannot be opened"), (newer, "newer yawbcc"), (locked, "open in another yawbcc")):
            before = path.read_bytes()
            seen = len(w.notifier.history)
            assert not w.review.open_session(path)
            title, message = w.notifier.history[seen][:2]
            assert title == "Cannot open the session" and str(path) in message, message
            assert words in message.lower(), message
            assert path.read_bytes() == before  # never overwritten
            assert w.review.session.path == current  # the open session stays open
    finally:
        holder.close()


def test_killed_app_during_analysis_keeps_every_analysed_image(tiny_bundle, many_cells, tmp_path):
    """kill -9 the real application mid-run; the session reopens with what it had committed."""
    session = tmp_path / "killed.yawbcc"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "YAWBCC_CONFIG_DIR": str(tmp_path / "config")}
    code = "import sys; from yawbcc_desktop.gui.app import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "--session", str(session), "--model", str(tiny_bundle), "--mode", "cell"]
    proc = subprocess.Popen([*args, *many_cells], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, seen = time.monotonic() + 240, 0
        while time.monotonic() < deadline and seen < 5:
            time.sleep(0.2)
            if session.exists():
                try:
                    with ReviewSession.open(session, readonly=True) as peek:
                        seen = len(peek.images())
                except Exception:
                    seen = 0
        assert seen >= 5, "the app committed no image in time"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with ReviewSession.open(session) as reopened:  # the killed process's lock does not block
        images = reopened.images()
        assert len(images) >= seen
        assert all(im.cell_count >= 1 for im in images)
        assert {im.path for im in images} <= {os.path.abspath(p) for p in many_cells}


def test_differential_panel_updates_by_itself_and_exports_from_the_menu(reviewed, qtbot, monkeypatch, tmp_path):
    w, store = reviewed, reviewed.controller.store
    recount(w, qtbot)
    row = 0
    target = next(g for g in GROUPS if g != store.cell(row).final_label)
    before = w.differential.diff.counts[target]
    w.selection.select_cell(row)
    w.set_label(target)
    qtbot.waitUntil(lambda: w.differential.diff.counts[target] == before + 1, timeout=3000)  # no refresh() call
    # File > Export cells / differential: the same files as `yawbcc export`, written whole.
    from PySide6.QtWidgets import QFileDialog

    for action, name in ((w.export_cells_action, "cells.csv"), (w.export_differential_action, "diff.csv")):
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, n=name, **k: (str(tmp_path / n), ""))
        action.trigger()
        qtbot.waitUntil((tmp_path / name).exists, timeout=10000)  # written off the GUI thread
    import pandas as pd

    cells = pd.read_csv(tmp_path / "cells.csv", encoding="utf-8-sig")
    assert len(cells) == 16 and cells["corrected"].eq("yes").sum() >= 1
    assert cells.loc[cells["corrected"].eq("yes"), "reviewer"].eq("tester").all()
    diff = pd.read_csv(tmp_path / "diff.csv", encoding="utf-8-sig")
    assert diff.loc[0, "scope"] == "session" and diff.loc[0, f"n_{target}"] == before + 1
    assert not list(tmp_path.glob("*.partial*"))


def test_preferences_threshold_and_reviewer_apply_at_once(reviewed, monkeypatch, tmp_path):
    from yawbcc_desktop.core.preferences import load_preferences
    from yawbcc_desktop.gui.widgets.preferences_dialog import PreferencesDialog

    w, store = reviewed, reviewed.controller.store
    dialog = PreferencesDialog(w.review.prefs, w)
    dialog.threshold.setValue(0.0)  # nothing below 0 %: the queue empties
    dialog.reviewer.setText("  dr who ")
    low, high = dialog.ranges["NEUTROPHIL"]
    low.setValue(50.0)
    high.setValue(30.0)
    dialog.accept()
    assert "Low is above high for: Neutrophil" in dialog.error.text()  # refused, stays open
    high.setValue(70.0)
    w.review.set_preferences(dialog.preferences())
    assert store.to_review_count() == 0 and w.review.reviewer == "dr who"
    # The cells CSV's to_review column follows the reviewer's threshold, as the queue does.
    from PySide6.QtWidgets import QFileDialog

    out = tmp_path / "cells.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    w.export_cells_action.trigger()
    wait_until(out.exists, timeout=10)
    import pandas as pd

    assert pd.read_csv(out, encoding="utf-8-sig")["to_review"].eq("no").all()
    saved = load_preferences(w.review._prefs_path)
    assert saved.review_threshold == 0.0 and saved.reference_ranges["NEUTROPHIL"].low == 50.0
    dialog.restore_defaults()
    w.review.set_preferences(dialog.preferences())
    assert store.to_review_count() == 16 and w.review.reviewer == "dr who"


def test_last_session_is_offered_at_start(window, qtbot, monkeypatch):
    w = window
    w.new_session()
    last = str(w.review.session.path)
    w.close_all()
    asked = []
    monkeypatch.setattr(type(w.dialogs), "ask_reopen", lambda self, path, summary: asked.append((path, summary)) or True)
    with qtbot.waitSignal(w.controller.session_loaded, timeout=10000):
        w.dialogs.offer_last_session()
    assert asked and asked[0][0] == last and "images" in asked[0][1]
    assert str(w.review.session.path) == last


def test_save_session_as_copies_everything_and_goes_on_in_the_copy(reviewed, qtbot, tmp_path):
    w, store = reviewed, reviewed.controller.store
    original = w.review.session.path
    row = store.image(store.paths()[0]).cell_rows[0]
    session_id = store.cell(row).id
    assert w.review.set_label([row], "EOSINOPHIL") == 1
    taken = tmp_path / "taken.yawbcc"
    taken.write_bytes(b"another reviewer's work")
    assert not w.review.save_session_as(taken)  # never overwritten
    assert w.notifier.history[-1][0] == "Session not saved" and "already exists" in w.notifier.history[-1][1]
    assert taken.read_bytes() == b"another reviewer's work" and w.review.session.path == original

    with qtbot.waitSignal(w.controller.session_loaded, timeout=10000):
        assert w.review.save_session_as(tmp_path / "copy.yawbcc")
    copy = w.review.session
    assert copy.path == tmp_path / "copy.yawbcc" and len(copy.images()) == 16
    assert copy.cell(session_id).final_label == "EOSINOPHIL" and copy.cell_ids() == sorted(c.id for c in store.cells())
    assert w.review.set_label([row], "BASOPHIL") == 1  # corrections now go to the copy
    assert copy.cell(session_id).final_label == "BASOPHIL"
    with ReviewSession.open(original, readonly=True) as before:
        assert before.cell(session_id).final_label == "EOSINOPHIL"  # the original keeps what it had


def test_reanalysis_with_another_model_goes_into_a_new_session(reviewed, qtbot, tmp_path, tiny_bundle):
    import shutil

    w, store = reviewed, reviewed.controller.store
    other = tmp_path / "tiny-other"
    shutil.copytree(tiny_bundle, other)
    (other / "model.json").write_text((other / "model.json").read_text().replace('"tiny-test"', '"tiny-other"'))
    old = w.review.session.path
    row = store.image(store.paths()[0]).cell_rows[0]
    corrected_id = store.cell(row).id
    assert w.review.set_label([row], "EOSINOPHIL") == 1
    try:
        with qtbot.waitSignal(w.controller.run_finished, timeout=RUN_TIMEOUT_MS):
            w.switch_model(str(other), reanalyse=True)
        new = w.review.session
        assert new.path != old and len(new.images()) == 16
        assert {c.model for c in new.cells()} == {"tiny-other"} and not new.history()
        assert {c.model for c in store.cells()} == {"tiny-other"}
        with ReviewSession.open(old, readonly=True) as before:  # the earlier results and corrections stay there
            assert len(before.images()) == 16 and {c.model for c in before.cells()} == {"tiny-test"}
            assert before.cell(corrected_id).final_label == "EOSINOPHIL" and len(before.history()) == 1
    finally:
        w.switch_model(str(tiny_bundle), reanalyse=False)


@pytest.fixture(scope="module")
def segmented_only(tmp_path_factory, pbc):
    """A session written as `yawbcc segment` analyses (``cli._run_analysis`` with classify=False,
    no model) into a session file: its cells were found and never classified."""
    from yawbcc_desktop import cli

    groups = ("lymphocyte", "neutrophil", "platelet", "eosinophil", "monocyte")
    paths = [str(next(p for p in sorted((pbc / g).glob("*.jpg")) if not p.name.startswith("."))) for g in groups]
    args = cli.build_parser().parse_args(["segment", *paths, "--quiet"])
    args.session = str(tmp_path_factory.mktemp("segmented") / "segmented.yawbcc")
    assert cli._run_analysis(args, classify=False) == cli.EXIT_OK
    return args.session


def test_cells_never_classified_are_shown_to_review_and_count_as_the_session_counts(window, qtbot, segmented_only, tmp_path):
    import shutil

    from yawbcc_desktop.core.review_rules import NOT_CLASSIFIED
    from yawbcc_desktop.gui.cell_table_model import NOT_CLASSIFIED_LABEL

    w, store = window, window.controller.store
    path = tmp_path / "segmented.yawbcc"
    shutil.copy(segmented_only, path)
    w.close_all()
    with qtbot.waitSignal(w.controller.session_loaded, timeout=10000):
        assert w.review.open_session(path)
    w.cell_tabs.setCurrentWidget(w.gallery)
    w.filter_bar.reset()
    session, threshold = w.review.session, store.review_threshold
    cells = session.cells()
    n = len(cells)
    assert n >= 5 and all(c.probs is None and not c.predicted for c in cells)
    # Every cell is in the table and the gallery (under "not classified"), and in the queue.
    assert sorted(c.id for c in store.cells()) == session.cell_ids()
    assert w.controller.cells.rowCount() == w.controller.cell_filter.rowCount() == n
    assert w.gallery.counts()[NOT_CLASSIFIED_LABEL] == n
    assert store.to_review_count() == session.to_review_count(threshold) == n
    w._update_counts()
    assert w.to_review_button.text() == f"To review: {n}"
    w.show_to_review()
    assert w.controller.cell_filter.rowCount() == n
    assert not w.sign_off() and "still wait in the to-review queue" in w.notifier.history[-1][1]
    # What the views say of one: no prediction, no confidence, why it waits; nothing to explain.
    row = store.rows_of([cells[0].id])[0]
    w.selection.select_cell(row)
    model = w.controller.cells
    shown = {key: model.index_of_id(row, COLUMN[key]).data() for key in ("predicted", "confidence", "status", "why")}
    assert shown == {"predicted": "—", "confidence": "—", "status": TO_REVIEW, "why": NOT_CLASSIFIED}
    assert w.detail.row == row and "Not classified" in w.detail.title.text() and "nan" not in w.detail.title.text()
    assert w.detail.reasons.text() == f"To review: {NOT_CLASSIFIED}"
    assert w.detail.gradcam.state == "empty" and not w.detail.label_bar.confirm.isEnabled()
    model.sort(COLUMN["confidence"])  # nan confidences sort, and the views still hold every cell
    model.sort(-1)
    # Labelled by the reviewer: it leaves the queue, in the window and in the session alike.
    assert w.set_label("LYMPHOCYTE") == 1
    assert store.to_review_count() == session.to_review_count(threshold) == n - 1
    assert store.status(row) == CORRECTED and store.cell(row).final_label == "LYMPHOCYTE"
    assert w.gallery.counts()[NOT_CLASSIFIED_LABEL] == n - 1
    qtbot.waitUntil(lambda: w.to_review_button.text() == f"To review: {n - 1}", timeout=2000)
    recount(w, qtbot)
    assert w.differential.diff.counts["LYMPHOCYTE"] == 1 and w.differential.diff.unclassified == n - 1
    w.filter_bar.reset()


def test_cells_to_review_for_adapting_shows_the_suggested_unreviewed_cells(reviewed, qtbot, monkeypatch):
    from yawbcc_desktop.core import suggest

    monkeypatch.setattr(suggest, "SUGGESTED_CELLS", 5)  # of the session's 16 cells
    store = reviewed.controller.store
    assert reviewed.review.set_label([0], "LYMPHOCYTE") == 1  # a reviewed cell is never suggested
    reviewed.suggest_for_adapting_action.trigger()
    f = reviewed.controller.cell_filter
    shown = [f.sourceModel().row_id_at(f.mapToSource(f.index(r, 0)).row()) for r in range(f.rowCount())]
    assert f.rowCount() == 5 and f.only is not None and len(f.only) == 5
    assert 0 not in f.only and all(store.columns().label[r] < 0 for r in f.only)
    assert reviewed.filter_bar.summary.text().startswith("Cells to review for adapting: showing 5 of 16")
    assert sorted(shown) == sorted(f.only)
    reviewed.filter_bar.reset()
    assert f.rowCount() == 16 and f.only is None
