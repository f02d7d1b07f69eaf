"""The review window on a session of the lab's server (a real PostgreSQL the test starts):
another station's corrections reach the table and the counts (its sample notes the notes
box), a conflict is put to the
reviewer, and a server that goes away is shown by a banner until the window reconnects."""

from __future__ import annotations

import shutil

import pytest

from benchmarks.big_session import build_session
from tests.gui.conftest import wait_until
from tests.unit.test_store import image_result
from yawbcc_desktop.core.store import COMMENTS, SAMPLE_ID, CellsChanged, ReviewSession


@pytest.fixture
def window(tmp_path, qtbot):
    from yawbcc_desktop.gui.main_window import MainWindow
    from yawbcc_desktop.gui.settings import AppSettings

    win = MainWindow(AppSettings(tmp_path / "config"), attended=False, mode="smear")
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    yield win
    win.close()


def test_the_window_follows_other_stations_and_the_server(tmp_path, own_postgres_server, window, qtbot):
    server = own_postgres_server
    url = server.url("ward")
    with ReviewSession.open(build_session(tmp_path / "ward.yawbcc", 120), readonly=True) as local:
        local.copy_to(url).close()
    win, c = window, window.controller
    assert win.review.open_session(url)
    wait_until(lambda: not c.loading and c.store.cell_count == 120, timeout=60)
    assert win.windowTitle().startswith("YAWBCC Desktop — ward")
    store, session = c.store, win.review.session
    unreviewed = [r for r in range(store.cell_count) if not store.cell(r).reviewed]
    row, other_row = unreviewed[:2]
    to_review = session.to_review_count(win.review.prefs.review_threshold)

    with ReviewSession.open(url) as other:
        other.station = "bench-2"
        # Another station corrects a cell: the window's table shows it within seconds.
        other.set_label([store.cell(row).id], "BASOPHIL", "Bob")
        qtbot.waitUntil(lambda: store.cell(row).label == "BASOPHIL", timeout=3000)  # 2 s, and the event loop's turn
        assert store.cell(row).reviewer == "Bob"
        counted = session.to_review_count(win.review.prefs.review_threshold)
        assert counted <= to_review and store.to_review_count() == counted  # the window's queue count follows

        # Both change the same cell: the second is told who changed it to what; nothing is overwritten.
        asked: list[Exception] = []
        win.review.resolve = lambda exc: asked.append(exc) or False  # "Keep theirs"
        other.set_label([store.cell(other_row).id], "EOSINOPHIL", "Bob")
        # No event processed in between: the window still shows the cell as it was before Bob.
        assert win.review.set_label([other_row], "MONOCYTE") == 0
        [conflict] = asked
        assert isinstance(conflict, CellsChanged) and "by Bob at bench-2" in str(conflict)
        theirs = other.cell(store.cell(other_row).id).label
        assert store.cell(other_row).label == theirs != "MONOCYTE"  # the window shows theirs
        win.review.resolve = lambda exc: True  # "Apply mine"
        assert win.review.set_label([other_row], "MONOCYTE") == 1
        assert other.cell(store.cell(other_row).id).label == "MONOCYTE"

        # Another station analyses a field into the session: it joins the window's images and cells.
        field = shutil.copy(store.paths()[0], tmp_path / "new_field.jpg")
        other.add_image(image_result(str(field), [("NEUTROPHIL", 0.99), ("LYMPHOCYTE", 0.5)]))
        qtbot.waitUntil(lambda: store.image_count == 4 and store.cell_count == 122, timeout=3000)
        assert [store.cell(r).predicted for r in (120, 121)] == ["NEUTROPHIL", "LYMPHOCYTE"]
        assert store.to_review_count() == session.to_review_count(win.review.prefs.review_threshold)

        # Another station writes the sample's comments: the window shows them; a field the
        # reviewer is typing in keeps what they typed.
        notes = win.differential.notes
        assert notes.isEnabled() and win.differential.scope.currentData() is None  # the whole session
        notes.sample_id.setText("S-typed-here")
        other.set_note(COMMENTS, "Smudge cells.", "Bob")
        other.set_note(SAMPLE_ID, "S-from-bench-2", "Bob")
        qtbot.waitUntil(lambda: notes.comments.toPlainText() == "Smudge cells.", timeout=3000)
        assert notes.sample_id.text() == "S-typed-here"

    # The server goes: the banner says so; it comes back: the window reconnects by itself.
    assert not win.server_banner.isVisible()
    server.stop()
    qtbot.waitUntil(win.server_banner.isVisible, timeout=10000)
    win.grab().save(str(tmp_path.parent / "server_gone.png"))
    server.start()
    qtbot.waitUntil(lambda: not win.server_banner.isVisible(), timeout=10000)
    assert win.review.set_label([unreviewed[2]], "LYMPHOCYTE") == 1  # and corrections are saved again
    with ReviewSession.open(url, readonly=True) as check:
        assert check.cell(store.cell(unreviewed[2]).id).label == "LYMPHOCYTE"


def test_open_session_lists_the_server_s_sessions_and_takes_a_url(tmp_path, postgres_server, window, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    name = f"open{tmp_path.name[-12:].replace('-', '_')}"
    url = postgres_server.url(name)
    with ReviewSession.open(build_session(tmp_path / "ward.yawbcc", 40), readonly=True) as local:
        local.copy_to(url).close()
    win, c = window, window.controller
    win.review.prefs.review_server = url.replace(f"&session={name}", "")  # Preferences › Review stations: server
    offered: list[list[str]] = []

    def choose(_parent, _title, _label, items, *_args):
        offered.append(list(items))
        return name, True

    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(choose))
    win.dialogs.open_session()
    assert name in offered[0] and offered[0][-1].startswith("A session file")
    wait_until(lambda: not c.loading and c.store.cell_count == 40, timeout=60)
    assert win.review.session.location == url == win.review.prefs.last_session  # offered again at the next start
