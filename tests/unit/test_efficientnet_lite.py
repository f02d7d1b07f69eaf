"""Tests for the Keras EfficientNet-Lite port and its torch-free checkpoint reader."""

from __future__ import annotations

import collections
import pickle
import sys
import types

import numpy as np
import pytest

from tests.conftest import missing_data  # noqa: E402
from training.efficientnet_lite import (
    build_efficientnet_lite,
    lite_weights_path,
    load_torch_checkpoint,
    strided_tensor,
)


def _require_lite0_weights() -> None:
    try:
        lite_weights_path("lite0")
    except ImportError as exc:  # weights package not installed
        missing_data(str(exc))


def test_strided_tensor_rebuilds_permuted_view():
    # Storage holds a contiguous (2, 3, 4) array after 5 unrelated elements;
    # the saved tensor is its (2, 0, 1) permutation, as torch would record it.
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    flat = np.concatenate([np.full(5, -1, np.float32), base.ravel()])
    expected = base.transpose(2, 0, 1)

    out = strided_tensor(flat, offset=5, size=(4, 2, 3), stride=(1, 12, 4))

    np.testing.assert_array_equal(out, expected)
    assert out.flags.c_contiguous and not np.shares_memory(out, flat)
    # A plain reshape would give different values: the strides matter here.
    assert not np.array_equal(flat[5:].reshape(4, 2, 3), expected)


def test_strided_tensor_rejects_overrun():
    with pytest.raises(ValueError, match="overruns"):
        strided_tensor(np.zeros(6, np.float32), offset=1, size=(2, 3), stride=(3, 1))


def test_legacy_checkpoint_with_permuted_tensor(tmp_path, monkeypatch):
    """Write a legacy-format .pth with fake torch globals, read it back."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # only its name ends up in the pickle
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    FloatStorage = type("FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"})
    torch_mod.FloatStorage, torch_mod._utils = FloatStorage, utils_mod
    # Only so pickle can name these globals while writing; undone after the test.
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    class Storage:
        def __init__(self, key, data):
            self.key, self.data = key, data

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return _rebuild_tensor_v2, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.data.size, None)
            return None

    hwio = np.arange(2 * 2 * 3 * 5, dtype=np.float32).reshape(2, 2, 3, 5)
    bias = np.array([7.0, 8.0, 9.0], np.float32)
    s0, s1 = Storage("0", hwio.ravel()), Storage("1", np.concatenate([[0.0], bias]).astype(np.float32))
    state = collections.OrderedDict(
        # An OIHW view of HWIO data, as in the EfficientNet-Lite checkpoints.
        w=Tensor(s0, 0, (5, 3, 2, 2), (1, 5, 30, 15)),
        b=Tensor(s1, 1, (3,), (1,)),
    )
    path = tmp_path / "fake.pth"
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
        Pickler(f, protocol=2).dump(state)
        pickle.dump(["0", "1"], f, protocol=2)
        for s in (s0, s1):
            f.write(np.int64(s.data.size).tobytes())
            f.write(s.data.tobytes())

    loaded = load_torch_checkpoint(path)

    assert list(loaded) == ["w", "b"]
    np.testing.assert_array_equal(loaded["w"], hwio.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(loaded["b"], bias)


@pytest.fixture(scope="module")
def lite0_classifier():
    _require_lite0_weights()
    return build_efficientnet_lite("lite0", input_shape=(224, 224, 3), include_top=True)


def test_imagenet_predictions(lite0_classifier):
    import skimage.data
    import tensorflow as tf

    images = np.stack(
        [
            tf.image.resize(img.astype(np.float32), (224, 224), method="bilinear").numpy()
            for img in (skimage.data.chelsea(), skimage.data.coffee())
        ]
    )
    probs = lite0_classifier.predict(images, verbose=0)
    cat, coffee = probs.argmax(axis=1)

    assert 281 <= cat <= 285  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert coffee in (967, 968, 504)  # espresso / cup / coffee mug


# Keras' own .keras writer trips a numpy 2 deprecation warning; not ours.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_feature_extractor_any_resolution(tmp_path):
    _require_lite0_weights()
    import keras

    model = build_efficientnet_lite("lite0", input_shape=(128, 128, 3), include_top=False)

    assert model.output_shape == (None, 4, 4, 1280)
    assert model.layers[-1].name == "top_activation"

    # Self-contained: reloads from .keras without custom objects, same outputs.
    x = np.random.default_rng(0).uniform(0, 255, (1, 128, 128, 3)).astype(np.float32)
    path = tmp_path / "lite0.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
