"""``yawbcc export --fhir / --hl7`` on a session of real images: the bundle parses as FHIR
(fhir.resources), the message as HL7 v2 (hl7), and both carry the differential CSV's
figures; preliminary until signed off, final after."""

from __future__ import annotations

import json

import hl7
import pandas as pd
import pytest
from fhir.resources.R4B.bundle import Bundle

from tests.review_sessions import REVIEWER
from yawbcc_desktop.cli import EXIT_OK, EXIT_UNUSABLE, main
from yawbcc_desktop.core.lis import LOINC_CODES
from yawbcc_desktop.core.preferences import DEFAULT_REVIEW_THRESHOLD
from yawbcc_desktop.core.store import COMMENTS, SAMPLE_ID, ReviewSession


@pytest.fixture(autouse=True)
def _own_preferences(tmp_path, monkeypatch):
    monkeypatch.setenv("YAWBCC_CONFIG_DIR", str(tmp_path / "config"))


def _export(session, tmp_path, *extra):
    fhir, msg, csv = tmp_path / "out" / "bundle.json", tmp_path / "out" / "message.hl7", tmp_path / "out" / "diff.csv"
    args = ["export", str(session), "--fhir", str(fhir), "--hl7", str(msg), "--differential", str(csv), *extra]
    assert main(args) == EXIT_OK
    row = pd.read_csv(csv, encoding="utf-8-sig", keep_default_na=False, dtype=str).iloc[0]  # the session's count
    return json.loads(fhir.read_text()), hl7.parse(msg.read_bytes().decode("utf-8")), row


def _csv_value(row, group):
    return row[f"pct_{group}"] if f"pct_{group}" in row else row[f"{group.lower()}s_per_100_wbc"]


def test_fhir_and_hl7_carry_the_differential_preliminary_until_signed_off(reviewed_session, tmp_path):
    with ReviewSession.open(reviewed_session) as s:
        s.set_note(SAMPLE_ID, "S-2026|0042", REVIEWER)  # a delimiter HL7 must escape
        s.set_note(COMMENTS, "Toxic granulation.\nNo blasts seen.", REVIEWER)
    data, message, row = _export(reviewed_session, tmp_path)

    bundle = Bundle.model_validate(data)  # FHIR R4 (R4B models): raises on any invalid resource
    resources = {e.resource.__resource_type__: e.resource for e in bundle.entry}
    report = resources["DiagnosticReport"]
    assert report.status == "preliminary" and report.identifier[0].value == "S-2026|0042"
    assert report.conclusion.startswith("Toxic granulation.") and report.performer[0].display == REVIEWER
    observations = [e.resource for e in bundle.entry if e.resource.__resource_type__ == "Observation"]
    assert len(observations) == len(LOINC_CODES) == len(report.result)
    by_code = {o.code.coding[0].code: o for o in observations}
    for group, code in LOINC_CODES.items():
        o = by_code[code.code]
        assert o.status == "preliminary" and o.code.coding[0].system == "http://loinc.org"
        assert f"{float(o.valueQuantity.value):.2f}" == _csv_value(row, group)
        assert str(o.component[0].valueInteger) == row[f"n_{group}"]

    assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01" and str(message.segment("MSH")[12]) == "2.5"
    obr = message.segment("OBR")
    assert str(obr[25]) == "P" and str(obr[3]) == "S-2026\\F\\0042"
    obx = list(message.segments("OBX"))
    assert [str(s[3][0][0]) for s in obx] == [c.code for c in LOINC_CODES.values()]
    for segment, group in zip(obx, LOINC_CODES):
        assert str(segment[5]) == _csv_value(row, group) and str(segment[11]) == "P"
    counts = [str(s[3]) for s in message.segments("NTE")][1:]  # the first NTE: the comments
    assert counts == [f"{row[f'n_{g}']} cells counted" for g in LOINC_CODES]

    # Reviewed to the end and signed off: the same figures, now final.
    with ReviewSession.open(reviewed_session) as s:
        s.confirm(s.cell_ids(queue_threshold=DEFAULT_REVIEW_THRESHOLD), REVIEWER)
        s.sign_off("Dr Signer", DEFAULT_REVIEW_THRESHOLD)
    data, message, row = _export(reviewed_session, tmp_path)
    bundle = Bundle.model_validate(data)
    kinds = ("DiagnosticReport", "Observation")
    assert {e.resource.status for e in bundle.entry if e.resource.__resource_type__ in kinds} == {"final"}
    assert {e.resource.performer[0].display for e in bundle.entry if e.resource.__resource_type__ == "Observation"} == {
        "Dr Signer"
    }
    assert str(message.segment("OBR")[25]) == "F" and {str(s[11]) for s in message.segments("OBX")} == {"F"}
    assert {str(s[16]) for s in message.segments("OBX")} == {"^Dr Signer"}


def test_a_sample_without_white_cells_and_an_unknown_folder_are_refused_clearly(reviewed_session, tmp_path, capsys):
    out = tmp_path / "bundle.json"
    assert main(["export", str(reviewed_session), "--fhir", str(out), "--folder", str(tmp_path / "nowhere")]) == EXIT_UNUSABLE
    assert "no image of" in capsys.readouterr().err and not out.exists()


def test_a_full_disk_leaves_neither_the_message_nor_a_temporary_file(reviewed_session, tmp_path, monkeypatch, capsys):
    import errno
    import types

    from yawbcc_desktop.core import lis

    def half_then_full(obj, fh, **kwargs):
        fh.write(json.dumps(obj)[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lis, "json", types.SimpleNamespace(dump=half_then_full))
    out = tmp_path / "lis" / "bundle.json"
    out.parent.mkdir()
    out.write_text("the previous bundle")
    assert main(["export", str(reviewed_session), "--fhir", str(out)]) == EXIT_UNUSABLE
    assert f"{out}: could not write it (the disk is full); nothing was written" in capsys.readouterr().err
    assert [p.name for p in out.parent.iterdir()] == ["bundle.json"] and out.read_text() == "the previous bundle"
