"""Classes, preprocessing and the Qt-free rule."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from yawbcc_desktop.core import classes
from yawbcc_desktop.core.preprocess import cell_crop, central_pad_and_crop, colour_balance, prepare_cell_image

REPO = Path(__file__).resolve().parents[2]


def test_groups_order_and_labels():
    assert classes.GROUPS == (
        "BASOPHIL", "EOSINOPHIL", "ERYTHROBLAST", "IG", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL", "PLATELET",
    )  # fmt: skip
    assert len(classes.LABELS) == 13
    assert {classes.group_of_label(x) for x in ("IG", "MMY", "MY", "PMY")} == {"IG"}
    assert {classes.group_of_label(x) for x in ("BNE", "SNE", "NEUTROPHIL")} == {"NEUTROPHIL"}
    assert classes.label_of_filename("sne_123.jpg") == "SNE"
    assert set(classes.COLOURS) == set(classes.GROUPS)
    assert set(classes.REFERENCE_RANGES) == set(classes.WBC_GROUPS)


def test_central_pad_and_crop_report_example():
    # 362 wide x 360 high -> 360 x 363: crop 1 px left and right, pad 1 px top and 2 px bottom.
    h, w = 360, 362
    img = (np.arange(h * w).reshape(h, w) % 251).astype(np.uint8)
    rgb = np.dstack([img, img, img])
    out = central_pad_and_crop(rgb, (360, 363))
    assert out.shape == (363, 360, 3)
    assert np.array_equal(out[1:361], rgb[:, 1:361])  # centre untouched
    assert np.array_equal(out[0], rgb[0, 1:361])  # top row replicated once
    assert np.array_equal(out[361], rgb[-1, 1:361]) and np.array_equal(out[362], rgb[-1, 1:361])


def test_central_pad_and_crop_identity_and_larger():
    rgb = np.random.default_rng(0).integers(0, 255, (363, 360, 3), dtype=np.uint8)
    assert np.array_equal(central_pad_and_crop(rgb, (360, 363)), rgb)
    assert np.array_equal(central_pad_and_crop(rgb, (100, 101)), rgb[131:232, 130:230])


def test_colour_balance_formula():
    rng = np.random.default_rng(1)
    rgb = np.clip(rng.normal([200, 120, 150], 10, (50, 60, 3)), 0, 255).astype(np.uint8)
    out = colour_balance(rgb).astype(float)
    grey = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).mean()
    # After balancing every channel has (about) the mean of the grey image.
    assert np.allclose(out.reshape(-1, 3).mean(axis=0), grey, atol=1.0)


def test_colour_balance_lookup_table_matches_the_per_pixel_formula(pbc, bccd):
    """Formula 3.1 computed per pixel in float64 and the lookup tables agree on real images of
    two labs, whole and cropped: at most one grey level apart, on under 1 % of the values."""
    import cv2

    from yawbcc_desktop.core.imageio import read_rgb

    for path in sorted(pbc.rglob("*.jpg"))[:5] + sorted(bccd.rglob("*.jpg"))[:5]:
        rgb = read_rgb(path)
        for image in (rgb, rgb[13:201, 40:300]):
            f = image.astype(np.float64)
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)  # the report's grey image
            expected = np.clip(f * (grey.mean() / f.reshape(-1, 3).mean(axis=0)) + 0.5, 0, 255).astype(np.uint8)
            diff = np.abs(colour_balance(image).astype(int) - expected)
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, path.name


def test_prepare_and_crop_shapes():
    rgb = np.random.default_rng(2).integers(0, 255, (363, 360, 3), dtype=np.uint8)
    assert prepare_cell_image(rgb, 64, True, 288).shape == (64, 64, 3)
    from yawbcc_desktop.core.cells import CellRegion

    crop = cell_crop(rgb, CellRegion(0, 0, 40, 30, np.ones((30, 40), bool)), 2.0)
    assert crop.shape == (80, 80, 3)  # box at the corner: padded, still square


@pytest.mark.parametrize("folder", ["yawbcc_desktop/core", "training"])
def test_core_and_training_never_import_qt(folder):
    offenders = []
    for path in (REPO / folder).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6"):
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert not offenders, offenders


def test_atomic_file_replaces_only_when_complete(tmp_path, monkeypatch):
    import os

    from yawbcc_desktop.core.atomic import AtomicFile, atomic_write

    target = tmp_path / "out.csv"
    target.write_text("old")
    # One with-block write: a failure leaves the old file and no temporary file.
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    # Streaming into a named partial file that an interrupted run keeps.
    partial = tmp_path / "out.csv.partial"
    out = AtomicFile(target, partial=partial, keep_partial=True)
    out.file.write("rows so far")
    out.abort()
    assert target.read_text() == "old" and partial.read_text() == "rows so far"
    # The disk fills at the last moment (fsync): the old file stays whole, the error is raised.
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space"), atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "old" and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    with atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new"
