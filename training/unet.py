"""U-Net segmentation trained across the three labs (report §3.3), and its evaluation.

    python -m training unet --out runs/unet-xyz [--steps 2500] [--colour xyz|rgb]

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
  (a neighbouring one is rare) but may be platelets (no opinion).

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
from yawbcc_desktop.core.segmentation import SegmentationError, segment_single_cell
from yawbcc_desktop.core.smear import measure_rbc_radius
from yawbcc_desktop.core.unet_segmentation import (
    WEIGHTS_FILE,
    SegmenterCard,
    UnetSegmenter,
    central_region,
    working_image,
)

from .domains import field_split, find_nucleus, locate_nucleus
from .voc import match_boxes, read_voc_boxes

# OpenCV's RGB -> XYZ (D65) matrix, applied to 0..1 values inside the network.
XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]], np.float32
)
WBC_NAMES = {"WBC", "W"}
PLATELET_NAMES = {"Platelets", "Platlets", "Platelet"}
DOMAINS = ("pbc", "bccd", "bionet", "bionet_cells")


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


@dataclass
class Sample:
    image: np.ndarray  # working scale, uint8 RGB
    target: np.ndarray  # (h, w, 2) uint8: white cell, platelet
    weight: np.ndarray  # (h, w, 2) float32
    domain: str
    split: str
    name: str
    centres: np.ndarray  # (k, 2) x, y of labelled objects: patches are drawn around them half the time


# ------------------------------------------------------------------------------ targets


def _ellipse(shape, box, scale) -> np.ndarray:
    x0, y0, x1, y1 = (v * scale for v in box)
    m = np.zeros(shape[:2], np.uint8)
    centre = (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2)))
    axes = (max(1, int(round((x1 - x0) / 2))), max(1, int(round((y1 - y0) / 2))))
    cv2.ellipse(m, centre, axes, 0, 0, 360, 1, -1)
    return m.astype(bool)


def _band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of the mask's outline (no opinion there)."""
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    m = mask.astype(np.uint8)
    return (cv2.dilate(m, k) > 0) & ~(cv2.erode(m, k) > 0)


def _finish(img, wbc, plt, w_wbc, w_plt, band: int, domain, split, name) -> Sample:
    w_wbc = w_wbc * ~_band(wbc, band)
    w_plt = w_plt * ~_band(plt, max(1, band // 2))
    w_plt = np.where(wbc, 1.0, w_plt)  # no platelet inside a white cell
    target = np.stack([wbc, plt], -1).astype(np.uint8)
    weight = np.stack([w_wbc, w_plt], -1).astype(np.float32)
    # One centre per labelled object: platelets, a hundredth of a white cell's area, are
    # drawn as often as white cells.
    centres = [cv2.connectedComponentsWithStats(m.astype(np.uint8))[3][1:] for m in (wbc, plt)]
    return Sample(img, target, weight, domain, split, name, np.concatenate(centres).reshape(-1, 2))


def _scaled(rgb: np.ndarray, cfg: UnetConfig) -> tuple[np.ndarray, float]:
    return working_image(rgb, measure_rbc_radius(rgb), cfg.work_rbc_radius)


def field_sample(image_path: Path, xml_path: Path, domain: str, cfg: UnetConfig) -> Sample:
    rgb = read_rgb(image_path)
    img, s = _scaled(rgb, cfg)
    wbc = np.zeros(img.shape[:2], bool)
    plt = np.zeros(img.shape[:2], bool)
    near_plt = np.zeros(img.shape[:2], bool)
    for name, *box in read_voc_boxes(xml_path):
        if name in WBC_NAMES:
            wbc |= _ellipse(img.shape, box, s)
        elif name in PLATELET_NAMES:
            plt |= _ellipse(img.shape, box, s)
    if plt.any():
        near_plt = cv2.dilate(plt.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    # BCCD leaves some platelets unlabelled: away from its boxes, a weak opinion only.
    w_plt = np.where(near_plt, 1.0, 1.0 / 3 if domain == "bccd" else 1.0)
    band = max(1, round(0.15 * cfg.work_rbc_radius))
    return _finish(img, wbc, plt, np.ones(img.shape[:2]), w_plt, band, domain, field_split(image_path.stem), image_path.stem)


def bionet_cell_sample(image_path: Path, cfg: UnetConfig) -> Sample:
    rgb = read_rgb(image_path)
    img, s = _scaled(rgb, cfg)
    R = cfg.work_rbc_radius
    # The nucleus' extent (the locator's own component), then a third of a red cell of cytoplasm.
    nucleus = find_nucleus(rgb)
    x, y, w, h = (v * s for v in nucleus.box)
    if w > 0:
        radius = float(np.clip(max(w, h) / 2 + R / 3, 1.1 * R, 2.4 * R))
        cx, cy = x + w / 2, y + h / 2
    else:
        radius, cx, cy = 1.6 * R, nucleus.cx * s, nucleus.cy * s
    wbc = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(wbc, (int(round(cx)), int(round(cy))), int(round(radius)), 1, -1)
    band = max(2, round(0.25 * R))  # a guessed outline: a wider band without opinion
    split = field_split(image_path.stem + image_path.parent.name)
    zeros = np.zeros(img.shape[:2])
    return _finish(
        img,
        wbc.astype(bool),
        zeros.astype(bool),
        np.ones(img.shape[:2]),
        zeros,
        band,
        "bionet_cells",
        split,
        f"{image_path.parent.name}/{image_path.name}",
    )


def pbc_sample(image_path: Path, group: str, split: str, cfg: UnetConfig) -> Sample | None:
    """A PBC crop with the classic central mask, or None when that mask fails the quality
    filter (its size is not its class's, or it misses the centre)."""
    rgb = read_rgb(image_path)
    try:
        cell = segment_single_cell(rgb)
    except SegmentationError:
        return None
    img, s = _scaled(rgb, cfg)
    full = cv2.resize(cell.full_mask(rgb.shape).astype(np.uint8), img.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    h, w = img.shape[:2]
    if not full[h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3].any():
        return None
    # Diameter in red-cell radii.  Measured on PBC: platelet crops 1.2-1.8 R (a clump, or
    # the halo the threshold takes), other classes 1.9-4.0 R.
    d = 2 * np.sqrt(full.sum() / np.pi) / cfg.work_rbc_radius
    is_platelet = group.upper() == "PLATELET"
    if (is_platelet and not 0.3 <= d <= 2.0) or (not is_platelet and not 1.5 <= d <= 4.5):
        return None
    grey = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    _, stained = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    other = stained.astype(bool) & ~full
    wbc, plt = (np.zeros_like(full), full) if is_platelet else (full, np.zeros_like(full))
    w_plt = np.where(other, 0.0, 1.0)  # a neighbouring blob may be a platelet
    band = max(1, round(0.1 * cfg.work_rbc_radius))
    return _finish(img, wbc, plt, np.ones((h, w)), w_plt, band, "pbc", split, f"{group}/{image_path.name}")


def build_samples(data_root: str | Path, split_csv: str | Path, cfg: UnetConfig, log=print) -> list[Sample]:
    data_root = Path(data_root)
    out: list[Sample] = []
    for domain, root in (("bccd", data_root / "bccd"), ("bionet", data_root / "deepbionet" / "fields")):
        for path in sorted((root / "JPEGImages").glob("*.jpg")):
            xml = root / "Annotations" / f"{path.stem}.xml"
            if xml.exists():
                out.append(field_sample(path, xml, domain, cfg))
        log(f"{domain}: {sum(s.domain == domain for s in out)} fields")
    for path in sorted((data_root / "deepbionet" / "cells").glob("*/*.jpg")):
        out.append(bionet_cell_sample(path, cfg))
    log(f"bionet_cells: {sum(s.domain == 'bionet_cells' for s in out)} fields")
    split = pd.read_csv(split_csv)
    rng = np.random.default_rng(cfg.seed)
    kept = dropped = 0
    for (group, part), rows in split.groupby(["group", "split"]):
        n = cfg.pbc_per_class if part == "train" else cfg.pbc_per_class // 5
        for path in rows["path"].iloc[rng.permutation(len(rows))[:n]]:
            s = pbc_sample(Path(path), group, part, cfg)
            kept, dropped = kept + (s is not None), dropped + (s is None)
            if s is not None:
                out.append(s)
    log(f"pbc: {kept} crops kept, {dropped} dropped by the mask quality filter")
    return out


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
    samples = build_samples(args.data, args.split, cfg, log)
    log(f"targets built in {time.time() - t0:.0f} s")
    if not args.evaluate_only:
        train(cfg, samples, out, log)
    card = SegmenterCard(name=out.name, work_rbc_radius=cfg.work_rbc_radius, colour=cfg.colour)
    card.extra = {
        "recipe": asdict(cfg),
        "trained_on": {d: sum(s.domain == d and s.split == "train" for s in samples) for d in DOMAINS},
        "command": f"python -m training unet --steps {cfg.steps} --colour {cfg.colour} --platelet-weight {cfg.platelet_weight}",
    }
    card.write(out)
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
    tp, fp, fn = wbc
    return {
        "fields": len(fields),
        "wbc_recall": round(tp / max(1, tp + fn), 4),
        "wbc_precision": round(tp / max(1, tp + fp), 4),
        "platelet_recall_iou0.3": round(plt[0] / max(1, plt[0] + plt[2]), 4),
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
