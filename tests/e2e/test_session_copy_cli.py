"""``yawbcc session copy`` between a session file and the lab's server, and ``--session URL``
wherever the command line takes a session: the exports (and the report) of the copies equal
the original's, sample notes included."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.conftest import missing_data
from tests.unit.test_store import image_result
from yawbcc_desktop.cli import EXIT_OK, EXIT_UNUSABLE, main
from yawbcc_desktop.core.classes import DISPLAY_NAMES, WBC_GROUPS
from yawbcc_desktop.core.preferences import Preferences, save_preferences
from yawbcc_desktop.core.store import COMMENTS, SAMPLE_ID, ReviewSession


def test_session_copy_file_to_server_and_back_exports_the_same(tmp_path, postgres_server, capsys):
    original = tmp_path / "bench.yawbcc"
    with ReviewSession.create(original) as s:
        ids: list[int] = []
        for k in range(3):
            ids += s.add_image(image_result(f"/lab/p{k % 2}/f{k}.png", [("NEUTROPHIL", 0.99), ("LYMPHOCYTE", 0.55)]))
        s.set_label(ids[1:3], "MONOCYTE", "Ann")
        s.confirm(ids[3:], "Bob")
        s.set_note(SAMPLE_ID, "S-2026-0042", "Ann")
        s.set_note(COMMENTS, "Smudge cells.", "Bob")
        s.set_note(COMMENTS, "Smudge cells; toxic granulation.", "Ann", folder="/lab/p1")
        notes = [s.note_history(), s.note_history("/lab/p1")]
    url = postgres_server.url(f"cli{os.getpid()}")
    assert main(["session", "copy", str(original), url]) == EXIT_OK
    assert f"3 images, 6 cells, 5 audit rows, 3 sample note changes -> {url}" in capsys.readouterr().err
    back = tmp_path / "back.yawbcc"
    assert main(["session", "copy", url, str(back)]) == EXIT_OK
    for where in (url, back):
        with ReviewSession.open(where, readonly=True) as copy:
            assert [copy.note_history(), copy.note_history("/lab/p1")] == notes  # who, when and what, in order

    exports = {}
    for name, where in [("file", str(original)), ("server", url), ("back", str(back))]:
        cells, diff = tmp_path / f"{name}_cells.csv", tmp_path / f"{name}_diff.csv"
        assert main(["export", "--session", where, "--cells", str(cells), "--differential", str(diff)]) == EXIT_OK
        hl7 = tmp_path / f"{name}.hl7"
        assert main(["export", where, "--hl7", str(hl7)]) == EXIT_OK  # the session as the first argument
        exports[name] = (cells.read_text(), diff.read_text(), _without_timestamps(hl7.read_text()))
    assert exports["file"] == exports["server"] == exports["back"]
    assert "S-2026-0042" in exports["server"][2] and "Smudge cells." in exports["server"][2]
    assert "MONOCYTE" in exports["server"][0] and "Bob" in exports["server"][0]

    capsys.readouterr()
    assert main(["session", "copy", str(original), url]) == EXIT_UNUSABLE  # never over a session
    assert "already exists" in capsys.readouterr().err
    assert main(["session", "copy", url.replace(f"cli{os.getpid()}", "absent"), str(tmp_path / "x.yawbcc")]) == EXIT_UNUSABLE
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.yawbcc").exists()
    with pytest.raises(SystemExit):  # a usage error: two sessions
        main(["export", str(original), "--session", url, "--cells", str(tmp_path / "two.csv")])
    assert "export needs one session" in capsys.readouterr().err


def _without_timestamps(hl7: str) -> str:
    """An HL7 message without what is made anew each time: its control id (MSH-10) and the
    times (the message's, the result's issue time: the second it was written)."""
    lines = hl7.replace("\r", "\n").splitlines()
    fields = lines[0].split("|")
    fields[9] = ""
    return re.sub(r"\b\d{14}[+-]\d{4}\b", "TIME", "\n".join(["|".join(fields), *lines[1:]]))


def test_the_report_of_a_session_on_the_server_is_the_file_s(reviewed_session, postgres_server, tmp_path, monkeypatch):
    from tests.e2e.test_report import _pages, _row

    if shutil.which("pdftotext") is None:
        missing_data("pdftotext not found: install poppler-utils (.ci/run does)")
    monkeypatch.setenv("YAWBCC_CONFIG_DIR", str(tmp_path / "config"))
    save_preferences(Preferences(reviewer="Ann", lab_name="Haematology, City Hospital"))
    with ReviewSession.open(reviewed_session) as s:
        s.set_note(COMMENTS, "Toxic granulation in most neutrophils.", "Ann")
    url = postgres_server.url(f"report{os.getpid()}")
    assert main(["session", "copy", str(reviewed_session), url]) == EXIT_OK
    reports = {}
    for name, args in [("file", [str(reviewed_session)]), ("server", [url]), ("option", ["--session", url])]:
        pdf = tmp_path / f"{name}.pdf"
        assert main(["report", *args, "--out", str(pdf), "--sample", "S-7"]) == EXIT_OK
        pages = _pages(pdf)
        text = "\n".join(pages)
        # What the report says of the sample: each class's row, the comments, the pages.
        rows = [_row(text, DISPLAY_NAMES[g]) for g in WBC_GROUPS]
        reports[name] = (len(pages), rows, "Toxic granulation in most neutrophils." in text, "S-7" in pages[0])
    assert reports["file"] == reports["server"] == reports["option"]
    assert reports["server"][2:] == (True, True) and reports["server"][0] >= 2
