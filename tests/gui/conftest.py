"""GUI tests: offscreen, on real images from ../shared/data, with the tests' tiny bundle.

The tiny bundle (tests/conftest.py) has random weights: its predictions mean nothing.
These tests check the plumbing -- rows, signals, filled panes, threads that end -- never
the accuracy, which the trained bundles' benchmarks measure.
"""

from __future__ import annotations

import contextlib
import shutil
import time

import pytest

from yawbcc_desktop.core.classes import GROUPS


def wait_until(condition, timeout: float = 120.0) -> None:
    """Process events until ``condition()`` holds (module fixtures have no qtbot)."""
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    app, end = QApplication.instance(), time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)


@contextlib.contextmanager
def started_window(config_dir, bundle, size=(1400, 900)):
    """A review window in single-cell mode with ``bundle`` loaded; closed after, with its threads."""
    from yawbcc_desktop.gui.app import application
    from yawbcc_desktop.gui.main_window import MainWindow
    from yawbcc_desktop.gui.settings import AppSettings

    application()  # the real style, so the panes are laid out as users see them
    win = MainWindow(AppSettings(config_dir), attended=False, mode="cell")
    win.resize(*size)
    win.show()
    win.start(str(bundle))
    wait_until(lambda: win.controller.model_state in ("ready", "failed"), timeout=240)
    assert win.controller.model_state == "ready", win.notifier.history
    yield win
    win.close()
    # Nothing may outlive the window: the worker and the image loader have ended.
    assert win.controller.worker.isFinished()
    assert win.controller.loader.threads_running() == 0


@pytest.fixture
def bare_window(qtbot, tmp_path):
    """A window whose worker runs but has no model: opening, errors, settings, help."""
    from yawbcc_desktop.gui.app import application
    from yawbcc_desktop.gui.main_window import MainWindow
    from yawbcc_desktop.gui.settings import AppSettings

    application()
    win = MainWindow(AppSettings(tmp_path / "config"), attended=False, mode="cell")
    qtbot.addWidget(win)
    win.show()
    win.controller.start()
    yield win
    win.close()
    assert win.controller.worker.isFinished() and win.controller.loader.threads_running() == 0


@pytest.fixture(autouse=True)
def _private_config(tmp_path, monkeypatch):
    # Settings and recent files go to a temporary folder, never the user's.
    monkeypatch.setenv("YAWBCC_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="session")
def cell_folder(tmp_path_factory, pbc):
    """Two single-cell images of each class, in nested folders (opening is recursive)."""
    root = tmp_path_factory.mktemp("cells")
    for group in GROUPS:
        sub = root / ("wbc" if group != "PLATELET" else "other") / group.lower()
        sub.mkdir(parents=True)
        for src in [p for p in sorted((pbc / group.lower()).glob("*.jpg")) if not p.name.startswith(".")][:2]:
            shutil.copy(src, sub / src.name)
    return root


@pytest.fixture(scope="session")
def many_cells(pbc):
    """40 single-cell files, enough for a run to be cancelled in the middle."""
    paths = []
    for group in GROUPS:
        paths += sorted((pbc / group.lower()).glob("*.jpg"))[10:15]
    return [str(p) for p in paths]
