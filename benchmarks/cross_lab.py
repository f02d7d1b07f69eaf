"""Cross-lab figures: leave-one-domain-out classification, the to-review queue, and smear
fields end to end.

    .venv/bin/python benchmarks/cross_lab.py --bundles runs/lodo-bccd runs/lodo-bionet lite0-multilab
        [--domains D...] [--split test|valid] [--train-missing D... --steps 400] [--no-size-rule] [--lab-scale]
        [--smear-bundle lite0-multilab]

For each run (a bundle trained by ``python -m training domains --held-out D``, or any
bundle), every labelled cell of the three domains is framed by the application's own code
(``pipeline.model_input`` at the image's estimated µm per pixel, as ``training adapt`` frames
a lab's corrections) and classified by ``ModelBundle.classify`` (calibration, test-time views and familiarity as in the app).
Each cell's size is measured by the application's segmentation and the size rules applied
as ``pipeline.classify_batch`` applies them (``--no-size-rule`` scores without, to compare).
Printed per domain: balanced accuracy over neutrophil / lymphocyte / monocyte / eosinophil,
accuracy over all present classes, the share of cells flagged for review, and the share
of wrong cells that land in the to-review queue at the default threshold — split into its
reasons (low confidence, unfamiliar image, size/class contradiction).  For the held-out
domain every cell counts (it was never trained on); for the training domains their
held-out test fields (``--split valid``: their valid fields).

``--smear-bundle`` runs the whole smear pipeline (``yawbcc classify --mode smear``) on the
held-out test fields of BCCD: white cells found (IoU >= 0.5 with the annotated box), the
share of annotated white cells put in their right class, and the share of wrong ones in the
queue (size/class conflict included).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.card import write_card as write_card_file  # noqa: E402
from training.corrections import correction_inputs  # noqa: E402
from training.domain_fit import domain_metrics  # noqa: E402
from training.domains import DOMAINS, all_cells, cells_as_rows  # noqa: E402
from yawbcc_desktop.core.classes import GROUPS  # noqa: E402
from yawbcc_desktop.core.classifier import ModelBundle, read_card, resolve_bundle  # noqa: E402
from yawbcc_desktop.core.preferences import DEFAULT_REVIEW_THRESHOLD, AnalysisSettings  # noqa: E402
from yawbcc_desktop.core.review_rules import analysis_flags, measured_diameter, size_ruled  # noqa: E402
from yawbcc_desktop.core.vocabulary import SEGMENTERS  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def measured_diameters(rows: pd.DataFrame) -> np.ndarray:
    """Each cell's diameter (µm) as the size rules use it: its image segmented in the row's
    mode, the found cell that holds the row's centre, against the red cells' ruler or the
    lab's pixel size (nan where no cell holds it or neither ruler was there)."""
    from yawbcc_desktop.core.pipeline import segment_image

    out = np.full(len(rows), np.nan)
    for i, r in enumerate(rows.itertuples(index=False)):
        result = segment_image(r.path, r.mode, settings=AnalysisSettings(lab_um_per_px=getattr(r, "um_per_px", None)))
        found = result.cells
        if r.mode == "cell":
            cell = found[0] if found else None
        else:
            cell = _holding(found, r.x + r.width / 2, r.y + r.height / 2)
        if cell is not None:
            out[i] = measured_diameter(cell.diameter_um, result.scale_source)
    return out


def _holding(found: list, cx: float, cy: float):
    """Of the found cells whose box holds the point, the one centred nearest it (None if none)."""
    holding = [c for c in found if c.region.box_holds(cx, cy)]
    return min(holding, key=lambda c: (c.region.centre[0] - cx) ** 2 + (c.region.centre[1] - cy) ** 2, default=None)


LAB_SCALE_IMAGES = 300  # images of each lab whose red cells give its pixel size (--lab-scale)


def lab_scales(cells: pd.DataFrame, per_lab: int = LAB_SCALE_IMAGES, seed: int = 0) -> dict[str, float | None]:
    """Each lab's pixel size as it would set it (``scale.lab_pixel_size``): the median of the
    red-cell estimates of up to ``per_lab`` of its training-split images, no label read (a
    held-out lab is scored on all its cells, those included; a trained lab on other fields)."""
    from yawbcc_desktop.core.imageio import read_rgb
    from yawbcc_desktop.core.scale import estimate_um_per_px, lab_pixel_size

    out = {}
    for d in DOMAINS:
        paths = cells[cells.domain.eq(d) & cells.split.eq("train")].path.drop_duplicates()
        sample = paths.sample(min(per_lab, len(paths)), random_state=seed)
        estimates = [estimate_um_per_px(read_rgb(p)) for p in sample]
        out[d] = lab_pixel_size([(e.um_per_px, e.source) for e in estimates])
    return out


def score(
    bundle: ModelBundle, cells: pd.DataFrame, threshold: float, size_rule: bool = True, lab_um_per_px: float | None = None
) -> dict:
    # Framed by the application's own code (pipeline.model_input at each image's pixel size,
    # or at the lab's when it set one).
    rows = cells_as_rows(cells)
    if lab_um_per_px:
        rows["um_per_px"] = lab_um_per_px
    x, signatures = correction_inputs(bundle, rows)
    probs, fam, odd = [], [], []
    agrees: list[float | None] = []  # per cell, what an adapted bundle's rule reads (None: not measured)
    befores: list[str | None] = []
    for i in range(0, len(x), 64):
        p, s, u, agreement, before = bundle.classify(x[i : i + 64])
        probs.append(p)
        fam.append(s if s is not None else np.full(len(p), np.nan))
        odd.append(u if u is not None else np.zeros(len(p), bool))
        agrees += [float(a) for a in agreement] if agreement is not None else [None] * len(p)
        befores += [GROUPS[int(w)] for w in before] if before is not None else [None] * len(p)
    probs, fam, unusual = np.concatenate(probs), np.concatenate(fam), np.concatenate(odd)
    labels = cells["group"].map({g: i for i, g in enumerate(GROUPS)}).to_numpy()
    # One cell per image in these sets: the image's feature score is its cell's.
    fam_model = bundle.familiarity
    if fam_model is not None:
        image_scores = [fam_model.image_score(fam[i : i + 1], sig) for i, sig in enumerate(signatures)]
        unfamiliar = np.array([fam_model.is_unfamiliar(s) for s in image_scores])
    else:
        unfamiliar = np.zeros(len(x), bool)
    # The size rules as classify_batch applies them: on an unfamiliar image a cell wider than
    # any platelet is not classed as one; a size/class contradiction sends the cell to the queue.
    diameters = measured_diameters(rows)
    said = [GROUPS[int(i)] for i in probs.argmax(axis=1)]
    conflict = np.array([bool(analysis_flags(g, d, False)) for g, d in zip(said, diameters)])  # size reasons alone
    if size_rule:
        probs = np.stack([size_ruled(p, d, u) for p, d, u in zip(probs, diameters, unfamiliar)])
    if bundle.lab_rule is not None:  # an adapted bundle's rule for its lab, as classify_batch applies it
        rule = bundle.lab_rule
        unusual |= np.array(
            [bool(rule.reasons(GROUPS[int(p.argmax())], float(p.max()), a, w)) for p, a, w in zip(probs, agrees, befores)]
        )
    return domain_metrics(probs, labels, unfamiliar, threshold, conflict, unusual)


def lodo_table(
    bundles: list[str],
    threshold: float,
    domains: tuple[str, ...] = DOMAINS,
    write_card: bool = False,
    size_rule: bool = True,
    split: str = "test",
    scales: dict[str, float | None] | None = None,
) -> None:
    """``scales``: each lab's pixel size (``lab_scales``); None or a lab missing: per image."""
    cells = all_cells(DATA, ROOT / "runs" / "split.csv")
    scales = scales or {}
    head = ["cells", "bal-4", "acc", "F1", "flag", "unfam", "size", "cell", "wrong", "w→q"]
    print(f"{'bundle':24} {'domain':8} " + " ".join(f"{h:>6}" for h in head) + " w→q conf")
    for name in bundles:
        folder = resolve_bundle(name)
        bundle = ModelBundle(folder)
        held = bundle.card.extra.get("held_out_domain")
        trained = bundle.card.extra.get("training_domains") or []
        per_lab = {}
        for d in domains:
            unseen = d == held or bool(trained and d not in trained)  # a lab it never saw: every cell counts
            part = cells[cells.domain.eq(d) & (cells.split.eq(split) | unseen)]
            m = per_lab[d] = score(bundle, part, threshold, size_rule, scales.get(d))
            tag = d + (" *" if unseen else "")
            print(
                f"{bundle.name:24} {tag:8} {m['n']:6d} {m['balanced_accuracy_4']:6.3f} {m['accuracy']:6.3f} {m['macro_f1']:6.3f} "
                f"{m['flagged']:6.3f} {m['flagged_unfamiliar']:6.3f} {m['flagged_size_conflict']:6.3f} "
                f"{m['flagged_unusual']:6.3f} "
                f"{m['wrong']:6d} {m['wrong_in_queue']:6.3f} "
                f"{m['wrong_in_queue_confidence_only']:8.3f}",
                flush=True,
            )
        if write_card:
            # The card carries its figures per lab and the command that measured them.
            card = read_card(folder)
            card.extra["per_lab"] = {
                "command": f".venv/bin/python benchmarks/cross_lab.py --bundles {name} --domains {' '.join(domains)}",
                "review_threshold": threshold,
                "cells": "held-out test fields of BCCD and Bio-Net, LISC's test cells, the PBC test split "
                "(all cells of a lab the bundle never saw)",
                **per_lab,
            }
            write_card_file(folder, card)
    print(f"* a lab the bundle never trained on: all its cells. Other labs: their {split} fields / split.")
    print(f"flag: share of cells in the to-review queue at threshold {threshold} (low confidence, unfamiliar image, size/class)")
    print("size: share whose measured size contradicts the model's call, either way (on an unfamiliar image a")
    print("white cell's size read as a platelet is classed by its likeliest white-cell class: review_rules.size_ruled);")
    print("cell: share unlike the training cells of the class it was called (familiarity.neighbour_distances), or")
    print("queued by an adapted bundle's rule for its lab;")
    print("w→q: share of wrong cells in the queue; w→q conf: by low confidence alone.")


def smear_fields(bundle_name: str, threshold: float, segmenter: str = "auto", lab_um: float | None = None) -> None:
    """BCCD held-out test fields through the smear pipeline, matched to the annotated WBC boxes
    (with ``lab_um``, at BCCD's pixel size as the lab would set it: ``lab_scales``)."""
    from training.domains import field_split, wbc_box_too_small
    from training.voc import as_xyxy as _as_xyxy
    from training.voc import box_iou, read_voc_boxes
    from yawbcc_desktop.core.pipeline import analyse
    from yawbcc_desktop.core.review_rules import review_reasons

    labels = pd.read_csv(DATA / "bccd" / "labels.csv", dtype=str).fillna("")
    fields = [(img, cls) for img, cls in zip(labels.image, labels.wbc_classes) if cls and field_split(img) == "test"]
    bundle = ModelBundle(resolve_bundle(bundle_name))
    paths = [DATA / "bccd" / "JPEGImages" / f"{img}.jpg" for img, _ in fields]
    truth_total = found = right = 0
    wrong_total = wrong_queued = 0
    conflicts = 0
    slips = []  # annotated "WBC" boxes too small for a white cell (training.domains.MIN_WBC_BOX_PX)
    for (img, cls), result in zip(fields, analyse(paths, "smear", bundle, settings=AnalysisSettings(segmenter, lab_um))):
        names = [c for c in cls.split(";") if c]
        boxes = [b for b in read_voc_boxes(DATA / "bccd" / "Annotations" / f"{img}.xml") if b[0] == "WBC"]
        if len(set(names)) != 1:
            continue  # several classes in no particular order: cannot tell which box is which
        white_cells = [b for b in boxes if not wbc_box_too_small(b)]
        slips += [img] * (len(boxes) - len(white_cells))
        for _n, x0, y0, x1, y1 in white_cells:
            truth_total += 1
            truth = (x0, y0, x1, y1)
            best = max(result.cells, key=lambda c: box_iou(_as_xyxy(c.region), truth), default=None)
            if best is None or box_iou(_as_xyxy(best.region), truth) < 0.5:
                continue
            found += 1
            reasons = review_reasons(best.confidence, threshold, best.flags)
            conflicts += any("size says" in r for r in reasons)
            if best.predicted == names[0]:
                right += 1
            else:
                wrong_total += 1
                wrong_queued += bool(reasons)
    print(
        f"BCCD held-out test fields, smear mode, {segmenter} segmenter, {bundle.name}, "
        f"pixel size {f'set by the lab ({lab_um:.4f})' if lab_um else 'per image'}: {truth_total} annotated white cells, "
        f"found {found} "
        f"({found / max(truth_total, 1):.3f}), right class {right} ({right / max(truth_total, 1):.3f} of annotated, "
        f"{right / max(found, 1):.3f} of found); wrong {wrong_total}, of them in the queue {wrong_queued}; "
        f"size/class conflicts {conflicts}"
        + (f"; left out, boxed as a WBC but too small for one: {', '.join(slips)}" if slips else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", nargs="*", default=[], help="bundle names or folders (LODO runs are bundle folders)")
    parser.add_argument("--train-missing", nargs="*", default=[], metavar="DOMAIN", help="train LODO runs that do not exist yet")
    parser.add_argument("--steps", type=int, default=400, help="training steps of a LODO run (the cheaper recipe)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_REVIEW_THRESHOLD)
    parser.add_argument("--write-card", action="store_true", help="store each bundle's figures per lab in its model card")
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS, help="domains to score")
    parser.add_argument("--split", default="test", choices=("test", "valid"), help="the trained labs' cells to score")
    parser.add_argument("--no-size-rule", action="store_true", help="score without review_rules.size_ruled (for comparison)")
    parser.add_argument("--smear-bundle", help="run held-out BCCD fields through the smear pipeline with this bundle")
    parser.add_argument("--segmenters", nargs="+", default=["auto"], choices=SEGMENTERS, help="segmenters for --smear-bundle")
    lab = "each lab's pixel size set once (median of its training images' red cells), as Preferences can"
    parser.add_argument("--lab-scale", action="store_true", help=lab)
    args = parser.parse_args()
    # Measured once, for the table and the smear fields alike.
    scales = lab_scales(all_cells(DATA, ROOT / "runs" / "split.csv")) if args.lab_scale else {}
    if scales:
        sizes = ", ".join(f"{d} {u:.4f}" if u else f"{d} n/a (too few images measured on red cells)" for d, u in scales.items())
        print(f"lab pixel sizes (median of {LAB_SCALE_IMAGES} training images' red cells): {sizes}")
    for d in args.train_missing:
        out = ROOT / "runs" / f"lodo-{d}"
        if not (out / "model.keras").exists():
            cmd = [sys.executable, "-m", "training", "domains", "--held-out", d, "--steps", str(args.steps), "--out", str(out)]
            subprocess.run(cmd, check=True, cwd=ROOT)
        args.bundles.append(str(out))
    if args.bundles:
        if args.write_card and (args.no_size_rule or args.split != "test" or args.lab_scale):
            parser.error("--write-card stores the test figures of what the application does")
        lodo_table(args.bundles, args.threshold, tuple(args.domains), args.write_card, not args.no_size_rule, args.split, scales)
    for segmenter in args.segmenters if args.smear_bundle else []:
        smear_fields(args.smear_bundle, args.threshold, segmenter, scales.get("bccd"))


if __name__ == "__main__":
    main()
