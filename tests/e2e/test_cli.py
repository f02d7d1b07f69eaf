"""The headless ``yawbcc`` command on real files and on every kind of bad input.

Classification here uses the tests' own tiny bundle (random weights): it checks the
plumbing (rows, columns, probabilities, exit codes), not the accuracy, which the trained
bundles' tests and benchmarks measure.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from yawbcc_desktop.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_UNUSABLE, main
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.export import CLASSIFY_COLUMNS, SEGMENT_COLUMNS
from yawbcc_desktop.core.store import ReviewSession


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory, pbc):
    """Real cells mixed with every kind of bad file the issue lists."""
    root = tmp_path_factory.mktemp("messy")
    good = sorted((pbc / "lymphocyte").glob("*.jpg"))[:3] + sorted((pbc / "platelet").glob("*.jpg"))[:2]
    for src in good:
        shutil.copy(src, root / src.name)
    shutil.copy(pbc / "neutrophil" / ".DS_169665.jpg", root / "DS_169665.jpg")
    (root / "zero.jpg").write_bytes(b"")
    data = good[0].read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 4])
    (root / "text.png").write_text("not a picture")
    arr16 = (np.asarray(Image.open(good[1]).convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(arr16).save(root / "deep16.tif")
    Image.open(good[2]).convert("L").save(root / "grey.png")
    Image.open(good[2]).convert("RGBA").save(root / "alpha.png")
    Image.new("RGB", (1, 1), (200, 100, 150)).save(root / "one_pixel.png")

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 200_000, 200_000, 8, 2, 0, 0, 0)
    (root / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    shutil.copy(good[0], root / "lymphocyte_été_血.jpg")
    (root / "folder.jpg").mkdir()
    shutil.copy(good[1], root / "folder.jpg" / "inside.jpg")
    return root


BAD = {"DS_169665.jpg", "zero.jpg", "truncated.jpg", "text.png", "bomb.png", "one_pixel.png"}


def test_segment_reports_bad_files_and_keeps_the_rest(messy_folder, tmp_path, capsys):
    out = tmp_path / "cells.csv"
    code = main(["segment", str(messy_folder), "--out", str(out), "--mode", "cell"])
    err = capsys.readouterr().err
    assert code == EXIT_SOME_FAILED
    for name in BAD:
        lines = [line for line in err.splitlines() if name in line]
        assert len(lines) == 1, (name, err)
    rows = pd.read_csv(out, encoding="utf-8-sig")
    assert list(rows.columns) == SEGMENT_COLUMNS
    names = {p.rsplit("/", 1)[-1] for p in rows["path"]}
    assert {"deep16.tif", "grey.png", "alpha.png", "lymphocyte_été_血.jpg", "inside.jpg"} <= names
    assert not names & BAD
    assert "files read" in err and "files failed" in err
    assert (rows["width"] > 10).all() and set(rows["kind"]) <= {"WBC", "PLATELET"}


def test_classify_with_test_bundle(messy_folder, tmp_path, tiny_bundle, capsys):
    out = tmp_path / "results.csv"
    code = main(["classify", str(messy_folder), "--model", str(tiny_bundle), "--out", str(out), "--mode", "auto"])
    assert code == EXIT_SOME_FAILED
    rows = pd.read_csv(out, encoding="utf-8-sig")
    assert list(rows.columns) == CLASSIFY_COLUMNS
    probs = rows[[f"prob_{g}" for g in GROUPS]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (rows["predicted"] == [GROUPS[i] for i in probs.argmax(axis=1)]).all()
    assert np.allclose(rows["confidence"], probs.max(axis=1), atol=1e-6)
    assert (rows["model"] == "tiny-test").all()
    assert len(rows) >= 8


def test_all_good_files_exit_zero(pbc, tmp_path):
    files = [str(p) for p in sorted((pbc / "basophil").glob("*.jpg"))[:4]]
    assert main(["segment", *files, "--out", str(tmp_path / "ok.csv"), "--quiet"]) == EXIT_OK
    assert len(pd.read_csv(tmp_path / "ok.csv", encoding="utf-8-sig")) == 4


def test_missing_model_is_one_clear_message(pbc, tmp_path, capsys):
    code = main(["classify", str(pbc / "basophil"), "--model", "no-such-model", "--out", str(tmp_path / "x.csv")])
    assert code == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert "no-such-model" in err and "not found" in err


def test_broken_bundle_is_reported(tmp_path, pbc, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    code = main(["classify", str(pbc / "basophil"), "--model", str(broken), "--out", str(tmp_path / "x.csv")])
    assert code == EXIT_UNUSABLE
    assert "model.json" in capsys.readouterr().err


def test_no_input_files(tmp_path, capsys):
    assert main(["segment", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == EXIT_UNUSABLE


def test_models_lists_a_bundle(tiny_bundle, monkeypatch, capsys):
    monkeypatch.setenv("YAWBCC_MODELS", str(tiny_bundle.parent))
    assert main(["models"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "tiny-test" in out and "efficientnet-lite0" in out and "64x64" in out


def test_models_says_where_an_adapted_bundle_comes_from(tiny_bundle, tmp_path, monkeypatch, capsys):
    """The same words the model chooser shows (core.card_text): base model, lab, date, cells."""
    import json

    adapted = tmp_path / "tiny-test-Lab-A"
    shutil.copytree(tiny_bundle, adapted)
    card = json.loads((adapted / "model.json").read_text())
    card.update(
        name="tiny-test-Lab-A", adapted_from="tiny-test", adaptation={"lab": "Lab A", "date": "2026-12-01T10:00:00", "cells": 45}
    )
    (adapted / "model.json").write_text(json.dumps(card))
    monkeypatch.setenv("YAWBCC_MODELS", str(tmp_path))
    assert main(["models"]) == EXIT_OK
    assert "adapted:     from tiny-test for Lab A on 2026-12-01, 45 cells" in capsys.readouterr().out


def test_partial_rows_survive_an_interruption(pbc, tmp_path, monkeypatch):
    """Rows of images analysed before a crash stay on disk in <out>.partial."""
    import yawbcc_desktop.core.pipeline as pipeline

    files = [str(p) for p in sorted((pbc / "monocyte").glob("*.jpg"))[:5]]
    real = pipeline.segment_image
    calls = {"n": 0}

    def crash_on_fourth(path, mode="auto", card=None, settings=pipeline.DEFAULT_ANALYSIS):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(path, mode, card, settings)

    monkeypatch.setattr(pipeline, "segment_image", crash_on_fourth)
    out = tmp_path / "cells.csv"
    assert main(["segment", *files, "--out", str(out), "--quiet"]) == 130
    assert not out.exists()
    kept = pd.read_csv(tmp_path / "cells.csv.partial", encoding="utf-8-sig")
    assert len(kept) == 3


def test_classify_says_which_images_the_model_does_not_know(pbc, unfamiliar_bundle, familiar_bundle, tmp_path, capsys):
    """Same model, same cell scores: a tiny threshold makes every image unfamiliar and every cell
    wait for review; a threshold no image reaches leaves only the confidence and size reasons."""
    images = [str(sorted((pbc / g).glob("[A-Z]*.jpg"))[0]) for g in ("neutrophil", "platelet", "lymphocyte")]
    runs = {}
    for name, bundle, extra in (("unfamiliar", unfamiliar_bundle, []), ("familiar", familiar_bundle, ["--threshold", "0"])):
        out, session = tmp_path / f"{name}.csv", tmp_path / f"{name}.yawbcc"
        command = ["classify", *images, "--model", str(bundle), "--mode", "cell", "--quiet"]
        assert main([*command, "--out", str(out), "--session", str(session), *extra]) == EXIT_OK
        rows = pd.read_csv(out, encoding="utf-8-sig", keep_default_na=False)
        assert list(rows.columns) == CLASSIFY_COLUMNS and len(rows) == 3
        with ReviewSession.open(session, readonly=True) as s:
            runs[name] = (rows, s.images(), capsys.readouterr().err)

    rows, images_u, err = runs["unfamiliar"]
    assert (rows["unfamiliar"] == "yes").all() and (rows["to_review"] == "yes").all()
    assert all(r.split("; ")[:2] == ["low confidence", "unfamiliar image"] for r in rows["review_reason"])
    assert "3 of 3 images look unfamiliar to model tiny-unfamiliar" in err
    scale = rows["um_per_px"].astype(float)
    assert ((scale > 0.02) & (scale < 1.0)).all()  # measured on each image (PBC: about 0.1)
    assert (rows["um_per_px_source"] == "red cells").all()  # PBC crops show red cells around the white one
    assert all(im.unfamiliar and im.unfamiliar_score > im.unfamiliar_threshold == 1.0 for im in images_u)

    rows, images_f, err = runs["familiar"]
    assert (rows["unfamiliar"] == "no").all() and "unfamiliar" not in err
    assert not any("unfamiliar" in r or "low confidence" in r for r in rows["review_reason"])  # --threshold 0
    assert list(rows["to_review"]) == ["yes" if r else "no" for r in rows["review_reason"]]
    assert list(rows["um_per_px"]) == list(runs["unfamiliar"][0]["um_per_px"])
    assert all(0 <= im.unfamiliar_score < im.unfamiliar_threshold for im in images_f)


def test_classify_at_the_labs_pixel_size(pbc, familiar_bundle, tmp_path, capsys):
    """``--um-per-px``: every image taken at the lab's pixel size, said in the CSV and the
    session; an impossible value is one clear message."""
    images = [str(sorted((pbc / g).glob("[A-Z]*.jpg"))[0]) for g in ("neutrophil", "lymphocyte")]
    out, session = tmp_path / "cells.csv", tmp_path / "lab.yawbcc"
    command = ["classify", *images, "--model", str(familiar_bundle), "--mode", "cell", "--quiet", "--out", str(out)]
    assert main([*command, "--session", str(session), "--um-per-px", "0.0965"]) == EXIT_OK
    rows = pd.read_csv(out, encoding="utf-8-sig", keep_default_na=False)
    assert list(rows["um_per_px"]) == [0.0965, 0.0965] and list(rows["um_per_px_source"]) == ["set by the lab"] * 2
    with ReviewSession.open(session, readonly=True) as s:
        assert [(im.um_per_px, im.scale_source) for im in s.images()] == [(0.0965, "set by the lab")] * 2
    with pytest.raises(SystemExit):
        main([*command, "--um-per-px", "7.5"])
    assert "a pixel size of 7.5 µm is outside" in capsys.readouterr().err


def test_quiet_run_prints_only_its_own_lines(pbc, tiny_bundle, tmp_path):
    """``--quiet``: no progress and none of TensorFlow's start-up lines; a corrupt TIFF is one
    line of ours, not Pillow's raw warning.  A fresh process, as TensorFlow logs once per process."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "in"
    folder.mkdir()
    for src in sorted((pbc / "monocyte").glob("*.jpg"))[:2]:
        shutil.copy(src, folder / src.name)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "ok.tif")
    (folder / "damaged.tif").write_bytes((tmp_path / "ok.tif").read_bytes()[:50])
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = "import sys; from yawbcc_desktop.cli import main; sys.exit(main())"
    args = ["classify", str(folder), "--model", str(tiny_bundle), "--out", str(tmp_path / "out.csv"), "--quiet"]
    run = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == EXIT_SOME_FAILED, run.stderr
    lines = run.stderr.splitlines()
    assert lines == [
        f"yawbcc: {folder / 'damaged.tif'}: corrupt or truncated image data (Truncated File Read)",
        f"yawbcc: 2 files read, 2 cells found, 1 files failed -> {tmp_path / 'out.csv'}",
    ], run.stderr
    assert len(pd.read_csv(tmp_path / "out.csv", encoding="utf-8-sig")) == 2


def test_index_prints_the_report_tables_of_a_folder_of_class_folders(pbc, tmp_path, capsys):
    """``yawbcc index``: tables 2.1 (images per group and label) and 2.2 (sizes), byte-identical
    files with conflicting classes, and what was skipped, on class folders of links to PBC images."""
    root = tmp_path / "cells"
    picks = {
        "basophil": sorted((pbc / "basophil").glob("BA_*.jpg"))[:2],
        "neutrophil": sorted((pbc / "neutrophil").glob("SNE_*.jpg"))[:2] + sorted((pbc / "neutrophil").glob("BNE_*.jpg"))[:1],
        "ig": sorted((pbc / "ig").glob("MY_*.jpg"))[:1],
    }
    for group, files in picks.items():
        (root / group).mkdir(parents=True)
        for src in files:
            (root / group / src.name).symlink_to(src)
    twin = picks["basophil"][0]
    (root / "ig" / "MY_twin.jpg").symlink_to(twin)  # the same bytes filed under two classes
    (root / "ig" / "notes.txt").write_text("not an image")
    (root / "monsters").mkdir()
    sizes = Counter(Image.open(p).size for files in picks.values() for p in files) + Counter([Image.open(twin).size])

    out = tmp_path / "index.csv"
    assert main(["index", str(root), "--out", str(out)]) == EXIT_OK
    text = capsys.readouterr().out
    assert text.startswith("7 images, 2 skipped\n")
    table_21 = text.split("Table 2.1 - images per group and label\n")[1].split("\n\n")[0].splitlines()
    assert [line.split() for line in table_21] == [
        ["group", "label", "count"],
        ["BASOPHIL", "BA", "2"],
        ["IG", "MY", "2"],
        ["NEUTROPHIL", "BNE", "1"],
        ["NEUTROPHIL", "SNE", "2"],
    ]
    table_22 = text.split("Table 2.2 - image sizes (width x height)\n")[1].split("\n\n")[0].splitlines()
    assert sorted(tuple(map(int, line.split())) for line in table_22[1:]) == sorted((w, h, n) for (w, h), n in sizes.items())
    assert "1 sets of byte-identical files, 1 with conflicting groups" in text
    assert f"conflicting labels: {root / 'basophil' / twin.name};{root / 'ig' / 'MY_twin.jpg'}" in text
    assert f"skipped: {root / 'monsters'}: folder name is not one of the classes" in text
    assert f"skipped: {root / 'ig' / 'notes.txt'}: not an image file name (.txt)" in text
    rows = pd.read_csv(out)
    assert list(rows.columns) == ["image", "group", "label", "width", "height", "path", "sha1"] and len(rows) == 7
    assert rows.loc[rows["image"] == "MY_twin.jpg", "sha1"].item() == rows.loc[rows["image"] == twin.name, "sha1"].item()


def test_index_of_a_missing_folder_is_one_message(tmp_path, capsys):
    assert main(["index", str(tmp_path / "nowhere")]) == EXIT_UNUSABLE
    assert capsys.readouterr().err.strip() == f"yawbcc: {tmp_path / 'nowhere'}: not a folder"
