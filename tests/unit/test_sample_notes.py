"""The sample identifier and morphology comments a session keeps, with their audit trail."""

from __future__ import annotations

import sqlite3

import pytest

from tests.unit.test_store import _v1_session
from yawbcc_desktop.core.store import COMMENTS, SAMPLE_ID, ReviewSession


def test_notes_are_kept_per_scope_with_who_and_when_and_survive_reopening(tmp_path):
    path = tmp_path / "s.yawbcc"
    with ReviewSession.create(path) as s:
        assert s.notes() == {SAMPLE_ID: "", COMMENTS: ""}
        assert s.set_note(SAMPLE_ID, "S-2026-0042", "Ann")
        assert not s.set_note(SAMPLE_ID, "S-2026-0042", "Bob")  # unchanged: no row
        assert s.set_note(COMMENTS, "Toxic granulation.", "Ann")
        assert s.set_note(COMMENTS, "Toxic granulation; Döhle bodies.", "Bob")
        assert s.set_note(SAMPLE_ID, "F-1", "Ann", folder=tmp_path / "patient")
        with pytest.raises(ValueError, match="reviewer"):
            s.set_note(COMMENTS, "x", " ")
        with pytest.raises(ValueError, match="unknown sample note"):
            s.set_note("diagnosis", "x", "Ann")
    with ReviewSession.open(path, readonly=True) as s:
        assert s.notes() == {SAMPLE_ID: "S-2026-0042", COMMENTS: "Toxic granulation; Döhle bodies."}
        assert s.notes(tmp_path / "patient") == {SAMPLE_ID: "F-1", COMMENTS: ""}
        history = s.note_history()
        assert [(n.field, n.reviewer) for n in history] == [(SAMPLE_ID, "Ann"), (COMMENTS, "Ann"), (COMMENTS, "Bob")]
        assert all(n.at for n in history)
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="audit trail"):
        raw.execute("UPDATE sample_note SET value = 'forged'")
    raw.close()


def test_an_older_file_reads_without_notes_and_gets_them_when_opened_for_review(tmp_path):
    path = _v1_session(tmp_path / "old.yawbcc")
    before = path.read_bytes()
    with ReviewSession.open(path, readonly=True) as s:
        assert s.notes() == {SAMPLE_ID: "", COMMENTS: ""}
    assert path.read_bytes() == before
    with ReviewSession.open(path) as s:
        s.set_note(COMMENTS, "Smudge cells.", "Ann")
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="audit trail"):
        raw.execute("DELETE FROM sample_note")
    raw.close()
    with ReviewSession.open(path, readonly=True) as s:
        assert s.notes()[COMMENTS] == "Smudge cells."
