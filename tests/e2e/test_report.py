"""``yawbcc report`` on a session of real images: the PDF (read back with poppler's
pdftotext) holds each class's count and value as the differential CSV writes them, says
PROVISIONAL on every page before sign-off and nowhere after, and is written atomically."""

from __future__ import annotations

import errno
import shutil
import subprocess
import unicodedata

import pandas as pd
import pytest

from tests.conftest import missing_data
from tests.review_sessions import REVIEWER
from yawbcc_desktop.cli import EXIT_OK, EXIT_UNUSABLE, main
from yawbcc_desktop.core.classes import DISPLAY_NAMES, WBC_GROUPS
from yawbcc_desktop.core.differential import PER_100_WBC
from yawbcc_desktop.core.preferences import DEFAULT_REVIEW_THRESHOLD, Preferences, save_preferences
from yawbcc_desktop.core.store import COMMENTS, ReviewSession


@pytest.fixture(autouse=True)
def _own_preferences(tmp_path, monkeypatch):
    if shutil.which("pdftotext") is None:
        missing_data("pdftotext not found: install poppler-utils (.ci/run does)")
    monkeypatch.setenv("YAWBCC_CONFIG_DIR", str(tmp_path / "config"))
    save_preferences(Preferences(reviewer=REVIEWER, lab_name="Haematology, City Hospital"))


def _page_text(pdf, page: int) -> str:
    args = ["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(pdf), "-"]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    # NFKC: the PDF's fonts set "ff" as a ligature, which pdftotext gives back as one character.
    return unicodedata.normalize("NFKC", text)


def _pages(pdf) -> list[str]:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    n = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    return [_page_text(pdf, i) for i in range(1, n + 1)]


def _report(session, tmp_path, *extra):
    pdf, csv = tmp_path / "out" / "report.pdf", tmp_path / "out" / "diff.csv"
    assert main(["report", str(session), "--out", str(pdf), *extra]) == EXIT_OK
    assert main(["export", str(session), "--differential", str(csv)]) == EXIT_OK
    return _pages(pdf), pd.read_csv(csv, encoding="utf-8-sig", keep_default_na=False, dtype=str).iloc[0]


def _row(text: str, name: str) -> list[str]:
    [line] = [line for line in text.splitlines() if line.strip().startswith(name + " ")]
    return line.split()


def test_the_report_holds_the_differential_and_is_provisional_until_signed_off(reviewed_session, tmp_path):
    with ReviewSession.open(reviewed_session) as s:
        s.set_note(COMMENTS, "Toxic granulation in most neutrophils.", REVIEWER)
    pages, row = _report(reviewed_session, tmp_path, "--sample", "S-2026-0042")
    first = pages[0]
    assert "Haematology, City Hospital" in first and "S-2026-0042" in first
    assert "Toxic granulation in most neutrophils." in "".join(pages)
    for group in (*WBC_GROUPS, *PER_100_WBC):
        value = row[f"pct_{group}"] if group in WBC_GROUPS else row[f"{group.lower()}s_per_100_wbc"]
        words = _row(first, DISPLAY_NAMES[group])
        assert row[f"n_{group}"] in words and value in words, (group, words)
    assert _row(first, "Still to review")[-1] == row["unreviewed"] != "0"
    assert all("PROVISIONAL" in page for page in pages) and len(pages) >= 2
    assert [f"Page {i} of {len(pages)}" in page for i, page in enumerate(pages, 1)] == [True] * len(pages)

    with ReviewSession.open(reviewed_session) as s:
        s.confirm(s.cell_ids(queue_threshold=DEFAULT_REVIEW_THRESHOLD), REVIEWER)
        s.sign_off("Dr Signer", DEFAULT_REVIEW_THRESHOLD)
    pages, row = _report(reviewed_session, tmp_path, "--sample", "S-2026-0042")
    assert not any("PROVISIONAL" in page for page in pages)
    assert "Dr Signer" in " ".join(_row(pages[0], "Signed off")) and row["signed_off_by"] == "Dr Signer"


def test_a_failed_report_leaves_no_file(reviewed_session, tmp_path, monkeypatch, capsys):
    from yawbcc_desktop.core import atomic

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    out = tmp_path / "reports" / "report.pdf"
    assert main(["report", str(reviewed_session), "--out", str(out)]) == EXIT_UNUSABLE
    assert f"{out}: could not write it (the disk is full)" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []
