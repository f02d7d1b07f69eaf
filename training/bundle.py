"""Random-weight model bundles for plumbing checks (tests, GUI benchmarks).

Their predictions mean nothing; they exist so the application can be exercised end to end
without the trained bundles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yawbcc_desktop.core.adaptation import REPLAY_FILE
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.classifier import ModelCard
from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE, Familiarity

from .card import write_card
from .factory import build_model


def write_random_bundle(
    folder: Path,
    name: str,
    size: int,
    temperature: float = 1.0,
    familiarity: bool = False,
    um_per_px: float | None = None,
    familiarity_threshold: float = 1e-30,
    replay: bool = False,
) -> Path:
    """Write ``folder/model.keras`` (EfficientNet-Lite0, random weights) and its ``model.json``.

    ``familiarity``: also a ``familiarity.npz`` fitted on the pooled features of a few random
    images, with ``familiarity_threshold`` on the feature score (tiny, the default: every real
    image is unfamiliar; huge: none is).  ``um_per_px``: the card frames cells at that physical scale.
    ``replay``: also a ``replay.npz`` (pooled features of a few random images, labels spread
    over the classes, two domains), so the bundle can be adapted (``python -m training adapt``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    model = build_model("efficientnet-lite0", size, weights=None)
    model.save(folder / "model.keras")
    card = ModelCard(
        name=name,
        backbone="efficientnet-lite0",
        input_size=size,
        class_order=list(GROUPS),
        balance=True,
        cell_field=288,
        cell_context=2.0,
        temperature=temperature,
        um_per_px=float(um_per_px) if um_per_px else None,
    )
    write_card(folder, card)
    if familiarity:
        random_familiarity(model, size, familiarity_threshold).save(folder / FAMILIARITY_FILE)
    if replay:
        features, labels = random_features(model, size)
        domains = np.where(np.arange(len(labels)) % 2 == 0, "pbc", "bccd")
        np.savez_compressed(folder / REPLAY_FILE, features=features.astype(np.float16), labels=labels, domains=domains)
    return folder


def random_familiarity(model, size: int, threshold: float, per_class: int = 3) -> Familiarity:
    """A familiarity model of ``model`` fitted on random images, ``per_class`` per class."""
    features, labels = random_features(model, size, per_class)
    return Familiarity.fit(features, labels, threshold=threshold)


def random_features(model, size: int, per_class: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features of ``model`` on random images, ``per_class`` per class (GROUPS order)."""
    import keras

    from yawbcc_desktop.core.classifier import pooled_features

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (per_class * len(GROUPS), size, size, 3), dtype=np.uint8).astype(np.float32)
    labels = np.repeat(np.arange(len(GROUPS)), per_class)
    features = keras.Model(model.input, pooled_features(model)).predict_on_batch(images)
    return np.asarray(features, np.float64), labels
