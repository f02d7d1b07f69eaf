"""The segmentation children never outlive the window's process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

# A window process that starts the segmenting pool, lets its children take one image each,
# prints their pids and dies without any clean-up, as a crash or a kill would.
CRASHING_WINDOW = """
import os, sys
from yawbcc_desktop.gui.worker import SEGMENTING_WORKERS, segment_safely, segmenting_pool
pool = segmenting_pool()
futures = [pool.submit(segment_safely, sys.argv[1], "cell", None) for _ in range(2 * SEGMENTING_WORKERS)]
results = [f.result()[0] for f in futures]
assert all(r.cells for r in results), [r.error for r in results]
print(" ".join(str(p) for p in pool._processes), flush=True)
os._exit(7)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that ended but was not reaped yet (its parent is gone: init reaps it) is a zombie.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_children_end_when_the_window_process_is_killed(pbc):
    from yawbcc_desktop.core.imageio import ImageReadError, read_rgb

    def readable(path) -> bool:  # the data set holds a non-image file on purpose
        try:
            return read_rgb(path) is not None
        except ImageReadError:
            return False

    image = str(next(p for p in sorted((pbc / "neutrophil").glob("*.jpg")) if readable(p)))
    done = subprocess.run([sys.executable, "-c", CRASHING_WINDOW, image], capture_output=True, text=True, timeout=300)
    assert done.returncode == 7, done.stderr[-2000:]
    pids = [int(p) for p in done.stdout.split()]
    assert pids
    deadline = time.monotonic() + 60  # a generous bound, not a speed check
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), f"segmentation children {pids} outlived their window"
