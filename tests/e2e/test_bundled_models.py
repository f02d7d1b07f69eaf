"""The model bundles shipped in resources/models, on real test-split images.

The split is recomputed from ../shared/data/pbc with the training module's code; its
checksum must equal the one in each model card, so these images were never trained on.
A sample keeps the test quick; benchmarks/models.py measures the whole test split.
"""

from __future__ import annotations

import numpy as np
import pytest

from training.splits import make_split, split_checksum
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.classifier import ModelBundle, list_bundles, resolve_bundle
from yawbcc_desktop.core.dataset import index_folder
from yawbcc_desktop.core.gradcam import GradCam
from yawbcc_desktop.core.imageio import read_rgb
from yawbcc_desktop.core.pipeline import analyse, single_cell_input
from yawbcc_desktop.core.segmentation import segment_single_cell

BUNDLED = [folder for folder, card in list_bundles() if "resources" in folder.parts]


@pytest.fixture(scope="module")
def split(pbc):
    return make_split(index_folder(pbc).images, seed=42)


def test_default_bundle_resolves():
    assert BUNDLED, "no model bundle in resources/models"
    assert resolve_bundle(None).name in {f.name for f in BUNDLED}


@pytest.mark.parametrize("folder", BUNDLED, ids=[f.name for f in BUNDLED])
def test_bundle_on_unseen_test_images(folder, split):
    bundle = ModelBundle(folder)
    assert bundle.card.extra["split_sha1"] == split_checksum(split)
    assert (folder / "model.keras").stat().st_size < 25e6
    test = split[split["split"] == "test"]
    sample = test.groupby("group").sample(12, random_state=3)
    results = list(analyse(list(sample["path"]), "cell", bundle))
    predicted = [r.cells[0].predicted for r in results]
    accuracy = np.mean(np.array(predicted) == sample["group"].to_numpy())
    assert accuracy >= 0.95, (folder.name, accuracy)
    confidence = np.array([r.cells[0].confidence for r in results])
    assert ((confidence > 0.125) & (confidence <= 1.0)).all()

    # Grad-CAM looks at the cell: more heat inside the segmented cell than outside.
    card = bundle.card
    rgbs = [read_rgb(p) for p in sample["path"].iloc[::3]]
    x = np.stack([single_cell_input(r, card)[0] for r in rgbs])
    heat, classes = GradCam(bundle.model).heatmaps(x)
    assert heat.shape == (len(rgbs), card.input_size, card.input_size)
    assert set(classes) <= set(range(len(GROUPS)))
    inside = []
    for rgb, h in zip(rgbs, heat):
        m = single_cell_input(rgb, card, segment_single_cell(rgb).full_mask(rgb.shape[:2]))[1]
        inside.append(h[m].mean() > h[~m].mean())
    assert np.mean(inside) >= 0.8, (folder.name, np.mean(inside))
