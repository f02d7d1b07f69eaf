"""U-Net segmentation trained across the three labs (report §3.3), and its evaluation.

    python -m training unet --out runs/unet-xyz [--steps 2500] [--colour xyz|rgb] [--coco DIR ...]

What the network learns, per pixel of an image resized to one red-cell radius
(``core.unet_segmentation``): white cell (channel 0) and platelet (channel 1).  Targets
come from what each source can vouch for; a weight map says where a target is to be
believed (0 = no opinion):

- BCCD and Bio-Net detection fields: the ellipse inscribed in each Pascal-VOC box.  BCCD
  leaves platelets unlabelled now and then, so away from its platelet boxes the platelet
  channel counts for a third;
- Bio-Net labelled fields (cyan, one white cell each, no boxes): the white cell around its
  nucleus (``domains.locate_nucleus``), grown by a third of a red cell; no platelet opinion;
- PBC crops: the classic method's central mask, kept when its size is that of its class
  (the report's quality filter); elsewhere in the crop, stained blobs are not white cells
  (a neighbouring one is rare) but may be platelets (no opinion);
- a lab's reviewed sessions (``yawbcc export --coco DIR``, ``--coco DIR``): the cells'
  segmented masks under the reviewers' labels (``--coco-only``: those alone).

The targets are built in ``training/unet_targets.py``.

A thin band along every target outline carries no weight: boxes are hand-drawn and
ellipses only approximate a cell.  Held-out fields (``domains.field_split`` == "test",
PBC's test split) are never trained on; the evaluation runs on them through the app's own
code (``core.unet_segmentation``), so its figures are the application's.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from yawbcc_desktop.core.cells import PLATELET, WBC
from yawbcc_desktop.core.imageio import read_rgb
from yawbcc_desktop.core.smear import measure_rbc_radius
from yawbcc_desktop.core.unet_segmentation import WEIGHTS_FILE, SegmenterCard, UnetSegmenter, central_region

from .domains import field_split, locate_nucleus
from .unet_targets import DOMAINS, PLATELET_NAMES, WBC_NAMES, Sample, build_samples, coco_samples
from .voc import match_boxes, read_voc_boxes

# OpenCV's RGB -> XYZ (D65) matrix, applied to 0..1 values inside the network.
XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]], np.float32
)


@dataclass
class UnetConfig:
    steps: int = 2500
    batch: int = 16
    side: int = 128  # training patch, working pixels (8 red-cell radii)
    levels: tuple[int, ...] = (16, 32, 64, 128)
    colour: str = "xyz"
    work_rbc_radius: float = 16.0
    learning_rate: float = 2e-3
    strength: float = 1.0  # colour augmentation (training/stain.py)
    pbc_per_class: int = 250
    # A platelet is a few dozen pixels among thousands of background: its pixels count more.
    platelet_weight: float = 4.0
    seed: int = 0


# ------------------------------------------------------------------------------- model


def build_unet(cfg: UnetConfig):
    """The report's encoder-decoder at a width two CPU cores run in tens of milliseconds."""
    import keras
    from keras import layers

    def block(x, filters):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        return x

    inp = keras.Input((None, None, 3), name="rgb")
    x = layers.Rescaling(1.0 / 255)(inp)
    if cfg.colour == "xyz":
        to_xyz = layers.Conv2D(3, 1, use_bias=False, trainable=False, name="rgb_to_xyz")
        x = to_xyz(x)
        to_xyz.set_weights([XYZ_FROM_RGB.T[None, None]])
    skips = []
    for i, f in enumerate(cfg.levels):
        x = block(x, f)
        if i < len(cfg.levels) - 1:
            skips.append(x)
            x = layers.MaxPooling2D()(x)
    for f, skip in zip(reversed(cfg.levels[:-1]), reversed(skips)):
        x = layers.UpSampling2D()(x)
        x = layers.Concatenate()([x, skip])
        x = block(x, f)
    out = layers.Conv2D(2, 1, activation="sigmoid", name="wbc_platelet")(x)
    return keras.Model(inp, out, name="unet")


def weighted_loss(y_true, y_pred, platelet_weight: float = 1.0):
    """Weighted binary cross-entropy on both maps plus soft Dice on the white-cell map;
    ``y_true`` packs the targets (channels 0-1) and their weights (2-3); platelet pixels
    count ``platelet_weight`` times."""
    from keras import ops

    t, w = y_true[..., :2], y_true[..., 2:]
    w = w * (1.0 + (platelet_weight - 1.0) * t * ops.convert_to_tensor([0.0, 1.0]))
    p = ops.clip(y_pred, 1e-6, 1 - 1e-6)
    bce = -(t * ops.log(p) + (1 - t) * ops.log(1 - p))
    loss = ops.sum(bce * w) / (ops.sum(w) + 1.0)
    tw, pw, ww = t[..., 0], p[..., 0], w[..., 0]
    dice = (2 * ops.sum(ww * tw * pw) + 1.0) / (ops.sum(ww * tw) + ops.sum(ww * pw) + 1.0)
    return loss + (1 - dice)


def random_patch(s: Sample, side: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A patch around a labelled cell (half the time) or anywhere, turned by any angle,
    flipped, scaled by 0.75-1.33: image (side, side, 3) uint8, targets + weights (side, side, 4)."""
    h, w = s.image.shape[:2]
    if len(s.centres) and rng.random() < 0.5:
        cx, cy = s.centres[rng.integers(len(s.centres))] + rng.normal(0, side / 6, 2)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    zoom = float(np.exp(rng.uniform(np.log(0.75), np.log(1.33))))
    M = cv2.getRotationMatrix2D((float(cx), float(cy)), float(rng.uniform(0, 360)), zoom)
    M[:, 2] += (side / 2 - cx, side / 2 - cy)
    if rng.random() < 0.5:
        M[0] = -M[0]
        M[0, 2] += side
    img = cv2.warpAffine(s.image, M, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    tw = np.concatenate([s.target.astype(np.float32), s.weight], -1)
    tw = cv2.warpAffine(tw, M, (side, side), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return img, tw


def _batches(samples: list[Sample], cfg: UnetConfig, rng: np.random.Generator):
    by_domain = {d: [s for s in samples if s.domain == d] for d in DOMAINS}
    domains = [d for d in DOMAINS if by_domain[d]]
    while True:
        xs, ys = [], []
        for _ in range(cfg.batch):
            pool = by_domain[domains[rng.integers(len(domains))]]
            x, y = random_patch(pool[rng.integers(len(pool))], cfg.side, rng)
            xs.append(x)
            ys.append(y)
        yield np.stack(xs), np.stack(ys)


def train(cfg: UnetConfig, samples: list[Sample], out: Path, log=print):
    import keras
    import tensorflow as tf

    from .stain import stain_colour, yuv_stats

    keras.utils.set_random_seed(cfg.seed)
    train_set = [s for s in samples if s.split == "train"]
    log(f"training on {len(train_set)} images: " + ", ".join(f"{d} {sum(s.domain == d for s in train_set)}" for d in DOMAINS))
    bank = np.concatenate([yuv_stats(s.image[None]) for s in train_set])
    rng = np.random.default_rng(cfg.seed)
    ds = tf.data.Dataset.from_generator(
        lambda: _batches(train_set, cfg, rng),
        output_signature=(
            tf.TensorSpec((None, cfg.side, cfg.side, 3), tf.uint8),
            tf.TensorSpec((None, cfg.side, cfg.side, 4), tf.float32),
        ),
    )
    ds = ds.map(
        lambda x, y: (stain_colour(tf.cast(x, tf.float32) / 255.0, bank, cfg.strength) * 255.0, y),
        num_parallel_calls=1,
    ).prefetch(2)
    model = build_unet(cfg)
    log(f"U-Net: {model.count_params():,} parameters, levels {cfg.levels}, {cfg.colour.upper()} input")
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, cfg.steps, alpha=0.05)

    def loss(y_true, y_pred):  # named, not a lambda: Keras saves a loss by its name
        return weighted_loss(y_true, y_pred, cfg.platelet_weight)

    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
    epoch = 100
    t0 = time.time()

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, e, logs=None):
            done = (e + 1) * epoch
            log(
                json.dumps(
                    {
                        "step": done,
                        "of": cfg.steps,
                        "loss": round(float(logs["loss"]), 4),
                        "minutes": round((time.time() - t0) / 60, 1),
                    }
                )
            )
            model.save(out / WEIGHTS_FILE)

    model.fit(ds, steps_per_epoch=epoch, epochs=max(1, cfg.steps // epoch), verbose=0, callbacks=[Progress()])
    save_for_app(model, cfg, out / WEIGHTS_FILE)
    return model


def save_for_app(model, cfg: UnetConfig, path: Path) -> None:
    """The weights in an uncompiled copy: the app needs no optimizer state (a third of the size)."""
    bare = build_unet(cfg)
    bare.set_weights(model.get_weights())
    bare.save(path)


def run(args, log=print) -> int:
    """``python -m training unet``: build the targets, train, write the bundle, evaluate."""
    cfg = UnetConfig(
        steps=args.steps,
        colour=args.colour,
        batch=args.batch,
        seed=args.seed,
        strength=args.strength,
        platelet_weight=args.platelet_weight,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    samples = [] if args.coco_only else build_samples(args.data, args.split, cfg, log)
    for folder in args.coco:
        samples += coco_samples(folder, cfg, log)
    log(f"targets built in {time.time() - t0:.0f} s")
    if not args.evaluate_only:
        train(cfg, samples, out, log)
    card = SegmenterCard(name=out.name, work_rbc_radius=cfg.work_rbc_radius, colour=cfg.colour)
    card.extra = {
        "recipe": asdict(cfg),
        "trained_on": {d: sum(s.domain == d and s.split == "train" for s in samples) for d in DOMAINS},
        "command": f"python -m training unet --steps {cfg.steps} --colour {cfg.colour} --platelet-weight {cfg.platelet_weight}",
        "coco": [str(Path(f).resolve()) for f in args.coco],
    }
    card.write(out)
    if args.coco_only:  # no held-out data set here: the held-out COCO images' pixels only
        figures = pixel_figures(UnetSegmenter(out), samples, out)
    else:
        figures = evaluate(out, args.data, args.split, samples, out, log, n_pbc=args.n_pbc)
    card.extra["figures"] = figures
    card.write(out)
    (out / "metrics.json").write_text(json.dumps(figures, indent=2))
    log(json.dumps(figures, indent=2))
    return 0


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="run folder; it becomes a segmenter bundle (unet.keras + segmenter.json)")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--split", default="runs/split.csv", help="PBC split (python -m training split)")
    p.add_argument("--steps", type=int, default=UnetConfig.steps)
    p.add_argument("--batch", type=int, default=UnetConfig.batch)
    p.add_argument("--colour", choices=("xyz", "rgb"), default=UnetConfig.colour)
    p.add_argument("--strength", type=float, default=UnetConfig.strength, help="colour augmentation strength")
    p.add_argument("--platelet-weight", type=float, default=UnetConfig.platelet_weight, help="weight of platelet pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-pbc", type=int, default=1000, help="PBC test crops for the central-cell figure")
    p.add_argument("--evaluate-only", action="store_true", help="evaluate the run's unet.keras again")
    p.add_argument("--coco", action="append", default=[], metavar="DIR", help="a yawbcc export --coco folder (repeatable)")
    p.add_argument("--coco-only", action="store_true", help="train on the --coco folders alone (no --data, no --split)")


# -------------------------------------------------------------------------- evaluation


def _pixel_counts(pred: np.ndarray, s: Sample) -> np.ndarray:
    """(tp, fp, fn) of the white-cell map where the target has an opinion."""
    t, w = s.target[..., 0].astype(bool), s.weight[..., 0] > 0
    return np.array([(pred & t & w).sum(), (pred & ~t & w).sum(), (~pred & t & w).sum()], np.int64)


def type_picture(s: Sample, pred: np.ndarray) -> np.ndarray:
    """The report's Type I / II picture: false-positive pixels green, false-negative red."""
    t = s.target[..., 0].astype(bool)
    out = s.image.copy()
    out[pred & ~t] = (0.4 * out[pred & ~t] + (0, 153, 0)).astype(np.uint8)
    out[~pred & t] = (0.4 * out[~pred & t] + (153, 0, 0)).astype(np.uint8)
    return out


def _prf(tp, fp, fn) -> dict:
    p = tp / max(1, tp + fp)
    r = tp / max(1, tp + fn)
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / max(1e-9, p + r), 4)}


def evaluate(
    bundle: Path, data_root: str | Path, split_csv: str | Path, samples: list[Sample], out: Path, log=print, n_pbc: int = 1000
) -> dict:
    """Figures of the bundle on held-out images, through the app's code."""
    seg = UnetSegmenter(bundle)
    data_root = Path(data_root)
    figures = pixel_figures(seg, samples, out)

    def field(rgb):  # as the app runs it: the red cells measured, then the network
        return seg.find_cells(rgb, measure_rbc_radius(rgb))

    for domain, root in (("bccd", data_root / "bccd"), ("bionet", data_root / "deepbionet" / "fields")):
        figures[f"{domain}_objects"] = object_figures(root, field)
        log(f"{domain} held-out fields: {figures[f'{domain}_objects']}")
    figures["bionet_cells_objects"] = bionet_cells_figures(data_root / "deepbionet" / "cells", field)
    log(f"bionet labelled held-out fields: {figures['bionet_cells_objects']}")
    figures["pbc_central"] = pbc_central_figures(split_csv, n_pbc, lambda rgb: central_region(field(rgb), rgb.shape))
    log(f"pbc test crops: {figures['pbc_central']}")
    return figures


def pixel_figures(seg: UnetSegmenter, samples: list[Sample], out: Path) -> dict:
    """White-cell pixel precision / recall per source on its held-out images, with Type I / II pictures."""
    figures: dict = {}
    pictures = out / "type_pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    for domain in DOMAINS:
        held = [s for s in samples if s.domain == domain and s.split == "test"]
        counts = np.zeros(3, np.int64)
        for i, s in enumerate(held):
            pred = seg.maps_of_working_image(s.image)[..., 0] > seg.card.wbc_threshold
            counts += _pixel_counts(pred, s)
            if i < 4:
                cv2.imwrite(str(pictures / f"{domain}_{i}.png"), type_picture(s, pred)[..., ::-1])
        if held:
            figures[f"{domain}_pixels"] = _prf(*counts) | {"images": len(held)}
    return figures


def held_out_fields(root: Path) -> list[Path]:
    return [
        p
        for p in sorted((root / "JPEGImages").glob("*.jpg"))
        if field_split(p.stem) == "test" and (root / "Annotations" / f"{p.stem}.xml").exists()
    ]


def object_figures(root: Path, find) -> dict:
    """White-cell recall / precision at IoU 0.5 and platelet recall of ``find(rgb) -> regions``
    on the held-out fields under ``root``."""
    wbc = np.zeros(3, np.int64)
    plt = np.zeros(3, np.int64)
    fields = held_out_fields(root)
    for path in fields:
        regions = find(read_rgb(path))
        boxes = read_voc_boxes(root / "Annotations" / f"{path.stem}.xml")
        wbc += match_boxes([r for r in regions if r.kind == WBC], [b for b in boxes if b[0] in WBC_NAMES])
        plt += match_boxes([r for r in regions if r.kind == PLATELET], [b for b in boxes if b[0] in PLATELET_NAMES], iou=0.3)
    tp, fp, fn = (int(v) for v in wbc)
    plt_tp, _, plt_fn = (int(v) for v in plt)
    return {
        "fields": len(fields),
        "wbc_recall": round(tp / max(1, tp + fn), 4),
        "wbc_precision": round(tp / max(1, tp + fp), 4),
        "platelet_recall_iou0.3": round(plt_tp / max(1, plt_tp + plt_fn), 4),
    }


def bionet_cells_figures(root: Path, find) -> dict:
    """Labelled Bio-Net fields (one white cell each, no boxes): share of held-out fields
    whose white cell ``find(rgb) -> regions`` finds at its nucleus, and extra white cells per field."""
    paths = [p for p in sorted(root.glob("*/*.jpg")) if field_split(p.stem + p.parent.name) == "test"]
    found = extra = 0
    for path in paths:
        rgb = read_rgb(path)
        cx, cy = locate_nucleus(rgb)
        wbcs = [r for r in find(rgb) if r.kind == WBC]
        hit = any(r.box_holds(cx, cy) for r in wbcs)
        found += hit
        extra += len(wbcs) - hit
    return {
        "fields": len(paths),
        "wbc_found": round(found / max(1, len(paths)), 4),
        "extra_wbc_per_field": round(extra / max(1, len(paths)), 3),
    }


def pbc_central_figures(split_csv: str | Path, n: int, find, seed: int = 0) -> dict:
    """Share of ``n`` PBC test crops whose central cell ``find(rgb) -> region or None`` finds
    (its box holds the image centre), as ``benchmarks/segmentation.py`` scores the classic method."""
    test = pd.read_csv(split_csv).query("split == 'test'")
    paths = test["path"].sample(min(n, len(test)), random_state=seed)
    hits = 0
    for path in paths:
        rgb = read_rgb(path)
        cell = find(rgb)
        hits += cell is not None and cell.box_holds(rgb.shape[1] / 2, rgb.shape[0] / 2)
    return {"crops": len(paths), "central_found": round(hits / max(1, len(paths)), 4)}
