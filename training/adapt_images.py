"""Adapt a bundle to a lab's images without corrections: its batch-norm statistics.

A network's batch-norm layers keep the mean and variance of their inputs over the training
images; on another lab's stain and camera those statistics are off, and the layers feed the
rest of the network values it never saw.  Here they are measured again on the lab's own
cells (found and framed as the application frames them), and the adapted bundle keeps a mix
of the base's and the lab's (``--share``, 0.5 by default).  No weight is trained and no label
is needed, so it runs on a folder of the lab's images in a minute or two.

What it does not do: it is not validated on the lab (no cell is known), so the lab's images
stay *unfamiliar* to the adapted bundle (its familiarity model is the base's) and every cell
still waits for a reviewer.  The bundle carries no replay sample: its features are no longer
the ones the base's replay sample was computed with, so corrections adapt the base bundle,
not this one.  Figures on labs held out of training: ``benchmarks/adapt_images.py``.

    python -m training adapt --model NAME --images FOLDER... --name NEW [--share 0.5]
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from yawbcc_desktop.core.adaptation import IMAGE_STATISTICS_SHARE, MAX_IMAGE_CELLS, MIN_IMAGE_CELLS
from yawbcc_desktop.core.classes import GROUPS
from yawbcc_desktop.core.classifier import MODEL_FILE, ModelBundle
from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE
from yawbcc_desktop.core.imageio import iter_image_paths
from yawbcc_desktop.core.preferences import AnalysisSettings

from .card import write_card

STAT_CHUNK = 64  # cells per forward pass while measuring (a running mean over the chunks)
METHOD = "batch-norm statistics re-measured on the lab's images, mixed with the base's; no weight trained, no label used"
# Card entries that describe the base bundle's figures on its own labs, not this one's.
BASE_FIGURES = ("per_lab", "domain_metrics", "leave_one_domain_out", "replay")


class ImagesError(Exception):
    """The images cannot be used (too few cells, no image); the message says why."""


def lab_inputs(
    bundle: ModelBundle, sources, max_cells: int = MAX_IMAGE_CELLS, seed: int = 0, progress=None, skip=None, lab_um_per_px=None
):
    """(model inputs of the lab's cells, images with cells) from files and folders, framed as the
    application frames them (``pipeline.segmented``, automatic mode, at the lab's pixel size if
    it set one).  ``skip(message)`` is told of each file left out.  At most ``max_cells`` cells
    are kept, a uniform draw over all the cells found (reservoir sampling: a folder of any size
    is never held in memory at once)."""
    from yawbcc_desktop.core.pipeline import segmented

    paths = list(iter_image_paths(sources))
    if not paths:
        raise ImagesError(f"no image found in {', '.join(map(str, sources))}")
    side = bundle.card.input_size
    kept = np.zeros((max_cells, side, side, 3), np.uint8)
    seen = images = 0
    rng = np.random.default_rng(seed)
    for i, result in enumerate(segmented(paths, "auto", bundle.card, settings=AnalysisSettings(lab_um_per_px=lab_um_per_px))):
        if result.error:
            skip and skip(f"{result.path}: {result.error}")
        elif result.inputs is None or not len(result.inputs):
            skip and skip(f"{result.path}: no cell found")
        else:
            images += 1
            for cell in result.inputs:
                slot = seen if seen < max_cells else int(rng.integers(0, seen + 1))
                if slot < max_cells:
                    kept[slot] = cell
                seen += 1
        progress and progress("features", i + 1, len(paths))
    return kept[: min(seen, max_cells)], images


def measure_statistics(model, inputs: np.ndarray, share: float, chunk: int = STAT_CHUNK, progress=None) -> int:
    """Set every batch-norm layer's moving mean and variance to ``share`` of the ones measured on
    ``inputs`` plus ``1 - share`` of the model's own; returns the number of layers changed.

    The model runs in training mode (each layer normalises by the chunk's statistics, as in
    training) with a momentum that makes the moving statistics the mean over the chunks, and
    its dropout off: the statistics are those the layers will see when classifying."""
    import keras

    from .domain_fit import batchnorm_layers, layers_of

    if not 0.0 < share <= 1.0:
        raise ValueError(f"the lab's share of the statistics must be in (0, 1], got {share}")
    bns = batchnorm_layers(model)
    base = [(b.moving_mean.numpy().copy(), b.moving_variance.numpy().copy()) for b in bns]
    momenta = [b.momentum for b in bns]
    drops = layers_of(model, keras.layers.Dropout)
    rates = [d.rate for d in drops]
    starts = range(0, len(inputs), chunk)
    try:
        for d in drops:
            d.rate = 0.0
        for k, start in enumerate(starts):
            for b in bns:
                b.momentum = k / (k + 1)
            model(inputs[start : start + chunk].astype(np.float32), training=True)
            progress and progress("measuring", k + 1, len(starts))
    finally:
        for b, m in zip(bns, momenta):
            b.momentum = m
        for d, r in zip(drops, rates):
            d.rate = r
    for b, (mean, var) in zip(bns, base):
        b.moving_mean.assign((1.0 - share) * mean + share * b.moving_mean.numpy())
        b.moving_variance.assign((1.0 - share) * var + share * b.moving_variance.numpy())
    return len(bns)


def adapt_to_images(
    bundle: ModelBundle,
    sources,
    share: float = IMAGE_STATISTICS_SHARE,
    seed: int = 0,
    log=print,
    progress=None,
    skip=None,
    lab_um_per_px: float | None = None,
) -> dict:
    """Measure the lab's statistics into ``bundle.model`` (in place) and say what changed.

    The report's label-free figures: cells and images used, and how the class mix of the lab's
    cells moved (the share of cells whose class changed, the classes before and after)."""
    t0 = time.monotonic()
    inputs, n_images = lab_inputs(bundle, sources, seed=seed, progress=progress, skip=skip, lab_um_per_px=lab_um_per_px)
    if len(inputs) < MIN_IMAGE_CELLS:
        raise ImagesError(
            f"only {len(inputs)} cells found in {n_images} images; measuring a lab's statistics needs at least "
            f"{MIN_IMAGE_CELLS} cells: add more of the lab's images"
        )
    log(f"measuring {bundle.name}'s batch-norm statistics on {len(inputs)} cells of {n_images} images (share {share:g})")
    before = _classes(bundle, inputs)
    layers = measure_statistics(bundle.model, inputs, share, progress=progress)
    after = _classes(bundle, inputs)
    return {
        "source": "images",
        "cells": int(len(inputs)),
        "images": int(n_images),
        "share": float(share),
        "lab_um_per_px": lab_um_per_px,  # the pixel size the cells were framed at; None: each image's own
        "layers": layers,
        "class_changed": float(np.mean(before != after)),
        "classes_before": _counts(before),
        "classes_after": _counts(after),
        "seconds": round(time.monotonic() - t0, 1),
    }


def _classes(bundle: ModelBundle, inputs: np.ndarray) -> np.ndarray:
    return np.concatenate([bundle.probabilities(inputs[i : i + 128]).argmax(axis=1) for i in range(0, len(inputs), 128)])


def _counts(classes: np.ndarray) -> dict[str, int]:
    return {GROUPS[i]: int(n) for i, n in zip(*np.unique(classes, return_counts=True))}


def write_adapted_to_images(bundle: ModelBundle, report: dict, name: str, dest: Path, lab: str, progress=None) -> Path:
    """The adapted bundle: the model as measured, the base's familiarity model, a card saying what
    was done; written whole or not at all (``whole_folder.write_whole``)."""
    from .fit import save_for_inference
    from .whole_folder import write_whole

    def fill(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        progress and progress("writing", 0, 2)
        save_for_inference(bundle.model, tmp / MODEL_FILE)
        if (bundle.folder / FAMILIARITY_FILE).is_file():
            shutil.copy2(bundle.folder / FAMILIARITY_FILE, tmp / FAMILIARITY_FILE)
        base = bundle.card
        extra = {k: v for k, v in base.extra.items() if k not in BASE_FIGURES}
        if isinstance(extra.get("lab_review"), dict):
            # An adapted base's session cells were measured with its statistics, not these.
            extra["lab_review"] = {**extra["lab_review"], "session_neighbours": False}
        extra.update(
            adapted_from=bundle.name,
            adaptation={
                **{k: report[k] for k in ("source", "cells", "images", "share", "lab_um_per_px", "class_changed")},
                "lab": lab,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "method": METHOD,
            },
            base_test_metrics=base.metrics,
        )
        # The base's test figures are not this bundle's (its statistics are the lab's now).
        write_card(tmp, replace(base, name=name, metrics={}, extra=extra))
        progress and progress("writing", 1, 2)

    out = write_whole(dest, name, fill)
    progress and progress("writing", 2, 2)
    return out


def summary_lines(report: dict) -> list[str]:
    """The figures of a ``done`` report in plain words."""
    moved = ", ".join(
        f"{g} {report['classes_before'].get(g, 0)} → {report['classes_after'].get(g, 0)}"
        for g in GROUPS
        if report["classes_before"].get(g) or report["classes_after"].get(g)
    )
    return [
        f"Adapted {report['base']} to {report['lab']}'s images as {report['name']}: batch-norm statistics measured on "
        f"{report['cells']} cells of {report['images']} images, {100 * report['share']:.0f} % the lab's.",
        f"The lab's cells whose class changed: {100 * report['class_changed']:.1f} % ({moved}).",
        "No corrections were used, so nothing was measured on the lab: its images stay flagged unfamiliar and every "
        "cell waits for review. Corrections adapt the base model (--corrections), not this one.",
        f"New bundle: {report['bundle']} ({report['seconds']:.0f} s). Use it with --model {report['name']}.",
    ]
