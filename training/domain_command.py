"""``python -m training domains``: the command line of training across staining domains
(``domain_fit``), re-scoring a finished run and the leave-one-domain-out summary of runs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yawbcc_desktop.core.classifier import MODEL_FILE

from .domain_fit import CACHE_MARGIN, DEFAULT_DOMAIN_WEIGHTS, DomainFitConfig, _labels, evaluate_run, train
from .domains import DOMAINS, all_cells, prepare_domain_cache
from .feature_style import STYLES


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Where the three labs' images, the PBC split and the crop cache are (domains, soup)."""
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--split", default="runs/split.csv", help="PBC split CSV (python -m training split)")
    p.add_argument("--cache", default="cache")


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DomainFitConfig()
    add_data_arguments(p)
    p.add_argument("--base", default=d.base, help="bundle to start from")
    p.add_argument("--size", type=int, default=d.input_size, help="model input side (the base bundle's)")
    p.add_argument("--um-per-px", type=float, default=d.um_per_px, help="micrometres per model-input pixel")
    p.add_argument("--held-out", choices=DOMAINS, help="leave this domain out (leave-one-domain-out)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--tune-layers", type=int, default=d.tune_layers, help="last N backbone layers trainable (-1 all)")
    p.add_argument("--frozen-bn", action="store_true", help="keep batch-norm statistics and scales as the base had them")
    weights = ",".join(f"{k}={v}" for k, v in DEFAULT_DOMAIN_WEIGHTS.items())
    p.add_argument("--domain-weights", default=weights, help="share of each domain in a batch (a lab left out: none of it)")
    p.add_argument("--strength", type=float, default=d.strength, help="colour augmentation strength (0 = none)")
    p.add_argument("--clean-share", type=float, default=d.clean_share, help="share of images left without colour augmentation")
    coarse = "share of the colour-augmented images seen through a coarser camera"
    p.add_argument("--coarse-share", type=float, default=d.coarse_share, help=coarse)
    p.add_argument("--teacher", help="bundle whose probabilities join PBC's targets (distillation), e.g. lite0-accurate's folder")
    p.add_argument("--teacher-weight", type=float, default=d.teacher_weight, help="share of the teacher in a PBC target")
    style = "perturb the early feature maps' style while training (MixStyle, DSU)"
    p.add_argument("--feature-style", choices=STYLES, default=d.feature_style or None, help=style)
    p.add_argument("--style-share", type=float, default=d.style_share, help="share of a batch's images given another style")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--evaluate-only", action="store_true", help="recalibrate and re-score the model already in --out")
    p.add_argument("--tta", default="", help="test-time views the bundle averages over, e.g. flip_lr")
    p.add_argument("--out", required=True)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> int:
    config = DomainFitConfig(
        base=args.base,
        held_out=args.held_out,
        input_size=args.size,
        um_per_px=args.um_per_px,
        steps=args.steps,
        lr=args.lr,
        tune_layers=args.tune_layers,
        train_bn=not args.frozen_bn,
        strength=args.strength,
        clean_share=args.clean_share,
        coarse_share=args.coarse_share,
        teacher=args.teacher,
        teacher_weight=args.teacher_weight,
        feature_style=args.feature_style or "",
        style_share=args.style_share,
        seed=args.seed,
        tta=[v for v in args.tta.split(",") if v],
        domain_weights={k: float(v) for k, v in (kv.split("=") for kv in args.domain_weights.split(","))},
    )
    if args.evaluate_only:
        reevaluate(Path(args.out), args.data, args.split, args.cache, log, [v for v in args.tta.split(",") if v])
    else:
        train(config, args.data, args.split, args.cache, Path(args.out), log)
    return 0


def reevaluate(
    out: Path, data_root: str, split_csv: str, cache: str, log: Callable[[str], None] = print, tta: list[str] | None = None
) -> dict[str, Any]:
    """Calibration, familiarity and scores of a finished run again (its config and model),
    optionally with test-time views."""
    import keras

    config = DomainFitConfig(**json.loads((out / "config.json").read_text()))
    if tta is not None:
        config.tta = tta
    cells = all_cells(data_root, split_csv)
    images, table = prepare_domain_cache(cells, int(round(config.input_size * CACHE_MARGIN)), config.um_per_px, True, cache, log)
    model = keras.saving.load_model(out / MODEL_FILE, compile=False)
    minutes = json.loads((out / "metrics.json").read_text()).get("training_minutes", float("nan"))
    return evaluate_run(model, config, table, images, _labels(table), out, minutes, cache, split_csv, log)


def lodo_summary(runs: list[Path]) -> dict[str, dict[str, Any]]:
    """Per held-out domain, what a run trained without it scored on it: its own evaluation
    (metrics.json, cached crops) and, once ``benchmarks/cross_lab.py --write-card`` has scored
    the run as the application would (its framing, sizes and review rules), those figures
    per lab under ``per_lab``."""
    from yawbcc_desktop.core.classifier import read_card

    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        held = metrics["held_out"]
        # config.json is how the run was trained; its card, written with metrics.json, says
        # which test-time views scored it (--evaluate-only --tta re-scores a finished run).
        card = read_card(run)
        views = list(card.tta)
        tta = f" --tta {','.join(views)}" if views else ""
        command = f"python -m training domains --evaluate-only{tta} --out runs/{run.name}"
        out[held] = {
            "run": run.name,
            "recipe": json.loads((run / "config.json").read_text()),
            "scored_with_views": views,
            "command": command,
            **{k: metrics[k] for k in (f"{held}_all", f"{held}_all_adabn", "pbc_test") if k in metrics},
            **({"per_lab": card.extra["per_lab"]} if "per_lab" in card.extra else {}),
        }
    return out


def main(prog: str) -> int:
    """The command run on its own (``python -m training.domain_fit``), not through ``python -m training``."""
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    return run(parser.parse_args())
