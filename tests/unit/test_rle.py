"""COCO run-length encoding written with numpy (core/rle.py) is pycocotools' own, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from yawbcc_desktop.core import rle


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (37, 1), (480, 640)])
@pytest.mark.parametrize("share", [0.0, 0.01, 0.5, 1.0])
def test_encoding_matches_pycocotools_and_decodes_back(shape, share):
    mask = np.random.default_rng(sum(shape)).random(shape) < share
    mine = rle.encode(mask)
    theirs = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert mine["counts"] == theirs["counts"].decode() and mine["size"] == list(theirs["size"])
    assert np.array_equal(coco_mask.decode({"size": mine["size"], "counts": mine["counts"].encode()}), mask)
    assert np.array_equal(rle.decode(mine), mask) and rle.area(mine) == int(mask.sum())


def test_a_blob_mask_and_a_wrong_size_is_refused():
    mask = np.zeros((60, 80), bool)
    mask[10:50, 20:45] = True  # long runs: counts above 5 bits, differences below zero
    assert np.array_equal(rle.decode(rle.encode(mask)), mask)
    with pytest.raises(ValueError, match="RLE counts cover"):
        rle.decode({"size": [61, 80], "counts": rle.encode(mask)["counts"]})
