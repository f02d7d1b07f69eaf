"""The sample's identifier and the reviewer's morphology comments, beside the count they go with.

Both belong to the scope the differential panel shows (the session or one folder) and are
kept in the session with who wrote them and when (``ReviewSession.set_note``); the report
and the LIS message print them.  A change is saved when the field is left (or Save is
pressed), never on each key.  Another station's change is shown when it arrives, unless the
reviewer is changing that field here (what they type is never overwritten).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFormLayout, QHBoxLayout, QLineEdit, QPlainTextEdit, QPushButton, QWidget

from ...core.store import COMMENTS, SAMPLE_ID, SessionError


class SampleNotesBox(QWidget):
    problem = Signal(str, str)  # title, message: the window's notifier tells the reviewer

    def __init__(self, review, parent=None):
        super().__init__(parent)
        self._review = review
        self._session = None  # the session whose notes are shown: edits go there, not to a newer one
        self._folder: str | None = None
        self._shown = {SAMPLE_ID: "", COMMENTS: ""}  # as last read or saved: tells the reviewer's edits
        self.sample_id = QLineEdit()
        self.sample_id.setPlaceholderText("Sample identifier (printed on the report, sent to the LIS)")
        self.sample_id.editingFinished.connect(lambda: self._save(SAMPLE_ID, self.sample_id.text().strip()))
        self.comments = QPlainTextEdit()
        self.comments.setPlaceholderText("Morphology comments (e.g. toxic granulation, smudge cells)")
        self.comments.setMaximumHeight(70)
        self.save_button = QPushButton("Save comments")
        self.save_button.clicked.connect(self.save_comments)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Sample", self.sample_id)
        row = QHBoxLayout()
        row.addWidget(self.comments, 1)
        row.addWidget(self.save_button)
        form.addRow("Comments", row)

    def show_scope(self, folder: str | None) -> None:
        """Show the notes of the session (``None``) or of one folder."""
        self.save_comments()  # what was typed for the scope shown until now
        session = self._review.session
        self._session, self._folder = session, folder
        notes = session.notes(folder) if session is not None else {SAMPLE_ID: "", COMMENTS: ""}
        self._shown = dict(notes)
        self.sample_id.setText(notes[SAMPLE_ID])
        self.comments.setPlainText(notes[COMMENTS])
        self.setEnabled(session is not None and not session.readonly)

    def show_others(self) -> None:
        """Read the notes again (another station changed the session); a field the reviewer
        has edited here and not saved yet keeps what they typed."""
        session = self._session
        if session is None or session.closed:
            return
        try:
            notes = session.notes(self._folder)
        except SessionError:
            return  # the server is gone: the window's banner says so
        fields = {
            SAMPLE_ID: (self.sample_id.text, self.sample_id.setText),
            COMMENTS: (self.comments.toPlainText, self.comments.setPlainText),
        }
        for field, (text, set_text) in fields.items():
            if text().strip() == self._shown[field] != notes[field]:
                set_text(notes[field])
                self._shown[field] = notes[field]

    def save_comments(self) -> None:
        self._save(COMMENTS, self.comments.toPlainText().strip())

    def _save(self, field: str, value: str) -> None:
        session = self._session
        if session is None or session.closed or session.readonly:
            return
        try:
            session.set_note(field, value, self._review.reviewer, self._folder)
            self._shown[field] = value
        except ValueError as exc:  # no reviewer name yet
            self.problem.emit("Not saved", str(exc))
        except SessionError as exc:
            self.problem.emit("Not saved", str(exc))
