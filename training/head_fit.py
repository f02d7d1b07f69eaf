"""The classification head refitted on pooled features: weighted softmax regression from the
base head, with an L2 pull towards it (a few dozen cells must not swing it far)."""

from __future__ import annotations

import numpy as np

from yawbcc_desktop.core.classifier import ModelBundle

LAB_SHARE = 0.5  # weight of the lab's cells against the replay sample in the head's loss
L2_TO_BASE = 1e-3  # pull towards the base head: few cells must not swing it far


def head_weights(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray]:
    """The logits layer's kernel (D, C) and bias (C,), in the model's output order."""
    w, b = bundle.model.get_layer("logits").get_weights()
    return np.asarray(w, np.float64), np.asarray(b, np.float64)


def fit_head(
    feats: np.ndarray, labels: np.ndarray, weights: np.ndarray, w0: np.ndarray, b0: np.ndarray, steps: int = 300, lr: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted softmax regression from the base head (Adam, full batch), with an L2 pull to it.

    In float32 throughout: each step reads the whole feature matrix twice, and half the bytes
    is half the time (the fits of one adaptation run over ~4,000 x 1,280 features)."""
    feats = np.ascontiguousarray(feats, np.float32)
    w0, b0 = np.asarray(w0, np.float32), np.asarray(b0, np.float32)
    w, b = w0.copy(), b0.copy()
    onehot = np.eye(w.shape[1], dtype=np.float32)[labels]
    weights = (np.asarray(weights, np.float64) / np.sum(weights)).astype(np.float32)
    m = [np.zeros_like(w), np.zeros_like(b)]
    v = [np.zeros_like(w), np.zeros_like(b)]
    for t in range(1, steps + 1):
        logits = feats @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * weights[:, None]
        grads = [feats.T @ g + L2_TO_BASE * (w - w0), g.sum(axis=0)]
        for i, (param, grad) in enumerate(zip((w, b), grads)):
            m[i] = 0.9 * m[i] + 0.1 * grad
            v[i] = 0.999 * v[i] + 0.001 * grad**2
            param -= (lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)).astype(np.float32)
    return w.astype(np.float64), b.astype(np.float64)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sample_weights(n_lab: int, n_replay: int) -> np.ndarray:
    return np.concatenate([np.full(n_lab, LAB_SHARE / max(n_lab, 1)), np.full(n_replay, (1 - LAB_SHARE) / max(n_replay, 1))])


def _folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Stratified fold number per cell (round robin within each class after a shuffle)."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), int)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = np.arange(len(idx)) % k
    return fold
