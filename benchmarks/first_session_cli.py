"""A lab's first session through the installed commands only, as an outside check runs it.

    .venv/bin/python benchmarks/first_session_cli.py ../shared/data/lisc [--model lite0-multilab]
        [--k 50] [--draws 5] [--group-copies] [--work DIR]

The lab's folder holds one folder of single-cell crops per class (named after the class:
``neutrophil``, ``lymphocyte``, ...); the folder names are read only to play the reviewer and to
score. For each draw: ``yawbcc classify FOLDER --session`` analyses every crop into a review
session (once, shared by the draws), ``yawbcc export --cells`` writes the cells CSV, ``k`` of its
rows (stratified by class at random) get their true class and ``reviewed = yes`` — what a
reviewer's corrections leave in an export — then ``yawbcc adapt --corrections`` adapts the model
with those rows and the unreviewed rest, and ``yawbcc classify --model ADAPTED`` analyses the
other crops again. Printed per draw and as the mean (worst) over draws: balanced accuracy over
neutrophil / lymphocyte / monocyte / eosinophil on the other crops before and after, the share of
them queued for review and of their wrong ones queued, and the minutes ``yawbcc adapt`` took.

``--group-copies``: a data set that holds each source cell several times (LISC: shifted,
turned, zoomed) would score the adapted model on copies of the cells it was taught; the copies
of a reviewed cell (``adaptation.source_cells``, as that benchmark groups them) leave the scored crops, and the
reviewed crops are drawn one per source cell.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from adaptation import draw, source_cells  # noqa: E402

from training.domain_fit import balanced_accuracy_four  # noqa: E402
from yawbcc_desktop.core.classes import GROUPS  # noqa: E402

YAWBCC = [str(Path(sys.executable).parent / "yawbcc")]  # the installed command, as a lab runs it


def yawbcc(*args: str) -> float:
    """Run one ``yawbcc`` command (its progress dropped); minutes it took."""
    start = time.perf_counter()
    done = subprocess.run([*YAWBCC, *args], capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: some files failed, each named; the rest is there
        raise SystemExit(f"yawbcc {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return (time.perf_counter() - start) / 60


def truth_of(paths: pd.Series) -> np.ndarray:
    return np.array([Path(p).parent.name.upper() for p in paths])


def scores(truth: np.ndarray, rows: pd.DataFrame) -> dict[str, float]:
    wrong = rows.predicted.to_numpy() != truth
    queued = rows.to_review.eq("yes").to_numpy()
    return {
        "bal4": balanced_accuracy_four(np.array([GROUPS.index(t) for t in truth]), rows.predicted.map(GROUPS.index).to_numpy()),
        "accuracy": float(np.mean(~wrong)),
        "queued": float(np.mean(queued)),
        "wrong_queued": float(np.mean(queued[wrong])) if wrong.any() else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the lab's crops, one folder per class")
    parser.add_argument("--model", default="lite0-multilab")
    parser.add_argument("--k", type=int, default=50, help="crops reviewed per draw")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--group-copies", action="store_true", help="the data set holds copies of each source cell")
    parser.add_argument("--work", type=Path, help="folder for the session, exports and adapted models (default: temporary)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="first-session-"))
    work.mkdir(parents=True, exist_ok=True)
    session, cells_csv = work / "session.yawbcc", work / "cells.csv"
    minutes = yawbcc("classify", str(args.folder), "--session", str(session), "--model", args.model, "--mode", "cell", "--quiet")
    yawbcc("export", str(session), "--cells", str(cells_csv))
    cells = pd.read_csv(cells_csv, dtype=str, keep_default_na=False)
    cells = cells[cells.predicted.isin(GROUPS)].reset_index(drop=True)
    truth = truth_of(cells.path)
    known = np.isin(truth, GROUPS)
    cells, truth = cells[known].reset_index(drop=True), truth[known]
    # LISC-style copies are grouped as benchmarks/adaptation.py groups them (per class folder,
    # in file order); without --group-copies every crop is its own source cell.
    domain = "lisc" if args.group_copies else ""
    sources = source_cells(pd.DataFrame({"path": cells.path, "group": truth, "domain": domain}))
    print(f"{len(cells)} crops of {len(set(sources))} source cells classified by {args.model} in {minutes:.1f} min ({work})")

    results = []
    for d in range(args.draws):
        rng = np.random.default_rng(d)
        reviewed = draw(truth, args.k, rng, sources)  # as benchmarks/adaptation.py draws them
        rest = ~np.isin(sources, sources[reviewed])
        corrected = cells.copy()
        corrected.loc[reviewed, "final_label"] = truth[reviewed]
        corrected.loc[reviewed, "reviewed"] = "yes"
        corrected.loc[reviewed, "reviewer"] = "first-session benchmark"
        corrections = work / f"cells-draw{d}.csv"
        corrected.to_csv(corrections, index=False)
        name = f"{Path(args.model).name}-draw{d}"
        adapt_min = yawbcc(
            "adapt", "--model", args.model, "--corrections", str(corrections), "--name", name, "--dest", str(work / "models")
        )
        after_csv = work / f"after-draw{d}.csv"
        # The other crops again, through the adapted bundle (one command per crop list would be
        # long: a folder of links keeps the class folders' names for scoring).
        links = work / f"rest-draw{d}"
        for p in cells.path[rest]:
            target = links / Path(p).parent.name / Path(p).name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(Path(p).resolve())
        yawbcc(
            "classify", str(links), "--out", str(after_csv), "--model", str(work / "models" / name), "--mode", "cell", "--quiet"
        )
        after = pd.read_csv(after_csv, dtype=str, keep_default_na=False)
        before = scores(truth[rest], cells[rest])
        now = scores(truth_of(after.path), after)
        results.append((before, now, adapt_min))
        print(
            f"draw {d}: {rest.sum()} other crops; bal-4 {before['bal4']:.3f} -> {now['bal4']:.3f}, accuracy "
            f"{before['accuracy']:.1%} -> {now['accuracy']:.1%}; queued {before['queued']:.1%} -> {now['queued']:.1%}, "
            f"wrong ones queued {before['wrong_queued']:.1%} -> {now['wrong_queued']:.1%}; adapt {adapt_min:.1f} min",
            flush=True,
        )
    after_bal = [r[1]["bal4"] for r in results]
    print(
        f"mean over {len(results)} draws: bal-4 {np.mean([r[0]['bal4'] for r in results]):.3f} -> {np.mean(after_bal):.3f} "
        f"(worst {min(after_bal):.3f}); accuracy {np.mean([r[1]['accuracy'] for r in results]):.1%}; "
        f"queued {np.mean([r[1]['queued'] for r in results]):.1%}; wrong ones queued "
        f"{np.nanmean([r[1]['wrong_queued'] for r in results]):.1%}; adapt {np.mean([r[2] for r in results]):.1f} min"
    )


if __name__ == "__main__":
    main()
