"""Temperature scaling and calibration measures (expected calibration error)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from yawbcc_desktop.core.classifier import softmax_with_temperature


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class."""
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.log(p).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the validation NLL of softmax(log p / T)."""
    res = minimize_scalar(
        lambda log_t: nll(softmax_with_temperature(probs, float(np.exp(log_t))), labels),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(res.x))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> tuple[float, list[dict]]:
    """Expected calibration error (top-label, equal-width bins) and the per-bin table."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        n = int(sel.sum())
        if n == 0:
            continue
        acc, mean_conf = float(correct[sel].mean()), float(conf[sel].mean())
        ece += n / len(labels) * abs(acc - mean_conf)
        table.append({"low": float(lo), "high": float(hi), "count": n, "accuracy": acc, "confidence": mean_conf})
    return float(ece), table
