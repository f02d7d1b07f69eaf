"""The window's side of issue 26: the sample identifier and morphology comments beside the
count (kept in the session with who and when), File › Export report (PDF)… and Export to
LIS… on the scope the differential panel shows."""

from __future__ import annotations

import shutil
import subprocess

import hl7
import pytest
from PySide6.QtWidgets import QFileDialog

from tests.gui.conftest import started_window
from yawbcc_desktop.core.store import COMMENTS, SAMPLE_ID, ReviewSession

RUN_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def window(qapp, tiny_bundle, tmp_path_factory):
    with started_window(tmp_path_factory.mktemp("config"), tiny_bundle, (1600, 1000)) as win:
        win.review.prefs.reviewer = "tester"
        win.review.prefs.lab_name = "Haematology, City Hospital"
        yield win


def test_notes_are_kept_in_the_session_and_the_report_and_lis_message_carry_them(
    window, qtbot, cell_folder, tmp_path, monkeypatch
):
    w = window
    w.new_session()
    with qtbot.waitSignal(w.controller.run_finished, timeout=RUN_TIMEOUT_MS):
        assert w.open_paths([str(cell_folder)]) == 16
    notes = w.differential.notes
    notes.sample_id.setText("S-2026-0077")
    notes.sample_id.editingFinished.emit()
    notes.comments.setPlainText("Smudge cells present.")
    notes.save_button.click()
    session = w.review.session
    assert session.notes() == {SAMPLE_ID: "S-2026-0077", COMMENTS: "Smudge cells present."}
    assert {n.reviewer for n in session.note_history()} == {"tester"}
    notes.comments.setPlainText("Smudge cells present. Giant platelets.")  # typed, not saved: the report saves it
    w.differential.grab().save(str(tmp_path / "differential.png"))

    pdf, message = tmp_path / "report.pdf", tmp_path / "message.hl7"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(pdf), "PDF (*.pdf)"))
    w.export_report_action.trigger()
    qtbot.waitUntil(pdf.exists, timeout=20000)
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert "S-2026-0077" in text and "Giant platelets." in text and "Haematology, City Hospital" in text
        assert "PROVISIONAL" in text  # the random model leaves every cell to review
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(message), "HL7 v2.5 ORU^R01 message (*.hl7)"))
    w.export_lis_action.trigger()
    qtbot.waitUntil(message.exists, timeout=20000)
    parsed = hl7.parse(message.read_bytes().decode())
    assert str(parsed.segment("OBR")[3]) == "S-2026-0077" and str(parsed.segment("OBR")[25]) == "P"

    # File › Print… draws the same pages on a printer (here QtPrintSupport's PDF output).
    from PySide6.QtPrintSupport import QPrinter

    from yawbcc_desktop.core.sample_result import sample_result
    from yawbcc_desktop.gui.report_pdf import render

    printer = QPrinter(QPrinter.PrinterMode.HighResolution)
    printer.setOutputFormat(QPrinter.OutputFormat.PdfFormat)
    printer.setOutputFileName(str(tmp_path / "printed.pdf"))
    assert render(sample_result(session, 0.9, lab="Haematology, City Hospital"), printer) >= 1
    del printer
    assert (tmp_path / "printed.pdf").read_bytes()[:5] == b"%PDF-"

    # The notes come back with the session.
    path = session.path
    w.new_session()
    with ReviewSession.open(path, readonly=True) as again:
        assert again.notes()[SAMPLE_ID] == "S-2026-0077"


def test_annotation_data_sets_from_the_file_menu(window, qtbot, cell_folder, tmp_path, monkeypatch):
    """File › Export annotations (COCO)… and Export reviewed cells for training…: a new folder
    named after the session in the folder chosen, another name when it is taken."""
    import json

    w = window
    w.new_session()
    with qtbot.waitSignal(w.controller.run_finished, timeout=RUN_TIMEOUT_MS):
        assert w.open_paths([str(cell_folder)]) == 16
    assert w.review.set_label([0, 1], "LYMPHOCYTE") == 2
    assert w.review.set_label([2], "EOSINOPHIL") == 1
    name = w.review.session.name
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))

    assert w.datasets.export_coco() == tmp_path / f"{name}_coco"
    qtbot.waitUntil(lambda: (tmp_path / f"{name}_coco" / "annotations.json").exists(), timeout=20000)
    coco = json.loads((tmp_path / f"{name}_coco" / "annotations.json").read_text())
    assert len(coco["images"]) == 16 and len(coco["annotations"]) == 16  # every classified cell, with its final label
    reviewed = [a for a in coco["annotations"] if a["attributes"]["reviewed"]]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names[a["category_id"]] for a in reviewed) == ["EOSINOPHIL", "LYMPHOCYTE", "LYMPHOCYTE"]
    qtbot.waitUntil(lambda: "COCO data set of 16 cells" in w.statusBar().currentMessage(), timeout=5000)

    w.export_coco_action.trigger()  # the same name again: a second folder, the first untouched
    qtbot.waitUntil(lambda: (tmp_path / f"{name}_coco_2" / "annotations.json").exists(), timeout=20000)

    assert w.datasets.export_crops() == tmp_path / f"{name}_crops"
    qtbot.waitUntil(lambda: (tmp_path / f"{name}_crops" / "crops.csv").exists(), timeout=20000)
    folders = {p.name: len(list(p.glob("*.png"))) for p in (tmp_path / f"{name}_crops").iterdir() if p.is_dir()}
    assert folders == {"lymphocyte": 2, "eosinophil": 1}  # the reviewed cells only
