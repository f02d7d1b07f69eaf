"""Work off the GUI thread (``gui/background.py``): results come back on the GUI thread, and
closing a session waits for the work reading it, not for work reading another one."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, QThread

from yawbcc_desktop.gui.background import in_background, wait_for_background


def test_results_come_back_on_the_gui_thread_and_closing_waits_only_for_its_readers(qtbot):
    owner = QObject()
    old, new = object(), object()  # two sessions
    release = threading.Event()
    ran_on, came_back_on, results, errors = [], [], [], []

    def read_old():
        ran_on.append(QThread.currentThread())
        release.wait(10)
        return 42

    def done(result):
        came_back_on.append(QThread.currentThread())
        results.append(result)

    in_background(owner, read_old, done, errors.append, reading=old)
    in_background(owner, lambda: 1 / 0, results.append, errors.append, reading=new)
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert isinstance(errors[0], ZeroDivisionError)  # handed to ``failed``, not raised in the pool
    assert wait_for_background(new, msecs=0)  # the session opened in its place: nothing to wait for
    assert not wait_for_background(old, msecs=50)  # still read
    release.set()
    assert wait_for_background(old, msecs=5000)
    qtbot.waitUntil(lambda: bool(results), timeout=5000)
    assert results == [42] and ran_on[0] is not owner.thread() and came_back_on[0] is owner.thread()
