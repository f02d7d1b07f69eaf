"""``python -m training`` end to end on a tiny real split: fit, report, export, reload,
evaluate, export with test-time views, and an interrupted fit resumed.

Two images per class and side at 32 px with random initial weights: this checks that every
step runs and writes what it promises, not what the model learns.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from training.__main__ import main
from training.splits import load_split
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.classifier import ModelBundle, read_card


def fit_args(split_csv, cache, run, *extra: str) -> list[str]:
    args = ["fit", "--split", str(split_csv), "--weights", "none", "--size", "32", "--epochs-frozen", "1"]
    return args + ["--epochs", "1", "--cache", str(cache), "--out", str(run), "--name", "tiny", *extra]


@pytest.fixture(scope="module")
def tiny_split(pbc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("training")
    split_csv = folder / "split.csv"
    assert main(["split", "--data", str(pbc), "--out", str(split_csv)]) == 0
    load_split(split_csv).groupby(["split", "group"]).head(2).to_csv(split_csv, index=False)
    return split_csv


@pytest.fixture(scope="module")
def tiny_run(tiny_split):
    run = tiny_split.parent / "run"
    assert main(fit_args(tiny_split, tiny_split.parent / "cache", run)) == 0
    return run


def test_split_fit_export(tiny_run, tmp_path):
    run = tiny_run
    for name in ("train.log", "config.json", "model.keras", "model.json", "history_frozen.csv", "history_fine.csv"):
        assert (run / name).exists(), name
    for name in ("metrics.json", "predictions.csv", "errors.csv", "confusion_matrix.png", "curves.png", "reliability.png"):
        assert (run / "report" / name).exists(), name
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["n"] == 16 and 0 <= metrics["accuracy"] <= 1 and "ece_after" in metrics
    card = read_card(run)
    assert card.metrics == {k: metrics[k] for k in ("accuracy", "macro_f1", "ece_before", "ece_after", "n")}
    assert card.extra["training"]["input_size"] == 32 and card.extra["versions"]["yawbcc"]
    assert main(["export", str(run), "--name", "tiny-export", "--dest", str(tmp_path / "models")]) == 0
    bundle = ModelBundle(tmp_path / "models" / "tiny-export")
    assert bundle.card.name == "tiny-export" and bundle.card.input_size == 32
    assert bundle.card.extra["split_sha1"] == card.extra["split_sha1"] and bundle.card.temperature == card.temperature


def test_export_with_views_refits_the_temperature_through_the_bundle(tiny_bundle, tiny_split, tmp_path, monkeypatch):
    """``export --tta``: the temperature is fitted again on the validation side through the
    bundle with its views (the random tiny bundle says 1.5, which no fit gives)."""
    import shutil

    import keras

    from training.calibration import fit_temperature
    from training.data import cached_arrays, labels_of

    run, cache = tmp_path / "run", tiny_split.parent / "cache"
    shutil.copytree(tiny_bundle, run)
    # Random weights leave features near 1e-12, so every output is uniform; a scaled head makes
    # the outputs differ by image (and by view), so a temperature fit means something.
    model = keras.saving.load_model(run / "model.keras", compile=False)
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([np.random.default_rng(0).normal(0, 2e10, kernel.shape).astype(kernel.dtype), bias])
    model.save(run / "model.keras")
    seen_views = []
    real = ModelBundle.raw_probabilities

    def spy(self, batch):
        seen_views.append(self.card.tta)
        return real(self, batch)

    monkeypatch.setattr(ModelBundle, "raw_probabilities", spy)
    args = ["export", str(run), "--name", "tiny-tta", "--dest", str(tmp_path / "models"), "--tta", "flip_lr"]
    assert main([*args, "--split", str(tiny_split), "--cache", str(cache)]) == 0
    single, card = read_card(run), read_card(tmp_path / "models" / "tiny-tta")
    assert card.tta == ("flip_lr",) and single.temperature == 1.5
    assert card.extra["test_metrics_single_view"] == single.metrics  # the run's own figures, kept
    figures = json.loads((run / "report-tta" / "metrics.json").read_text())
    assert card.metrics["n"] == 16 and card.metrics["accuracy"] == figures["accuracy"]
    assert figures["temperature"] == card.temperature
    assert seen_views and set(seen_views) == {("flip_lr",)}  # both sides went through the bundle with its view
    bundle = ModelBundle(tmp_path / "models" / "tiny-tta")
    split = load_split(tiny_split)
    valid = split[split["split"] == "valid"].reset_index(drop=True)
    images = cached_arrays(list(valid["path"]), 64, bundle.card.balance, bundle.card.cell_field, str(cache))
    raw = bundle.raw_probabilities(images)
    assert not np.allclose(raw, ModelBundle(run).raw_probabilities(images), atol=1e-3)  # the view counts
    expected = fit_temperature(raw, labels_of(valid))
    assert card.temperature == pytest.approx(expected, rel=1e-3) and card.temperature != pytest.approx(1.5)


def test_export_refuses_views_without_the_split(tiny_run, tmp_path, capsys):
    assert main(["export", str(tiny_run), "--name", "tiny-tta", "--dest", str(tmp_path), "--tta", "flip_lr"]) == 2
    assert "--tta needs --split" in capsys.readouterr().err


def test_evaluate_a_bundle_on_a_split(tiny_bundle, tiny_split, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", str(tiny_bundle), "--split", str(tiny_split), "--cache", str(tiny_split.parent / "cache")]
    assert main([*args, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 16 and metrics["temperature"] == 1.5  # the bundle's own calibration
    predictions = pd.read_csv(out / "predictions.csv")
    split = load_split(tiny_split)
    assert sorted(predictions["path"]) == sorted(split.loc[split["split"] == "test", "path"])
    probs = predictions[[f"prob_{g}" for g in GROUPS]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert "test: accuracy" in (out / "train.log").read_text()


def test_fit_resume_continues_an_interrupted_run(tiny_split, tmp_path, monkeypatch):
    """A run stopped after its first fine-tuning epoch resumes there: the frozen phase is not
    trained again, the fine phase runs its second epoch only, and the run completes."""
    import keras

    from training import fit as fit_module

    class Interrupt(keras.callbacks.Callback):
        def __init__(self, phase):
            super().__init__()
            self.phase = phase

        def on_epoch_end(self, epoch, logs=None):
            if self.phase == "fine":
                raise KeyboardInterrupt

    real = fit_module._callbacks
    monkeypatch.setattr(fit_module, "_callbacks", lambda out, phase, *a, **k: [*real(out, phase, *a, **k), Interrupt(phase)])
    run, cache = tmp_path / "run", tiny_split.parent / "cache"
    with pytest.raises(KeyboardInterrupt):
        main(fit_args(tiny_split, cache, run, "--epochs", "2"))
    assert json.loads((run / "state.json").read_text()) == {"phase": "fine", "epoch": 1}
    assert not (run / "model.json").exists()
    monkeypatch.undo()

    assert main(fit_args(tiny_split, cache, run, "--epochs", "2", "--resume")) == 0
    log = (run / "train.log").read_text()
    assert "resuming after fine epoch 1" in log
    assert len(pd.read_csv(run / "history_frozen.csv")) == 1  # not trained again
    assert list(pd.read_csv(run / "history_fine.csv")["epoch"]) == [0, 1]  # the second epoch only, appended
    assert json.loads((run / "state.json").read_text()) == {"phase": "fine", "epoch": 2}
    assert read_card(run).metrics["n"] == 16
