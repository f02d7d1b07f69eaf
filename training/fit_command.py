"""``python -m training fit``: from a split (and the lab's extra images and corrections) to a
run folder with a calibrated model, its evaluation report and its card.

The schedule itself (two phases, checkpoints, resume) is ``training.fit``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from yawbcc_desktop.core.classifier import ModelCard
from yawbcc_desktop.core.retraining import FILE_MISSING, FIT_DEFAULTS, SMEAR_CELL, left_out, progress_event

from .card import card_metrics, versions, write_card
from .dataset_commands import DEFAULT_DATA
from .evaluate import Part, evaluate, predict
from .factory import BACKBONES
from .fit import FitConfig
from .run_log import RunLog


def merge_extra(split: pd.DataFrame, folders: list[str], corrections: list[str], log: Callable[[str], None]) -> pd.DataFrame:
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


def fit_config(args: argparse.Namespace, **extra: Any) -> FitConfig:
    """The ``FitConfig`` of ``fit``'s parsed options (``FitRecipe.fit_args`` writes them)."""
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


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    """Train, calibrate on the validation side, evaluate on the test side, write the card."""
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
    parts: dict[str, Part] = {}
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
    valid_probs = predict(model, parts["valid"][1])
    temperature = fit_temperature(valid_probs, parts["valid"][2])
    log(f"temperature fitted on validation: {temperature:.3f}")
    history, frozen = read_history(out)
    metrics = evaluate(model, parts["test"], temperature, out / "report", history, frozen, log)
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
