"""Telling the reviewer something went wrong: a dialog when someone is at the screen, a line
on stderr when no one is (screenshots, tests), never a traceback as the only message."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMessageBox, QWidget

log = logging.getLogger(__name__)


def say(text: str) -> None:
    """One line on stderr, if there is one (a windowed build may have none)."""
    if sys.stderr is not None:
        print(text, file=sys.stderr, flush=True)


class Notifier(QObject):
    def __init__(self, window: QWidget, attended: bool = True):
        super().__init__(window)
        self._window = window
        self.attended = attended
        self.history: list[tuple[str, str]] = []  # (title, message): what was reported

    def error(self, title: str, message: str, details: str = "") -> None:
        self.history.append((title, message))
        log.warning("%s: %s", title, message)  # what the reviewer is told, the log keeps
        if not self.attended:
            say(f"yawbcc-desktop: {title}: {message}")
            if details:
                say(details)
            return
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Close, self._window)
        if details:
            box.setDetailedText(details)
        box.setModal(True)
        box.open()  # not exec(): the analysis keeps streaming while the box is up

    def model_problem(self, message: str, choose_model: Callable[[], None]) -> None:
        """A model bundle cannot be used: say which, why, and what to do."""
        advice = (
            "What to do: choose another model (Analysis › Choose model…), or reinstall YAWBCC Desktop "
            "to restore the bundled models. Opened images wait in the queue until a model is ready."
        )
        self.history.append(("Model not available", message))
        log.warning("Model not available: %s", message)
        if not self.attended:
            say(f"yawbcc-desktop: model not available: {message}")
            return
        box = QMessageBox(QMessageBox.Icon.Critical, "Model not available", message, parent=self._window)
        box.setInformativeText(advice)
        choose = box.addButton("Choose model…", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Close)
        box.buttonClicked.connect(lambda button: choose_model() if button is choose else None)
        box.open()
