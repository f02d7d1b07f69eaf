"""Make the screenshots of the README and the user guide (docs/screenshots/) with ``yawbcc-desktop --screenshot`` (offscreen).

    .venv/bin/python benchmarks/gui_screenshots.py [--out docs/screenshots] [--model NAME|DIR]

- ``smear-field.png``: five BCCD smear fields (640x480) that cross-lab training held out
  (test side of ``training.domains``' field split), read in auto mode; the first field's
  first cell is selected.
- ``bionet-field.png``: five Bio-Net fields (a third lab: Olympus, other stain), also from
  the held-out test side, in auto mode with the default segmenter (the U-Net for fields);
  ``bionet-field-classic.png`` the same with ``--segmenter classic``, for comparison.
- ``unfamiliar-field.png``: two fields of Bio-Net's detection series, whose white cells no
  model was trained on, only some of its platelets (``deepbionet/fields``): the second, a
  yellow-background field, is flagged unfamiliar, so the banner and the image mark show.
- ``single-cells.png``: a folder of 40 single-cell CellaVision images, five from each
  class folder of ../shared/data/pbc, linked into a temporary folder (the data is never
  copied into the repository).
- ``review-session.png``: the same 40 images classified headless into a review session
  (``yawbcc classify --session``), then reviewed through the session API as a reviewer
  would: the least confident cell corrected to its second most probable class, the next
  five least confident confirmed, the rest of the queue left (if the model put no cell in
  the queue, the six least confident cells stand in for it).  The window opens that
  session and selects the corrected cell.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def held_out(paths: list[Path], n: int, key=lambda p: p.stem) -> list[str]:
    """The first ``n`` of ``paths`` on the test side of the cross-lab field split (never trained on)."""
    sys.path.insert(0, str(REPO))
    from training.domains import field_split

    return [str(p) for p in sorted(paths) if field_split(key(p)) == "test"][:n]


def app_command() -> list[str]:
    script = REPO / ".venv" / "bin" / "yawbcc-desktop"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from yawbcc_desktop.cli import gui_main; gui_main()"]


def shoot(out: Path, paths: list[str], model: str | None, mode: str, extra: tuple[str, ...] = ()) -> None:
    command = [*app_command(), "--screenshot", str(out), "--mode", mode, *extra, *paths]
    if model:
        command += ["--model", model]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as config:
        env["YAWBCC_CONFIG_DIR"] = config
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"screenshot failed ({result.returncode}): {result.stderr[-2000:]}")
    print(f"{out}: {out.stat().st_size // 1024} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--only-fields", action="store_true", help="the BCCD and Bio-Net field screenshots only (the first four)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    fields = held_out(list((DATA / "bccd" / "JPEGImages").glob("*.jpg")), 5)
    shoot(out / "smear-field.png", fields, args.model, "auto")
    bionet = held_out(list((DATA / "deepbionet" / "cells" / "neutrophil").glob("*.jpg")), 5, lambda p: p.stem + p.parent.name)
    shoot(out / "bionet-field.png", bionet, args.model, "auto")
    shoot(out / "bionet-field-classic.png", bionet, args.model, "auto", ("--segmenter", "classic"))
    detection = [str(DATA / "deepbionet" / "fields" / "JPEGImages" / n) for n in ("002.jpg", "1000.jpg")]
    shoot(out / "unfamiliar-field.png", detection, args.model, "auto")
    if args.only_fields:
        return

    with tempfile.TemporaryDirectory() as folder:
        for group in sorted(p for p in (DATA / "pbc").iterdir() if p.is_dir()):
            files = [f for f in sorted(group.glob("*.jpg")) if not f.name.startswith(".")]
            for src in files[7:12]:
                os.symlink(src, Path(folder) / src.name)
        shoot(out / "single-cells.png", [folder], args.model, "cell")
        with tempfile.TemporaryDirectory() as work:
            session = Path(work) / "review.yawbcc"
            review_session(session, folder, args.model)
            shoot(out / "review-session.png", [], args.model, "cell", ("--session", str(session)))


def review_session(session: Path, folder: str, model: str | None) -> None:
    """Classify ``folder`` into ``session`` headless, then review part of its queue."""
    from yawbcc_desktop.cli import main as yawbcc
    from yawbcc_desktop.core.classes import GROUPS
    from yawbcc_desktop.core.preferences import DEFAULT_REVIEW_THRESHOLD
    from yawbcc_desktop.core.store import ReviewSession

    args = ["classify", folder, "--mode", "cell", "--session", str(session), "--quiet"]
    if yawbcc(args + (["--model", model] if model else [])) != 0:
        raise SystemExit("yawbcc classify --session failed")
    with ReviewSession.open(session) as s:
        queue = sorted(s.cells(queue_threshold=DEFAULT_REVIEW_THRESHOLD), key=lambda c: c.confidence)
        if not queue:  # the model is sure of every cell: the least confident ones stand in
            queue = sorted(s.cells(), key=lambda c: c.confidence)[:6]
        first = queue[0]
        second = GROUPS[int(first.probs.argsort()[-2])]
        s.set_label([first.id], second, "demo reviewer")
        s.confirm([c.id for c in queue[1:6]], "demo reviewer")
        print(f"corrected {first.path} {first.predicted} -> {second}; confirmed {len(queue[1:6])}; "
              f"left {max(0, len(queue) - 6)} in the queue")  # fmt: skip


if __name__ == "__main__":
    main()
