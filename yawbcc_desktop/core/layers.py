"""Custom Keras layers that saved bundles may contain; imported before a model is loaded."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="yawbcc")
class ChannelFlip(keras.layers.Layer):  # type: ignore[misc]  # Keras ships no types
    """RGB <-> BGR: the caffe-style VGG16 weights expect BGR input."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.flip(inputs, axis=-1)
