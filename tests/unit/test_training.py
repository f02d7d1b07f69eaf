"""Training module: model factory, a training step per backbone, Grad-CAM, calibration, bundles.

Backbones are built small (64-96 px) with random weights: these tests check structure and
plumbing; accuracy is measured by the training runs and their reports.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.calibration import fit_temperature, reliability
from training.factory import BACKBONES, WeightsUnavailableError, build_model, set_trainable
from training.fit import class_weights
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.classifier import ModelBundle, softmax_with_temperature
from yawbcc_desktop.core.gradcam import GradCam, overlay

SIZES = {"xception": 71}


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_each_backbone_builds_trains_and_explains(backbone):
    import keras

    size = SIZES.get(backbone, 64)
    model = build_model(backbone, size, weights=None)
    assert model.output_shape == (None, len(GROUPS))
    set_trainable(model, 0)
    assert not model.get_layer("backbone").trainable
    set_trainable(model, BACKBONES[backbone].fine_tune_layers)
    trainable = [layer for layer in model.get_layer("backbone").layers if layer.trainable_weights]
    assert trainable, "phase 2 must unfreeze some backbone layers"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype(np.float32)
    y = np.array([0, 3, 5, 7])
    before = [w.numpy().copy() for w in model.trainable_weights[-2:]]
    model.train_on_batch(x, y)
    after = [w.numpy() for w in model.trainable_weights[-2:]]
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    heat, classes = GradCam(model).heatmaps(x[:3].astype(np.uint8))
    assert heat.shape == (3, size, size) and heat.min() >= 0 and heat.max() <= 1
    assert len(classes) == 3


def test_imagenet_offline_gives_one_clear_message(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        build_model("vgg16", 64, weights="imagenet")
    msg = str(err.value)
    assert "vgg16" in msg and "--weights none" in msg and "efficientnet-lite" in msg


def test_class_weights_favour_rare_classes():
    labels = np.array([0] * 10 + [6] * 90)
    w = class_weights(labels)
    assert w[0] > w[6] and w[1] == 0.0


def test_temperature_scaling_reduces_ece_on_overconfident_scores():
    rng = np.random.default_rng(0)
    n = 4000
    logits = rng.normal(0, 1.5, (n, 8))
    calibrated = softmax_with_temperature(np.exp(logits), 1.0)
    # Labels drawn from the calibrated probabilities; the model then reports logits x 3.
    labels = np.array([rng.choice(8, p=p) for p in calibrated])
    overconfident = softmax_with_temperature(np.exp(logits * 3), 1.0)
    t = fit_temperature(overconfident, labels)
    assert 2.0 < t < 4.5
    ece_before, _ = reliability(overconfident, labels)
    ece_after, table = reliability(softmax_with_temperature(overconfident, t), labels)
    assert ece_after < ece_before / 2 and sum(b["count"] for b in table) == n


def test_bundle_round_trip(tiny_bundle):
    bundle = ModelBundle(tiny_bundle)
    card = json.loads((tiny_bundle / "model.json").read_text())
    assert bundle.card.input_size == card["input_size"] and bundle.card.temperature == 1.5
    x = np.random.default_rng(1).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    raw = bundle.raw_probabilities(x)
    cal = bundle.probabilities(x)
    assert raw.shape == cal.shape == (5, 8)
    assert np.allclose(cal.sum(axis=1), 1) and np.array_equal(raw.argmax(1), cal.argmax(1))
    assert (cal.max(axis=1) <= raw.max(axis=1) + 1e-9).all()  # T > 1 softens
    heat, _ = GradCam(bundle.model).heatmaps(x)
    assert overlay(x[0], heat[0], 0.5).shape == (64, 64, 3)


def test_soup_averages_runs_of_one_base_and_refuses_others(tmp_path):
    import keras

    from training.domain_fit import DomainFitConfig
    from training.soup import make_soup

    runs = []
    for i, base in enumerate(["lite0-accurate", "lite0-accurate", "lite0-fast"]):
        keras.utils.set_random_seed(i)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()])
        run = tmp_path / f"run{i}"
        run.mkdir()
        model.save(run / "model.keras")
        config = {"base": base, "input_size": 160, "um_per_px": 0.175, "held_out": None, "steps": 100 * (i + 1)}
        (run / "config.json").write_text(json.dumps(config))
        (run / "metrics.json").write_text(json.dumps({"training_minutes": 2.0}))
        runs.append(run)

    make_soup(runs[:2], tmp_path / "soup", log=lambda _: None)
    soup = keras.saving.load_model(tmp_path / "soup" / "model.keras", compile=False)
    parts = [keras.saving.load_model(r / "model.keras", compile=False).get_weights() for r in runs[:2]]
    for mixed, a, b in zip(soup.get_weights(), *parts):
        np.testing.assert_allclose(mixed, (a + b) / 2, rtol=1e-6)
    assert not np.allclose(parts[0][0], parts[1][0])  # the two runs really differ
    config = json.loads((tmp_path / "soup" / "config.json").read_text())
    assert config["soup"] == [str(r) for r in runs[:2]] and config["steps"] == 300
    assert config["ingredients"][str(runs[1])]["steps"] == 200  # each run's recipe, whole
    assert DomainFitConfig(**config).soup == config["soup"]  # reevaluate reads the soup's config back

    with pytest.raises(SystemExit, match="different base"):
        make_soup(runs[1:], tmp_path / "mixed", log=lambda _: None)


def test_soup_follows_a_fine_tuned_base_back_to_its_origin(tiny_bundle, tmp_path):
    """A run fine-tuned from a bundle that ``training domains`` made shares that bundle's
    origin, so the two can be averaged; an unrelated base still cannot."""
    import shutil

    from training.soup import origin

    tuned = tmp_path / "tuned"
    shutil.copytree(tiny_bundle, tuned)
    card = json.loads((tuned / "model.json").read_text())
    card["training"] = {"base": "lite0-accurate", "steps": 900}
    (tuned / "model.json").write_text(json.dumps(card))
    assert origin(str(tuned)) == "lite0-accurate"
    assert origin("lite0-fast") == "lite0-fast"  # a name with no bundle folder is its own origin
    assert origin(str(tiny_bundle)) == str(tiny_bundle)  # a card without a recipe ends the walk


def test_card_writes_a_missing_figure_as_null_not_nan(tiny_bundle, tmp_path):
    """A lab with no wrong cell has no share of wrong cells queued: the card stays strict JSON."""
    import shutil

    from training.card import write_card
    from yawbcc_desktop.core.classifier import read_card

    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, folder)
    card = read_card(folder)
    card.extra["per_lab"] = {"bionet": {"wrong": 0, "wrong_in_queue": float("nan"), "accuracy": 1.0}}
    path = write_card(folder, card)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data["per_lab"]["bionet"] == {"wrong": 0, "wrong_in_queue": None, "accuracy": 1.0}
    assert read_card(folder).extra["per_lab"]["bionet"]["wrong_in_queue"] is None


def test_lodo_summary_says_which_views_scored_a_run(tiny_bundle, tmp_path):
    """A run re-scored with test-time views (--evaluate-only --tta) keeps its training recipe
    in config.json; the card's leave-one-domain-out entry says how its figures were scored."""
    import shutil
    from dataclasses import replace

    from training.card import write_card
    from training.domain_command import lodo_summary
    from yawbcc_desktop.core.classifier import read_card

    run = tmp_path / "lodo-bccd"
    shutil.copytree(tiny_bundle, run)
    write_card(run, replace(read_card(run), tta=("flip_lr",)))
    (run / "config.json").write_text(json.dumps({"held_out": "bccd", "steps": 400, "tta": []}))
    figures = {"n": 345, "balanced_accuracy_4": 0.513}
    (run / "metrics.json").write_text(json.dumps({"held_out": "bccd", "bccd_all": figures, "bccd_test": {}}))
    entry = lodo_summary([run])["bccd"]
    assert entry["recipe"]["steps"] == 400 and entry["bccd_all"] == figures and "bccd_test" not in entry
    assert entry["scored_with_views"] == ["flip_lr"]
    assert entry["command"] == "python -m training domains --evaluate-only --tta flip_lr --out runs/lodo-bccd"
    assert "per_lab" not in entry
    # Once benchmarks/cross_lab.py --write-card has scored the run as the application would.
    card = read_card(run)
    per_lab = {"command": "benchmarks/cross_lab.py --bundles runs/lodo-bccd", "bccd": {"balanced_accuracy_4": 0.545}}
    card.extra["per_lab"] = per_lab
    write_card(run, card)
    assert lodo_summary([run])["bccd"]["per_lab"] == card.extra["per_lab"]


def test_distillation_mixes_the_teachers_view_into_pbc_targets_only(data_dir):
    """``training domains --teacher``: a PBC cell's target is half its class, half what the
    PBC-only bundle says of it; another lab's cell keeps its one-hot class."""
    from pathlib import Path

    import pandas as pd

    from training.domain_fit import DomainFitConfig, soft_targets
    from yawbcc_desktop.core.imageio import read_rgb
    from yawbcc_desktop.core.scale import estimate_um_per_px, scaled_cell_input

    teacher = Path(__file__).resolve().parents[2] / "resources" / "models" / "lite0-accurate"
    paths = sorted((data_dir / "pbc" / "ig").glob("*.jpg"))[:4] + sorted((data_dir / "pbc" / "neutrophil").glob("SNE_*.jpg"))[:4]
    groups = ["IG"] * 4 + ["NEUTROPHIL"] * 4
    bccd = data_dir / "bccd" / "JPEGImages" / "BloodImage_00001.jpg"
    images, domains = [], ["pbc"] * 8 + ["bccd"]
    for p in [*paths, bccd]:  # framed as the training cache frames them
        rgb = read_rgb(p)
        centre = (rgb.shape[1] / 2, rgb.shape[0] / 2)
        images.append(scaled_cell_input(rgb, centre, estimate_um_per_px(rgb).um_per_px, 192, 0.175, True))
    labels = np.array([GROUPS.index(g) for g in [*groups, "NEUTROPHIL"]])
    table = pd.DataFrame({"domain": domains})

    config = DomainFitConfig(teacher=str(teacher), teacher_weight=0.5)
    targets = soft_targets(config, table, np.stack(images), labels, log=lambda *a: None)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(targets[8], np.eye(len(GROUPS))[labels[8]])  # BCCD: its class alone
    own = targets[np.arange(8), labels[:8]]
    assert np.all(own >= 0.5 - 1e-6)  # half the target is the cell's class whatever the teacher says
    assert np.sum(targets[:8].argmax(axis=1) == labels[:8]) >= 7  # and the teacher mostly agrees
    assert np.any(own < 0.999)  # it is not one-hot: the teacher's doubts are in it
    plain = soft_targets(DomainFitConfig(), table, np.stack(images), labels)
    np.testing.assert_array_equal(plain, np.eye(len(GROUPS))[labels])


@pytest.mark.parametrize("kind", ["mixstyle", "dsu"])
def test_feature_style_changes_statistics_keeps_shapes_and_trains_the_plain_model(kind, tiny_bundle, tmp_path):
    """``training domains --feature-style``: while training, each perturbed image's early feature
    maps keep their normalised pattern and take other statistics; the weights trained are the
    bundle model's own, and the model saved has no trace of the perturbation."""
    import keras

    from training.feature_style import _style_layer, with_feature_style
    from yawbcc_desktop.core.classifier import MODEL_FILE

    rng = np.random.default_rng(3)
    maps = (rng.normal(0, 1, (6, 8, 8, 4)) * rng.uniform(0.5, 3, (6, 1, 1, 4)) + rng.normal(0, 2, (6, 1, 1, 4))).astype("float32")
    every = _style_layer(kind, 1.0, seed=1)()
    styled = np.asarray(every(maps, training=True))
    assert np.array_equal(np.asarray(every(maps, training=False)), maps)  # inference sees the image as it is
    assert np.array_equal(np.asarray(_style_layer(kind, 0.0, seed=1)()(maps, training=True)), maps)

    def normalised(a):
        return (a - a.mean(axis=(1, 2), keepdims=True)) / a.std(axis=(1, 2), keepdims=True)

    assert np.allclose(normalised(styled), normalised(maps), atol=1e-3)
    assert np.abs(styled.mean(axis=(1, 2)) - maps.mean(axis=(1, 2))).max() > 0.1

    model = keras.saving.load_model(tiny_bundle / MODEL_FILE, compile=False)
    view = with_feature_style(model, kind, 0.5, seed=1)
    x = rng.integers(0, 255, (4, 64, 64, 3)).astype("float32")
    assert np.allclose(np.asarray(view(x, training=False)), np.asarray(model(x, training=False)), atol=1e-6)
    before = [w.copy() for w in model.get_weights()]
    view.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    view.fit(x, np.eye(8, dtype="float32")[[0, 1, 2, 3]], epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the model itself learnt
    model.save(tmp_path / MODEL_FILE)
    reloaded = keras.saving.load_model(tmp_path / MODEL_FILE, compile=False)
    names = [layer.name for layer in reloaded.get_layer("backbone").layers]
    assert not any("style" in n for n in names) and len(reloaded.get_weights()) == len(before)


def test_feature_style_refuses_a_classifier_it_would_train_wrongly():
    """Another backbone (no EfficientNet-Lite stage names) gets one clear error, not a silent no-op."""
    import keras

    from training.feature_style import with_feature_style

    image = keras.Input((32, 32, 3), name="image")
    backbone = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3)], name="backbone")
    head = keras.layers.Dense(8, name="logits")(keras.layers.GlobalAveragePooling2D()(backbone(image)))
    with pytest.raises(ValueError, match="EfficientNet-Lite classifier"):
        with_feature_style(keras.Model(image, head), "mixstyle")
    with pytest.raises(ValueError, match="feature style must be one of"):
        with_feature_style(keras.Model(image, head), "adain")


def test_replay_sample_holds_only_the_labs_a_run_trained_on(tiny_bundle, tmp_path):
    """A held-out lab's cells in the replay sample would hand its labels to every adaptation
    to it: ``write_replay`` samples the training labs only, ``drop_domain`` repairs an old run."""
    import shutil

    import pandas as pd

    from training.domain_fit import write_replay
    from training.replay import drop_domain
    from yawbcc_desktop.core.adaptation import REPLAY_FILE
    from yawbcc_desktop.core.classifier import read_card

    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "domain": np.repeat(["pbc", "bccd", "lisc"], 40),
            "split": np.tile(["train"] * 30 + ["valid"] * 10, 3),
            "group": np.tile(GROUPS[:4], 30),
        }
    )
    feats, labels = rng.normal(size=(len(table), 16)), np.tile(np.arange(4), 30)
    folder = tmp_path / "run"
    shutil.copytree(tiny_bundle, folder)
    write_replay(folder / REPLAY_FILE, feats, labels, table, seed=0, domains=["pbc", "bccd"], per_class=5)
    with np.load(folder / REPLAY_FILE) as rp:
        assert sorted(set(rp["domains"])) == ["bccd", "pbc"] and len(rp["labels"]) == 2 * 4 * 5
    # An old run's sample, with the held-out lab in it: taken out, the card says so.
    write_replay(folder / REPLAY_FILE, feats, labels, table, seed=0, domains=["pbc", "bccd", "lisc"], per_class=5)
    assert drop_domain(folder, "lisc", log=lambda _m: None) == 20
    with np.load(folder / REPLAY_FILE) as rp:
        assert "lisc" not in set(rp["domains"]) and len(rp["features"]) == len(rp["labels"]) == 40
    assert read_card(folder).extra["replay_without"] == ["lisc"]
    assert drop_domain(folder, "lisc", log=lambda _m: None) == 0
