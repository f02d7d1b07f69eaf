"""``python -m training`` end to end on a tiny real split: fit, report, export, reload.

Two images per class and side at 32 px with random initial weights: this checks that every
step runs and writes what it promises, not what the model learns.
"""

from __future__ import annotations

import json

from training.__main__ import main
from training.splits import load_split
from yawbcc_desktop.core.classifier import ModelBundle


def test_split_fit_export(pbc, tmp_path):
    split_csv = tmp_path / "split.csv"
    assert main(["split", "--data", str(pbc), "--out", str(split_csv)]) == 0
    tiny = load_split(split_csv).groupby(["split", "group"]).head(2)
    tiny.to_csv(split_csv, index=False)
    run = tmp_path / "run"
    args = ["fit", "--split", str(split_csv), "--weights", "none", "--size", "32", "--epochs-frozen", "1"]
    args += ["--epochs", "1", "--cache", str(tmp_path / "cache"), "--out", str(run), "--name", "tiny"]
    assert main(args) == 0
    for name in ("train.log", "config.json", "model.keras", "model.json", "history_frozen.csv", "history_fine.csv"):
        assert (run / name).exists(), name
    for name in ("metrics.json", "predictions.csv", "errors.csv", "confusion_matrix.png", "curves.png", "reliability.png"):
        assert (run / "report" / name).exists(), name
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["n"] == 16 and 0 <= metrics["accuracy"] <= 1 and "ece_after" in metrics
    assert main(["export", str(run), "--name", "tiny-export", "--dest", str(tmp_path / "models")]) == 0
    bundle = ModelBundle(tmp_path / "models" / "tiny-export")
    assert bundle.card.name == "tiny-export" and bundle.card.input_size == 32
    assert bundle.card.extra["split_sha1"]
