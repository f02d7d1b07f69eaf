"""``python -m training <command>``: index, split, fit, evaluate, export.

Every command that writes a folder also writes its log (``train.log``) and configuration
there, so a run can be understood and repeated later.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from yawbcc_desktop.core.classifier import ModelCard
from yawbcc_desktop.core.retraining import FILE_MISSING, FIT_DEFAULTS, SMEAR_CELL, left_out, progress_event

from .card import card_metrics, versions, write_card

DEFAULT_DATA = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pbc")


class RunLog:
    """Prints and appends to ``<folder>/train.log``."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "train.log"

    def __call__(self, msg: str) -> None:
        line = f"{datetime.now().strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _index(args) -> int:
    from yawbcc_desktop.core.dataset import index_folder, index_report

    index = index_folder(args.data)
    print(index_report(index))
    if args.out:
        index.images.to_csv(args.out, index=False)
    return 0


def _split(args) -> int:
    from yawbcc_desktop.core.dataset import index_folder

    from .splits import conflicting_duplicates, make_split, save_split, split_checksum

    index = index_folder(args.data)
    for _, row in index.skipped.iterrows():
        print(f"skipped: {row['path']}: {row['reason']}")
    split = make_split(index.images, args.valid, args.test, args.seed)
    for _, row in conflicting_duplicates(split).iterrows():
        print(f"identical file with conflicting labels: {row['path']} ({row['group']}, {row['split']})")
    save_split(split, args.out)
    print(split.groupby(["split"]).size().to_string())
    print(f"split checksum {split_checksum(split)} -> {args.out}")
    return 0


def merge_extra(split: pd.DataFrame, folders: list[str], corrections: list[str], log) -> pd.DataFrame:
    """Add reviewers' folders and corrections to the training side; skip files already known."""
    from yawbcc_desktop.core.dataset import file_sha1, index_folder

    extra = [index_folder(f).images for f in folders]
    for csv_path in corrections:
        rows = pd.read_csv(csv_path, encoding="utf-8-sig")
        label_col = next((c for c in ("final_label", "label", "group") if c in rows.columns), None)
        if "path" not in rows.columns or label_col is None:
            raise SystemExit(f"{csv_path}: needs columns path and final_label (or label/group)")
        if "reviewed" in rows.columns:
            # A session export lists every cell: learn only from what a reviewer looked at.
            rows = rows[rows["reviewed"].astype(str).str.lower().isin(["yes", "true", "1"])]
        # Which cells train is the window's count too: core.retraining.left_out.
        modes = rows["mode"].fillna("") if "mode" in rows.columns else [""] * len(rows)
        why = pd.Series([left_out(*r) for r in zip(modes, rows[label_col], rows["path"])], index=rows.index, dtype=str)
        if why.eq(SMEAR_CELL).any():
            log(f"{csv_path}: {int(why.eq(SMEAR_CELL).sum())} smear-field cells skipped (training reads single-cell images)")
        for p in rows.loc[why.eq(FILE_MISSING), "path"]:
            log(f"correction skipped, file not found: {p}")
        rows = rows[why.eq("")]
        extra.append(
            pd.DataFrame(
                {
                    "path": rows["path"],
                    "image": rows["path"].map(lambda p: Path(p).name),
                    "group": rows[label_col],
                    "label": rows[label_col],
                    "sha1": rows["path"].map(file_sha1),
                }
            )
        )
    if not extra:
        return split
    added = pd.concat(extra, ignore_index=True).drop_duplicates("sha1")
    known = set(split["sha1"])
    fresh = added[~added["sha1"].isin(known)].assign(split="train")
    log(f"extra images: {len(added)}, {len(added) - len(fresh)} already in the data set, {len(fresh)} added to train")
    return pd.concat([split, fresh[split.columns]], ignore_index=True)


def _fit(args) -> int:
    from yawbcc_desktop.core.classes import GROUPS
    from yawbcc_desktop.core.dataset import index_folder

    from .calibration import fit_temperature
    from .data import cached_arrays, labels_of
    from .fit import fit, read_history
    from .splits import drop_conflicts, load_split, make_split, save_split, split_checksum

    out = Path(args.out)
    log = RunLog(out)
    log(f"python -m training {' '.join(sys.argv[1:])}")
    if args.split and Path(args.split).exists():
        split = load_split(args.split)
    else:
        split = make_split(index_folder(args.data).images, seed=args.seed)
        save_split(split, out / "split.csv")
    checksum = split_checksum(split)
    split = drop_conflicts(merge_extra(split, args.extra, args.corrections, log))
    save_split(split, out / "split_used.csv")
    config = fit_config(args, split_sha1=checksum, data=args.data)
    t0 = time.monotonic()
    parts = {}
    for name in ("train", "valid", "test"):
        frame = split[split["split"] == name].reset_index(drop=True)
        log(f"preprocessing {name}: {len(frame)} images at {config.input_size} px")
        progress_event("preparing", split=name, images=len(frame))
        parts[name] = (
            frame,
            cached_arrays(list(frame["path"]), config.input_size, config.balance, config.cell_field, args.cache, log),
            labels_of(frame),
        )
    from .factory import WeightsUnavailableError

    try:
        model = fit(config, parts["train"][1], parts["train"][2], parts["valid"][1], parts["valid"][2], out, args.resume, log)
    except WeightsUnavailableError as exc:
        log(f"error: {exc}")
        return 2
    minutes = (time.monotonic() - t0) / 60
    log(f"training took {minutes:.1f} min")
    progress_event("testing")
    valid_probs = _predict(model, parts["valid"][1])
    temperature = fit_temperature(valid_probs, parts["valid"][2])
    log(f"temperature fitted on validation: {temperature:.3f}")
    history, frozen = read_history(out)
    metrics = _evaluate(model, parts["test"], temperature, out / "report", history, frozen, log)
    card = ModelCard(
        name=args.name or out.name,
        backbone=config.backbone,
        input_size=config.input_size,
        class_order=list(GROUPS),
        balance=config.balance,
        cell_field=config.cell_field,
        cell_context=args.cell_context,
        temperature=temperature,
        metrics=card_metrics(metrics),
        extra={
            "split_sha1": checksum,
            "trained": datetime.now(UTC).isoformat(timespec="seconds"),
            "training_minutes": round(minutes, 1),
            "training": {k: v for k, v in config.__dict__.items() if k != "extra"},
            "versions": versions(),
        },
    )
    write_card(out, card)
    log(f"run complete: {out} (export with: python -m training export {out} --name NAME)")
    return 0


def fit_config(args, **extra):
    """The ``FitConfig`` of ``fit``'s parsed options (``FitRecipe.fit_args`` writes them)."""
    from .fit import FitConfig

    return FitConfig(
        backbone=args.backbone,
        input_size=args.size,
        cell_field=args.field,
        balance=args.balance,
        weights=args.weights,
        batch_size=args.batch_size,
        epochs_frozen=args.epochs_frozen,
        epochs_fine=args.epochs,
        lr_fine=args.lr,
        fine_tune_layers=args.fine_tune_layers,
        class_weighting=args.class_weighting,
        augment=args.augment,
        train_bn=args.train_bn,
        seed=args.seed,
        extra=extra,
    )


def _predict(model, images: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, len(images), 128):
        out.append(np.asarray(model.predict_on_batch(np.asarray(images[i : i + 128], np.float32)), np.float64))
    return np.concatenate(out) if out else np.zeros((0, 8))


def _evaluate(model, part, temperature, folder, history, frozen, log) -> dict:
    frame, images, labels = part
    return _report(frame, labels, _predict(model, images), temperature, folder, history, frozen, log)


def _report(frame, labels, raw, temperature, folder, history, frozen, log, what: str = "test") -> dict:
    """The evaluation report of raw test probabilities calibrated by ``temperature``, logged."""
    from yawbcc_desktop.core.classifier import softmax_with_temperature

    from .report import write_report

    calibrated = softmax_with_temperature(raw, temperature)
    metrics = write_report(folder, frame, labels, raw, calibrated, history, frozen, {"temperature": temperature})
    log(
        f"{what}: accuracy {100 * metrics['accuracy']:.2f} %, macro F1 {metrics['macro_f1']:.4f}, "
        f"ECE {100 * metrics['ece_before']:.2f} % -> {100 * metrics['ece_after']:.2f} % after calibration "
        f"(n={metrics['n']})"
    )
    for g, m in metrics["per_class"].items():
        log(f"  {g:<13} precision {m['precision']:.4f} recall {m['recall']:.4f} F1 {m['f1']:.4f} n={m['support']}")
    return metrics


def _evaluate_cmd(args) -> int:
    """Evaluate a bundle (or run folder) on a split's test side."""
    from yawbcc_desktop.core.classifier import ModelBundle

    from .data import cached_arrays, labels_of
    from .splits import load_split

    bundle = ModelBundle(args.model)
    split = load_split(args.split)
    frame = split[split["split"] == args.side].reset_index(drop=True)
    card = bundle.card
    images = cached_arrays(list(frame["path"]), card.input_size, card.balance, card.cell_field, args.cache)
    log = RunLog(Path(args.out))
    _evaluate(bundle.model, (frame, images, labels_of(frame)), card.temperature, Path(args.out), None, None, log)
    return 0


def _export(args) -> int:
    from yawbcc_desktop.core.classifier import ModelBundleError, read_card

    run = Path(args.run)
    try:
        card = replace(read_card(run), name=args.name)
    except ModelBundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dest = Path(args.dest) / args.name
    dest.mkdir(parents=True, exist_ok=True)
    # Re-saved from an uncompiled load: a model saved mid-training can carry optimiser
    # variables that triple the bundle's size.
    import keras

    tmp = dest / "model.tmp.keras"
    keras.saving.load_model(run / "model.keras", compile=False).save(tmp)
    tmp.replace(dest / "model.keras")
    import shutil

    from yawbcc_desktop.core.adaptation import REPLAY_FILE
    from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE

    from .domain_fit import lodo_summary

    for extra in (FAMILIARITY_FILE, REPLAY_FILE):  # bundles trained across labs
        if (run / extra).is_file():
            shutil.copyfile(run / extra, dest / extra)
    if args.lodo:
        card.extra["leave_one_domain_out"] = lodo_summary([Path(r) for r in args.lodo])
    write_card(dest, card)
    if args.tta:
        if card.um_per_px:
            print("error: --tta re-evaluates on the PBC split's pixel framing; not for bundles framed in µm", file=sys.stderr)
            return 2
        if not args.split:
            print("error: --tta needs --split (the split the run was trained on)", file=sys.stderr)
            return 2
        card = _calibrate_with_views(dest, card, args.tta.split(","), args.split, args.cache, run / "report-tta", RunLog(run))
        write_card(dest, card)
    size = (dest / "model.keras").stat().st_size / 1e6
    print(f"exported {dest} ({size:.1f} MB)")
    return 0


def _calibrate_with_views(
    dest: Path, card: ModelCard, views: list[str], split_csv: str, cache: str, report: Path, log
) -> ModelCard:
    """Fit the temperature on the validation split and evaluate the test split, both through
    the bundle's own ``raw_probabilities`` with test-time views: the figures the app gets."""
    from yawbcc_desktop.core.classifier import ModelBundle

    from .calibration import fit_temperature
    from .data import cached_arrays, labels_of
    from .splits import load_split

    single_view = card.extra.get("test_metrics_single_view", card.metrics)
    card = replace(card, tta=tuple(views), extra={**card.extra, "test_metrics_single_view": single_view})
    write_card(dest, card)
    bundle = ModelBundle(dest)
    split = load_split(split_csv)
    parts = {}
    for side in ("valid", "test"):
        frame = split[split["split"] == side].reset_index(drop=True)
        images = cached_arrays(list(frame["path"]), bundle.card.input_size, bundle.card.balance, bundle.card.cell_field, cache)
        raw = np.concatenate([bundle.raw_probabilities(images[i : i + 64]) for i in range(0, len(images), 64)])
        parts[side] = (frame, images, labels_of(frame), raw)
    valid_accuracy = float((parts["valid"][3].argmax(1) == parts["valid"][2]).mean())
    temperature = fit_temperature(parts["valid"][3], parts["valid"][2])
    log(f"test-time views {views}: validation accuracy {100 * valid_accuracy:.2f} %, temperature {temperature:.3f}")
    frame, _images, labels, raw = parts["test"]
    metrics = _report(frame, labels, raw, temperature, report, None, None, log, f"test with views {views}")
    return replace(card, temperature=temperature, metrics=card_metrics(metrics))


def build_parser() -> argparse.ArgumentParser:
    from .factory import BACKBONES

    parser = argparse.ArgumentParser(prog="python -m training", description="Retrain YAWBCC's cell classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("index", help="index a folder of class folders (report tables 2.1, 2.2)")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out")
    p = sub.add_parser("split", help="duplicate-aware stratified train/valid/test split, saved as CSV")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--valid", type=float, default=0.16)
    p.add_argument("--test", type=float, default=0.20)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default="runs/split.csv")
    p = sub.add_parser("fit", help="two-phase training, calibration and evaluation report")
    d = FIT_DEFAULTS  # the recipe's defaults live in core.retraining, shared with the window
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--split", help="split CSV to reuse (made and saved in the run folder if absent)")
    p.add_argument("--backbone", choices=list(BACKBONES), default=d.backbone)
    p.add_argument("--weights", default=d.weights, help="imagenet, none, or a .weights.h5 path")
    p.add_argument("--size", type=int, default=d.input_size, help="model input size in pixels")
    p.add_argument("--field", type=int, default=d.cell_field, help="central square of a single-cell image fed to the model")
    p.add_argument("--cell-context", type=float, default=2.0, help="smear crops: crop side / cell side")
    p.add_argument(
        "--balance",
        action=argparse.BooleanOptionalAction,
        default=d.balance,
        help="the report's colour balance (--no-balance skips it)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--epochs-frozen", type=int, default=d.epochs_frozen)
    p.add_argument("--epochs", type=int, default=d.epochs_fine, help="fine-tuning epochs")
    p.add_argument("--lr", type=float, default=d.lr_fine, help="fine-tuning learning rate")
    p.add_argument("--fine-tune-layers", type=int, default=d.fine_tune_layers, help="last N backbone layers to unfreeze (-1 all)")
    p.add_argument("--class-weighting", choices=["balanced", "sqrt", "none"], default=d.class_weighting)
    p.add_argument("--augment", choices=["full", "light"], default=d.augment, help="light: flips and 90-degree turns only")
    p.add_argument(
        "--train-bn", action=argparse.BooleanOptionalAction, default=d.train_bn, help="fine-tune batch-norm layers too"
    )
    p.add_argument("--extra", action="append", default=[], help="extra folder of class folders (repeatable)")
    p.add_argument("--corrections", action="append", default=[], help="reviewers' corrections CSV (repeatable)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--cache", default="cache", help="folder for preprocessed image caches")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--name", help="model name written in the card (default: the run folder's name)")
    p.add_argument("--out", required=True, help="run folder")
    p = sub.add_parser("evaluate", help="evaluate a bundle on one side of a split")
    p.add_argument("model", help="bundle or run folder (model.keras + model.json)")
    p.add_argument("--split", required=True)
    p.add_argument("--side", default="test", choices=["train", "valid", "test"])
    p.add_argument("--cache", default="cache")
    p.add_argument("--out", required=True)
    p = sub.add_parser("export", help="copy a run's model and card into a bundle folder")
    p.add_argument("run")
    p.add_argument("--name", required=True)
    p.add_argument("--dest", default=str(Path(__file__).resolve().parents[1] / "resources" / "models"))
    p.add_argument(
        "--tta",
        default="",
        help="test-time views averaged with the image, comma-separated (flip_lr, flip_ud, rot180): "
        "the temperature is fitted again and the test split evaluated again with them (needs --split)",
    )
    p.add_argument("--split", help="the run's split CSV (for --tta)")
    p.add_argument("--lodo", nargs="*", default=[], help="leave-one-domain-out run folders whose figures go into the card")
    p.add_argument("--cache", default="cache")
    from . import domain_fit

    p = sub.add_parser("domains", help="fine-tune a bundle across PBC, BCCD and Bio-Net (stain-robust, one µm per pixel)")
    domain_fit.add_arguments(p)
    from . import adapt_command as adapt

    p = sub.add_parser("adapt", help="adapt a bundle to a lab from its reviewers' corrections (minutes, no base images needed)")
    adapt.add_arguments(p)
    from . import replay

    p = sub.add_parser("replay", help="write a PBC-only bundle's replay sample, so that it can be adapted to a lab")
    replay.add_arguments(p)
    from . import soup

    p = sub.add_parser("soup", help="average the weights of training domains runs from one base into one bundle")
    soup.add_arguments(p)
    from . import unet

    p = sub.add_parser("unet", help="train the U-Net segmenter across the three labs and evaluate it on held-out fields")
    unet.add_arguments(p)
    return parser


def _adapt(args) -> int:
    from .adapt_command import run

    return run(args)


def _replay(args) -> int:
    from .replay import run

    return run(args)


def _soup(args) -> int:
    from .soup import run

    return run(args)


def _unet(args) -> int:
    from .unet import run

    return run(args)


def _domains(args) -> int:
    from .domain_fit import run

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "index": _index,
        "split": _split,
        "fit": _fit,
        "evaluate": _evaluate_cmd,
        "export": _export,
        "domains": _domains,
        "adapt": _adapt,
        "unet": _unet,
        "replay": _replay,
        "soup": _soup,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
