"""The dialogs of a review session: open images into it, open, save as, export, sign-off, the
reviewer's name, the questions asked about a session (reopen the last one, re-analyse with
another model), and the File menu's others (recent files, screenshot).

Each asks, then hands over to the review controller (``review.py``), which decides and
keeps the session; what went wrong is told through the window's notifier, what went well
on its status bar.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu, QMessageBox

from ..core.imageio import IMAGE_SUFFIXES
from ..core.store import (
    SESSION_SUFFIX,
    CellsChanged,
    ReviewSession,
    SampleSignedOff,
    SessionError,
    SignOffRefused,
    is_server_url,
    server_sessions,
    session_url,
)
from .background import in_background
from .icons import icon
from .messages import Notifier
from .palette import display_name
from .review import ReviewController
from .settings import AppSettings

if TYPE_CHECKING:  # the window builds these dialogs
    from .main_window import MainWindow

SESSION_FILTER = f"Review sessions (*{SESSION_SUFFIX});;All files (*)"
IMAGE_FILTER = "Images ({})".format(" ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)))


class SessionDialogs:
    def __init__(self, window: MainWindow, review: ReviewController, settings: AppSettings, notifier: Notifier):
        self.window, self.review, self.settings, self.notifier = window, review, settings, notifier
        review.resolve = self.resolve

    @property
    def attended(self) -> bool:
        return self.notifier.attended

    def _status(self, text: str, ms: int) -> None:
        self.window.statusBar().showMessage(text, ms)

    def _start_in(self, name: str) -> str:
        return str(Path(str(self.settings.value("last_folder", str(Path.home())))) / name)

    # ------------------------------------------------------------------ files
    def open_images(self) -> None:
        start = str(self.settings.value("last_folder", str(Path.home())))
        files, _ = QFileDialog.getOpenFileNames(self.window, "Open images", start, f"{IMAGE_FILTER};;All files (*)")
        if files:
            self.settings.set_value("last_folder", os.path.dirname(files[0]))
            self.window.open_paths(files)

    def open_folder(self) -> None:
        start = str(self.settings.value("last_folder", str(Path.home())))
        folder = QFileDialog.getExistingDirectory(self.window, "Open a folder of images", start)
        if folder:
            self.settings.set_value("last_folder", folder)
            self.window.open_paths([folder])

    def fill_recent_menu(self, menu: QMenu) -> None:
        menu.clear()
        recent = self.settings.recent_files()
        for path in recent:
            action = menu.addAction(icon("open-folder" if os.path.isdir(path) else "open-images"), os.path.basename(path) or path)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.setEnabled(os.path.exists(path))
            action.triggered.connect(lambda _checked, p=path: self.window.open_paths([p]))
        if recent:
            menu.addSeparator()
            menu.addAction("Clear list", self.settings.clear_recent)
        else:
            menu.addAction("No recent files").setEnabled(False)

    def open_session(self) -> None:
        """A session file; or, with a review server in the preferences, one of its sessions
        (or any ``postgresql://`` URL typed in)."""
        server = self.review.prefs.review_server
        if server:
            a_file = "A session file on this computer…"
            try:
                names = server_sessions(server)
            except SessionError as exc:
                self.notifier.error("Review server not reached", str(exc))
                names = []
            choice, ok = QInputDialog.getItem(
                self.window, "Open a review session", f"Session on {server}, or a postgresql:// URL:", [*names, a_file], 0, True
            )
            if not ok or not choice.strip():
                return
            if choice != a_file:
                choice = choice.strip()
                self.review.open_session(choice if is_server_url(choice) else session_url(server, choice))
                return
        start = str(self.review.sessions_folder())
        path, _ = QFileDialog.getOpenFileName(self.window, "Open a review session", start, SESSION_FILTER)
        if path:
            self.review.open_session(path)

    def save_session_as(self) -> None:
        session = self.review.session
        if session is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self.window,
            "Save the session as",
            self._start_in(f"{session.name}{SESSION_SUFFIX}"),
            SESSION_FILTER,
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            if not path.endswith(SESSION_SUFFIX):
                path += SESSION_SUFFIX
            if self.review.save_session_as(path):
                self._status(f"Session saved as {path}; corrections now go there", 10000)

    def _export(self, title: str, suffix: str, write: Callable[[ReviewSession, str], int]) -> None:
        session = self.review.session  # the one open now, whatever is opened while it writes
        if session is None:
            return
        start = self._start_in(f"{session.name}_{suffix}.csv")
        path, _ = QFileDialog.getSaveFileName(self.window, title, start, "CSV (*.csv)")
        if not path:
            return

        def done(n: int) -> None:
            self._status(f"Exported {n:,} rows to {path}", 10000)

        def failed(exc: Exception) -> None:
            if not isinstance(exc, OSError | SessionError):
                raise exc
            self.notifier.error("Export failed", f"{path} could not be written: {exc}")

        # A big session takes seconds to write: off the GUI thread, told when done.
        self._status(f"Exporting to {path}…", 0)
        in_background(self.window, lambda: write(session, path), done, failed, reading=session)

    def export_cells(self) -> None:
        from ..core.review_export import export_cells

        # The CSV's to_review column says what the window's queue says: the reviewer's threshold.
        threshold = self.review.prefs.review_threshold
        self._export("Export cells", "cells", lambda session, path: export_cells(session, path, threshold))

    def export_differential(self) -> None:
        from ..core.review_export import export_differential

        p = self.review.prefs
        self._export(
            "Export differential",
            "differential",
            lambda session, path: len(export_differential(session, path, p.review_threshold, p.reference_ranges, p.min_wbc)),
        )

    # ----------------------------------------------------------------- review
    def reviewer_known(self) -> bool:
        """Corrections carry a name: ask for it once if the preferences have none."""
        if self.review.reviewer:
            return True
        if not self.attended:
            return False
        name, ok = QInputDialog.getText(self.window, "Reviewer", "Your name or initials, recorded with each correction:")
        if ok and name.strip():
            prefs = self.review.prefs
            prefs.reviewer = name.strip()
            self.review.set_preferences(prefs)
            return True
        return False

    def sign_off(self, folder: str | None = None) -> bool:
        """Sign off the count of the session (or one folder) under the reviewer's name."""
        if self.review.session is None or not self.reviewer_known():
            return False
        if self.attended:
            diff = self.review.differential(folder=folder)
            if diff is None:
                return False
            scope = f"folder {folder}" if folder else "the whole session"
            answer = QMessageBox.question(
                self.window,
                "Sign off",
                f"Sign off the differential of {scope} ({diff.wbc:,} white cells) as {self.review.reviewer}?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            done = self.review.sign_off(folder)
        except (SignOffRefused, SessionError) as exc:
            self.notifier.error("Not signed off", str(exc))
            return False
        self._status(f"Signed off by {done.reviewer}", 10000)
        return True

    def resolve(self, exc: SessionError) -> bool:
        """Another station changed the cells meanwhile, or signed their sample off: show who did
        what and let the reviewer choose; True applies the correction anyway."""
        if not self.attended:
            self.notifier.error("Correction not saved", str(exc))
            return False
        box = QMessageBox(QMessageBox.Icon.Warning, "Changed at another station", "", parent=self.window)
        if isinstance(exc, CellsChanged):
            shown = "<br>".join(
                f"• cell {c.cell_id}: {display_name(c.label) if c.label else 'not reviewed'}, by {c.reviewer}"
                f"{f' at {c.station}' if c.station else ''} ({c.at[:16].replace('T', ' ')} UTC)"
                for c in exc.changes[:3]
            ) + ("<br>…" if len(exc.changes) > 3 else "")
            box.setText(f"{len(exc.changes)} of these cells were changed at another station since you saw them:<br>{shown}")
            box.setInformativeText("The window now shows their labels. Apply yours over them, or keep theirs?")
            box.setDetailedText("\n".join(str(c) for c in exc.changes))
            apply = box.addButton("Apply mine", QMessageBox.ButtonRole.AcceptRole)
            box.addButton("Keep theirs", QMessageBox.ButtonRole.RejectRole)
        elif isinstance(exc, SampleSignedOff):
            box.setWindowTitle("Signed off")
            box.setText(str(exc))
            apply = box.addButton("Reopen and change", QMessageBox.ButtonRole.AcceptRole)
            box.addButton(QMessageBox.StandardButton.Cancel)
        else:
            return False
        box.exec()
        return box.clickedButton() is apply

    # -------------------------------------------------------------- questions
    def offer_last_session(self) -> None:
        """At start: reopen the last session if the reviewer wants it (it is never opened unasked)."""
        problem = self.review.offer_last_session(self.ask_reopen)
        if problem:
            self._status(problem, 15000)

    def ask_reopen(self, path: str, summary: str) -> bool:
        box = QMessageBox(QMessageBox.Icon.Question, "Reopen the last session?", "", parent=self.window)
        box.setText(f"Reopen your last session, {os.path.basename(path)}?")
        box.setInformativeText(summary)
        box.setDetailedText(path)
        reopen = box.addButton("Reopen", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("New session", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        return box.clickedButton() is reopen

    def ask_reanalyse(self, images: int, model: str) -> bool | None:
        """Another model chosen with analysed images open: True to re-analyse them (into a new
        session), False to keep their results, None to cancel the choice."""
        n = images
        box = QMessageBox(QMessageBox.Icon.Question, "Re-analyse with the new model?", "", parent=self.window)
        box.setText(f"Re-analyse the {n:,} open image{'s' if n != 1 else ''} with {model}?")
        box.setInformativeText(
            "Keeping the results leaves the cells classified by the current model; new images use the new one."
        )
        again = box.addButton("Re-analyse", QMessageBox.ButtonRole.AcceptRole)
        keep = box.addButton("Keep results", QMessageBox.ButtonRole.RejectRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() not in (again, keep):
            return None
        return box.clickedButton() is again

    # ----------------------------------------------------------------- others
    def save_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Save screenshot", "yawbcc-screenshot.png", "PNG image (*.png)")
        if path:
            if self.window.grab().save(path, "PNG"):
                self._status(f"Screenshot saved to {path}", 8000)
            else:
                self.notifier.error(
                    "Screenshot not saved", f"{path} could not be written: check the folder exists and is writable."
                )
