"""Retraining input: reviewers' folders and corrections CSVs merged into the training side."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
from PIL import Image

from training.fit_command import merge_extra
from yawbcc_desktop.core.dataset import file_sha1


def _base_split(paths, group):
    return pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "image": [p.name for p in paths],
            "group": group,
            "label": group,
            "sha1": [file_sha1(p) for p in paths],
            "split": "test",
        }
    )


def test_extra_folder_and_corrections_are_added_once(pbc, tmp_path):
    base_files = sorted((pbc / "monocyte").glob("*.jpg"))[:3]
    split = _base_split(base_files, "MONOCYTE")
    extra = tmp_path / "extra"
    (extra / "monocyte").mkdir(parents=True)
    shutil.copy(base_files[0], extra / "monocyte" / "MO_copy.jpg")  # already known: must not leak into train
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(extra / "monocyte" / "MO_1.jpg")
    new_cell = tmp_path / "reviewed.png"
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(new_cell)
    corrections = tmp_path / "cells.csv"
    pd.DataFrame(
        {
            "path": [str(new_cell), str(tmp_path / "gone.png"), str(new_cell)],
            "final_label": ["LYMPHOCYTE", "LYMPHOCYTE", "LYMPHOCYTE"],
        }
    ).to_csv(corrections, index=False, encoding="utf-8-sig")
    messages = []
    merged = merge_extra(split, [str(extra)], [str(corrections)], messages.append)
    added = merged[merged["split"] == "train"]
    assert sorted(added["image"]) == ["MO_1.jpg", "reviewed.png"]
    assert added.set_index("image").loc["reviewed.png", "group"] == "LYMPHOCYTE"
    assert (merged["split"] == "test").sum() == 3
    assert any("gone.png" in m for m in messages)


def test_fit_takes_exactly_the_reviewed_cells_the_window_counts(tmp_path):
    """One rule (core.retraining.left_out) for merge_extra and the window's count."""
    from yawbcc_desktop.core.retraining import FILE_MISSING, NOT_A_CLASS, SMEAR_CELL, left_out

    rng = np.random.default_rng(1)
    cells = []
    for name in ("good.png", "artefact.png", "field.png"):
        cells.append(tmp_path / name)
        Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(cells[-1])
    rows = [  # mode, final label, path, reviewed
        ("cell", "NEUTROPHIL", cells[0], "yes"),
        ("cell", "ARTEFACT", cells[1], "yes"),
        ("smear", "NEUTROPHIL", cells[2], "yes"),
        ("cell", "NEUTROPHIL", tmp_path / "gone.png", "yes"),
        ("cell", "NEUTROPHIL", cells[2], "no"),  # not reviewed: a session export lists it too
    ]
    why = [left_out(mode, label, str(path)) for mode, label, path, _ in rows[:4]]
    assert why == ["", NOT_A_CLASS, SMEAR_CELL, FILE_MISSING]
    corrections = tmp_path / "cells.csv"
    pd.DataFrame(rows, columns=["mode", "final_label", "path", "reviewed"]).to_csv(corrections, index=False)
    split = _base_split([], "MONOCYTE")
    messages = []
    merged = merge_extra(split, [], [str(corrections)], messages.append)
    assert list(merged["image"]) == ["good.png"]
    assert any("1 smear-field cells skipped" in m for m in messages) and any("gone.png" in m for m in messages)


def test_fit_progress_events_are_written_only_for_the_window(monkeypatch, capsys):
    import json

    from yawbcc_desktop.core.retraining import PROGRESS_ENV, progress_event

    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    progress_event("testing")
    assert capsys.readouterr().out == ""  # the command line's output stays the log
    monkeypatch.setenv(PROGRESS_ENV, "1")
    progress_event("batch", phase="fine", epoch=2, epochs=7, batch=10, batches=40)
    assert json.loads(capsys.readouterr().out) == {
        "event": "batch", "phase": "fine", "epoch": 2, "epochs": 7, "batch": 10, "batches": 40
    }  # fmt: skip
