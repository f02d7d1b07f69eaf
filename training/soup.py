"""A model soup: the weights of several ``training domains`` runs averaged into one bundle.

    python -m training soup runs/A runs/B [...] --out runs/NAME [--tta flip_lr]

Runs fine-tuned from the same base bundle sit in one basin of the loss, so their average is
a model of its own (Wortsman et al., *Model soups*, 2022) — often better than each on images
of other labs, at the cost of no extra model pass.  The soup is then calibrated, given its
familiarity model and replay sample, and scored per lab exactly as a finished run
(``domain_command.reevaluate``); its card lists the runs it was made of.  Choose between soups,
and their test-time views, on the ``valid`` figures the run prints, not the ``test`` ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from yawbcc_desktop.core.classifier import MODEL_FILE

from .domain_command import add_data_arguments, reevaluate

# What runs must share to be averaged: the base, the framing and the labs.
SAME = ("base", "input_size", "um_per_px", "held_out")


def origin(base: str) -> str:
    """The bundle a run's weights first came from: a base that was itself fine-tuned by
    ``training domains`` (its card keeps that run's recipe under ``training``) leads back to
    its own base, so a run fine-tuned from a soup shares the soup's basin."""
    from yawbcc_desktop.core.classifier import read_card

    seen: set[str] = set()
    while base not in seen and (Path(base) / "model.json").is_file():
        seen.add(base)
        parent = read_card(Path(base)).extra.get("training", {}).get("base")
        if not parent:
            break
        base = parent
    return base


def make_soup(runs: list[Path], out: Path, log=print) -> None:
    import keras

    configs = [json.loads((r / "config.json").read_text()) for r in runs]
    for key in SAME:
        values = {json.dumps(origin(c[key]) if key == "base" else c.get(key)) for c in configs}
        if len(values) > 1:
            raise SystemExit(f"cannot average runs with different {key}: {', '.join(sorted(values))}")
    models = [keras.saving.load_model(r / MODEL_FILE, compile=False) for r in runs]
    weights = [m.get_weights() for m in models]
    # Batch-norm statistics are averaged too: each run's are estimates of the same mixed batches.
    models[0].set_weights([np.mean(ws, axis=0) for ws in zip(*weights)])
    out.mkdir(parents=True, exist_ok=True)
    models[0].save(out / MODEL_FILE)
    minutes = sum(json.loads((r / "metrics.json").read_text()).get("training_minutes", 0.0) for r in runs)
    # The recipe of each run averaged, kept whole (a run's teacher, weights or length differ).
    ingredients = {str(r): c for r, c in zip(runs, configs)}
    config = {**configs[0], "soup": [str(r) for r in runs], "steps": sum(c["steps"] for c in configs), "ingredients": ingredients}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "metrics.json").write_text(json.dumps({"training_minutes": minutes}))
    log(f"averaged {len(runs)} runs into {out / MODEL_FILE}")


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", type=Path, help="finished training domains runs, same base and labs")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--tta", default="", help="test-time views for the bundle, e.g. flip_lr")
    add_data_arguments(p)


def run(args, log=print) -> int:
    if len(args.runs) < 2:
        raise SystemExit("a soup needs at least two runs")
    make_soup(args.runs, args.out, log)
    reevaluate(args.out, args.data, args.split, args.cache, log, [v for v in args.tta.split(",") if v])
    return 0
