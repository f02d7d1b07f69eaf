"""A replay sample for a bundle trained on PBC alone, so that it can be adapted to a lab.

    python -m training replay --model lite0-accurate [--split runs/split.csv] [--per-class 120]

``python -m training adapt`` refits a bundle's head on a lab's corrections together with
the bundle's *replay* sample (pooled features of its own training cells, ``replay.npz``),
so the old lab is not forgotten.  Bundles from ``training domains`` write that sample when
they are trained; this writes it afterwards for a PBC-only bundle, from the train side of
the PBC split it was trained on (framed by the application's code, as adaptation frames
the lab's cells).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from yawbcc_desktop.core.adaptation import REPLAY_FILE
from yawbcc_desktop.core.classifier import ModelBundle, read_card, resolve_bundle

from .card import write_card
from .corrections import correction_inputs
from .domain_fit import _labels, write_replay
from .domains import cells_as_rows, pbc_cells
from .splits import split_checksum


def write_bundle_replay(folder: Path, split_csv: str | Path, per_class: int = 120, seed: int = 0, log=print) -> Path:
    bundle = ModelBundle(folder)
    cells = pbc_cells(split_csv)
    train = cells[cells.split.eq("train")]
    sample = train.sample(frac=1.0, random_state=seed).groupby("group").head(per_class).reset_index(drop=True)
    log(f"{bundle.name}: pooled features of {len(sample)} PBC training cells")
    inputs, _ = correction_inputs(bundle, cells_as_rows(sample))
    out = Path(folder) / REPLAY_FILE
    write_replay(out, bundle.features(inputs), _labels(sample), sample, seed, per_class)
    # The card says where its replay sample came from, as training domains' cards do.
    card = read_card(folder)
    card.extra["replay"] = {
        "cells": len(sample),
        "per_class": per_class,
        "from": "PBC train split",
        "split_sha1": split_checksum(pd.read_csv(split_csv)),
        "command": f"python -m training replay --model {bundle.name} --per-class {per_class} --seed {seed}",
    }
    write_card(folder, card)
    log(f"replay sample written: {out}")
    return out


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="bundle name or folder (written into)")
    p.add_argument("--split", default="runs/split.csv", help="the PBC split the bundle was trained on")
    p.add_argument("--per-class", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)


def run(args, log=print) -> int:
    write_bundle_replay(resolve_bundle(args.model), args.split, args.per_class, args.seed, log)
    return 0
