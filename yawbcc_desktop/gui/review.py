"""The review as the window sees it: the open session file, corrections, undo/redo, sign-off.

Widget-free, like ``analysis.py``.  Every correction goes to the session, which commits it
and updates the cells the views show in the same call (``ReviewSession.cache``), then tells
this controller which cells changed; the views are only told, so what the reviewer sees is
always what is on disk.  Errors a user can cause (a locked, damaged or newer session file, a full
disk) come out as ``problem`` with a message that says which file and what to do.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ..core.differential import Differential, session_differential
from ..core.preferences import Preferences, load_preferences, save_preferences, sessions_dir
from ..core.store import (
    SESSION_SUFFIX,
    CellsChanged,
    Correction,
    ReviewSession,
    SampleSignedOff,
    SessionError,
    SessionExists,
    SignOff,
    is_server_url,
)
from .analysis import AnalysisController
from .background import wait_for_background


class ReviewController(QObject):
    session_changed = Signal()  # another session file is open (or none)
    labels_changed = Signal(list)  # row ids whose final label or review state changed
    history_changed = Signal()  # undo/redo availability
    problem = Signal(str, str, str)  # title, message, details
    server_link = Signal(bool)  # the review server went (False) or is back (True)
    others_changed = Signal()  # another station's change was read (labels, counts, sign-off)
    _news = Signal()  # from the session's listener thread, queued to the GUI thread
    _link = Signal(bool)

    def __init__(self, analysis: AnalysisController, remember: bool = True, folder: Path | None = None, parent=None):
        """``remember=False`` (screenshots, benchmarks): default preferences, nothing saved,
        new sessions in a temporary folder.  ``folder``: preferences and sessions there
        instead of the user's folders (tests, portable installs)."""
        super().__init__(parent)
        self.analysis = analysis
        self.store = analysis.store
        self.remember = remember
        self._folder = folder
        self._prefs_path = folder / "preferences.json" if folder is not None else None
        self.prefs = load_preferences(self._prefs_path) if remember else Preferences()
        self.store.review_threshold = self.prefs.review_threshold
        analysis.settings = self.prefs.analysis
        self._scratch: tempfile.TemporaryDirectory | None = None
        # Asked when a correction meets another station's change (``CellsChanged``) or a
        # signed-off sample (``SampleSignedOff``): True applies it anyway.  Unattended: never.
        self.resolve: Callable[[SessionError], bool] = lambda _exc: False
        self._news.connect(self.catch_up)
        self._link.connect(self._server_link)

    # ------------------------------------------------------------------ sessions
    @property
    def session(self) -> ReviewSession | None:
        """The open session; None when none is open (or after the window closed it)."""
        session = self.analysis.session
        return session if session is not None and not session.closed else None

    def sessions_folder(self) -> Path:
        if not self.remember:
            if self._scratch is None:
                self._scratch = tempfile.TemporaryDirectory(prefix="yawbcc-session-")
            return Path(self._scratch.name)
        return self._folder / "sessions" if self._folder is not None else sessions_dir()

    def new_session_path(self) -> Path:
        folder = self.sessions_folder()
        stamp = datetime.now().strftime("%Y-%m-%d_%H%M%S")
        path = folder / f"session_{stamp}{SESSION_SUFFIX}"
        n = 2
        while path.exists():
            path = folder / f"session_{stamp}_{n}{SESSION_SUFFIX}"
            n += 1
        return path

    def new_session(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Start an empty session (in the sessions folder unless ``path``); False on a problem."""
        try:
            target = Path(path) if path is not None else self.new_session_path()
            target.parent.mkdir(parents=True, exist_ok=True)
            session = ReviewSession.create(target)
        except (SessionError, OSError) as exc:
            self.problem.emit("Cannot create a session", _message(exc), "")
            return False
        self._switch(session, new=True)
        return True

    def open_session(self, path: str | os.PathLike[str]) -> bool:
        """Open a session (a file, or a ``postgresql://`` URL on the lab's server) with everything
        committed in it; False (and a message) if it cannot be.  Its cells reach the views a
        moment later (``AnalysisController.session_loaded``)."""
        try:
            session = ReviewSession.open(path)
        except SessionError as exc:
            self.problem.emit("Cannot open the session", str(exc), "")
            return False
        self._switch(session)
        return True

    def ensure_session(self) -> bool:
        """A session to save results in: the open one, or a new one made now."""
        return self.session is not None or self.new_session()

    def save_session_as(self, path: str | os.PathLike[str]) -> bool:
        """Copy the session, complete, to ``path`` and go on in the copy (the original stays)."""
        session = self.session
        target = Path(path).absolute()
        if session is None:
            return self.new_session(target)
        try:
            copy = session.copy_to(target)
        except SessionExists:
            # Never overwrite a session file, which may be another reviewer's work.
            self.problem.emit("Session not saved", f"{target} already exists: choose a new file name.", "")
            return False
        except SessionError as exc:
            self.problem.emit("Session not saved", str(exc), "")
            return False
        self._switch(copy)
        return True

    def offer_last_session(self, ask: Callable[[str, str], bool]) -> str:
        """At start: reopen the last session if ``ask(path, summary)`` says so; it is never
        opened unasked, nor offered over an open session.  Returns why the last session
        could not be offered ('' when it was, or when there is none)."""
        last = self.prefs.last_session
        if not last or self.session is not None or not (is_server_url(last) or os.path.isfile(last)):
            return ""
        try:
            with ReviewSession.open(last, readonly=True) as peek:
                s = peek.summary(self.prefs.review_threshold)
        except SessionError as exc:
            return f"Last session not reopened: {exc}"
        summary = f"{s.images:,} images, {s.cells:,} cells, {s.corrected:,} corrected, {s.to_review:,} still to review."
        if ask(last, summary):
            self.open_session(last)
        return ""

    def reanalyse_all(self) -> Path | None:
        """Analyse every open image again.  Results already in the session stay there: the
        images go into a new session, and the old one keeps its results and corrections.
        Returns the old session's path when that happened."""
        session = self.session
        if session is None or not session.images():
            self.analysis.reanalyse_all()
            return None
        paths, old = self.store.paths(), Path(session.location)
        if not self.new_session():
            return None
        self.analysis.open_paths(paths)
        return old

    def _switch(self, session: ReviewSession | None, new: bool = False) -> None:
        old = self.session
        self.analysis.use_session(session, new)  # the worker lets go of the old one first
        if session is not None:
            session.cache.listen(self._relabelled)
            session.watch(self._news.emit, self._link.emit)  # other stations' corrections, if any
        if old is not None and old is not session:
            wait_for_background(old)  # an export or its load may still be reading it
            old.close()
        if session is not None and self.remember:
            self.prefs.last_session = session.location
            self._save_preferences()
        self.session_changed.emit()
        self.history_changed.emit()

    def close_session(self) -> None:
        """Close the open session (complete on disk) and every image; no session after."""
        self._switch(None)

    def close(self) -> None:
        """Close the session file (after the worker has stopped)."""
        session = self.session
        if session is not None:
            wait_for_background(session)  # an export or its load may still be reading it
            session.close()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    # --------------------------------------------------------------- corrections
    @property
    def reviewer(self) -> str:
        return self.prefs.reviewer.strip()

    def set_label(self, rows: Iterable[int], label: str) -> int:
        """Give ``label`` to cells (row ids); committed at once. Returns cells changed."""
        return self._apply(lambda session, ids, reopen: session.set_label(ids, label, self.reviewer, reopen=reopen), rows)

    def confirm(self, rows: Iterable[int]) -> int:
        """Mark cells reviewed as they are; returns cells changed."""
        return self._apply(lambda session, ids, reopen: session.confirm(ids, self.reviewer, reopen=reopen), rows)

    def undo(self) -> int:
        return self._apply(lambda session, _ids, reopen: session.undo(self.reviewer, reopen), None)

    def redo(self) -> int:
        return self._apply(lambda session, _ids, reopen: session.redo(self.reviewer, reopen), None)

    @property
    def can_undo(self) -> bool:
        return self.session is not None and self.session.can_undo

    @property
    def can_redo(self) -> bool:
        return self.session is not None and self.session.can_redo

    def _apply(self, action: Callable[[ReviewSession, list[int], bool], Correction | None], rows: Iterable[int] | None) -> int:
        """``action(session, ids, reopen)`` on the cells of ``rows`` (None: no cells, as undo and
        redo); ``reopen`` once the reviewer chose to change a signed-off sample."""
        session = self.session
        if session is None:
            return 0
        ids: list[int] = []
        if rows is not None:
            ids = [i for i in (self.store.cell(r).id for r in rows) if i >= 0]
            if not ids:
                return 0
        reopen = False
        while True:
            try:
                correction = action(session, ids, reopen)  # the session relabels its cells and calls _relabelled
                break
            except CellsChanged as exc:
                self.catch_up()  # the window shows the other station's labels while the reviewer chooses
                if not self.resolve(exc):
                    return 0
            except SampleSignedOff as exc:
                if reopen or not self.resolve(exc):
                    return 0
                reopen = True
            except (SessionError, ValueError) as exc:
                self.problem.emit("Correction not saved", f"{_message(exc)}\n\nNothing was changed.", "")
                return 0
        if correction is None:
            return 0
        self.history_changed.emit()
        return len(correction.changes)

    def catch_up(self) -> None:
        """Read what other stations committed since last time; the views follow (``_relabelled``)."""
        session = self.session
        if session is None:
            return
        try:
            session.catch_up()
            self.analysis.add_session_images()  # fields another station analysed meanwhile
        except SessionError:
            return  # the server is gone: the banner says so, and this runs again once it is back
        self.others_changed.emit()

    def _server_link(self, up: bool) -> None:
        if self.session is not None:
            self.server_link.emit(up)

    def _relabelled(self, cell_ids: list[int]) -> None:
        """The session committed new labels for these cells (session ids): repaint them."""
        rows = self.store.rows_of(cell_ids)
        self.analysis.cells.labels_changed(rows)
        self.labels_changed.emit(rows)

    # ------------------------------------------------------- counts and sign-off
    def differential(self, folder: str | None = None, image_id: int | None = None) -> Differential | None:
        """The count of the session, one folder, or one image, as the export writes it."""
        if self.session is None:
            return None
        p = self.prefs
        return session_differential(self.session, p.review_threshold, p.reference_ranges, p.min_wbc, image_id, folder)

    def count_query(self, folder: str | None = None) -> Callable[[], tuple[Differential, SignOff | None]] | None:
        """The differential of the open session (or one folder) and its last sign-off, as work
        for a pool thread (``gui.background``): on a big session the count takes a tenth of a
        second.  Bound to the session and preferences of now; None without a session."""
        session, p = self.session, self.prefs
        if session is None:
            return None

        def count() -> tuple[Differential, SignOff | None]:
            diff = session_differential(session, p.review_threshold, p.reference_ranges, p.min_wbc, None, folder)
            offs = session.sign_offs(folder)
            return diff, offs[-1] if offs else None

        return count

    def sign_off(self, folder: str | None = None) -> SignOff:
        """Record the reviewer's sign-off; raises ``SignOffRefused`` while cells wait for review."""
        if self.session is None:
            raise SessionError("", "no review session is open")
        return self.session.sign_off(self.reviewer, self.prefs.review_threshold, folder)

    # --------------------------------------------------------------- preferences
    def set_preferences(self, prefs: Preferences) -> None:
        """New reviewer, threshold or ranges: saved, and every view re-reads the review states."""
        self.prefs = prefs
        self.store.review_threshold = prefs.review_threshold
        self.analysis.settings = prefs.analysis
        self._save_preferences()
        self.analysis.cells.labels_changed(range(self.store.cell_count))
        self.labels_changed.emit(list(range(self.store.cell_count)))

    def _save_preferences(self) -> None:
        if not self.remember:
            return
        try:
            save_preferences(self.prefs, self._prefs_path)
        except OSError as exc:
            self.problem.emit("Preferences not saved", f"The preferences could not be written: {exc}", "")


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename or ''}: {exc.strerror}".lstrip(": ")
    return str(exc)
