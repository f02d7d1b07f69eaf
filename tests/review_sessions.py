"""A review session of real images for the export tests: PBC single cells and BCCD smear
fields, classified by the tiny test bundle (random weights), with cells reviewed as a
reviewer would (single cells given their true class, smear cells corrected, confirmed or
marked not a cell)."""

from __future__ import annotations

import shutil
from pathlib import Path

from yawbcc_desktop.cli import EXIT_OK, main
from yawbcc_desktop.core.classes import ARTEFACT
from yawbcc_desktop.core.store import ReviewSession

PBC_GROUPS = ("lymphocyte", "neutrophil", "monocyte", "eosinophil")
PER_GROUP = 4
BCCD_FIELDS = ("BloodImage_00000.jpg", "BloodImage_00001.jpg")
REVIEWER = "Ann Reviewer"


def build(folder: Path, data_dir: Path, bundle: Path) -> Path:
    """Copy the images into ``folder``/images, classify them into ``folder``/review.yawbcc and review."""
    cells, fields = folder / "images" / "cells", folder / "images" / "fields"
    cells.mkdir(parents=True)
    fields.mkdir(parents=True)
    truth = {}
    for group in PBC_GROUPS:
        for src in sorted((data_dir / "pbc" / group).glob("[A-Z]*.jpg"))[:PER_GROUP]:
            shutil.copy(src, cells / src.name)
            truth[str(cells / src.name)] = group.upper()
    for name in BCCD_FIELDS:
        shutil.copy(data_dir / "bccd" / "JPEGImages" / name, fields / name)
    session_file = folder / "session" / "review.yawbcc"
    session_file.parent.mkdir()
    common = ["--model", str(bundle), "--session", str(session_file), "--quiet"]
    assert main(["classify", str(cells), "--mode", "cell", *common]) == EXIT_OK
    assert main(["classify", str(fields), "--mode", "smear", *common]) == EXIT_OK
    with ReviewSession.open(session_file) as s:
        smear = [im for im in s.images() if im.mode == "smear"]
        for image in s.images():
            ids = s.cell_ids(image_id=image.id)
            if image.mode == "cell":
                s.set_label(ids, truth[image.path], REVIEWER)
            elif image == smear[0]:  # one cell corrected, one confirmed, one not a cell
                s.set_label(ids[:1], "NEUTROPHIL", REVIEWER)
                s.confirm(ids[1:2], REVIEWER)
                s.set_label(ids[2:3], ARTEFACT, REVIEWER)
        # The other fields are left for review: the count is provisional.
    return session_file
