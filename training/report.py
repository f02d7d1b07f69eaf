"""Evaluation report of a run: metrics, figures and prediction tables in one folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from yawbcc_desktop.core.classes import GROUPS

from .calibration import reliability


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, macro F1 and per-class precision / recall / F1 / support."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    pred = probs.argmax(axis=1)
    idx = list(range(len(GROUPS)))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=idx, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=idx, average="macro", zero_division=0)),
        "per_class": {
            g: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, g in enumerate(GROUPS)
        },
    }


def error_analysis(labels: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """The report's figure 5.18: count and mean confidence of each (real, predicted) mistake."""
    pred = probs.argmax(axis=1)
    wrong = pred != labels
    frame = pd.DataFrame(
        {
            "real": [GROUPS[i] for i in labels[wrong]],
            "predicted": [GROUPS[i] for i in pred[wrong]],
            "confidence": probs.max(axis=1)[wrong],
        }
    )
    return (
        frame.groupby(["real", "predicted"])
        .agg(count=("confidence", "size"), mean_confidence=("confidence", "mean"))
        .reset_index()
        .sort_values("count", ascending=False)
    )


def write_report(
    out: str | Path,
    frame: pd.DataFrame,
    labels: np.ndarray,
    raw_probs: np.ndarray,
    calibrated: np.ndarray,
    history: pd.DataFrame | None = None,
    fine_tune_epoch: int | None = None,
    extra: dict | None = None,
) -> dict:
    """Write metrics.json, predictions.csv, errors.csv and the figures; return the metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = classification_metrics(labels, calibrated)
    ece_before, table_before = reliability(raw_probs, labels)
    ece_after, table_after = reliability(calibrated, labels)
    metrics.update({"ece_before": ece_before, "ece_after": ece_after, "n": int(len(labels))})
    metrics.update(extra or {})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))

    pred = calibrated.argmax(axis=1)
    preds = pd.DataFrame(calibrated, columns=[f"prob_{g}" for g in GROUPS])
    preds.insert(0, "path", frame["path"].to_numpy())
    preds["predicted"] = [GROUPS[i] for i in pred]
    preds["score"] = calibrated.max(axis=1)
    preds["real"] = [GROUPS[i] for i in labels]
    preds.to_csv(out / "predictions.csv", index=False)
    error_analysis(labels, calibrated).to_csv(out / "errors.csv", index=False)

    cm = confusion_matrix(labels, pred, labels=list(range(len(GROUPS))))
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(GROUPS)), GROUPS, rotation=45, ha="right")
    ax.set_yticks(range(len(GROUPS)), GROUPS)
    for i in range(len(GROUPS)):
        for j in range(len(GROUPS)):
            ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("real")
    ax.set_title(f"Confusion matrix - accuracy {100 * metrics['accuracy']:.2f} %")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    for table, name, ece in ((table_before, "before", ece_before), (table_after, "after", ece_after)):
        ax.plot(
            [b["confidence"] for b in table],
            [b["accuracy"] for b in table],
            "o-",
            label=f"{name} calibration (ECE {100 * ece:.2f} %)",
        )
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)

    if history is not None and len(history):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        epochs = np.arange(1, len(history) + 1)
        for ax, key in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, history[key], label=f"train {key}")
            if f"val_{key}" in history:
                ax.plot(epochs, history[f"val_{key}"], label=f"valid {key}")
            if fine_tune_epoch:
                ax.axvline(fine_tune_epoch + 0.5, color="grey", linestyle="--", label="fine-tuning starts")
            ax.set_xlabel("epoch")
            ax.set_title(key)
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=110)
        plt.close(fig)
    return metrics
