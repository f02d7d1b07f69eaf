"""``yawbcc classify --session`` and ``yawbcc export`` on real PBC cells, and the export
fed back to retraining (``training.fit_command.merge_extra``).

The tiny test bundle has random weights: only the bookkeeping is checked.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from training.fit_command import merge_extra
from yawbcc_desktop.cli import EXIT_OK, EXIT_UNUSABLE, main
from yawbcc_desktop.core.classes import ARTEFACT
from yawbcc_desktop.core.dataset import file_sha1
from yawbcc_desktop.core.review_export import CELL_COLUMNS, DIFFERENTIAL_COLUMNS
from yawbcc_desktop.core.store import ReviewSession


@pytest.fixture(scope="module")
def cells_folder(tmp_path_factory, pbc):
    root = tmp_path_factory.mktemp("patient")
    for group in ("lymphocyte", "neutrophil", "monocyte"):
        for src in sorted((pbc / group).glob("[A-Z]*.jpg"))[:2]:  # not the hidden .DS_ files
            shutil.copy(src, root / src.name)
    return root


@pytest.fixture(autouse=True)
def _own_preferences(tmp_path, monkeypatch):
    monkeypatch.setenv("YAWBCC_CONFIG_DIR", str(tmp_path / "config"))


def test_classify_into_a_session_extend_it_and_export(cells_folder, tiny_bundle, tmp_path, capsys):
    files = sorted(cells_folder.glob("*.jpg"))
    session_file = tmp_path / "review.yawbcc"
    first = ["classify", *map(str, files[:4]), "--model", str(tiny_bundle), "--mode", "cell", "--session", str(session_file)]
    assert main(first) == EXIT_OK
    assert "-> " + str(session_file) in capsys.readouterr().err
    with ReviewSession.open(session_file) as s:
        assert len(s.images()) == 4 and s.summary(0.9).cells == 4
        cells = s.cells()
        assert {c.model for c in cells} == {"tiny-test"} and all(c.probs is not None for c in cells)
        s.set_label([cells[0].id], "EOSINOPHIL", "Ann")
        s.set_label([cells[1].id], ARTEFACT, "Ann")
        s.confirm([cells[2].id], "Ann")

    # Extending: the corrected images are kept, only new files are analysed; --out still works.
    out = tmp_path / "results.csv"
    second = ["classify", str(cells_folder), "--model", str(tiny_bundle), "--mode", "cell"]
    assert main([*second, "--session", str(session_file), "--out", str(out)]) == EXIT_OK
    assert "4 files already in" in capsys.readouterr().err
    assert len(pd.read_csv(out, encoding="utf-8-sig")) == 2
    with ReviewSession.open(session_file) as s:
        assert len(s.images()) == 6
        assert s.cell(cells[0].id).final_label == "EOSINOPHIL" and len(s.history()) == 3

    # Export works while the session is open for review elsewhere (it reads, never locks).
    holder = ReviewSession.open(session_file)
    try:
        cells_csv, diff_csv = tmp_path / "out" / "cells.csv", tmp_path / "out" / "diff.csv"
        code = main(["export", str(session_file), "--cells", str(cells_csv), "--differential", str(diff_csv)])
        assert code == EXIT_OK, capsys.readouterr().err
    finally:
        holder.close()
    rows = pd.read_csv(cells_csv, encoding="utf-8-sig", keep_default_na=False)
    assert list(rows.columns) == CELL_COLUMNS and len(rows) == 6
    assert set(rows["path"]) == {str(f) for f in files}
    by_path = rows.set_index("path")
    assert by_path.loc[str(files[0]), "final_label"] == "EOSINOPHIL" and by_path.loc[str(files[0]), "corrected"] == "yes"
    assert by_path.loc[str(files[1]), "final_label"] == ARTEFACT
    assert by_path.loc[str(files[2]), "reviewed"] == "yes" and by_path.loc[str(files[2]), "corrected"] == "no"
    assert (rows["reviewed"] == "yes").sum() == 3 and set(rows["mode"]) == {"cell"}
    diff = pd.read_csv(diff_csv, encoding="utf-8-sig", keep_default_na=False)
    assert list(diff.columns) == DIFFERENTIAL_COLUMNS
    assert list(diff["scope"]) == ["session", "folder"]  # all six files in one folder, no smear field
    assert diff.iloc[0]["wbc"] + diff.iloc[0]["n_ERYTHROBLAST"] + diff.iloc[0]["n_PLATELET"] == 5
    assert diff.iloc[0]["artefacts"] == 1 and "FEW_CELLS" in diff.iloc[0]["flag_codes"]

    # The cells CSV is retraining input as it is: reviewed single-cell rows only.
    smear_row = rows.iloc[[0]].assign(mode="smear", path=str(files[5]))  # a field's path must not be learnt as a cell
    with_smear = tmp_path / "with_smear.csv"
    pd.concat([rows, smear_row]).to_csv(with_smear, index=False, encoding="utf-8-sig")
    split = pd.DataFrame(columns=["path", "image", "group", "label", "sha1", "split"])
    messages: list[str] = []
    merged = merge_extra(split, [], [str(with_smear)], messages.append)
    learnt = dict(zip(merged["path"], merged["group"]))
    assert learnt == {str(files[0]): "EOSINOPHIL", str(files[2]): rows.set_index("path").loc[str(files[2]), "final_label"]}
    assert (merged["split"] == "train").all() and merged["sha1"].iloc[0] == file_sha1(files[0])
    assert any("1 smear-field cells skipped" in m for m in messages)


def test_unusable_sessions_give_one_clear_line(cells_folder, tiny_bundle, tmp_path, capsys):
    files = [str(f) for f in sorted(cells_folder.glob("*.jpg"))[:1]]
    bad = tmp_path / "bad.yawbcc"
    bad.write_bytes(b"definitely not a session")
    assert main(["export", str(bad), "--cells", str(tmp_path / "c.csv")]) == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert "cannot be opened as a review session" in err and "Traceback" not in err
    assert bad.read_bytes() == b"definitely not a session" and not (tmp_path / "c.csv").exists()
    classify = ["classify", *files, "--model", str(tiny_bundle), "--mode", "cell", "--session"]
    assert main([*classify, str(bad)]) == EXIT_UNUSABLE
    assert bad.read_bytes() == b"definitely not a session"
    assert main(["export", str(tmp_path / "missing.yawbcc"), "--differential", str(tmp_path / "d.csv")]) == EXIT_UNUSABLE
    assert "does not exist" in capsys.readouterr().err

    locked = tmp_path / "locked.yawbcc"
    with ReviewSession.create(locked):
        assert main([*classify, str(locked)]) == EXIT_UNUSABLE
        assert "is open in another YAWBCC" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["classify", *files, "--mode", "cell"])  # neither --out nor --session
    with pytest.raises(SystemExit):
        main(["export", str(locked)])  # nothing to export to


def test_export_says_which_cells_wait_for_review_and_why(cells_folder, unfamiliar_bundle, tmp_path, capsys):
    """An unfamiliar session: every cell waits (whatever the threshold) until a reviewer has seen it."""
    files = [str(f) for f in sorted(cells_folder.glob("*.jpg"))[:3]]
    session_file = tmp_path / "unfamiliar.yawbcc"
    classify = ["classify", *files, "--model", str(unfamiliar_bundle), "--mode", "cell", "--quiet"]
    assert main([*classify, "--session", str(session_file)]) == EXIT_OK
    with ReviewSession.open(session_file) as s:
        first = s.cells()[0]
        s.confirm([first.id], "Ann")
    cells_csv = tmp_path / "cells.csv"
    assert main(["export", str(session_file), "--cells", str(cells_csv), "--threshold", "0"]) == EXIT_OK
    rows = pd.read_csv(cells_csv, encoding="utf-8-sig", keep_default_na=False).set_index("path")
    assert list(rows.columns) == CELL_COLUMNS[1:]
    assert (rows["unfamiliar"] == "yes").all() and (rows["um_per_px"].astype(float) > 0).all()
    assert (rows["um_per_px_source"] == "red cells").all()  # as the session stored it
    reviewed = rows.loc[first.path]
    assert (reviewed["reviewed"], reviewed["to_review"], reviewed["review_reason"]) == ("yes", "no", "")
    waiting = rows.drop(first.path)
    # Threshold 0: no cell is below it, the unfamiliar image alone keeps them in the queue.
    assert (waiting["to_review"] == "yes").all() and (waiting["review_reason"].str.startswith("unfamiliar image")).all()
    # At the preferences' threshold (0.90) the random model's 1/8 confidence is a reason too.
    assert main(["export", str(session_file), "--cells", str(cells_csv)]) == EXIT_OK
    rows = pd.read_csv(cells_csv, encoding="utf-8-sig", keep_default_na=False).set_index("path").drop(first.path)
    assert (rows["review_reason"].str.startswith("low confidence; unfamiliar image")).all()
