"""Test-time views: a bundle whose card names them averages the model over the views."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from yawbcc_desktop.core.classifier import ModelBundle, ModelBundleError, softmax_with_temperature


def with_views(tiny_bundle, tmp_path, views) -> ModelBundle:
    folder = tmp_path / "tta"
    shutil.copytree(tiny_bundle, folder)
    card = json.loads((folder / "model.json").read_text())
    card["tta"] = views
    (folder / "model.json").write_text(json.dumps(card))
    return ModelBundle(folder)


def test_flip_view_is_the_geometric_mean_of_image_and_mirror(tiny_bundle, tmp_path):
    plain = ModelBundle(tiny_bundle)
    flipped = with_views(tiny_bundle, tmp_path, ["flip_lr"])
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    a, b = plain.raw_probabilities(batch), plain.raw_probabilities(batch[:, :, ::-1])
    expected = np.sqrt(a * b)
    expected /= expected.sum(axis=1, keepdims=True)
    got = flipped.raw_probabilities(batch)
    assert np.allclose(got, expected, atol=1e-5)
    assert np.allclose(flipped.probabilities(batch), softmax_with_temperature(got, flipped.card.temperature))
    # A mirrored cell gets the same answer as the cell: the views are symmetric.
    assert np.allclose(flipped.raw_probabilities(batch[:, :, ::-1]), got, atol=1e-5)
    assert flipped.card.to_dict()["tta"] == ["flip_lr"]


def test_unknown_view_is_refused_with_the_known_ones(tiny_bundle, tmp_path):
    with pytest.raises(ModelBundleError, match="unknown test-time views.*flip_lr"):
        with_views(tiny_bundle, tmp_path, ["sideways"])
