"""The window says when the model does not know what it is looking at.

A tiny bundle whose familiarity model finds every real image unfamiliar (tests/conftest.py):
the banner, the image list's mark, the cell's reasons, the queue, all from the real worker
and the session file, then reopened from disk.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt

from yawbcc_desktop.core import review_rules
from yawbcc_desktop.core.review_rules import TO_REVIEW
from yawbcc_desktop.gui.cell_table_model import COLUMN
from yawbcc_desktop.gui.image_list_model import UnfamiliarRole

from .conftest import started_window
from .test_review_window import RUN_TIMEOUT_MS


def test_unfamiliar_images_get_a_banner_a_mark_and_all_their_cells_wait(qapp, qtbot, unfamiliar_bundle, pbc, tmp_path):
    images = [str(sorted((pbc / g).glob("[A-Z]*.jpg"))[0]) for g in ("neutrophil", "eosinophil")]
    with started_window(tmp_path / "config", unfamiliar_bundle) as win:
        win.review.prefs.review_threshold = win.controller.store.review_threshold = 0.0  # confidence alone sends none
        assert not win.banner.isVisible()
        win.new_session()
        with qtbot.waitSignal(win.controller.run_finished, timeout=RUN_TIMEOUT_MS):
            assert win.open_paths(images) == 2
        store, session = win.controller.store, win.review.session
        qtbot.waitUntil(win.banner.isVisible, timeout=2000)  # counts follow within 250 ms

        # One banner over the image, naming the model, with the retraining action.
        banner = win.banner
        assert "2 of 2 images look unfamiliar to model tiny-unfamiliar" in banner.text.text()
        assert "whatever the confidence" in banner.text.text()
        assert banner.mapTo(win, QPoint(0, 0)).y() < win.viewer.mapTo(win, QPoint(0, 0)).y()
        assert banner.retrain_button.defaultAction() is win.retrain_action and banner.retrain_button.isEnabled()

        # Every cell waits, at a threshold that lets every confidence through; the session agrees.
        n = store.cell_count
        assert n >= 2 and store.to_review_count() == n == session.to_review_count(0.0)
        assert win.to_review_button.text() == f"To review: {n}"
        assert all(store.status(r) == TO_REVIEW for r in range(n))
        table = win.controller.cells
        assert all(table.index_of_id(r, COLUMN["why"]).data().startswith(review_rules.UNFAMILIAR) for r in range(n))
        win.selection.select_cell(0)
        assert "to review" in win.detail.title.text()
        assert win.detail.reasons.text() == f"To review: {review_rules.UNFAMILIAR}"

        # The image list marks both images and says why.
        model = win.controller.images
        for row in range(2):
            tip = model.index(row).data(Qt.ItemDataRole.ToolTipRole)
            assert "unfamiliar to model tiny-unfamiliar: score " in tip and "> threshold 1.00" in tip
            assert " µm per pixel (red cells)" in tip  # the image's own ruler, as the session keeps it
            assert model.index(row).data(UnfamiliarRole)

        # The banner's button is the menu's action; closing the banner keeps it closed.
        triggered = []
        win.retrain_action.triggered.connect(lambda *_: triggered.append(True))
        banner.retrain_button.click()
        assert triggered
        if win.models.retrain_dialog is not None:
            win.models.retrain_dialog.close()
        # Its first button shows the cells to review first: unreviewed ones, no more than the session holds.
        assert banner.suggest_button.defaultAction() is win.suggest_for_adapting_action
        banner.suggest_button.click()
        only = win.controller.cell_filter.only
        assert only is not None and 0 < len(only) <= n and all(store.columns().label[r] < 0 for r in only)
        win.filter_bar.reset()
        banner.close_button.click()
        win._update_counts()
        assert not banner.isVisible()

        # Reopened from disk: the marks, the queue and the banner come back.
        path = str(session.path)
        win.close_all()
        assert not banner.isVisible() and store.cell_count == 0
        with qtbot.waitSignal(win.controller.session_loaded, timeout=10000):
            assert win.review.open_session(path)
        qtbot.waitUntil(banner.isVisible, timeout=2000)
        assert store.cell_count == n and store.to_review_count() == n
        assert store.unfamiliar_images() == (2, 2, "tiny-unfamiliar")
        assert "> threshold 1.00" in model.index(0).data(Qt.ItemDataRole.ToolTipRole)
        assert " µm per pixel (red cells)" in model.index(0).data(Qt.ItemDataRole.ToolTipRole)
