"""The sample identifier and morphology comments a session keeps, with their audit trail, in
either store (a file, the lab's server), and in sessions of every older format."""

from __future__ import annotations

import sqlite3

import pytest

from tests.unit.test_store import _columns, _v1_session, image_result
from yawbcc_desktop.core.store import COMMENTS, SAMPLE_ID, SCHEMA_VERSION, ReviewSession
from yawbcc_desktop.core.store.postgres_store import PostgresSession


def _refused(session: ReviewSession, sqls: list[str]) -> None:
    """Each of ``sqls``, run on the store itself (not through the session), is refused by its audit guard."""
    if isinstance(session, PostgresSession):
        import psycopg

        with psycopg.connect(session.conninfo, autocommit=True) as raw:
            raw.execute(f"SET search_path TO {session.schema}")
            for sql in [*sqls, "TRUNCATE sample_note"]:
                with pytest.raises(psycopg.errors.RaiseException, match="audit trail"):
                    raw.execute(sql)
        return
    raw = sqlite3.connect(session.path)
    try:
        for sql in sqls:
            with pytest.raises(sqlite3.DatabaseError, match="audit trail"):
                raw.execute(sql)
    finally:
        raw.close()


def test_notes_are_kept_per_scope_with_who_and_when_and_survive_reopening(session, tmp_path):
    assert session.notes() == {SAMPLE_ID: "", COMMENTS: ""}
    assert session.set_note(SAMPLE_ID, "S-2026-0042", "Ann")
    assert not session.set_note(SAMPLE_ID, "S-2026-0042", "Bob")  # unchanged: no row
    assert session.set_note(COMMENTS, "Toxic granulation.", "Ann")
    assert session.set_note(COMMENTS, "Toxic granulation; Döhle bodies.", "Bob")
    assert session.set_note(SAMPLE_ID, "F-1", "Ann", folder=tmp_path / "patient")
    with pytest.raises(ValueError, match="reviewer"):
        session.set_note(COMMENTS, "x", " ")
    with pytest.raises(ValueError, match="unknown sample note"):
        session.set_note("diagnosis", "x", "Ann")
    with ReviewSession.open(session.location, readonly=True) as s:
        assert s.notes() == {SAMPLE_ID: "S-2026-0042", COMMENTS: "Toxic granulation; Döhle bodies."}
        assert s.notes(tmp_path / "patient") == {SAMPLE_ID: "F-1", COMMENTS: ""}
        history = s.note_history()
        assert [(n.field, n.reviewer) for n in history] == [(SAMPLE_ID, "Ann"), (COMMENTS, "Ann"), (COMMENTS, "Bob")]
        assert all(n.at for n in history)
    _refused(session, ["UPDATE sample_note SET value = 'forged'", "DELETE FROM sample_note"])


def test_another_station_hears_of_a_note(postgres_server):
    """A note is announced as a correction is: the other stations' windows read it again."""
    import threading
    import time

    url = postgres_server.url(f"notes{time.monotonic_ns()}")
    with ReviewSession.create(url) as ann, ReviewSession.open(url) as bob:
        heard = threading.Event()
        bob.watch(heard.set, lambda _up: None)
        time.sleep(0.3)  # the listener is connected
        ann.set_note(COMMENTS, "Smudge cells.", "Ann")
        assert heard.wait(2.0), "Bob's station did not hear Ann's note within 2 s"
        assert bob.notes()[COMMENTS] == "Smudge cells."


def test_an_older_file_reads_without_notes_and_gets_them_when_opened_for_review(tmp_path):
    path = _v1_session(tmp_path / "old.yawbcc")
    before = path.read_bytes()
    with ReviewSession.open(path, readonly=True) as s:
        assert s.notes() == {SAMPLE_ID: "", COMMENTS: ""}
    assert path.read_bytes() == before
    with ReviewSession.open(path) as s:
        s.set_note(COMMENTS, "Smudge cells.", "Ann")
        _refused(s, ["DELETE FROM sample_note"])
    with ReviewSession.open(path, readonly=True) as s:
        assert s.notes()[COMMENTS] == "Smudge cells."


# Format 2 added these columns; format 3 (issue 26) the sample notes; format 4 (issue 27) a
# version per cell and the station of each review action.  Written out here as those
# versions of YAWBCC wrote them, not with the code under test.
FORMAT_2 = [
    "ALTER TABLE image ADD COLUMN um_per_px REAL",
    "ALTER TABLE image ADD COLUMN scale_source TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE image ADD COLUMN unfamiliar_score REAL",
    "ALTER TABLE image ADD COLUMN unfamiliar INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE image ADD COLUMN unfamiliar_threshold REAL",
    "ALTER TABLE cell ADD COLUMN diameter_um REAL",
    "ALTER TABLE cell ADD COLUMN unfamiliar_score REAL",
    "ALTER TABLE cell ADD COLUMN flags TEXT NOT NULL DEFAULT ''",
]
FORMAT_3_NOTES = [
    "CREATE TABLE sample_note (id INTEGER PRIMARY KEY, folder TEXT NOT NULL, "
    "field TEXT NOT NULL CHECK (field IN ('sample_id', 'comments')), value TEXT NOT NULL, reviewer TEXT NOT NULL, "
    "at TEXT NOT NULL)",
    "CREATE TRIGGER sample_note_no_update BEFORE UPDATE ON sample_note "
    "BEGIN SELECT RAISE(ABORT, 'sample_note rows are an audit trail and cannot be changed'); END",
    "CREATE TRIGGER sample_note_no_delete BEFORE DELETE ON sample_note "
    "BEGIN SELECT RAISE(ABORT, 'sample_note rows are an audit trail and cannot be changed'); END",
    "INSERT INTO sample_note (folder, field, value, reviewer, at) VALUES ('', 'sample_id', 'S-9', 'Ann', 't2')",
]
STATIONS = [  # the review-stations branch numbered these 3 before issue 26's notes took the number
    "ALTER TABLE cell ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE review_action ADD COLUMN station TEXT NOT NULL DEFAULT ''",
]


@pytest.mark.parametrize(
    "version, changes",
    [(2, FORMAT_2), (3, FORMAT_2 + FORMAT_3_NOTES), (3, FORMAT_2 + STATIONS)],
    ids=["format 2", "format 3", "format 3 of the stations branch"],
)
def test_every_older_format_is_read_untouched_and_migrated_to_this_one(tmp_path, version, changes):
    path = _v1_session(tmp_path / "old.yawbcc")
    raw = sqlite3.connect(path, isolation_level=None)
    for sql in [*changes, f"PRAGMA user_version = {version}"]:
        raw.execute(sql)
    raw.close()
    had_notes = "sample_note" in "".join(changes)
    before = path.read_bytes()
    with ReviewSession.open(path, readonly=True) as s:
        assert s.notes()[SAMPLE_ID] == ("S-9" if had_notes else "")
        assert [(h.cell_id, h.label, h.station) for h in s.history()] == [(2, "MONOCYTE", "")]
        assert [c.version for c in s.cells()] == [0, 0, 0]
    assert path.read_bytes() == before
    with ReviewSession.open(path) as s:
        s.set_label([1], "IG", "Bob")
        s.set_note(COMMENTS, "Smudge cells.", "Bob")
        assert s.cell(1).version == 1 and s.history(1)[0].station == s.station
        assert s.notes() == {SAMPLE_ID: "S-9" if had_notes else "", COMMENTS: "Smudge cells."}
        _refused(s, ["UPDATE sample_note SET value = 'forged'"])
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()
    with ReviewSession.create(tmp_path / "new.yawbcc"):
        pass
    tables = ("image", "cell", "review_action", "sample_note")
    assert _columns(path, tables) == _columns(tmp_path / "new.yawbcc", tables)


def test_an_older_session_on_the_server_is_migrated_when_opened(postgres_server):
    """A server session of format 2 (no notes, no versions, no stations) opened for review."""
    import time

    import psycopg

    url = postgres_server.url(f"old{time.monotonic_ns()}")
    with ReviewSession.create(url) as s:
        ids = s.add_image(image_result("/lab/a/f.png", [("NEUTROPHIL", 0.99), ("LYMPHOCYTE", 0.55)]))
        s.set_label(ids[:1], "MONOCYTE", "Ann")
        conninfo, schema = s.conninfo, s.schema
    with psycopg.connect(conninfo, autocommit=True) as raw:
        raw.execute(f"SET search_path TO {schema}")
        for sql in [
            "DROP TABLE sample_note",
            "ALTER TABLE cell DROP COLUMN version",
            "ALTER TABLE review_action DROP COLUMN station",
            f"COMMENT ON SCHEMA {schema} IS 'yawbcc review session, format 2'",
        ]:
            raw.execute(sql)
    with ReviewSession.open(url) as s:
        assert [(h.label, h.station) for h in s.history()] == [("MONOCYTE", "")]
        assert s.notes() == {SAMPLE_ID: "", COMMENTS: ""}
        s.set_note(SAMPLE_ID, "S-10", "Bob")
        s.set_label(ids[1:], "IG", "Bob")
        assert s.cell(ids[1]).version == 1 and s.history(ids[1])[0].station == s.station
        _refused(s, ["UPDATE sample_note SET value = 'forged'", "DELETE FROM sample_note"])
        assert s._format() == SCHEMA_VERSION
