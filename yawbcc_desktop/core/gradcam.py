"""Batched Grad-CAM for every backbone the training factory builds.

The report's version picked an inner convolution by name, which only worked for VGG16:
the other backbones feed earlier activations forward (skip connections), so cutting the
graph inside them is wrong.  Here the cut is at the backbone's output, the last feature
map that every head reads, so one code path serves VGG16, MobileNetV2, Xception, ResNet50V2
and EfficientNet-Lite alike.  Gradients are taken of the logits (pre-softmax), which do not
saturate the way probabilities do.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


class GradCam:
    """Grad-CAM of one loaded Keras classifier (built by ``training.factory``)."""

    def __init__(self, model: Any) -> None:
        import keras

        # The factory's models are a chain: [scaling] -> backbone -> head.  Re-applying the
        # layers on fresh inputs splits that chain at the backbone's output.
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        names = [layer.name for layer in layers]
        cut = names.index("backbone") + 1
        end = names.index("logits") + 1 if "logits" in names else len(layers)
        x = inputs = keras.Input(model.input_shape[1:])
        for layer in layers[:cut]:
            x = layer(x)
        self._features = keras.Model(inputs, x)
        y = head_in = keras.Input(x.shape[1:])
        for layer in layers[cut:end]:
            y = layer(y)
        self._head = keras.Model(head_in, y)
        self._compiled: Any = None  # the traced tf.function, made on first use

    def heatmaps(self, batch: np.ndarray, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps in [0, 1] at the input size, and the class each one explains.

        ``batch`` is uint8 or float (N, S, S, 3) in 0..255; ``classes`` defaults to each
        image's predicted class.
        """
        import tensorflow as tf

        if self._compiled is None:
            # Traced once per model: eager execution walks the graph op by op and takes
            # hundreds of milliseconds per cell on a CPU, too slow for a click in the GUI.
            spec = [tf.TensorSpec((None, *self._features.input_shape[1:]), tf.float32), tf.TensorSpec((None,), tf.int32)]
            self._compiled = tf.function(self._cams, input_signature=spec)
        x = tf.convert_to_tensor(np.asarray(batch, np.float32))
        # -1 asks for each image's predicted class.
        wanted = np.full(len(x), -1, np.int32) if classes is None else np.asarray(classes, np.int32)
        cams, picked = self._compiled(x, tf.convert_to_tensor(wanted))
        cams, classes = cams.numpy(), picked.numpy()
        size = x.shape[1:3]
        out = np.zeros((len(cams), size[0], size[1]), np.float32)
        for i, cam in enumerate(cams):
            peak = cam.max()
            cam = cam / peak if peak > 0 else cam
            out[i] = cv2.resize(cam, (size[1], size[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        return out, np.asarray(classes)

    def _cams(self, x: Any, classes: Any) -> tuple[Any, Any]:
        import tensorflow as tf

        feats = self._features(x, training=False)
        with tf.GradientTape() as tape:
            tape.watch(feats)
            scores = self._head(feats, training=False)
            classes = tf.where(classes < 0, tf.argmax(scores, axis=1, output_type=tf.int32), classes)
            picked = tf.gather(scores, classes, axis=1, batch_dims=1)
            # Each image's score depends only on its own features, so one gradient of the
            # sum gives every image's gradient at once.
            total = tf.reduce_sum(picked)
        grads = tape.gradient(total, feats)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1)), classes


def resize_heatmap(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A heatmap brought to an image's (height, width), values kept in [0, 1]."""
    return cv2.resize(heatmap, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """RGB image with the heatmap (jet colours) blended on top at ``opacity``."""
    heat = resize_heatmap(heatmap, image.shape[:2]) if heatmap.shape != image.shape[:2] else heatmap
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    blended = image.astype(np.float32) * (1 - opacity) + colour.astype(np.float32) * opacity
    return blended.clip(0, 255).astype(np.uint8)
