"""Training input: the core's preprocessing, cached once, then a ``tf.data`` pipeline.

Decoding and preprocessing run once per (image, input size) through
``yawbcc_desktop.core.preprocess.prepare_cell_image`` — the very function the application
calls — and land in a uint8 ``.npy`` cache; every epoch then reads memory, augments on the
fly and prefetches, which keeps both cores on the model instead of on JPEG decoding.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.imageio import read_rgb
from yawbcc_desktop.core.preprocess import prepare_cell_image


def _prepare(args: tuple[str, int, bool, int]) -> np.ndarray:
    path, side, balance, field = args
    return prepare_cell_image(read_rgb(path), side, balance, field)


def cached_arrays(paths: list[str], side: int, balance: bool, field: int, cache_dir: str | Path, log=print) -> np.ndarray:
    """uint8 array (N, side, side, 3) of the preprocessed images, cached on disk by content."""
    key = hashlib.sha1(f"{side}|{balance}|{field}|".encode() + "\n".join(paths).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"images_{side}_{key}.npy"
    if cache.exists():
        return np.load(cache, mmap_mode="r")
    cache.parent.mkdir(parents=True, exist_ok=True)
    out = np.zeros((len(paths), side, side, 3), np.uint8)
    jobs = [(p, side, balance, field) for p in paths]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for i, arr in enumerate(pool.map(_prepare, jobs, chunksize=64)):
            out[i] = arr
            if (i + 1) % 2000 == 0:
                log(f"  preprocessed {i + 1}/{len(paths)} images")
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(cache)
    return out


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    """Integer class ids in GROUPS order."""
    return frame["group"].map({g: i for i, g in enumerate(GROUPS)}).to_numpy(np.int32)


def augment(images, seed_rotation: float = 15.0, light: bool = False):
    """Flips, 90-degree turns, small rotations and colour jitter; a cell has no up or down.

    ``light`` keeps only the flips and turns, which lose no pixel and cost nothing.
    """
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    x = tf.image.random_flip_left_right(x)
    x = tf.image.random_flip_up_down(x)
    k = tf.random.uniform([], 0, 4, dtype=tf.int32)
    x = tf.image.rot90(x, k)
    if light:
        return x
    # Small rotation by a random angle (reflect fill keeps the background plausible).
    angle = tf.random.uniform([tf.shape(x)[0]], -seed_rotation, seed_rotation) * (np.pi / 180.0)
    x = _rotate(x, angle)
    x = tf.image.random_brightness(x, 0.08 * 255)
    x = tf.image.random_contrast(x, 0.9, 1.1)
    x = tf.image.random_saturation(x, 0.9, 1.1)
    x = tf.image.random_hue(x, 0.02)
    return tf.clip_by_value(x, 0.0, 255.0)


def _rotate(x, angles):
    import tensorflow as tf

    h = tf.cast(tf.shape(x)[1], tf.float32)
    w = tf.cast(tf.shape(x)[2], tf.float32)
    cos, sin = tf.cos(angles), tf.sin(angles)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # Projective transform mapping output to input coordinates (rotation about the centre).
    a0, a1 = cos, -sin
    a2 = cx - cx * cos + cy * sin
    b0, b1 = sin, cos
    b2 = cy - cx * sin - cy * cos
    zeros = tf.zeros_like(angles)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=transforms,
        output_shape=tf.shape(x)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )


def make_dataset(
    images: np.ndarray, labels: np.ndarray | None, batch_size: int, training: bool, seed: int = 0, light: bool = False
):
    """A batched, prefetched ``tf.data.Dataset`` over in-memory uint8 images."""
    import tensorflow as tf

    n = len(images)
    idx = np.arange(n)
    ds = tf.data.Dataset.from_tensor_slices(idx)
    if training:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def fetch(batch_idx):
        x = tf.numpy_function(lambda i: np.asarray(images[i]), [batch_idx], tf.uint8)
        x.set_shape([None, *images.shape[1:]])
        if labels is None:
            return x
        y = tf.gather(tf.constant(labels), batch_idx)
        return x, y

    ds = ds.map(fetch, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        ds = ds.map(lambda x, y: (augment(x, light=light), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        to_float = (lambda x, y: (tf.cast(x, tf.float32), y)) if labels is not None else (lambda x: tf.cast(x, tf.float32))
        ds = ds.map(to_float)
    return ds.prefetch(tf.data.AUTOTUNE)
