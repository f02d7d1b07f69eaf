"""Figures of the bundled models: accuracy on the test split, pipeline speed, Grad-CAM.

    .venv/bin/python benchmarks/models.py [--models lite0-multilab lite0-accurate lite0-fast] [--n-speed 256] [--n-cam 200]

For each bundle it prints:
- accuracy and macro F1 on the test side of the split recomputed from ../shared/data/pbc
  (the split checksum must equal the one in the model card);
- images per second of ``classify`` in cell mode (read, segment, preprocess, predict:
  the CLI's pipeline) against the bare model call (``predict_on_batch``, the pipeline's batch size) on the same
  preprocessed arrays (medians of ``--repeats`` runs, alternated), and for a bundle with the
  per-cell check (``ModelBundle.cell_check``) or, adapted, the lab's neighbour check
  (``ModelBundle.lab_cells``) the same pipeline without each;
- ms per Grad-CAM (batch of 1 and batch of 32);
- Grad-CAM sanity: on test images, the share where the mean heatmap inside the segmented
  cell mask exceeds the mean outside.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.splits import make_split, split_checksum  # noqa: E402
from yawbcc_desktop.core.classes import GROUPS  # noqa: E402
from yawbcc_desktop.core.classifier import TTA_VIEWS, ModelBundle, resolve_bundle  # noqa: E402
from yawbcc_desktop.core.dataset import index_folder  # noqa: E402
from yawbcc_desktop.core.gradcam import GradCam  # noqa: E402
from yawbcc_desktop.core.imageio import read_rgb  # noqa: E402
from yawbcc_desktop.core.pipeline import analyse, single_cell_input  # noqa: E402
from yawbcc_desktop.core.segmentation import segment_single_cell  # noqa: E402


def pipeline_speed(bundle: ModelBundle, paths: list[str]) -> float:
    """Cells per second of the whole cell-mode pipeline on ``paths``."""
    t = time.perf_counter()
    n = sum(len(r.cells) for r in analyse(paths, "cell", bundle, batch_size=32))
    return n / (time.perf_counter() - t)


# ModelBundle attributes that hold a per-cell check, and what each is.
CHECKS = {
    "cell_check": "the per-cell check (unlike its class's training cells)",
    "lab_cells": "the lab's neighbour check (an adapted bundle's session cells)",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["lite0-multilab", "lite0-accurate", "lite0-fast"])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "pbc"))
    parser.add_argument("--n-speed", type=int, default=256)
    parser.add_argument("--n-cam", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="speed runs per bundle; the medians are printed")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()

    index = index_folder(args.data)
    split = make_split(index.images, seed=42)
    test = split[split["split"] == "test"].reset_index(drop=True)
    for name in args.models:
        bundle = ModelBundle(resolve_bundle(name))
        card = bundle.card
        print(f"== {card.name}: {card.backbone} at {card.input_size} px, T={card.temperature:.3f}")
        if card.extra.get("split_sha1") not in (None, split_checksum(split)):
            print("   WARNING: the card's split differs from the recomputed one")
        if not args.skip_accuracy:
            preds, truth = [], []
            for start in range(0, len(test), 64):
                rows = test.iloc[start : start + 64]
                batch = np.stack([single_cell_input(read_rgb(p), card)[0] for p in rows["path"]])
                preds += list(bundle.probabilities(batch).argmax(1))
                truth += [GROUPS.index(g) for g in rows["group"]]
            from sklearn.metrics import accuracy_score, f1_score

            print(
                f"   test split: accuracy {100 * accuracy_score(truth, preds):.2f} %, "
                f"macro F1 {f1_score(truth, preds, average='macro'):.4f} (n={len(truth)})"
            )

        paths = list(random.Random(0).sample(list(test["path"]), min(args.n_speed, len(test))))
        for p in paths:  # every bundle reads from the file cache, not only the later ones
            Path(p).read_bytes()
        list(analyse(paths[:32], "cell", bundle))  # warm-up: graph tracing
        arrays = np.stack([single_cell_input(read_rgb(p), card)[0] for p in paths])
        # The bare model sees what the bundle feeds it: the image and its test-time views.
        viewed = np.concatenate([arrays, *(TTA_VIEWS[v](arrays) for v in card.tta)]).astype(np.float32)
        bundle.model.predict_on_batch(viewed[:32])
        pipes, bares = [], []
        # The checks a bundle runs on each cell, and the same pipeline without each: what it costs.
        checks = {attr: getattr(bundle, attr) for attr in CHECKS if getattr(bundle, attr) is not None}
        unchecked: dict[str, list[float]] = {attr: [] for attr in checks}
        for _ in range(args.repeats):  # alternated, so that a busy moment hits all alike
            pipes.append(pipeline_speed(bundle, paths))
            for attr, check in checks.items():
                setattr(bundle, attr, None)
                unchecked[attr].append(pipeline_speed(bundle, paths))
                setattr(bundle, attr, check)
            # The call the pipeline makes, on batches of the pipeline's size (model.predict
            # adds a tf.data round trip per call and made "bare" slower than it is).
            step = 32 * (1 + len(card.tta))
            t = time.perf_counter()
            for i in range(0, len(viewed), step):
                bundle.model.predict_on_batch(viewed[i : i + step])
            bares.append(len(arrays) / (time.perf_counter() - t))
        pipe, bare = float(np.median(pipes)), float(np.median(bares))
        views = f" (with test-time views {', '.join(card.tta)})" if card.tta else ""
        print(
            f"   classify (cell mode, whole pipeline): {pipe:.1f} images/s; bare model.predict_on_batch{views}: {bare:.1f} "
            f"images/s -> pipeline keeps {100 * pipe / bare:.0f} % (medians of {args.repeats} runs)"
        )
        for attr, speeds in unchecked.items():
            off = float(np.median(speeds))
            print(f"   without {CHECKS[attr]}: {off:.1f} images/s -> with it {100 * pipe / off:.0f} %")

        cam = GradCam(bundle.model)
        cam.heatmaps(arrays[:1])
        t = time.perf_counter()
        for i in range(10):
            cam.heatmaps(arrays[i : i + 1])
        one = (time.perf_counter() - t) / 10 * 1000
        t = time.perf_counter()
        cam.heatmaps(arrays[:32])
        batch = (time.perf_counter() - t) / 32 * 1000
        print(f"   Grad-CAM: {one:.0f} ms for one image, {batch:.1f} ms per image in a batch of 32")

        sample = random.Random(1).sample(list(test["path"]), min(args.n_cam, len(test)))
        inside_wins = 0
        for start in range(0, len(sample), 32):
            chunk = sample[start : start + 32]
            rgbs = [read_rgb(p) for p in chunk]
            x = np.stack([single_cell_input(r, card)[0] for r in rgbs])
            heat, _ = cam.heatmaps(x)
            for r, h in zip(rgbs, heat):
                m = single_cell_input(r, card, segment_single_cell(r).full_mask(r.shape[:2]))[1]
                if m.any() and (~m).any() and h[m].mean() > h[~m].mean():
                    inside_wins += 1
        print(
            f"   Grad-CAM sanity: mean heat inside the cell mask > outside on {inside_wins}/{len(sample)} "
            f"= {100 * inside_wins / len(sample):.1f} % of test images"
        )


if __name__ == "__main__":
    main()
