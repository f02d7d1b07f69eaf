"""A replay sample for a bundle trained on PBC alone, so that it can be adapted to a lab.

    python -m training replay --model lite0-accurate [--split runs/split.csv] [--per-class 120]

``python -m training adapt`` refits a bundle's head on a lab's corrections together with
the bundle's *replay* sample (pooled features of its own training cells, ``replay.npz``),
so the old lab is not forgotten.  Bundles from ``training domains`` write that sample when
they are trained; this writes it afterwards for a PBC-only bundle, from the train side of
the PBC split it was trained on (framed by the application's code, as adaptation frames
the lab's cells).

    python -m training replay --model runs/lodo-lisc-v4 --without lisc

takes a lab's cells out of a bundle's replay sample: runs of ``training domains`` from before
2026-12-07 sampled it from every lab's training cells, the held-out lab's too, so adapting
such a run to its held-out lab replayed that lab's own labelled cells.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
    write_replay(out, bundle.features(inputs), _labels(sample), sample, seed, ["pbc"], per_class)
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


def drop_domain(folder: Path, domain: str, log=print) -> int:
    """Remove ``domain``'s cells from the bundle's replay sample (the card says so); how many."""
    path = Path(folder) / REPLAY_FILE
    with np.load(path) as rp:
        data = {k: rp[k] for k in rp.files}
    keep = data["domains"] != domain
    dropped = int(np.sum(~keep))
    if dropped:
        np.savez_compressed(path, **{k: v[keep] for k, v in data.items()})
        card = read_card(folder)
        card.extra["replay_without"] = sorted({*card.extra.get("replay_without", []), domain})
        write_card(folder, card)
    log(f"{path}: {dropped} {domain} cells taken out, {int(keep.sum())} kept")
    return dropped


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="bundle name or folder (written into)")
    p.add_argument("--split", default="runs/split.csv", help="the PBC split the bundle was trained on")
    p.add_argument("--per-class", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--without", metavar="LAB", help="only take this lab's cells out of the bundle's replay sample")


def run(args, log=print) -> int:
    if args.without:
        drop_domain(resolve_bundle(args.model), args.without, log)
        return 0
    write_bundle_replay(resolve_bundle(args.model), args.split, args.per_class, args.seed, log)
    return 0
