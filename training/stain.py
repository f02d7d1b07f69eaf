"""Stain- and microscope-robust augmentation, inside the ``tf.data`` graph.

Every lab's stain, lamp, camera and JPEG encoder differ; these draw a new "lab" for every
training image so the network cannot lean on one lab's colours or texture:

- scale jitter (the estimated µm per pixel is off by a few per cent from image to image);
- flips and 90-degree turns (a cell has no up or down);
- HED stain jitter: optical density split into haematoxylin / eosin / residual (Ruifrok &
  Johnston's matrix), each scaled and shifted (Tellez et al. 2018);
- colour transfer between domains: an image's mean and spread per YUV channel replaced by
  those of a random training image of any domain (Reinhard et al. 2001);
- hue, saturation, brightness, contrast; random greyscale; Gaussian blur (focus); a coarser
  camera (shrunk 1.5-3x and enlarged back, as a low-resolution field is framed); JPEG
  re-encoding at a random quality.
"""

from __future__ import annotations

import numpy as np

# Ruifrok & Johnston: optical density of haematoxylin, eosin and DAB per RGB channel.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float32)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)


def yuv_stats(images: np.ndarray, chunk: int = 512) -> np.ndarray:
    """(N, 6) per-image mean and standard deviation of the YUV channels (colour-transfer targets)."""
    m = np.array([[0.299, 0.587, 0.114], [-0.14714119, -0.28886916, 0.43601035], [0.61497538, -0.51496512, -0.10001026]])
    out = np.zeros((len(images), 6), np.float32)
    for i in range(0, len(images), chunk):
        x = np.asarray(images[i : i + chunk], np.float32) / 255.0
        yuv = x.reshape(len(x), -1, 3) @ m.T
        out[i : i + chunk, :3] = yuv.mean(axis=1)
        out[i : i + chunk, 3:] = yuv.std(axis=1)
    return out


def stain_augment(images, out_side: int, stats_bank, strength: float = 1.0, clean_share: float = 0.0, coarse_share: float = 0.0):
    """A float32 batch (B, out_side, out_side, 3) in 0..255 from a uint8 batch at least as large.

    ``clean_share`` of the images keep their own colours and focus (geometry still varies):
    the network also sees each lab's cells as they really are, not only a drawn lab's.
    """
    import tensorflow as tf

    x = tf.cast(images, tf.float32) / 255.0
    b = tf.shape(x)[0]
    # Scale jitter, +-15 %: a centred square around the nominal out_side (cached with margin).
    in_side = tf.cast(tf.shape(x)[1], tf.float32)
    frac = tf.minimum(tf.random.uniform([b], 0.85, 1.15) * tf.cast(out_side, tf.float32) / in_side, 1.0)
    shift = tf.random.uniform([b, 2], -0.03, 0.03)
    lo = 0.5 - frac / 2
    boxes = tf.stack([lo + shift[:, 0], lo + shift[:, 1], lo + frac + shift[:, 0], lo + frac + shift[:, 1]], axis=1)
    x = tf.image.crop_and_resize(x, boxes, tf.range(b), [out_side, out_side], extrapolation_value=0.5)
    x = tf.image.random_flip_left_right(x)
    x = tf.image.random_flip_up_down(x)
    x = tf.image.rot90(x, tf.random.uniform([], 0, 4, dtype=tf.int32))
    keep = _chosen(b, clean_share)
    x = keep * x + (1 - keep) * stain_colour(x, stats_bank, strength, coarse_share)
    return tf.clip_by_value(x * 255.0, 0.0, 255.0)


def _chosen(b, share: float):
    """(b, 1, 1, 1) of 1.0 for about ``share`` of a batch's images, 0.0 for the others."""
    import tensorflow as tf

    return tf.cast(tf.random.uniform([b, 1, 1, 1]) < share, tf.float32)


def stain_colour(x, stats_bank, strength: float = 1.0, coarse_share: float = 0.0):
    """The colour and focus half of ``stain_augment``: a float batch in 0..1, same shape out.

    Geometry-free, so a segmentation target can be moved with its image beforehand.
    """
    import tensorflow as tf

    b = tf.shape(x)[0]

    # HED jitter in optical density.
    od = -tf.math.log(tf.clip_by_value(x, 1.0 / 255, 1.0))
    hed = tf.einsum("bhwc,cd->bhwd", od, tf.constant(HED_FROM_RGB))
    alpha = tf.random.uniform([b, 1, 1, 3], 1 - 0.35 * strength, 1 + 0.35 * strength)
    beta = tf.random.uniform([b, 1, 1, 3], -0.06 * strength, 0.06 * strength)
    od2 = tf.einsum("bhwc,cd->bhwd", hed * alpha + beta, tf.constant(RGB_FROM_HED))
    jittered = tf.clip_by_value(tf.exp(-od2), 0.0, 1.0)
    use = _chosen(b, 0.8)
    x = use * jittered + (1 - use) * x

    # Colour transfer to a random image's YUV statistics (any domain).
    bank = tf.constant(stats_bank)
    pick = tf.random.uniform([b], 0, tf.shape(bank)[0], dtype=tf.int32)
    target = tf.gather(bank, pick)
    yuv = tf.image.rgb_to_yuv(x)
    mean = tf.reduce_mean(yuv, axis=[1, 2], keepdims=True)
    std = tf.math.reduce_std(yuv, axis=[1, 2], keepdims=True) + 1e-3
    t_mean = tf.reshape(target[:, :3], [b, 1, 1, 3])
    t_std = tf.reshape(target[:, 3:], [b, 1, 1, 3])
    transferred = tf.clip_by_value(tf.image.yuv_to_rgb((yuv - mean) / std * t_std + t_mean), 0.0, 1.0)
    use = _chosen(b, 0.5)
    x = use * transferred + (1 - use) * x

    # Photometric jitter.
    hue = tf.random.uniform([b], -0.08 * strength, 0.08 * strength)
    sat = tf.random.uniform([b], 1 - 0.4 * strength, 1 + 0.4 * strength)
    hsv = tf.image.rgb_to_hsv(x)
    h = tf.math.floormod(hsv[..., 0] + hue[:, None, None], 1.0)
    s = tf.clip_by_value(hsv[..., 1] * sat[:, None, None], 0.0, 1.0)
    x = tf.image.hsv_to_rgb(tf.stack([h, s, hsv[..., 2]], axis=-1))
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    contrast = tf.random.uniform([b, 1, 1, 1], 1 - 0.3 * strength, 1 + 0.3 * strength)
    bright = tf.random.uniform([b, 1, 1, 1], -0.12 * strength, 0.12 * strength)
    x = tf.clip_by_value((x - mean) * contrast + mean + bright, 0.0, 1.0)
    grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x))
    use = _chosen(b, 0.1)
    x = use * grey + (1 - use) * x

    # Focus: a 5x5 Gaussian of random width on about a third of the images.
    sigma = tf.random.uniform([], 0.4, 1.4)
    r = tf.range(-2.0, 3.0)
    g = tf.exp(-(r**2) / (2 * sigma**2))
    g = g / tf.reduce_sum(g)
    kernel = tf.tile((g[:, None] * g[None, :])[:, :, None, None], [1, 1, 3, 1])
    blurred = tf.nn.depthwise_conv2d(tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], "REFLECT"), kernel, [1, 1, 1, 1], "VALID")
    use = _chosen(b, 0.35)
    x = use * blurred + (1 - use) * x

    # A coarser camera: the detail a low-resolution field never had (BCCD's 640x480 fields).
    if coarse_share > 0:
        side = tf.shape(x)[1:3]
        small = tf.cast(tf.cast(side, tf.float32) / tf.random.uniform([], 1.5, 3.0), tf.int32)
        coarse = tf.image.resize(tf.image.resize(x, small, method="area"), side, method="bilinear")
        use = _chosen(b, coarse_share)
        x = use * coarse + (1 - use) * x

    # JPEG re-encoding at a random quality on a third of the images.
    def jpeg(img):
        return tf.cond(
            tf.random.uniform([]) < 0.35,
            lambda: tf.image.random_jpeg_quality(img, 35, 95),
            lambda: img,
        )

    return tf.map_fn(jpeg, x)
