"""A month of a busy lab in one review session: opening, reviewing and exporting it.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/big_session.py [--cells 100000] [--keep DIR]

It builds a session of ``--cells`` synthetic cells (40 to a smear field, random classes
and probabilities, a few reviewed) through the real ``ReviewSession`` API, opens it in the
review window as File › Open session does, and prints:

- ``open_s=``: from asking to open the session to every cell being in the table (the cells
  are read off the GUI thread); ``open_stall_ms=``: the longest event-loop stall meanwhile and
  in the half second after;
- ``differential_s=``: one refresh of the differential panel, from asking to the count shown
  (counted off the GUI thread), and ``differential_stall_ms=`` meanwhile;
- ``stall_ms=``: the longest event-loop stall while a reviewer-like script scrolls the
  table and the gallery, sorts by each column and changes the filters, measured by a 10 ms
  heartbeat timer on the GUI thread (``worst=`` names the step that caused it);
- ``export_s=``: File › Export cells, from the click to the CSV on disk;
- ``differential_export_s=``: File › Export differential, the same way;
- ``peak_rss_mb=``: the process's peak resident memory.

Acceptance (issue 12): opens in under 2 s, no stall over 200 ms, export under 10 s.
The images are small synthetic JPEGs: the figures are about the session, not segmentation.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CELLS_PER_IMAGE = 40  # a smear field
IMAGE_SIDE = 256
REVIEWER = "benchmark"


def build_session(path: str | os.PathLike, cells: int, seed: int = 0, folders: int = 10) -> Path:
    """A session at ``path`` with ``cells`` synthetic cells over small JPEG fields beside it.

    Cells have random classes and confidences (about a fifth below the default review
    threshold), a few carry an analysis flag, and 3 % are corrected or confirmed by a reviewer.
    """
    import numpy as np
    from PIL import Image

    from yawbcc_desktop.core import review_rules
    from yawbcc_desktop.core.cells import CellRegion
    from yawbcc_desktop.core.classes import GROUPS, REVIEW_LABELS
    from yawbcc_desktop.core.pipeline import CellRecord, ImageResult
    from yawbcc_desktop.core.store import ReviewSession

    path = Path(path)
    rng = np.random.default_rng(seed)
    images_dir = path.parent / f"{path.stem}_fields"
    n_images = max(1, -(-cells // CELLS_PER_IMAGE))
    # One field, saved under every name: the loader needs real files, the figures do not need variety.
    field = Image.fromarray(rng.integers(120, 240, (IMAGE_SIDE, IMAGE_SIDE, 3), np.uint8))
    flags = [[], [], [], [], [], [], [], [], [review_rules.SIZE_SAYS_PLATELET], [review_rules.UNFAMILIAR]]
    results, left = [], cells
    for i in range(n_images):
        folder = images_dir / f"day_{i % folders:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        image_path = str(folder / f"field_{i:05d}.jpg")
        field.save(image_path, quality=70)
        n = min(CELLS_PER_IMAGE, left)
        left -= n
        # Peaked probabilities: most cells confident, a share below the review threshold.
        probs = rng.dirichlet(np.full(len(GROUPS), 0.15), n).astype(np.float32)
        boxes = rng.integers(0, IMAGE_SIDE - 40, (n, 2))
        records = [
            CellRecord(
                image_path,
                k,
                CellRegion(int(boxes[k, 0]), int(boxes[k, 1]), 36, 36, None, "WBC"),
                probs[k],
                "synthetic",
                diameter_um=float(rng.uniform(6, 16)),
                flags=list(flags[int(rng.integers(0, 40)) % len(flags)]) if rng.random() < 0.1 else [],
            )
            for k in range(n)
        ]
        results.append(ImageResult(image_path, "smear", IMAGE_SIDE, IMAGE_SIDE, records, um_per_px=0.25))
    session = ReviewSession.create(path)
    try:
        for start in range(0, len(results), 250):
            session.add_images(results[start : start + 250])
        ids = session.cell_ids()
        reviewed = rng.choice(ids, size=len(ids) * 3 // 100, replace=False).tolist()
        half = len(reviewed) // 2
        for start in range(0, half, 500):
            label = REVIEW_LABELS[int(rng.integers(0, len(REVIEW_LABELS)))]
            session.set_label(reviewed[start : min(start + 500, half)], label, REVIEWER)
        if reviewed[half:]:
            session.confirm(reviewed[half:], REVIEWER)
    finally:
        session.close()
    return path


class Heartbeat:
    """A 10 ms timer on the GUI thread; the longest gap between its beats is the worst stall."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._beat)
        self.step = ""
        self.worst, self.worst_step = 0.0, ""
        self.by_step: dict[str, float] = {}
        self._last = 0.0

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def reset(self) -> None:
        self.worst, self.worst_step, self.by_step = 0.0, "", {}

    def mark(self, step: str) -> None:
        self.step = step

    def _beat(self) -> None:
        now = time.perf_counter()
        gap = now - self._last
        if gap > self.worst:
            self.worst, self.worst_step = gap, self.step
        self.by_step[self.step] = max(gap, self.by_step.get(self.step, 0.0))
        self._last = now


def process_for(app, seconds: float) -> None:
    from PySide6.QtCore import QEventLoop

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.001)


def wait_until(app, condition, timeout: float = 600.0) -> None:
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("condition not met in time")
        process_for(app, 0.002)


def review_steps(win):
    """(name, action) pairs a reviewer takes through a big session: scroll, sort, filter."""
    from PySide6.QtCore import Qt

    from yawbcc_desktop.gui.cell_table_model import COLUMNS

    table, bar = win.table, win.filter_bar
    steps = []

    def scroll(view, fraction):
        return lambda: view.verticalScrollBar().setValue(int(view.verticalScrollBar().maximum() * fraction))

    steps.append(("show the table", lambda: win.cell_tabs.setCurrentWidget(table)))
    for f in (0.1, 0.5, 0.93, 0.2, 1.0, 0.0):
        steps.append((f"scroll the table to {f:.0%}", scroll(table, f)))
    for i, column in enumerate(COLUMNS):
        if not table.isColumnHidden(i):
            steps.append((f"sort by {column.key}", lambda i=i: table.sortByColumn(i, Qt.SortOrder.AscendingOrder)))
            steps.append((f"sort by {column.key}, descending", lambda i=i: table.sortByColumn(i, Qt.SortOrder.DescendingOrder)))
            steps.append((f"scroll the table sorted by {column.key}", scroll(table, 0.6)))
    steps.append(("analysis order", lambda: table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)))
    steps.append(("filter: to review", bar.show_to_review))
    steps.append(("scroll the to-review queue", scroll(table, 0.5)))
    steps.append(("filter: only lymphocytes", lambda: bar.show_only("LYMPHOCYTE")))
    steps.append(("filter: confidence at least 60 %", lambda: bar.confidence.setValue(60)))
    steps.append(("filter: corrected", lambda: bar.status.setCurrentIndex(4)))
    steps.append(("filter: reset", bar.reset))
    steps.append(("show the gallery", lambda: win.cell_tabs.setCurrentWidget(win.gallery)))
    for f in (0.3, 0.8, 0.0):
        steps.append((f"scroll the gallery to {f:.0%}", scroll(win.gallery, f)))
    steps.append(("gallery filter: to review", bar.show_to_review))
    steps.append(("gallery filter: only neutrophils", lambda: bar.show_only("NEUTROPHIL")))
    steps.append(("gallery filter: reset", bar.reset))
    return steps


def measure(session_path: Path, scratch: Path) -> dict[str, float | str]:
    from PySide6.QtWidgets import QFileDialog

    from yawbcc_desktop.gui.app import application
    from yawbcc_desktop.gui.main_window import MainWindow
    from yawbcc_desktop.gui.settings import AppSettings

    app = application()
    win = MainWindow(AppSettings(scratch / "config"), attended=False, mode="smear")
    win.resize(1600, 1000)
    win.show()
    win.detail.chart  # noqa: B018 -- built soon after start-up, as MainWindow.start does
    process_for(app, 0.5)
    out: dict[str, float | str] = {}
    cells_total = _cell_count(session_path)

    beat = Heartbeat()
    beat.start()
    beat.mark("open")
    started = time.perf_counter()
    win.review.open_session(session_path)  # what File › Open session does once a file is chosen
    # Read off the GUI thread: done when the views hold every cell and the window has painted them.
    c = win.controller
    wait_until(app, lambda: not c.loading and c.cells.rowCount() == c.cell_filter.rowCount() == cells_total)
    app.processEvents()
    out["open_s"] = time.perf_counter() - started
    process_for(app, 0.5)  # throttled counts and differential, first thumbnails, the gallery's layout
    out["open_stall_ms"] = beat.worst * 1000
    beat.reset()

    # The differential panel as it refreshes after each correction: counted off the GUI thread.
    counted = []
    win.differential.refreshed.connect(lambda: counted.append(time.perf_counter()))
    beat.mark("differential")
    started = time.perf_counter()
    win.differential.refresh()
    wait_until(app, lambda: counted)
    out["differential_s"] = counted[0] - started
    process_for(app, 0.05)
    out["differential_stall_ms"] = beat.worst * 1000
    beat.reset()

    for name, action in review_steps(win):
        beat.mark(name)
        action()
        process_for(app, 0.15)
    out["stall_ms"], out["worst"] = beat.worst * 1000, beat.worst_step
    slowest = sorted(beat.by_step.items(), key=lambda item: -item[1])[:4]
    out["next_worst"] = ", ".join(f"{step} {gap * 1000:.0f} ms" for step, gap in slowest[1:])

    # File › Export: the save dialog answers at once with a file in the scratch folder.
    for key, suffix, export in (
        ("export_s", "cells", win.dialogs.export_cells),
        ("differential_export_s", "differential", win.dialogs.export_differential),
    ):
        target = scratch / f"export_{suffix}.csv"
        target.unlink(missing_ok=True)
        QFileDialog.getSaveFileName = staticmethod(lambda *a, target=target, **k: (str(target), "CSV (*.csv)"))
        beat.reset()
        beat.mark(f"export {suffix}")
        started = time.perf_counter()
        export()
        wait_until(app, target.exists)
        out[key] = time.perf_counter() - started
        process_for(app, 0.05)  # the beat after a synchronous export sees its stall
        out[f"{key[:-2]}_stall_ms"] = beat.worst * 1000
    beat.stop()
    win.close()
    return out


def _cell_count(path: Path) -> int:
    from yawbcc_desktop.core.store import ReviewSession

    with ReviewSession.open(path, readonly=True) as session:
        return len(session.cell_ids())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="build the session in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yawbcc-big-session-") as tmp:
        scratch = args.keep or Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        path = scratch / f"big_{args.cells}.yawbcc"
        started = time.perf_counter()
        if not path.exists():
            build_session(path, args.cells)
        print(f"cells={args.cells} build_s={time.perf_counter() - started:.1f}", flush=True)
        figures = measure(path, scratch)
    for key, value in figures.items():
        print(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value!r}")
    print(f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
