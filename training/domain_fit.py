"""Training across staining domains: fine-tune a bundle on PBC, BCCD and Bio-Net cells at one
physical scale, with stain augmentation and domain-balanced batches, then calibrate it, fit
its familiarity model and write a bundle.

``--held-out DOMAIN`` leaves one domain out entirely (leave-one-domain-out): the bundle is
then scored on every cell of that domain, which it never saw, as a new lab would be.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from yawbcc_desktop.core.adaptation import REPLAY_FILE
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.classifier import MODEL_FILE, ModelCard, softmax_with_temperature
from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE, AcquisitionModel, Familiarity
from yawbcc_desktop.core.scale import DEFAULT_UM_PER_PX

from .card import versions, write_card
from .domains import DOMAINS, all_cells, box_platelets, image_signatures, prepare_domain_cache
from .feature_style import with_feature_style
from .splits import split_checksum

# Input pixel size of the cross-domain bundles: PBC's framing of the first bundles (a 288 px
# square of a CellaVision crop, 0.097 µm/px, into 160 px), now in micrometres.
UM_PER_PX = 0.175
CACHE_MARGIN = 1.2  # cached squares are this much larger than the input, for scale jitter
WBC_FOUR = ("NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE", "EOSINOPHIL")
REVIEW_THRESHOLD = 0.90
DEFAULT_DOMAIN_WEIGHTS = {"pbc": 0.4, "bccd": 0.2, "bionet": 0.2, "lisc": 0.2}
UNFAMILIAR_QUANTILE = 0.99  # of held-out images of the training domains


@dataclass
class DomainFitConfig:
    base: str = "resources/models/lite0-accurate"
    held_out: str | None = None
    input_size: int = 160
    um_per_px: float = UM_PER_PX
    steps: int = 600
    steps_per_epoch: int = 100
    batch_size: int = 32
    lr: float = 2e-4
    tune_layers: int = -1  # last N backbone layers trainable (-1: all)
    train_bn: bool = True
    domain_weights: dict = field(default_factory=lambda: dict(DEFAULT_DOMAIN_WEIGHTS))
    strength: float = 1.0
    clean_share: float = 0.0  # share of training images without colour augmentation
    coarse_share: float = 0.0  # share of the colour-augmented images also seen through a coarser camera
    teacher: str | None = None  # bundle whose PBC probabilities are mixed into PBC's targets (distillation)
    teacher_weight: float = 0.5  # share of the teacher's probabilities in a PBC cell's target
    feature_style: str = ""  # perturb the early feature maps' style while training (feature_style.STYLES)
    style_share: float = 0.5  # share of the images of a batch whose feature style is perturbed
    seed: int = 42
    tta: list = field(default_factory=list)  # test-time views the bundle averages over (core TTA_VIEWS)
    soup: list = field(default_factory=list)  # runs whose weights were averaged into this one (training soup)
    ingredients: dict = field(default_factory=dict)  # those runs' own configs, by folder (training soup)


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame["group"].map({g: i for i, g in enumerate(GROUPS)}).to_numpy(np.int32)


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(len(GROUPS), dtype=np.float32)[labels]


def _center(images: np.ndarray, side: int) -> np.ndarray:
    off = (images.shape[1] - side) // 2
    return images[:, off : off + side, off : off + side]


def balanced_accuracy_four(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over neutrophil, lymphocyte, monocyte and eosinophil, where present."""
    recalls = []
    for g in WBC_FOUR:
        i = GROUPS.index(g)
        mask = true == i
        if mask.any():
            recalls.append(float(np.mean(pred[mask] == i)))
    return float(np.mean(recalls)) if recalls else float("nan")


def predict_with_features(model, images: np.ndarray, side: int, batch: int = 128, tta: tuple[str, ...] = ()):
    """Softmax outputs (with test-time views: their normalised geometric mean, as the bundle
    computes it) and the pooled features of the image itself."""
    import keras

    from yawbcc_desktop.core.classifier import TTA_VIEWS, pooled_features

    both = keras.Model(model.input, [model.output, pooled_features(model)])
    probs, feats = [], []
    for i in range(0, len(images), batch):
        x = _center(np.asarray(images[i : i + batch]), side).astype(np.float32)
        p, f = both.predict_on_batch(x)
        logs = [np.log(np.clip(np.asarray(p, np.float64), 1e-30, 1.0))]
        for view in tta:
            logs.append(np.log(np.clip(np.asarray(model.predict_on_batch(TTA_VIEWS[view](x)), np.float64), 1e-30, 1.0)))
        mean = np.mean(logs, axis=0)
        e = np.exp(mean - mean.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
        feats.append(np.asarray(f, np.float64))
    return np.concatenate(probs), np.concatenate(feats)


def domain_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    unfamiliar: np.ndarray,
    threshold: float = REVIEW_THRESHOLD,
    size_conflict=None,
    unusual=None,
) -> dict:
    """Accuracy, balanced accuracy over the four common white cells, and what reaches the
    to-review queue (low confidence, unfamiliar image, and where measured a size/class
    contradiction) — of all cells and of the wrong ones."""
    from sklearn.metrics import f1_score

    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    wrong = pred != labels
    low = conf < threshold
    conflict = np.zeros(len(labels), bool) if size_conflict is None else np.asarray(size_conflict, bool)
    odd = np.zeros(len(labels), bool) if unusual is None else np.asarray(unusual, bool)
    queue = low | unfamiliar | conflict | odd
    return {
        "n": int(len(labels)),
        "accuracy": float(np.mean(~wrong)),
        "balanced_accuracy_4": balanced_accuracy_four(labels, pred),
        "macro_f1": float(f1_score(labels, pred, labels=np.unique(labels), average="macro")),
        "flagged": float(np.mean(queue)),
        "flagged_low_confidence": float(np.mean(low)),
        "flagged_unfamiliar": float(np.mean(unfamiliar)),
        **({"flagged_size_conflict": float(np.mean(conflict))} if size_conflict is not None else {}),
        **({"flagged_unusual": float(np.mean(odd))} if unusual is not None else {}),
        "wrong": int(wrong.sum()),
        "wrong_in_queue": float(np.mean(queue[wrong])) if wrong.any() else float("nan"),
        "wrong_in_queue_confidence_only": float(np.mean(low[wrong])) if wrong.any() else float("nan"),
    }


def adabn_metrics(model, images: np.ndarray, labels: np.ndarray, side: int, batch: int = 256) -> dict:
    """Accuracy after re-estimating every batch-norm statistic on the images analysed (AdaBN,
    Li et al. 2016); the model's weights are restored afterwards."""
    saved = model.get_weights()
    bns = batchnorm_layers(model)
    momenta = [b.momentum for b in bns]
    try:
        for b in bns:
            b.momentum = 0.0
        x = _center(np.asarray(images[:batch]), side).astype(np.float32)
        model(x, training=True)
        chunks = [_center(images[i : i + 128], side).astype(np.float32) for i in range(0, len(images), 128)]
        probs = np.concatenate([np.asarray(model.predict_on_batch(c)) for c in chunks])
    finally:
        for b, m in zip(bns, momenta):
            b.momentum = m
        model.set_weights(saved)
    pred = probs.argmax(axis=1)
    return {"accuracy": float(np.mean(pred == labels)), "balanced_accuracy_4": balanced_accuracy_four(labels, pred)}


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def layers_of(model, kind) -> list:
    """Every layer of type ``kind`` in ``model``, nested models included."""
    return [layer for layer in _all_layers(model) if isinstance(layer, kind)]


def batchnorm_layers(model) -> list:
    import keras

    return layers_of(model, keras.layers.BatchNormalization)


def write_replay(
    path: Path, feats: np.ndarray, labels: np.ndarray, table: pd.DataFrame, seed: int, domains: list[str], per_class: int = 120
) -> None:
    """A small sample of the training cells' pooled features (float16), by domain and class:
    what adapting the head to a new lab replays so the old labs are not forgotten, without
    shipping their images.  Only the ``domains`` the bundle was trained on: a held-out lab's
    cells in it would hand its labels to every adaptation to that lab."""
    rng = np.random.default_rng(seed)
    train = (table["split"].eq("train") & table["domain"].isin(domains)).to_numpy()
    picked: list[int] = []
    for (_d, _g), idx in table[train].groupby(["domain", "group"]).indices.items():
        rows = np.flatnonzero(train)[idx]
        picked.extend(rng.choice(rows, min(len(rows), per_class), replace=False))
    pick = np.sort(np.array(picked))
    np.savez_compressed(
        path, features=feats[pick].astype(np.float16), labels=labels[pick], domains=table["domain"].to_numpy()[pick].astype(str)
    )


def _per_domain_quantile(scores: np.ndarray, held: np.ndarray, domains: np.ndarray) -> float:
    """The highest of each training domain's quantile: PBC's many cells must not set the
    threshold that a smaller lab's own images are judged by."""
    return float(max(np.quantile(scores[held & (domains == d)], UNFAMILIAR_QUANTILE) for d in np.unique(domains[held])))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    from .calibration import fit_temperature as fit

    return float(fit(probs, labels))


def train(config: DomainFitConfig, data_root: str, split_csv: str, cache: str, out: Path, log=print) -> dict:
    import keras
    import tensorflow as tf

    from .fit import save_for_inference
    from .stain import stain_augment, yuv_stats

    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    keras.utils.set_random_seed(config.seed)
    cells = all_cells(data_root, split_csv)
    cache_side = int(round(config.input_size * CACHE_MARGIN))
    images, table = prepare_domain_cache(cells, cache_side, config.um_per_px, True, cache, log)
    table.to_csv(out / "cells.csv", index=False)
    labels = _labels(table)
    train_domains = [d for d in DOMAINS if d != config.held_out]
    is_train = table["split"].eq("train") & table["domain"].isin(train_domains)
    is_valid = table["split"].eq("valid") & table["domain"].isin(train_domains)
    log(f"training domains {train_domains}, held out: {config.held_out or 'none'}; {int(is_train.sum())} training cells")

    stats = yuv_stats(images[np.flatnonzero(is_train)])
    missing = [d for d in train_domains if d not in config.domain_weights]
    if missing:
        raise SystemExit(f"--domain-weights names no share for {', '.join(missing)}: give each training lab one")
    weights = {d: config.domain_weights[d] for d in train_domains}
    total = sum(weights.values())
    per_domain = []
    for d in train_domains:
        idx = np.flatnonzero(is_train & table["domain"].eq(d))
        per_domain.append(tf.data.Dataset.from_tensor_slices(idx).shuffle(len(idx), seed=config.seed).repeat())
    mixed = tf.data.Dataset.sample_from_datasets(per_domain, [weights[d] / total for d in train_domains], seed=config.seed)
    label_const = tf.constant(soft_targets(config, table, images, labels, log))

    def fetch(idx):
        x = tf.numpy_function(lambda i: images[i], [idx], tf.uint8)
        x.set_shape([None, cache_side, cache_side, 3])
        x = stain_augment(x, config.input_size, stats, config.strength, config.clean_share, config.coarse_share)
        return x, tf.gather(label_const, idx)

    train_ds = mixed.batch(config.batch_size).map(fetch, num_parallel_calls=2).prefetch(2)
    valid_idx = np.flatnonzero(is_valid)
    valid_x = _center(images[valid_idx], config.input_size).astype(np.float32)
    valid_ds = tf.data.Dataset.from_tensor_slices((valid_x, _one_hot(labels[valid_idx]))).batch(128)

    model = keras.saving.load_model(Path(config.base) / MODEL_FILE, compile=False)
    if model.input_shape[1] != config.input_size:
        raise SystemExit(f"base model takes {model.input_shape[1]} px, config says {config.input_size}")
    from .factory import set_trainable

    set_trainable(model, config.tune_layers, config.train_bn)
    # The graph trained may perturb feature styles; it shares its weights with ``model``, which is saved.
    fitted = with_feature_style(model, config.feature_style, config.style_share, config.seed) if config.feature_style else model
    epochs = max(1, config.steps // config.steps_per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=epochs * config.steps_per_epoch, alpha=0.05)
    fitted.compile(optimizer=keras.optimizers.Adam(schedule), loss="categorical_crossentropy", metrics=["accuracy"])

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            vals = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
            per = (time.monotonic() - t0) / 60 / (epoch + 1)
            log(f"epoch {epoch + 1}/{epochs} {vals} ({per:.1f} min/epoch incl. preparation)")
            model.save_weights(out / "checkpoint.weights.h5")

    fitted.fit(
        train_ds,
        steps_per_epoch=config.steps_per_epoch,
        epochs=epochs,
        validation_data=valid_ds,
        verbose=0,
        callbacks=[EpochLog()],
    )
    train_minutes = (time.monotonic() - t0) / 60
    save_for_inference(model, out / MODEL_FILE)
    return evaluate_run(model, config, table, images, labels, out, train_minutes, cache, split_csv, log)


def soft_targets(config: DomainFitConfig, table: pd.DataFrame, images: np.ndarray, labels: np.ndarray, log=print) -> np.ndarray:
    """Each cell's training target (N, classes): its one-hot class, and with a teacher, for
    PBC's cells a share of the teacher's probabilities on the cell as it is.

    A PBC-only bundle knows PBC better than a model that must also learn two other labs;
    its soft opinion (which cells look half IG, half neutrophil) keeps that knowledge
    through the multi-lab training (Hinton et al. 2015; Li & Hoiem's learning without forgetting).
    """
    targets = _one_hot(labels)
    if not config.teacher:
        return targets
    from yawbcc_desktop.core.classifier import ModelBundle

    if not 0.0 <= config.teacher_weight <= 1.0:
        raise SystemExit(f"--teacher-weight is a share of the target, 0 to 1: not {config.teacher_weight}")
    teacher = ModelBundle(Path(config.teacher))
    # The teacher sees the cached crops as they are: they must be framed as it was trained.
    framed_px = DEFAULT_UM_PER_PX * teacher.card.cell_field / teacher.card.input_size  # pixel framing, on PBC
    teacher_um = teacher.card.um_per_px or framed_px
    if teacher.card.input_size != config.input_size or abs(teacher_um / config.um_per_px - 1) > 0.02:
        raise SystemExit(
            f"teacher takes {teacher.card.input_size} px at {teacher_um:.3f} µm/px, the run {config.input_size} px "
            f"at {config.um_per_px:.3f}"
        )
    pbc = np.flatnonzero(table["domain"].eq("pbc").to_numpy())
    said = np.concatenate(
        [teacher.raw_probabilities(_center(images[pbc[i : i + 128]], config.input_size)) for i in range(0, len(pbc), 128)]
    )
    log(f"teacher {teacher.name}: {np.mean(said.argmax(axis=1) == labels[pbc]):.4f} of PBC's cells in their class")
    w = config.teacher_weight
    targets[pbc] = (1 - w) * targets[pbc] + w * said.astype(np.float32)
    return targets


def evaluate_run(
    model, config, table, images, labels, out: Path, train_minutes: float, cache: str, split_csv: str, log=print
) -> dict:
    """Calibrate, fit the familiarity model, score every domain, write the bundle files."""
    train_domains = [d for d in DOMAINS if d != config.held_out]
    probs, feats = predict_with_features(model, images, config.input_size, tta=tuple(config.tta))
    in_train = table["domain"].isin(train_domains).to_numpy()
    valid = (table["split"].eq("valid").to_numpy()) & in_train
    temperature = fit_temperature(probs[valid], labels[valid])
    calibrated = softmax_with_temperature(probs, temperature)

    # Familiarity: fitted on the training cells (PBC subsampled so each domain has a say),
    # threshold at a high quantile of held-out cells of the training domains.
    rng = np.random.default_rng(config.seed)
    fit_idx: list[int] = []
    for d in train_domains:
        idx = np.flatnonzero(table["split"].eq("train").to_numpy() & table["domain"].eq(d).to_numpy())
        fit_idx.extend(rng.choice(idx, min(len(idx), 2500), replace=False))
    domains = table["domain"].to_numpy()
    fam = Familiarity.fit(feats[fit_idx], labels[fit_idx])
    scores = fam.cell_scores(feats)
    fam.threshold = _per_domain_quantile(scores, valid, domains)
    # Images: only those whose white cells the model learnt.  A series seen through its
    # platelet boxes alone (Bio-Net's detection fields) is not known, nor may it raise the
    # threshold (with it an unseen BCCD looked familiar in 38 % of its cells).
    knows = ~box_platelets(table)
    signatures = image_signatures(table, cache)
    in_fit = table["split"].eq("train").to_numpy() & in_train & knows
    fam.acquisition = AcquisitionModel.fit(signatures[in_fit], domains[in_fit])
    acq = np.array([fam.acquisition.score(sig) for sig in signatures])
    fam.acquisition.threshold = _per_domain_quantile(acq, valid & knows, domains)
    # One cell per image in these sets: the image's feature score is its cell's.
    image_scores = np.array([fam.image_score(scores[i : i + 1], signatures[i]) for i in range(len(scores))])
    unfamiliar = image_scores > 1.0

    report: dict = {"held_out": config.held_out, "temperature": temperature, "threshold": fam.threshold}
    for d in DOMAINS:
        # The valid side of the training labs is what choices between runs (views, soups) are made on.
        for part in ("test", "all") if d == config.held_out else ("valid", "test"):
            sel = table["domain"].eq(d).to_numpy() & (table["split"].eq(part).to_numpy() if part != "all" else True)
            m = domain_metrics(calibrated[sel], labels[sel], unfamiliar[sel])
            report[f"{d}_{part}"] = m
            log(
                f"{d} {part}: n={m['n']} accuracy={m['accuracy']:.4f} balanced-4={m['balanced_accuracy_4']:.3f} "
                f"macro-F1={m['macro_f1']:.4f} "
                f"flagged={m['flagged']:.3f} (unfamiliar {m['flagged_unfamiliar']:.3f}) wrong in queue={m['wrong_in_queue']:.3f}"
            )
    if config.held_out:
        sel = np.flatnonzero(table["domain"].eq(config.held_out).to_numpy())
        report[f"{config.held_out}_all_adabn"] = adabn_metrics(model, images[sel], labels[sel], config.input_size)
        log(f"{config.held_out} all, AdaBN: {report[f'{config.held_out}_all_adabn']}")
    report["training_minutes"] = train_minutes
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    write_replay(out / REPLAY_FILE, feats, labels, table, config.seed, train_domains)
    # The per-cell check against the replay sample, its bar set on the training labs' valid cells.
    from yawbcc_desktop.core.adaptation import unit_replay
    from yawbcc_desktop.core.familiarity import neighbour_distances

    from .cell_check import neighbour_threshold

    near = neighbour_distances(feats[valid], calibrated[valid].argmax(axis=1), *unit_replay(out))
    fam.neighbour_threshold = neighbour_threshold(near, domains[valid])
    fam.save(out / FAMILIARITY_FILE)
    pbc = report["pbc_test"]
    card = ModelCard(
        name=out.name,
        backbone="efficientnet-lite0",
        input_size=config.input_size,
        class_order=list(GROUPS),
        balance=True,
        cell_field=288,  # unused when framing by µm; the older pixel framing of the base bundles
        um_per_px=config.um_per_px,
        temperature=temperature,
        tta=tuple(config.tta),
        metrics={"accuracy": pbc["accuracy"], "n": pbc["n"]},
        extra={
            "training_domains": train_domains,
            "held_out_domain": config.held_out,
            "domain_metrics": {k: v for k, v in report.items() if isinstance(v, dict)},
            "familiarity": {"threshold": fam.threshold, "quantile": UNFAMILIAR_QUANTILE, "file": FAMILIARITY_FILE},
            "training_minutes": round(train_minutes, 1),
            "training": asdict(config),
            "split_sha1": split_checksum(pd.read_csv(split_csv)),
            "trained": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": versions(),
        },
    )
    write_card(out, card)
    return report


if __name__ == "__main__":
    from .domain_command import main

    raise SystemExit(main("python -m training.domain_fit"))
