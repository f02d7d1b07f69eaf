"""Figures of the review application: start-up, responsiveness, throughput, Grad-CAM latency.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_review.py [--images 2000] [--model NAME|DIR]

It prints:
- time from launching ``yawbcc-desktop`` to a usable window, and to the model being ready
  (median of three launches; the window is usable once its event loop first runs);
- the longest event-loop stall during a GUI analysis of ``--images`` single-cell images,
  measured by a 10 ms heartbeat timer on the GUI thread, while a reviewer-like script
  selects a new cell every few seconds;
- cells per second of that GUI run against the headless pipeline (``core.pipeline.analyse``
  as ``yawbcc classify`` runs it) on the same images and model, both with the model loaded;
- Grad-CAM latency from selecting a cell to its heatmap on screen, during the run and idle.

Without trained bundles it builds a random-weight EfficientNet-Lite0 at 128 px (the size of
lite0-fast): the figures are about speed, which random weights do not change.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def pick_images(n: int) -> list[str]:
    """``n`` single-cell images spread over the eight class folders."""
    folders = sorted(p for p in (DATA / "pbc").iterdir() if p.is_dir())
    per_folder = [sorted(q for q in f.glob("*.jpg") if not q.name.startswith(".")) for f in folders]
    picked: list[str] = []
    i = 0
    while len(picked) < n and any(i < len(files) for files in per_folder):
        picked += [str(files[i]) for files in per_folder if i < len(files)]
        i += 1
    return picked[:n]


def random_bundle(folder: Path, size: int = 128) -> Path:
    from training.bundle import write_random_bundle

    return write_random_bundle(folder, f"random-lite0-{size}", size)


def choose_model(name: str | None, scratch: Path) -> str:
    from yawbcc_desktop.core.classifier import ModelBundleError, resolve_bundle

    try:
        return str(resolve_bundle(name))
    except ModelBundleError:
        if name:
            raise
        print("no trained bundle found: using a random-weight Lite0 at 128 px (speed only)")
        return str(random_bundle(scratch / "random-lite0-128"))


def launch_times(model: str, config: Path, runs: int = 3) -> tuple[float, float]:
    """Median seconds from launch to a usable window, and to the model being ready."""
    script = REPO / ".venv" / "bin" / "yawbcc-desktop"
    fallback = [sys.executable, "-c", "from yawbcc_desktop.cli import gui_main; gui_main()"]
    command = [str(script)] if script.exists() else fallback
    env = {**os.environ, "YAWBCC_CONFIG_DIR": str(config)}
    usable, ready = [], []
    for _ in range(runs):
        started = time.time()
        out = subprocess.run(
            [*command, "--startup-probe", "--model", model], env=env, capture_output=True, text=True, timeout=300
        )
        stamps = {line.split()[0]: float(line.split()[1]) for line in out.stdout.splitlines() if line[:1].isalpha()}
        if "usable" not in stamps or "model-ready" not in stamps:
            raise RuntimeError(f"start-up probe failed: {out.stdout}\n{out.stderr[-2000:]}")
        usable.append(stamps["usable"] - started)
        ready.append(stamps["model-ready"] - started)
    return statistics.median(usable), statistics.median(ready)


class HeadlessPipeline:
    """``yawbcc classify`` without the CSV: ``core.pipeline.analyse`` with the CLI's batch size."""

    def __init__(self, model: str):
        from yawbcc_desktop.core.classifier import ModelBundle

        self.bundle = ModelBundle(model)
        self.bundle.warm_up()  # the same warm-up the GUI worker does, so both start traced

    def run(self, paths: list[str]) -> tuple[int, float]:
        from yawbcc_desktop.core.pipeline import analyse

        started = time.perf_counter()
        cells = sum(len(r.cells) for r in analyse(paths, "cell", self.bundle, batch_size=32))
        return cells, time.perf_counter() - started


class ReviewSession:
    """The review window, driven as a reviewer would, with a 10 ms heartbeat on its GUI thread."""

    def __init__(self, model: str, config: Path):
        from PySide6.QtCore import Qt, QTimer

        from yawbcc_desktop.gui.app import application
        from yawbcc_desktop.gui.main_window import MainWindow
        from yawbcc_desktop.gui.settings import AppSettings

        self.app = application()
        self.window = MainWindow(AppSettings(config), attended=False, mode="cell")
        self.window.resize(1600, 1000)
        self.window.show()
        self.window.start(model)
        self.controller = self.window.controller
        self.wait_until(lambda: self.controller.model_state in ("ready", "failed"), 300)
        if self.controller.model_state != "ready":
            raise RuntimeError(f"model did not load: {self.window.notifier.history}")
        self.beats: list[float] = []
        self.heartbeat = QTimer()
        self.heartbeat.setTimerType(Qt.TimerType.PreciseTimer)
        self.heartbeat.setInterval(10)
        self.heartbeat.timeout.connect(lambda: self.beats.append(time.perf_counter()))
        self.gaps: list[float] = []
        self.cam_running: list[float] = []
        self._pending: dict = {}
        self.window.detail.gradcam.shown.connect(self._shown)
        self.clicker = QTimer()
        self.clicker.setInterval(3000)
        self.clicker.timeout.connect(self._reviewer_clicks)

    def wait_until(self, condition, timeout: float) -> None:
        from PySide6.QtCore import QEventLoop

        end = time.monotonic() + timeout
        while not condition() and time.monotonic() < end:
            self.app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.002)

    def _shown(self) -> None:
        if "row" in self._pending and self.window.detail.row == self._pending["row"]:
            self.cam_running.append(time.perf_counter() - self._pending["since"])
            self._pending.clear()

    def _reviewer_clicks(self) -> None:
        # Select the newest cell, as a reviewer following the analysis would.
        if self.controller.store.cell_count and not self._pending:
            row = self.controller.store.cell_count - 1
            self._pending.update(row=row, since=time.perf_counter())
            self.window.selection.select_cell(row)

    def idle_gaps(self, seconds: float = 10.0) -> list[float]:
        """Heartbeat gaps with the window idle: the machine's own load, for comparison."""
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        self.beats.clear()
        self.heartbeat.start()
        loop.exec()
        self.heartbeat.stop()
        return [b - a for a, b in zip(self.beats, self.beats[1:])]

    def run(self, paths: list[str]) -> tuple[int, float]:
        from PySide6.QtCore import QEventLoop

        cells_before = self.controller.store.cell_count
        loop = QEventLoop()  # a real event loop, as in the application: the heartbeat measures it
        self.controller.run_finished.connect(loop.quit)
        self.beats.clear()
        self.heartbeat.start()
        self.clicker.start()
        started = time.perf_counter()
        self.window.open_paths(paths)
        loop.exec()
        seconds = time.perf_counter() - started
        self.clicker.stop()
        self.heartbeat.stop()
        self.controller.run_finished.disconnect(loop.quit)
        self.gaps += [b - a for a, b in zip(self.beats, self.beats[1:])]
        return self.controller.store.cell_count - cells_before, seconds

    def cam_idle(self, n: int = 20) -> list[float]:
        """Grad-CAM latency with the analysis over: cells not explained before, one at a time."""
        latencies = []
        for row in range(0, min(self.controller.store.cell_count, 20 * n), 20):
            if self.window.detail.row == row:
                continue
            since = time.perf_counter()
            self.window.selection.select_cell(row)
            self.wait_until(lambda: self.window.detail.gradcam.state in ("shown", "failed"), 30)
            latencies.append(time.perf_counter() - since)
        return latencies

    def close(self) -> None:
        self.window.close()
        self.app.processEvents()


def stall_figures(gaps: list[float]) -> tuple[float, float, int]:
    """Longest stall beyond the 10 ms beat, 99th percentile gap, stalls over 100 ms."""
    if not gaps:
        return float("nan"), float("nan"), 0
    ordered = sorted(gaps)
    return ordered[-1] - 0.010, ordered[int(0.99 * (len(ordered) - 1))], sum(g - 0.010 > 0.100 for g in gaps)


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"median {1000 * statistics.median(values):.0f} ms, max {1000 * max(values):.0f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", default=None, help="bundle name or folder (default: the accurate bundled model)")
    parser.add_argument("--block", type=int, default=250, help="images per alternating block")
    parser.add_argument("--skip-launch", action="store_true", help="skip the three start-up launches")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="yawbcc-gui-bench-"))
    try:
        run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> None:
    model = choose_model(args.model, scratch)
    paths = pick_images(args.images)
    print(f"model: {model}")
    print(f"images: {len(paths)} single-cell images from {DATA / 'pbc'}, mode cell")
    print(f"machine: {os.cpu_count()} CPU cores (other work on them shows up in every figure)")

    if not args.skip_launch:
        usable, ready = launch_times(model, scratch / "config")
        print(f"launch to usable window: {usable:.2f} s (median of 3; goal < 2 s)")
        print(f"launch to model ready:   {ready:.1f} s (TensorFlow import, model load and warm-up, in the worker)")

    # Headless and GUI runs alternate over blocks of images (ABBA order), so that the
    # changing load of other processes on the cores weighs on both alike.
    headless = HeadlessPipeline(model)
    review = ReviewSession(model, scratch / "config")
    idle = review.idle_gaps()
    blocks = [paths[i : i + args.block] for i in range(0, len(paths), args.block)]
    totals = {"headless": [0, 0.0], "gui": [0, 0.0]}
    for i, block in enumerate(blocks):
        order = ("headless", "gui") if i % 2 == 0 else ("gui", "headless")
        for mode in order:
            cells, seconds = (headless.run if mode == "headless" else review.run)(block)
            totals[mode][0] += cells
            totals[mode][1] += seconds
        print(f"  block {i + 1}/{len(blocks)}: {len(block)} images done in both", flush=True)
    cam_idle = review.cam_idle()
    review.close()

    (cells_h, seconds_h), (cells_g, seconds_g) = totals["headless"], totals["gui"]
    rate_h, rate_g = cells_h / seconds_h, cells_g / seconds_g
    print(f"headless pipeline: {cells_h} cells in {seconds_h:.1f} s = {rate_h:.1f} cells/s")
    print(f"GUI run:           {cells_g} cells in {seconds_g:.1f} s = {rate_g:.1f} cells/s")
    print(f"GUI / headless:    {100 * rate_g / rate_h:.0f} % (goal >= 90 %)")
    stall, p99, over = stall_figures(review.gaps)
    print(
        f"event loop during the GUI run: max stall {1000 * stall:.0f} ms (goal < 100 ms), "
        f"99th percentile heartbeat gap {1000 * p99:.0f} ms, {over} stalls over 100 ms in {len(review.gaps)} beats"
    )
    stall, p99, over = stall_figures(idle)
    print(
        f"event loop, window idle (baseline, same machine): max stall {1000 * stall:.0f} ms, "
        f"99th percentile heartbeat gap {1000 * p99:.0f} ms"
    )
    print(f"Grad-CAM on selection, during the run: {ms(review.cam_running)} (a click every 3 s)")
    print(f"Grad-CAM on selection, idle:           {ms(cam_idle)} (goal < 300 ms)")


if __name__ == "__main__":
    main()
