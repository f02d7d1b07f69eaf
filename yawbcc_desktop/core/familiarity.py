"""How familiar an image looks to a model: distance of its cells' pooled backbone features to
the cells the model was trained on, and of its acquisition (stain colours, sharpness, pixel
size) to the training labs'.

A network trained on one lab's stain is confidently wrong on another's, so its own
confidence cannot say "I have not seen images like this".  The features can: each cell's
distance to the nearest training class (class-conditional Mahalanobis distance in the
principal subspace of the training features, plus the share of the feature vector outside
that subspace), scaled so that a typical training cell scores about 1.  An image's score is
the median over its cells.

A network trained to ignore stain colour (``training/stain.py``) also stops *seeing* that a
stain is new, so its features alone flag few images of an unseen lab.  The acquisition
signature does: the colour distribution of the whole image (percentiles of L*, a*, b*), its
sharpness and its pixel size, compared with the nearest training images' signatures.  Each part is
divided by its threshold (a high quantile of held-out images of the training labs, set in
``training/domain_fit.py`` and checked on a held-out lab), and the image's score is the
larger of the two: above 1 the image is *unfamiliar*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .preprocess import uint8_percentiles

FAMILIARITY_FILE = "familiarity.npz"


SIGNATURE_SIDE = 256
# Image scores are in units of the thresholds: above this an image is unfamiliar.
UNFAMILIAR_ABOVE = 1.0
# A cell is compared with this many training cells of the class it was called (the replay sample).
NEIGHBOURS = 10
# Cosine similarity above which two cells' features are one cell's (a session's cell classified again).
SAME_CELL = 0.9995


def unit_rows(x: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """Rows scaled to unit length (cosine similarity is then a dot product), whatever the
    features' scale; an all-zero row stays zero."""
    x = np.asarray(x, dtype)
    rows: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(dtype).tiny)
    return rows


def neighbour_distances(
    features: np.ndarray, predicted: np.ndarray, references: np.ndarray, ref_labels: np.ndarray
) -> np.ndarray:
    """Per cell, the mean cosine distance of its pooled features to the ``NEIGHBOURS`` nearest
    reference cells of the class it was called (``predicted`` and ``ref_labels`` in one class
    order; ``references`` unit-length rows); 2.0, the farthest, where that class has none.

    The image-level familiarity misses a lab whose images look like the training labs' while
    its cells do not: a lymphocyte of such a lab called a monocyte sits far from every
    monocyte the model learnt from.  Measured on LISC held out of training (benchmarks/
    cell_signals.py): confidence alone queued 70 % of its wrong cells, this distance added
    to it 94 %; the distance to the nearest class, the agreement of the mirror view, the
    energy score and the top-2 margin added 1-3 points each."""
    f = unit_rows(features)
    out = np.full(len(f), 2.0)
    for c in np.unique(predicted):
        sel = predicted == c
        ref = references[ref_labels == c]
        if len(ref) == 0:
            continue
        d = 1.0 - f[sel] @ ref.T
        k = min(NEIGHBOURS, d.shape[1])
        out[sel] = np.partition(d, k - 1, axis=1)[:, :k].mean(axis=1)
    return out


def neighbour_agreement(
    features: np.ndarray,
    predicted: np.ndarray,
    references: np.ndarray,
    ref_classes: np.ndarray,
    skip: np.ndarray | None = None,
) -> np.ndarray:
    """Per cell, the share of its ``NEIGHBOURS`` most similar reference cells, of any class,
    whose class is the one the cell was called (``references`` unit-length rows).  The cell
    itself among them (similarity above ``SAME_CELL``) is left out, and so are the pairs
    ``skip`` (bool, cells x references) marks.

    After adapting, the references are the lab's session — the reviewed cells with their
    class, the others with the adapted model's call — and a cell whose nearest ones were
    called something else sits where the model's calls on the lab are mixed: the mistakes a
    few dozen corrections leave are there (LISC: 97 % of them among the 35 % that agree least,
    against 87 % among the 35 % least sure; benchmarks/adaptation.py)."""
    sim = unit_rows(features) @ np.asarray(references, np.float32).T
    sim[sim > SAME_CELL] = -np.inf
    if skip is not None:
        sim[skip] = -np.inf
    k = min(NEIGHBOURS, sim.shape[1])
    if k == 0:
        return np.ones(len(sim))
    nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    agrees: np.ndarray = np.mean(np.asarray(ref_classes)[nearest] == np.asarray(predicted)[:, None], axis=1)
    return agrees


def acquisition_signature(rgb: np.ndarray, um_per_px: float) -> np.ndarray:
    """(11,) L*, a*, b* at the 10th, 50th and 90th percentiles, log sharpness, log µm/px."""
    h, w = rgb.shape[:2]
    s = min(1.0, SIGNATURE_SIDE / max(h, w))
    small = cv2.resize(rgb, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA) if s < 1 else rgb
    lab = cv2.cvtColor(np.ascontiguousarray(small[..., :3], dtype=np.uint8), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    pct = uint8_percentiles(lab, (10, 50, 90)).ravel()
    sharp = cv2.Laplacian(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()
    return np.concatenate([pct, [np.log1p(sharp), np.log(max(um_per_px, 1e-3))]]).astype(np.float64)


@dataclass
class AcquisitionModel:
    """Signatures of training images; an image is scored by its distance to the nearest ones.

    Nearest neighbours rather than one Gaussian per lab: a lab's images form several clusters
    (Bio-Net's fields come in a cyan and a yellow series), and a Gaussian wide enough for both
    also covers labs in between.  Signatures are standardised by the training spread.
    """

    centre: np.ndarray  # (d,)
    spread: np.ndarray  # (d,)
    references: np.ndarray  # (N, d) standardised training signatures
    k: int = 5
    threshold: float = np.inf

    @classmethod
    def fit(
        cls, signatures: np.ndarray, domains: np.ndarray, per_domain: int = 1500, k: int = 5, seed: int = 0
    ) -> AcquisitionModel:
        x = np.asarray(signatures, np.float64)
        centre, spread = x.mean(axis=0), x.std(axis=0) + 1e-6
        rng = np.random.default_rng(seed)
        keep: list[int] = []
        for d in np.unique(domains):
            idx = np.flatnonzero(domains == d)
            keep.extend(rng.choice(idx, min(len(idx), per_domain), replace=False))
        return cls(centre, spread, (x[np.sort(keep)] - centre) / spread, k)

    def with_references(self, signatures: np.ndarray) -> AcquisitionModel:
        """The same model knowing more images (a lab added by adaptation)."""
        extra = (np.asarray(signatures, np.float64) - self.centre) / self.spread
        return AcquisitionModel(self.centre, self.spread, np.concatenate([self.references, extra]), self.k, self.threshold)

    def score(self, signature: np.ndarray) -> float:
        """Mean distance to the k nearest training signatures, in training standard deviations."""
        z = (np.asarray(signature, np.float64) - self.centre) / self.spread
        d = np.sqrt(((self.references - z) ** 2).sum(axis=1))
        k = min(self.k, len(d))
        return float(np.partition(d, k - 1)[:k].mean())


@dataclass
class Familiarity:
    mean: np.ndarray  # (D,) centre of the training features
    components: np.ndarray  # (k, D) principal directions
    variances: np.ndarray  # (k,) shared within-class variance along each direction
    class_means: np.ndarray  # (C, k) class centres in the principal subspace
    residual_scale: float  # mean squared residual of training cells
    threshold: float  # feature score (median over an image's cells) above which it is unfamiliar
    acquisition: AcquisitionModel | None = field(default=None)
    # A cell farther than this from the training cells of the class it was called
    # (``neighbour_distances`` to the bundle's replay sample) waits for review; inf: not checked.
    neighbour_threshold: float = np.inf

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
        score: np.ndarray = 0.5 * (d + resid)
        return score

    def image_score(self, cell_scores: np.ndarray, signature: np.ndarray | None = None) -> float:
        """The image's unfamiliarity in units of the thresholds: above 1 it is unfamiliar."""
        parts = []
        if len(cell_scores):
            parts.append(float(np.median(cell_scores)) / max(self.threshold, 1e-300))
        if signature is not None and self.acquisition is not None:
            parts.append(self.acquisition.score(signature) / max(self.acquisition.threshold, 1e-300))
        return max(parts) if parts else float("nan")

    @staticmethod
    def is_unfamiliar(image_score: float) -> bool:
        return bool(np.isfinite(image_score) and image_score > UNFAMILIAR_ABOVE)

    def save(self, path: str | Path) -> None:
        # Any: numpy's stubs would match a dict of arrays against savez's allow_pickle too.
        arrays: dict[str, Any] = {
            "mean": self.mean,
            "components": self.components,
            "variances": self.variances,
            "class_means": self.class_means,
            "residual_scale": self.residual_scale,
            "threshold": self.threshold,
        }
        if np.isfinite(self.neighbour_threshold):
            arrays["neighbour_threshold"] = self.neighbour_threshold
        if self.acquisition is not None:
            arrays.update(
                acq_centre=self.acquisition.centre,
                acq_spread=self.acquisition.spread,
                acq_references=self.acquisition.references.astype(np.float32),
                acq_k=self.acquisition.k,
                acq_threshold=self.acquisition.threshold,
            )
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Familiarity:
        with np.load(path) as d:
            acquisition = None
            if "acq_references" in d:
                acquisition = AcquisitionModel(
                    d["acq_centre"],
                    d["acq_spread"],
                    d["acq_references"].astype(np.float64),
                    int(d["acq_k"]),
                    float(d["acq_threshold"]),
                )
            return cls(
                d["mean"],
                d["components"],
                d["variances"],
                d["class_means"],
                float(d["residual_scale"]),
                float(d["threshold"]),
                acquisition,
                float(d["neighbour_threshold"]) if "neighbour_threshold" in d else np.inf,
            )
