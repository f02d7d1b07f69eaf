"""An unhandled exception in the window: logged with its traceback, then one dialog that says
what happened and where the log is.  The window keeps running: the session was committed
image by image and correction by correction, so nothing saved is lost."""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from ..core.logs import log_path
from .messages import say

log = logging.getLogger(__name__)


class CrashReporter(QObject):
    """Installs ``sys.excepthook`` (exceptions in slots and event handlers) and
    ``threading.excepthook``; the dialog is shown on the GUI thread whichever thread failed."""

    crashed = Signal(str, str)  # what happened, the traceback

    def __init__(self, window: QWidget, attended: bool = True):
        super().__init__(window)
        self._window = window
        self.attended = attended
        self.dialog: QMessageBox | None = None
        self.reported: list[str] = []  # what happened, one line each
        self._previous = (sys.excepthook, threading.excepthook)
        self.crashed.connect(self._show, Qt.ConnectionType.QueuedConnection)

    def install(self) -> CrashReporter:
        self._previous = (sys.excepthook, threading.excepthook)
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook
        return self

    def uninstall(self) -> None:
        sys.excepthook, threading.excepthook = self._previous

    def _excepthook(self, kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            self._previous[0](kind, value, tb)
            return
        self.report(kind, value, tb)

    def _thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            where = f" in thread {args.thread.name if args.thread else '?'}"
            self.report(args.exc_type, args.exc_value, args.exc_traceback, where)

    def report(self, kind: type[BaseException], value: BaseException, tb: TracebackType | None, where: str = "") -> None:
        """Log the exception and ask the GUI thread to show the dialog."""
        details = "".join(traceback.format_exception(kind, value, tb))
        what = f"{kind.__name__}{where}: {value}"
        log.error("Unhandled exception%s\n%s", where, details)
        self.reported.append(what)
        self.crashed.emit(what, details)

    def _show(self, what: str, details: str) -> None:
        if not self.attended:
            say(f"yawbcc-desktop: unexpected error: {what} (details in {log_path()})")
            return
        if self.dialog is not None and self.dialog.isVisible():
            return  # one dialog at a time; the log keeps every one
        box = QMessageBox(QMessageBox.Icon.Critical, "Something went wrong", f"An unexpected error: {what}", parent=self._window)
        box.setInformativeText(
            "Your session is safe: every analysed image and every correction was saved as it was made, "
            "and you can go on working.\n\n"
            f"The details are in the log: {log_path()}\n"
            "Please send that file with a few words on what you were doing (Help › Open log folder)."
        )
        box.setDetailedText(details)
        folder = box.addButton("Open log folder", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Close)
        help_ = getattr(self._window, "help", None)
        if help_ is not None:
            folder.clicked.connect(help_.open_log_folder)
        self.dialog = box
        box.open()
