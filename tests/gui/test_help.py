"""The Help menu (user guide offline, keyboard shortcuts, About, log folder), the log files of
a window session, and the dialog an unhandled exception shows with the session intact."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QTextCursor, QTextDocument
from PySide6.QtWidgets import QMessageBox

from yawbcc_desktop import __version__
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.logs import log_path
from yawbcc_desktop.core.store import ReviewSession
from yawbcc_desktop.gui import actions
from yawbcc_desktop.gui.app import main
from yawbcc_desktop.gui.crash import CrashReporter
from yawbcc_desktop.gui.help import docs_root, shortcuts_markdown
from yawbcc_desktop.gui.widgets.label_bar import LABEL_KEYS

from .conftest import started_window
from .test_review_window import RUN_TIMEOUT_MS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def log_folder(tmp_path, monkeypatch):
    folder = tmp_path / "logs"
    monkeypatch.setenv("YAWBCC_LOG_DIR", str(folder))
    return folder


def links(browser) -> dict[str, int]:
    """Each link of the page shown: its target and the document position of its text."""
    found: dict[str, int] = {}
    block = browser.document().begin()
    while block.isValid():
        fragments = block.begin()
        while not fragments.atEnd():
            fragment = fragments.fragment()
            if fragment.charFormat().isAnchor() and fragment.charFormat().anchorHref():
                found.setdefault(fragment.charFormat().anchorHref(), fragment.position())
            fragments += 1
        block = block.next()
    return found


def click_link(qtbot, browser, href: str) -> None:
    """Click the link as a reviewer would: on its text, in the viewport."""
    cursor = QTextCursor(browser.document())
    cursor.setPosition(links(browser)[href] + 1)
    browser.setTextCursor(cursor)
    browser.ensureCursorVisible()
    point = browser.cursorRect(cursor).center()
    qtbot.mouseClick(browser.viewport(), Qt.MouseButton.LeftButton, pos=point)


def test_user_guide_opens_offline_and_its_links_lead_to_the_other_pages(bare_window, qtbot):
    bare_window.user_guide_action.trigger()
    guide = bare_window.help.guide
    assert guide is not None and guide.isVisible()
    browser = guide.browser
    assert browser.source().toLocalFile() == str(docs_root() / "user-guide.md")
    assert browser.sourceType() == QTextDocument.ResourceType.MarkdownResource
    text = browser.toPlainText()
    assert text.startswith("User guide") and "Reviewing" in text and "Keyboard shortcuts" in text
    # The screenshots load from docs/screenshots, shrunk to the page's width.
    image = browser.loadResource(QTextDocument.ResourceType.ImageResource, QUrl("screenshots/review-session.png"))
    assert not image.isNull() and image.width() <= max(browser.viewport().width() - 40, 400)
    # A link to another page opens it as Markdown, and Back returns.
    target = next(h for h in links(browser) if h.startswith("command-line.md"))
    click_link(qtbot, browser, target)
    qtbot.waitUntil(lambda: browser.source().fileName() == "command-line.md", timeout=5000)
    assert browser.toPlainText().startswith("The command line") and "yawbcc classify" in browser.toPlainText()
    assert browser.sourceType() == QTextDocument.ResourceType.MarkdownResource
    browser.backward()
    assert browser.source().fileName() == "user-guide.md"
    # A link into a section of a page scrolls there: headings carry GitHub's anchors.
    browser.setSource(QUrl.fromLocalFile(str(docs_root() / "configuration.md")).resolved(QUrl("#logs")))
    qtbot.waitUntil(lambda: browser.verticalScrollBar().value() > 0, timeout=5000)
    top = browser.cursorForPosition(browser.viewport().rect().topLeft()).block().text()
    assert top.startswith("Logs"), top


def test_keyboard_shortcuts_list_every_action_key_from_the_action_table(bare_window, qtbot):
    bare_window.shortcuts_action.trigger()
    table = bare_window.help.shortcuts_dialog.table
    shown = [tuple(table.item(r, c).text() for c in range(3)) for r in range(table.rowCount())]
    assert shown == actions.shortcut_rows()
    keys = {row[2] for row in shown}
    for spec in actions.ACTIONS:
        if isinstance(spec, actions.Action) and spec.shortcut:
            # What the window's action answers to is what the table says.
            action = getattr(bare_window, f"{spec.name}_action")
            bound = ", ".join(k.toString(k.SequenceFormat.NativeText) for k in action.shortcuts())
            assert bound == "" or bound in keys, (spec.name, bound)
    assert {row[2] for row in shown if row[0] == "Review › Set class"} == set(LABEL_KEYS.values())
    assert ("Help", "User guide", "F1") in shown and ("Review", "Show the to-review queue", "Ctrl+T") in shown
    # The user guide's table is generated from the same rows.
    guide = (REPO / "docs" / "user-guide.md").read_text(encoding="utf-8")
    written = re.search(r"<!-- shortcuts:.*?-->\n(.*?)\n<!-- end shortcuts -->", guide, re.S).group(1)
    assert written == shortcuts_markdown(), "regenerate it: python -m yawbcc_desktop.gui.help --shortcuts"


def test_open_log_folder_shows_the_log_folder(bare_window, log_folder, monkeypatch):
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    bare_window.log_folder_action.trigger()
    assert [u.toLocalFile() for u in opened] == [str(log_folder)] and log_folder.is_dir()


def test_version_has_one_source_the_package_metadata():
    assert __version__ == metadata.version("yawbcc-desktop") != "0+unknown"
    for entry, program in (("main", "yawbcc"), ("gui_main", "yawbcc-desktop")):
        code = f"import sys; from yawbcc_desktop.cli import {entry}; sys.exit({entry}(['--version']))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert out.returncode == 0 and out.stdout.strip() == f"{program} {__version__}", (out.stdout, out.stderr)


def test_about_shows_version_model_card_and_the_licences(qapp, tiny_bundle, tmp_path, qtbot):
    with started_window(tmp_path / "config", tiny_bundle) as win:
        win.about_action.trigger()
        text = win.help.about_dialog.text.toPlainText()
    assert f"YAWBCC Desktop {__version__}" in text
    assert "tiny-test" in text and "efficientnet-lite0" in text and str(tiny_bundle) in text  # the model in use, its card
    for source in ("CC BY 4.0", "doi:10.17632/snkd93bnjr.1", "BCCD", "MIT", "Bio-Net", "Apache License 2.0"):
        assert source in text, source


def test_a_window_session_writes_the_log(tiny_bundle, cell_folder, tmp_path, log_folder):
    out = tmp_path / "shot.png"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    files = [*sorted(str(p) for p in cell_folder.rglob("*.jpg"))[:2], str(broken)]
    assert main(["--screenshot", str(out), "--model", str(tiny_bundle), "--mode", "cell", *files]) == 0
    log = (log_folder / "yawbcc.log").read_text(encoding="utf-8")
    assert "yawbcc-desktop started" in log and "window closed, exit status 0" in log
    assert re.search(rf"WARNING \d+ yawbcc_desktop\.gui\.analysis: {re.escape(str(broken))}: \S", log), log
    assert re.search(r"INFO .* Analysed 3 images in [\d.]+ s: \d+ cells, 1 failed", log), log


def test_preferences_set_the_log_level(bare_window, log_folder, monkeypatch):
    import logging

    from yawbcc_desktop.gui.widgets.preferences_dialog import PreferencesDialog

    def choose_everything(dialog: PreferencesDialog) -> int:
        dialog.log_level.setCurrentIndex(dialog.log_level.findData("DEBUG"))
        dialog.accept()
        return PreferencesDialog.DialogCode.Accepted

    monkeypatch.setattr(PreferencesDialog, "exec", choose_everything)
    bare_window.edit_preferences()
    assert bare_window.review.prefs.log_level == "DEBUG" and logging.getLogger().level == logging.DEBUG
    monkeypatch.setattr(PreferencesDialog, "exec", lambda d: (d.restore_defaults(), d.accept(), 1)[2])
    bare_window.edit_preferences()
    assert bare_window.review.prefs.log_level == "INFO" and logging.getLogger().level == logging.INFO


@pytest.mark.qt_no_exception_capture
def test_an_exception_in_a_slot_shows_a_dialog_and_the_session_stays(qapp, tiny_bundle, cell_folder, tmp_path, qtbot, log_folder):
    from yawbcc_desktop.core.logs import start_logging

    start_logging("yawbcc-desktop")
    with started_window(tmp_path / "config", tiny_bundle) as win:
        win.review.prefs.reviewer = "tester"
        win.new_session()
        with qtbot.waitSignal(win.controller.run_finished, timeout=RUN_TIMEOUT_MS):
            win.open_paths([str(cell_folder)])
        store, session = win.controller.store, win.review.session
        first = store.image(store.paths()[0]).cell_rows[0]
        win.selection.select_cell(first)
        label = next(g for g in GROUPS if g != store.cell(first).predicted)
        assert win.set_label(label) == 1
        cells_before = session.cell_ids()

        reporter = CrashReporter(win, attended=True).install()
        try:

            def broken_undo() -> int:
                raise RuntimeError("the undo stack fell over")

            win.review.undo = broken_undo  # Review › Undo's slot raises
            win.undo_action.trigger()
            qtbot.waitUntil(lambda: reporter.dialog is not None and reporter.dialog.isVisible(), timeout=5000)
        finally:
            reporter.uninstall()
        box = reporter.dialog
        assert isinstance(box, QMessageBox) and "RuntimeError: the undo stack fell over" in box.text()
        assert str(log_path()) in box.informativeText() and "session is safe" in box.informativeText()
        assert "broken_undo" in box.detailedText()
        box.close()
        logged = log_path().read_text(encoding="utf-8")
        assert "Unhandled exception" in logged and "RuntimeError: the undo stack fell over" in logged
        # The session is intact and the window goes on: the correction is there, a new one commits.
        assert win.review.session is session and session.cell_ids() == cells_before
        cell_id = store.cell(first).id
        assert session.cell(cell_id).label == label
        second = store.image(store.paths()[1]).cell_rows[0]
        win.selection.select_cell(second)
        assert win.set_label(label) == 1
        path = session.path
    with ReviewSession.open(path, readonly=True) as reopened:
        assert reopened.cell(cell_id).label == label
        assert sum(c.label == label for c in reopened.cells()) >= 2
