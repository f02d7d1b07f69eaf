"""The differential count and its flags, per image, folder and session, and the CSV exports."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from tests.unit.test_store import image_result
from yawbcc_desktop.core import review_export
from yawbcc_desktop.core.classes import ARTEFACT, GROUPS, REFERENCE_RANGES, WBC_GROUPS, ReferenceRange
from yawbcc_desktop.core.differential import (
    ABOVE_RANGE,
    BELOW_RANGE,
    ERYTHROBLASTS_PRESENT,
    FEW_CELLS,
    FOLDER,
    IG_PRESENT,
    IMAGE,
    SESSION,
    all_differentials,
    count,
    session_differential,
)
from yawbcc_desktop.core.pipeline import ImageResult
from yawbcc_desktop.core.review_export import CELL_COLUMNS, DIFFERENTIAL_COLUMNS, export_cells, export_differential
from yawbcc_desktop.core.store import ReviewSession

NORMAL = {"NEUTROPHIL": 60, "LYMPHOCYTE": 30, "MONOCYTE": 6, "EOSINOPHIL": 3, "BASOPHIL": 1}


def test_percentages_of_white_cells_and_per_100_wbc():
    d = count({**NORMAL, "PLATELET": 25, "ERYTHROBLAST": 2, ARTEFACT: 7, "": 4})
    assert d.wbc == 100 and d.artefacts == 7 and d.unclassified == 4
    assert d.percent == {"NEUTROPHIL": 60.0, "LYMPHOCYTE": 30.0, "MONOCYTE": 6.0, "EOSINOPHIL": 3.0, "BASOPHIL": 1.0, "IG": 0.0}
    assert d.per_100_wbc == {"ERYTHROBLAST": 2.0, "PLATELET": 25.0}
    assert d.flag_codes() == [ERYTHROBLASTS_PRESENT]  # everything else within the adult ranges
    assert d.counts["PLATELET"] == 25 and set(d.counts) == set(GROUPS)
    # Artefacts and platelets never change the white-cell percentages.
    assert count({**NORMAL, ARTEFACT: 500}).percent == count(NORMAL).percent


def test_left_shift_and_ranges_flags():
    d = count({"NEUTROPHIL": 170, "LYMPHOCYTE": 20, "MONOCYTE": 4, "IG": 6})
    assert {(f.code, f.group) for f in d.flags} == {
        (IG_PRESENT, "IG"),
        (ABOVE_RANGE, "NEUTROPHIL"),  # 85 %
        (BELOW_RANGE, "LYMPHOCYTE"),  # 10 %
        (BELOW_RANGE, "EOSINOPHIL"),  # 0 % < 1 %
        (ABOVE_RANGE, "IG"),  # 3 % > 0.5 %
    }
    messages = " | ".join(f.message for f in d.flags)
    assert "left shift" in messages and "neutrophil 85.0 % above the reference range 40-80 %" in messages


def test_range_bounds_are_inclusive_and_editable():
    d = count({"NEUTROPHIL": 80, "LYMPHOCYTE": 20, "EOSINOPHIL": 0, "MONOCYTE": 0})
    assert (ABOVE_RANGE, "NEUTROPHIL") not in {(f.code, f.group) for f in d.flags}
    assert (BELOW_RANGE, "LYMPHOCYTE") not in {(f.code, f.group) for f in d.flags}
    lab = {**REFERENCE_RANGES, "NEUTROPHIL": ReferenceRange("NEUTROPHIL", 50.0, 70.0)}
    assert (ABOVE_RANGE, "NEUTROPHIL") in {(f.code, f.group) for f in count({"NEUTROPHIL": 80, "LYMPHOCYTE": 20}, lab).flags}


def test_few_or_no_white_cells():
    d = count({"NEUTROPHIL": 30, "LYMPHOCYTE": 10}, min_wbc=100)
    assert FEW_CELLS in d.flag_codes() and "only 40 white cells" in d.flags[0].message
    assert FEW_CELLS not in count({"NEUTROPHIL": 30, "LYMPHOCYTE": 10}, min_wbc=40).flag_codes()
    empty = count({"PLATELET": 3, "ERYTHROBLAST": 1, ARTEFACT: 2})
    assert empty.wbc == 0 and empty.percent == {} and empty.per_100_wbc == {}
    assert empty.flag_codes() == [FEW_CELLS, ERYTHROBLASTS_PRESENT]  # no range flags without a denominator


@pytest.fixture
def reviewed_session(tmp_path):
    """Two patients' folders: p1 a smear field (cells to review), p2 single-cell crops."""
    s = ReviewSession.create(tmp_path / "s.yawbcc")
    field = [("NEUTROPHIL", 0.99)] * 6 + [("LYMPHOCYTE", 0.95)] * 3 + [("IG", 0.6), ("PLATELET", 0.99), ("MONOCYTE", 0.5)]
    ids = s.add_image(image_result("/lab/p1/field.png", field))
    for k, group in enumerate(["LYMPHOCYTE", "LYMPHOCYTE", "EOSINOPHIL", "ERYTHROBLAST"]):
        s.add_image(image_result(f"/lab/p2/cell{k}.jpg", [(group, 0.97)], mode="cell"))
    s.add_image(ImageResult("/lab/p2/broken.jpg", error="truncated file"))
    s.set_label([ids[-1]], ARTEFACT, "Ann")  # the 0.5 "monocyte" was debris
    yield s, ids
    s.close()


def test_per_image_folder_and_session_counts(reviewed_session):
    s, ids = reviewed_session
    whole = session_differential(s, 0.9)
    assert (whole.scope, whole.name, whole.wbc, whole.artefacts, whole.unreviewed) == (SESSION, "", 13, 1, 1)
    assert whole.provisional and whole.counts["LYMPHOCYTE"] == 5
    p1 = session_differential(s, 0.9, folder="/lab/p1")
    assert (p1.scope, p1.wbc, p1.counts["IG"], p1.per_100_wbc["PLATELET"]) == (FOLDER, 10, 1, 10.0)
    assert IG_PRESENT in p1.flag_codes() and ERYTHROBLASTS_PRESENT not in p1.flag_codes()
    p2 = session_differential(s, 0.9, folder="/lab/p2")
    assert p2.wbc == 3 and p2.counts["ERYTHROBLAST"] == 1 and not p2.provisional
    field = session_differential(s, 0.9, image_id=s.image("/lab/p1/field.png").id)
    assert (field.scope, field.name, field.wbc) == (IMAGE, "/lab/p1/field.png", 10)
    # A reviewer's correction changes the count at once; the queue empties.
    s.set_label([ids[9]], "NEUTROPHIL", "Ann")
    after = session_differential(s, 0.9, folder="/lab/p1")
    assert after.counts["IG"] == 0 and after.counts["NEUTROPHIL"] == 7 and not after.provisional
    # Session, each folder, then smear fields only (a single-cell crop is not a differential).
    assert [(d.scope, d.name) for d in all_differentials(s, 0.9)] == [
        (SESSION, ""),
        (FOLDER, "/lab/p1"),
        (FOLDER, "/lab/p2"),
        (IMAGE, "/lab/p1/field.png"),
    ]


def test_differential_csv_with_flags_and_sign_off(reviewed_session, tmp_path):
    s, ids = reviewed_session
    s.confirm([ids[9]], "Ann")
    s.sign_off("Ann", 0.9, folder="/lab/p1")
    out = tmp_path / "export" / "diff.csv"
    export_differential(s, out, 0.9, min_wbc=10)
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM: spreadsheets read it as such
    rows = pd.read_csv(out, encoding="utf-8-sig", keep_default_na=False)
    assert list(rows.columns) == DIFFERENTIAL_COLUMNS
    assert list(rows["scope"]) == ["session", "folder", "folder", "image"]
    p1 = rows.iloc[1]
    assert (p1["name"], p1["cells"], p1["wbc"], p1["n_IG"], p1["artefacts"]) == ("/lab/p1", 12, 10, 1, 1)
    assert p1["pct_NEUTROPHIL"] == pytest.approx(60.0) and p1["platelets_per_100_wbc"] == pytest.approx(10.0)
    assert "IG_PRESENT:IG" in p1["flag_codes"] and "left shift" in p1["flags"]
    assert p1["signed_off_by"] == "Ann" and p1["signed_off_at"]
    whole = rows.iloc[0]
    assert whole["signed_off_by"] == "" and (whole["ref_low_NEUTROPHIL"], whole["ref_high_NEUTROPHIL"]) == (40, 80)
    p2 = rows.iloc[2]
    assert "FEW_CELLS" in p2["flag_codes"] and "ERYTHROBLASTS_PRESENT" in p2["flag_codes"]
    assert p2["erythroblasts_per_100_wbc"] == pytest.approx(100 / 3, abs=0.01)
    assert {f"pct_{g}" for g in WBC_GROUPS} <= set(rows.columns)


def test_cells_csv_has_every_column_and_is_written_atomically(reviewed_session, tmp_path, monkeypatch):
    s, ids = reviewed_session
    s.set_label([ids[0]], "MONOCYTE", "Zoë")
    out = tmp_path / "cells.csv"
    assert export_cells(s, out) == 16
    rows = pd.read_csv(out, encoding="utf-8-sig", keep_default_na=False)
    assert list(rows.columns) == CELL_COLUMNS
    first = rows.iloc[0]
    assert (first["path"], first["cell_id"], first["x"], first["width"], first["mode"]) == (
        "/lab/p1/field.png",
        0,
        0,
        20,
        "smear",
    )
    assert (first["predicted"], first["final_label"], first["corrected"], first["reviewed"]) == (
        "NEUTROPHIL",
        "MONOCYTE",
        "yes",
        "yes",
    )
    assert first["reviewer"] == "Zoë" and first["reviewed_at"].endswith("+00:00")
    assert first["confidence"] == pytest.approx(0.99) and first["prob_NEUTROPHIL"] == pytest.approx(0.99)
    assert rows[[f"prob_{g}" for g in GROUPS]].sum(axis=1).round(4).eq(1.0).all()
    assert rows.iloc[11]["final_label"] == ARTEFACT
    untouched = rows.iloc[1]
    assert (untouched["final_label"], untouched["reviewed"], untouched["corrected"], untouched["reviewer"]) == (
        "NEUTROPHIL", "no", "no", "",
    )  # fmt: skip
    assert set(rows.loc[rows["mode"] == "cell", "final_label"]) == {"LYMPHOCYTE", "EOSINOPHIL", "ERYTHROBLAST"}

    # A failure half-way leaves the previous export whole, and no temporary file behind.
    before = out.read_bytes()
    real = csv.DictWriter.writerow
    calls = []

    def failing(self, row):
        calls.append(row)
        if len(calls) > 3:
            raise OSError(28, "No space left on device")
        return real(self, row)

    monkeypatch.setattr(csv.DictWriter, "writerow", failing)
    with pytest.raises(OSError, match="No space"):
        review_export.export_cells(s, out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cells.csv",
        "s.yawbcc",
        "s.yawbcc-shm",
        "s.yawbcc-wal",
        "s.yawbcc.lock",
    ]
