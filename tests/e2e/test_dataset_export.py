"""``yawbcc export --coco / --crops`` on a session of real images: the COCO data set opens in
pycocotools with one annotation per labelled cell whose mask is the session's; the crops
are class folders ``python -m training fit`` trains from; a failed export leaves nothing."""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from pycocotools.coco import COCO

from tests.review_sessions import PBC_GROUPS, PER_GROUP
from training.__main__ import main as training_main
from yawbcc_desktop.cli import EXIT_OK, EXIT_UNUSABLE, main
from yawbcc_desktop.core import dataset_export
from yawbcc_desktop.core.classes import ARTEFACT
from yawbcc_desktop.core.store import ReviewSession


@pytest.fixture(autouse=True)
def _own_preferences(tmp_path, monkeypatch):
    monkeypatch.setenv("YAWBCC_CONFIG_DIR", str(tmp_path / "config"))


def _files(folder):
    # SQLite's own -wal and -shm files come and go with any reader of the session.
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))


def test_coco_export_opens_in_pycocotools_with_the_sessions_masks(reviewed_session, tmp_path, capsys):
    before = _files(reviewed_session.parent)
    out = tmp_path / "coco"
    assert main(["export", str(reviewed_session), "--coco", str(out)]) == EXIT_OK
    assert f"-> {out}" in capsys.readouterr().err
    assert _files(reviewed_session.parent) == before  # nothing written beside the session
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left

    coco = COCO(str(out / dataset_export.COCO_FILE))
    with ReviewSession.open(reviewed_session, readonly=True) as s:
        cells = [c for c in s.cells() if c.final_label]
        images = {im.id: im for im in s.images()}
        assert len(coco.getAnnIds()) == len(cells) and len(coco.getImgIds()) == len(images)
        by_source = {img["source"]: img for img in coco.dataset["images"]}
        names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
        smear_masks = 0
        for c in cells:
            image = images[c.image_id]
            img = by_source[image.path]
            assert (out / img["file_name"]).read_bytes() == open(image.path, "rb").read()
            [ann] = [a for a in coco.imgToAnns[img["id"]] if a["attributes"]["cell_index"] == c.cell_index]
            assert names[ann["category_id"]] == c.final_label and ann["bbox"] == [c.x, c.y, c.width, c.height]
            assert ann["attributes"]["reviewed"] == c.reviewed and ann["attributes"]["corrected"] == c.corrected
            mask = coco.annToMask(ann).astype(bool)
            box = s.cell_mask(c.id)
            assert box is not None and ann["attributes"]["mask"] == "segmented"
            expected = np.zeros((image.height, image.width), bool)
            expected[c.y : c.y + c.height, c.x : c.x + c.width] = box
            assert np.array_equal(mask, expected) and ann["area"] == int(box.sum())
            smear_masks += image.mode == "smear"
        assert smear_masks >= 3
        assert ARTEFACT in {names[a["category_id"]] for a in coco.dataset["annotations"]}


def test_crops_export_is_a_class_folder_data_set_training_runs_on(reviewed_session, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "crops"
    assert main(["export", str(reviewed_session), "--crops", str(out), "--model", str(tiny_bundle)]) == EXIT_OK
    err = capsys.readouterr().err
    assert "not reviewed" in err and "marked not a cell (artefact)" in err  # what was left out, and why
    manifest = pd.read_csv(out / dataset_export.CROPS_MANIFEST)
    with ReviewSession.open(reviewed_session, readonly=True) as s:
        reviewed = [c for c in s.cells() if c.reviewed and c.final_label != ARTEFACT]
    assert len(manifest) == len(reviewed) and set(manifest["side"]) == {64}
    for group in PBC_GROUPS:
        files = sorted((out / group).glob("*.png"))
        assert len(files) >= PER_GROUP
        assert all(f.name.startswith(group.upper() + "_") for f in files)
    from PIL import Image

    assert {Image.open(out / f).size for f in manifest["file"]} == {(64, 64)}  # the model's input size

    run = tmp_path / "run"
    args = ["fit", "--data", str(out), "--field", "64", "--size", "32", "--weights", "none", "--epochs-frozen", "1"]
    assert training_main([*args, "--epochs", "1", "--cache", str(tmp_path / "cache"), "--out", str(run)]) == 0
    used = pd.read_csv(run / "split_used.csv")
    assert len(used) == len(manifest) and (run / "model.keras").is_file()
    assert set(used["group"]) == set(manifest["group"])


def test_a_full_disk_or_read_only_target_leaves_no_partial_export(reviewed_session, tmp_path, monkeypatch, capsys):
    real_copy = shutil.copyfile
    copies = []

    def fills_the_disk(src, dst):
        if copies:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        copies.append(real_copy(src, dst))

    monkeypatch.setattr(dataset_export.shutil, "copyfile", fills_the_disk)
    out = tmp_path / "exports" / "coco"
    assert main(["export", str(reviewed_session), "--coco", str(out)]) == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert f"{out}: could not write it (the disk is full); nothing was written" in err
    assert copies and list((tmp_path / "exports").iterdir()) == []  # no half data set, no temporary folder
    monkeypatch.undo()

    # A target that exists and holds files is never mixed into.
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    assert main(["export", str(reviewed_session), "--coco", str(taken)]) == EXIT_UNUSABLE
    assert "already exists" in capsys.readouterr().err and _files(taken) == ["mine.txt"]

    # A read-only folder (made so for root too by refusing the write itself).
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdir = type(locked).mkdir

    def refuse(self, *args, **kwargs):
        if locked in self.parents:
            raise PermissionError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(type(locked), "mkdir", refuse)
    assert main(["export", str(reviewed_session), "--crops", str(locked / "crops")]) == EXIT_UNUSABLE
    assert "that folder is read-only" in capsys.readouterr().err and _files(locked) == []


def test_coco_export_can_link_the_images(reviewed_session, tmp_path):
    out = tmp_path / "linked"
    assert main(["export", str(reviewed_session), "--coco", str(out), "--link"]) == EXIT_OK
    data = json.loads((out / dataset_export.COCO_FILE).read_text())
    first = out / data["images"][0]["file_name"]
    assert first.is_symlink() and str(first.resolve()) == data["images"][0]["source"]


def test_a_coco_export_of_smear_fields_trains_the_unet(reviewed_session, tmp_path):
    from training.unet import UnetConfig
    from training.unet_targets import coco_samples
    from yawbcc_desktop.core.unet_segmentation import WEIGHTS_FILE, UnetSegmenter

    out = tmp_path / "coco"
    assert main(["export", str(reviewed_session), "--coco", str(out)]) == EXIT_OK
    samples = coco_samples(out, UnetConfig())
    fields = [s for s in samples if "BloodImage" in s.name]
    assert len(samples) == len(json.loads((out / dataset_export.COCO_FILE).read_text())["images"]) and len(fields) == 2
    reviewed, left = fields  # the first field was reviewed (a neutrophil, a confirmed cell, an artefact)
    assert reviewed.target[..., 0].any() and (reviewed.weight[..., 0] == 1).mean() > 0.9
    assert not left.target.any() and (left.weight[..., 0] == 0).any()  # unreviewed cells: no opinion

    run = tmp_path / "unet"
    args = ["unet", "--coco", str(out), "--coco-only", "--steps", "100", "--batch", "2", "--out", str(run)]
    assert training_main(args) == 0
    card = json.loads((run / "segmenter.json").read_text())
    assert card["extra"]["trained_on"]["coco"] == sum(s.split == "train" for s in samples)
    seg = UnetSegmenter(run)  # the app loads it as any segmenter bundle
    assert (run / WEIGHTS_FILE).is_file() and seg.maps_of_working_image(fields[0].image).shape[-1] == 2
