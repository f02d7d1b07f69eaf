"""``python -m training export``: a run folder becomes a model bundle (model, card, and the
familiarity and replay files of bundles trained across labs), optionally calibrated again
with test-time views."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from yawbcc_desktop.core.classifier import ModelCard

from .card import card_metrics, write_card
from .evaluate import report
from .run_log import RunLog


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    """Copy the run's model (re-saved without optimiser state) and card into ``<dest>/<name>``."""
    from yawbcc_desktop.core.classifier import ModelBundleError, read_card

    run_dir = Path(args.run)
    try:
        card = replace(read_card(run_dir), name=args.name)
    except ModelBundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dest = Path(args.dest) / args.name
    dest.mkdir(parents=True, exist_ok=True)
    # Re-saved from an uncompiled load: a model saved mid-training can carry optimiser
    # variables that triple the bundle's size.
    import keras

    tmp = dest / "model.tmp.keras"
    keras.saving.load_model(run_dir / "model.keras", compile=False).save(tmp)
    tmp.replace(dest / "model.keras")

    from yawbcc_desktop.core.adaptation import BASE_HEAD_FILE, LAB_CELLS_FILE, REPLAY_FILE
    from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE

    from .domain_command import lodo_summary

    # Bundles trained across labs; an adapted one's session cells and head before adapting,
    # which its lab's rule reads.
    for extra in (FAMILIARITY_FILE, REPLAY_FILE, LAB_CELLS_FILE, BASE_HEAD_FILE):
        if (run_dir / extra).is_file():
            shutil.copyfile(run_dir / extra, dest / extra)
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
        card = calibrate_with_views(
            dest, card, args.tta.split(","), args.split, args.cache, run_dir / "report-tta", RunLog(run_dir)
        )
        write_card(dest, card)
    size = (dest / "model.keras").stat().st_size / 1e6
    print(f"exported {dest} ({size:.1f} MB)")
    return 0


def calibrate_with_views(
    dest: Path, card: ModelCard, views: list[str], split_csv: str, cache: str, report_dir: Path, log: Callable[[str], None]
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
    metrics = report(frame, labels, raw, temperature, report_dir, None, None, log, f"test with views {views}")
    return replace(card, temperature=temperature, metrics=card_metrics(metrics))
