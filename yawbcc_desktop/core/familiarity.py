"""How familiar an image looks to a model: distance of its cells' pooled backbone features to
the cells the model was trained on.

A network trained on one lab's stain is confidently wrong on another's, so its own
confidence cannot say "I have not seen images like this".  The features can: each cell's
distance to the nearest training class (class-conditional Mahalanobis distance in the
principal subspace of the training features, plus the share of the feature vector outside
that subspace), scaled so that a typical training cell scores about 1.  An image's score is
the median over its cells; above the bundle's threshold the image is *unfamiliar*.  The
threshold is chosen in training (``training/familiarity_fit.py``) from held-out images of
the training domains and checked on held-out domains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FAMILIARITY_FILE = "familiarity.npz"


@dataclass
class Familiarity:
    mean: np.ndarray  # (D,) centre of the training features
    components: np.ndarray  # (k, D) principal directions
    variances: np.ndarray  # (k,) shared within-class variance along each direction
    class_means: np.ndarray  # (C, k) class centres in the principal subspace
    residual_scale: float  # mean squared residual of training cells
    threshold: float  # image score above which an image is unfamiliar

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, k: int = 32, threshold: float = np.inf) -> Familiarity:
        feats = np.asarray(features, np.float64)
        mean = feats.mean(axis=0)
        centred = feats - mean
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        comps = vt[:k]
        z = centred @ comps.T
        classes = np.unique(labels)
        class_means = np.stack([z[labels == c].mean(axis=0) for c in classes])
        within = z - class_means[np.searchsorted(classes, labels)]
        variances = np.maximum(within.var(axis=0), 1e-8)
        resid = centred - z @ comps
        return cls(mean, comps, variances, class_means, float(np.mean(np.sum(resid**2, axis=1)) + 1e-12), threshold)

    def cell_scores(self, features: np.ndarray) -> np.ndarray:
        """Per cell: mean squared whitened distance to the nearest class + residual share."""
        centred = np.asarray(features, np.float64) - self.mean
        z = centred @ self.components.T
        d = ((z[:, None, :] - self.class_means[None]) ** 2 / self.variances).mean(axis=2).min(axis=1)
        resid = np.sum((centred - z @ self.components) ** 2, axis=1) / self.residual_scale
        return 0.5 * (d + resid)

    @staticmethod
    def image_score(cell_scores: np.ndarray) -> float:
        return float(np.median(cell_scores)) if len(cell_scores) else float("nan")

    def is_unfamiliar(self, image_score: float) -> bool:
        return bool(np.isfinite(image_score) and image_score > self.threshold)

    def save(self, path: str | Path) -> None:
        np.savez(
            path,
            mean=self.mean,
            components=self.components,
            variances=self.variances,
            class_means=self.class_means,
            residual_scale=self.residual_scale,
            threshold=self.threshold,
        )

    @classmethod
    def load(cls, path: str | Path) -> Familiarity:
        with np.load(path) as d:
            return cls(
                d["mean"],
                d["components"],
                d["variances"],
                d["class_means"],
                float(d["residual_scale"]),
                float(d["threshold"]),
            )
