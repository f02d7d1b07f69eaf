"""The two segmenters on real fields of the labs, and the masks ``yawbcc segment`` writes.

The U-Net tests run the bundled segmenter (``resources/models/unet-multilab``) on held-out
fields it was never trained on; its full figures are benchmarks/segmentation_domains.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from training.domains import field_split
from training.voc import match_boxes, read_voc_boxes
from yawbcc_desktop.cli import EXIT_OK, EXIT_UNUSABLE, main
from yawbcc_desktop.core.cells import WBC
from yawbcc_desktop.core.imageio import read_rgb
from yawbcc_desktop.core.segmentation import SegmentationError, find_cells_measured
from yawbcc_desktop.core.unet_segmentation import SegmenterError, load_segmenter, segmenter_folder


def _crops(folder):
    return [p for p in sorted(folder.glob("*.jpg")) if not p.name.startswith(".")]  # PBC ships a .DS_ file


@pytest.fixture(scope="module")
def bionet_fields(data_dir):
    root = data_dir / "deepbionet" / "fields"
    paths = [p for p in sorted((root / "JPEGImages").glob("*.jpg")) if field_split(p.stem) == "test"]
    return root, paths[:12]


def _wbc_boxes(root, path):
    return [b for b in read_voc_boxes(root / "Annotations" / f"{path.stem}.xml") if b[0] in ("WBC", "W")]


def test_unet_finds_bionet_white_cells_the_classic_method_merges(bionet_fields):
    root, paths = bionet_fields
    scores = {}
    for segmenter in ("classic", "unet"):
        tp = fp = fn = 0
        for path in paths:
            mode, cells, radius = find_cells_measured(read_rgb(path), "smear", segmenter)
            assert mode == "smear" and radius is not None and radius > 0
            a, b, c = match_boxes([r for r in cells if r.kind == WBC], _wbc_boxes(root, path))
            tp, fp, fn = tp + a, fp + b, fn + c
        scores[segmenter] = (tp / max(1, tp + fn), tp / max(1, tp + fp))
    recall, precision = scores["unet"]
    assert recall >= 0.8 and precision >= 0.8, scores
    assert recall > scores["classic"][0] and precision > scores["classic"][1], scores


def test_auto_segmenter_reads_crops_as_before_and_fields_with_the_network(pbc, bionet_fields):
    crop = read_rgb(_crops(pbc / "neutrophil")[0])
    auto = find_cells_measured(crop, "auto", "auto")
    classic = find_cells_measured(crop, "auto", "classic")
    assert auto[0] == classic[0] == "cell"
    assert auto[1][0].box == classic[1][0].box  # crops keep the classic central cell
    root, paths = bionet_fields
    field = read_rgb(paths[0])
    mode, cells, _ = find_cells_measured(field, "auto", "auto")
    assert mode == "smear"
    unet = find_cells_measured(field, "smear", "unet")[1]
    assert [c.box for c in cells] == [c.box for c in unet]


def test_auto_mode_reads_bionet_smears_as_fields(data_dir):
    """The classic cells merge Bio-Net's red cells into one frame-filling blob and the field
    was taken for a single-cell crop; with the network's cells it is a field."""
    rgb = read_rgb(data_dir / "deepbionet" / "cells" / "eosinophil" / "158.jpg")
    assert find_cells_measured(rgb, "auto", "classic")[0] == "cell"
    mode, cells, _ = find_cells_measured(rgb, "auto", "auto")
    assert mode == "smear" and 1 <= sum(c.kind == WBC for c in cells) <= 3


def test_unet_central_cell_of_a_crop(pbc):
    for group in ("lymphocyte", "platelet", "eosinophil"):
        rgb = read_rgb(_crops(pbc / group)[1])
        mode, (cell,), _ = find_cells_measured(rgb, "cell", "unet")
        h, w = rgb.shape[:2]
        assert mode == "cell"
        assert cell.box_holds(w / 2, h / 2), group


def test_unknown_segmenter_and_missing_bundle_are_clear(monkeypatch, tmp_path, pbc):
    rgb = read_rgb(_crops(pbc / "neutrophil")[0])
    with pytest.raises(ValueError, match="unknown segmenter"):
        find_cells_measured(rgb, "cell", "watershed")
    with pytest.raises(SegmenterError, match="no-such-unet"):
        segmenter_folder("no-such-unet")
    # No U-Net installed: "auto" quietly keeps the classic method, "unet" says what is missing.
    monkeypatch.setattr("yawbcc_desktop.core.unet_segmentation.DEFAULT_SEGMENTER", "no-such-unet")
    assert find_cells_measured(rgb, "smear", "auto")[0] == "smear"
    with pytest.raises(SegmentationError, match="no-such-unet"):
        find_cells_measured(rgb, "smear", "unet")


def test_broken_segmenter_bundle_names_the_file(tmp_path):
    folder = tmp_path / "unet-broken"
    folder.mkdir()
    (folder / "segmenter.json").write_text('{"name": "unet-broken"}')
    (folder / "unet.keras").write_bytes(b"not a keras file")
    with pytest.raises(SegmenterError, match="unet.keras"):
        load_segmenter(folder)


def test_segment_writes_one_image_sized_mask_per_cell(bionet_fields, tmp_path, capsys):
    root, paths = bionet_fields
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    (images / "b").mkdir()
    for sub in ("a", "b"):  # the same file name twice: the masks must not overwrite each other
        (images / sub / "field.jpg").write_bytes(paths[0].read_bytes())
    (images / "a" / "other.jpg").write_bytes(paths[1].read_bytes())
    out, masks = tmp_path / "cells.csv", tmp_path / "masks"
    assert main(["segment", str(images), "--out", str(out), "--masks", str(masks), "--segmenter", "unet", "--quiet"]) == EXIT_OK
    rows = pd.read_csv(out)
    files = sorted(p.name for p in masks.glob("*.png"))
    assert len(files) == len(rows) > 0
    assert any(f.startswith("b_field_") for f in files) and any(f.startswith("field_") for f in files)
    h, w = read_rgb(paths[1]).shape[:2]
    for row in rows[rows.path.str.endswith("other.jpg")].itertuples():
        mask = np.asarray(Image.open(masks / f"other_{row.cell_id}.png"))
        assert mask.shape == (h, w)
        ys, xs = np.nonzero(mask)
        assert len(ys) > 0
        assert xs.min() >= row.x and xs.max() < row.x + row.width and ys.min() >= row.y and ys.max() < row.y + row.height
    assert f"{len(files)} masks in {masks}" in capsys.readouterr().err


def test_segment_needs_an_output(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["segment", str(tmp_path)])
    assert "--masks" in capsys.readouterr().err
    assert EXIT_UNUSABLE == 2
