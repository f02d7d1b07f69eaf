"""A review session as an annotation data set: COCO JSON with masks, or class folders of crops.

- ``export_coco``: ``annotations.json`` (COCO: one annotation per labelled cell, its box,
  its segmentation mask as compressed RLE, ``category`` the final label, and the review as
  ``attributes``) and ``images/`` (copies of the session's images, or links on request).
  CVAT, FiftyOne and ``pycocotools`` open it; ``python -m training unet --coco DIR`` trains
  the U-Net segmenter from it.
- ``export_crops``: ``<group>/<GROUP>_<image>_<cell>.png``, the reviewed cells as the model
  sees them (``core.pipeline.model_input``: framing, colour balance, input size), and
  ``crops.csv`` saying where each came from.  A class-folder data set for
  ``python -m training fit --data DIR --field SIDE`` (or ``--extra DIR``), torchvision's
  ``ImageFolder`` and the like.

Both are written into a temporary sibling folder that takes the final name only when
complete (``atomic.atomic_folder``); each says what it skipped and why.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import rle
from .atomic import atomic_folder
from .cell_masks import UniqueStems
from .classes import ARTEFACT, GROUPS, WBC_GROUPS
from .classifier import ModelBundleError, ModelCard, read_card, resolve_bundle
from .imageio import ImageReadError, read_rgb
from .store import ReviewSession, SessionCell, SessionImage
from .vocabulary import FAILED

COCO_FILE = "annotations.json"
COCO_IMAGES = "images"
CROPS_MANIFEST = "crops.csv"
# COCO category ids: 1.. in the class order, the reviewers' "not a cell" last.
CATEGORIES: tuple[str, ...] = (*GROUPS, ARTEFACT)
CROP_COLUMNS = ["file", "group", "source", "cell_index", "predicted", "corrected", "reviewer", "reviewed_at", "model", "side"]


@dataclass
class ExportOutcome:
    """What a data set export wrote, and what it left out with the reason."""

    folder: Path
    images: int = 0
    cells: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)

    def skip(self, what: str, why: str) -> None:
        self.skipped.append((what, why))

    def skipped_lines(self) -> list[str]:
        """One line per reason: how many were skipped for it, and the first few named."""
        by_reason: dict[str, list[str]] = {}
        for what, why in self.skipped:
            by_reason.setdefault(why, []).append(what)
        return [
            f"{len(items)} skipped, {why}: " + ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
            for why, items in by_reason.items()
        ]


def _supercategory(name: str) -> str:
    return "white cell" if name in WBC_GROUPS else ("not a cell" if name == ARTEFACT else "other cell")


def _image_mask(session: ReviewSession, cell: SessionCell, image: SessionImage) -> tuple[np.ndarray, bool]:
    """The cell's mask over the whole image, and whether it is the segmented outline (else its box)."""
    full = np.zeros((image.height, image.width), bool)
    box_mask = session.cell_mask(cell.id)
    segmented = box_mask is not None
    if box_mask is None:
        box_mask = np.ones((cell.height, cell.width), bool)
    x1, y1 = min(cell.x + cell.width, image.width), min(cell.y + cell.height, image.height)
    full[cell.y : y1, cell.x : x1] = box_mask[: y1 - cell.y, : x1 - cell.x]
    return full, segmented


def _usable_images(session: ReviewSession, outcome: ExportOutcome) -> list[SessionImage]:
    out = []
    for image in session.images():
        if image.status == FAILED:
            outcome.skip(image.path, "its analysis failed")
        elif not image.cell_count:
            continue  # no cell found: nothing to annotate, nothing left out
        elif not os.path.isfile(image.path):
            outcome.skip(image.path, "image file not found")
        else:
            out.append(image)
    return out


def _place_image(source: str, target: Path, link: bool) -> None:
    if link:
        try:
            os.symlink(source, target)
            return
        except OSError:
            pass  # no symbolic links here (Windows without the right): a copy still works
    shutil.copyfile(source, target)


def export_coco(session: ReviewSession, folder: str | os.PathLike[str], link: bool = False) -> ExportOutcome:
    """Write the session's labelled cells as a COCO data set in ``folder`` (new or empty).

    ``link``: symbolic links to the images instead of copies (a copy where links are refused).
    """
    from .. import __version__

    outcome = ExportOutcome(Path(folder))
    with atomic_folder(folder) as tmp:
        (tmp / COCO_IMAGES).mkdir()
        stems = UniqueStems()
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for image in _usable_images(session, outcome):
            cells = session.cells(image_id=image.id)
            labelled = [c for c in cells if c.final_label in CATEGORIES]
            for c in cells:
                if c.final_label not in CATEGORIES:
                    outcome.skip(f"{image.path} cell {c.cell_index}", "no label (never classified nor reviewed)")
            if not labelled:
                continue
            name = f"{stems.stem_for(image.path)}{Path(image.path).suffix.lower()}"
            _place_image(image.path, tmp / COCO_IMAGES / name, link)
            image_id = len(images) + 1
            images.append(
                {
                    "id": image_id,
                    "file_name": f"{COCO_IMAGES}/{name}",
                    "width": image.width,
                    "height": image.height,
                    "source": image.path,
                    "mode": image.mode,
                    "um_per_px": image.um_per_px if math.isfinite(image.um_per_px) else None,
                }
            )
            for c in labelled:
                mask, segmented = _image_mask(session, c, image)
                segmentation = rle.encode(mask)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": CATEGORIES.index(c.final_label) + 1,
                        "bbox": [c.x, c.y, c.width, c.height],
                        "area": rle.area(segmentation),
                        "segmentation": segmentation,
                        "iscrowd": 0,
                        "attributes": {
                            "reviewed": c.reviewed,
                            "corrected": c.corrected,
                            "predicted": c.predicted,
                            "confidence": c.confidence if math.isfinite(c.confidence) else None,
                            "reviewer": c.reviewer,
                            "reviewed_at": c.reviewed_at,
                            "model": c.model,
                            "cell_index": c.cell_index,
                            "mask": "segmented" if segmented else "box",
                        },
                    }
                )
        data = {
            "info": {
                "description": f"YAWBCC review session {session.name}",
                "version": __version__,
                "date_created": session.info().get("created_at", ""),
                "session": session.location,
            },
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": n, "supercategory": _supercategory(n)} for i, n in enumerate(CATEGORIES)],
        }
        (tmp / COCO_FILE).write_text(json.dumps(data, indent=1), encoding="utf-8")
        outcome.images, outcome.cells = len(images), len(annotations)
    return outcome


def export_crops(
    session: ReviewSession,
    folder: str | os.PathLike[str],
    model: str | None = None,
    known: dict[str, str] | None = None,
) -> ExportOutcome:
    """Write the reviewed cells' model inputs as class folders in ``folder`` (new or empty).

    ``model``: the bundle (name or folder) whose framing to use; by default each cell's own.
    ``known``: folders of bundles by name, for those not found by name (the window's model
    in use, wherever it was loaded from).  Artefacts and unreviewed cells are left out.
    """
    from .pipeline import model_input

    outcome = ExportOutcome(Path(folder))
    cards: dict[str, ModelCard | str] = {}

    def card_for(name: str) -> ModelCard | str:
        if name not in cards:
            try:
                where = (known or {}).get(name)
                cards[name] = read_card(Path(where) if where else resolve_bundle(name))
            except ModelBundleError as exc:
                cards[name] = f"its model is not here ({exc})"
        return cards[name]

    with atomic_folder(folder) as tmp, open(tmp / CROPS_MANIFEST, "w", encoding="utf-8", newline="") as fh:
        manifest = csv.DictWriter(fh, fieldnames=CROP_COLUMNS)
        manifest.writeheader()
        stems = UniqueStems()
        made: set[str] = set()
        for image in _usable_images(session, outcome):
            cells = session.cells(image_id=image.id)
            wanted = _reviewed_cells(image, cells, outcome)
            if not wanted:
                continue
            card = card_for(model or cells[0].model)
            if isinstance(card, str):
                outcome.skip(image.path, card)
                continue
            try:
                rgb = read_rgb(image.path)
            except ImageReadError as exc:
                outcome.skip(image.path, exc.reason)
                continue
            um = image.um_per_px if math.isfinite(image.um_per_px) else None
            inputs = model_input(rgb, image.mode, [c.region() for c in cells], card, um)
            stem = stems.stem_for(image.path)
            position = {c.id: i for i, c in enumerate(cells)}
            outcome.images += 1
            for c in wanted:
                group = c.final_label
                if group.lower() not in made:
                    (tmp / group.lower()).mkdir()
                    made.add(group.lower())
                name = f"{group.lower()}/{group}_{stem}_{c.cell_index}.png"
                crop = inputs[0 if image.mode == "cell" else position[c.id]]
                _write_png(tmp / name, crop)
                manifest.writerow(_crop_row(name, c, image, card))
                outcome.cells += 1
    return outcome


def _reviewed_cells(image: SessionImage, cells: list[SessionCell], outcome: ExportOutcome) -> list[SessionCell]:
    wanted = []
    for c in cells:
        what = f"{image.path} cell {c.cell_index}"
        if not c.reviewed:
            outcome.skip(what, "not reviewed")
        elif c.artefact:
            outcome.skip(what, "marked not a cell (artefact)")
        else:
            wanted.append(c)
    return wanted


def _crop_row(name: str, c: SessionCell, image: SessionImage, card: ModelCard) -> dict[str, Any]:
    return {
        "file": name,
        "group": c.final_label,
        "source": image.path,
        "cell_index": c.cell_index,
        "predicted": c.predicted,
        "corrected": "yes" if c.corrected else "no",
        "reviewer": c.reviewer,
        "reviewed_at": c.reviewed_at,
        "model": card.name,
        "side": card.input_size,
    }


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: the crop could not be encoded as PNG")
    path.write_bytes(data.tobytes())  # bytes, not cv2.imwrite: any path on Windows
