"""Several review stations correcting one big session on the lab's server at once.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/review_stations.py [--stations 8] [--corrections 500] [--cells 100000]

Starts a real PostgreSQL server (tests/postgres_server.py: ``initdb`` in a temporary folder,
loopback TCP, fsync on), builds a session of ``--cells`` synthetic cells (benchmarks/big_session.py)
and copies it to the server, then runs ``--stations`` reviewer processes, each making
``--corrections`` corrections through the real ``ReviewSession`` API: read a cell, give it
another label naming the version seen.  One correction in ten goes to a small set of cells
every station works on, so that stations do meet.  Meanwhile:

- one station is killed with ``kill -9`` half-way through its corrections;
- the server is restarted (``pg_ctl restart -m fast``) at 40 % of all corrections: the stations
  are cut off, are told (``SessionUnreachable``), and reconnect by themselves;
- an observer station in this process listens (``watch``) and catches up on each change.

It prints: ``corrections_per_s`` (acknowledged, over the run), ``latency_p50_ms`` /
``latency_p99_ms`` (one ``set_label`` call, from asking to the server's acknowledgement),
``reach_p50_ms`` / ``reach_p99_ms`` (from a station's acknowledgement to the observer's window
data holding the change), the conflicts reported, the corrections refused while the server was
down, and the checks: every acknowledged correction in the audit trail exactly once, none
doubled, nothing in the trail that no station asked for, the final labels equal to a serial
replay of the trail, each cell's version its number of changes.  Last, ``window_open_server_s``:
the review window opening the session from the server (File › Open session), every cell in its
table, beside ``window_open_file_s``: the same session from its SQLite file, before and after.

Each correction's reviewer name carries its station and number (``r3#117``), so the trail can
be checked against what each station was told.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HOT_CELLS = 32  # cells every station works on: where corrections meet
HOT_SHARE = 0.1


def station(url: str, number: int, corrections: int, seed: int) -> None:
    """One reviewer process: prints one JSON line per correction, as soon as it is answered."""
    from yawbcc_desktop.core.classes import REVIEW_LABELS
    from yawbcc_desktop.core.store import CellsChanged, ReviewSession, SessionUnreachable

    rng = random.Random(seed)
    session = ReviewSession.open(url)
    session.station = f"station-{number}"
    ids = session.cell_ids()
    hot = ids[:HOT_CELLS]
    print(json.dumps({"ready": number}), flush=True)
    sys.stdin.readline()  # go: every station and the observer are connected
    for seq in range(corrections):
        cell_id = rng.choice(hot) if rng.random() < HOT_SHARE else rng.choice(ids)
        line: dict[str, object] = {"station": number, "seq": seq, "cell": cell_id}
        try:
            cell = session.cell(cell_id)
            label = rng.choice([g for g in REVIEW_LABELS if g != cell.final_label])
            line["label"] = label
            started = time.perf_counter()
            done = session.set_label([cell_id], label, f"r{number}#{seq}", seen={cell_id: cell.version})
            line.update(outcome="acked", action=done.id, latency=time.perf_counter() - started, at=time.time())
        except CellsChanged as exc:
            change = exc.changes[0]
            line.update(outcome="conflict", theirs=[change.label, change.reviewer, change.version])
        except SessionUnreachable:
            line.update(outcome="unreachable")  # not acknowledged: it may or may not be in the trail
            time.sleep(0.2)
        print(json.dumps(line), flush=True)
    session.close()


class Observer:
    """A station that only watches: when did each action reach its data (``catch_up``)?"""

    def __init__(self, url: str):
        from yawbcc_desktop.core.store import ReviewSession

        self.session = ReviewSession.open(url, readonly=True)
        self.session.cache.add(self.session.cells())  # a window's worth: every cell
        self.seen_at: dict[int, float] = {}
        self.links: list[tuple[bool, float]] = []
        self._news = threading.Event()
        self._stop = threading.Event()
        self.session.watch(self._news.set, lambda up: self.links.append((up, time.time())))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from yawbcc_desktop.core.store import SessionError

        while not self._stop.is_set():
            if not self._news.wait(0.2):
                continue
            self._news.clear()
            try:
                if not self.session.catch_up():
                    continue
            except SessionError:
                continue
            now = time.time()
            for action in self.session.caught_up_actions:
                self.seen_at.setdefault(action, now)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.session.close()


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_stations(server, url: str, stations: int, corrections: int) -> dict[str, object]:
    total = stations * corrections
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--station", str(k), "--url", url, "--corrections", str(corrections)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for k in range(stations)
    ]
    lines: list[list[dict]] = [[] for _ in range(stations)]
    lock = threading.Lock()

    def read(k: int) -> None:
        for raw in procs[k].stdout:
            with lock:
                lines[k].append(json.loads(raw))

    readers = [threading.Thread(target=read, args=(k,)) for k in range(stations)]
    for t in readers:
        t.start()
    while sum(any("ready" in x for x in lk) for lk in lines) < stations:
        time.sleep(0.05)
    observer = Observer(url)
    time.sleep(0.5)  # its listener is connected
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    started = time.perf_counter()
    killed, restarted, restart_window = False, None, (0.0, 0.0)

    def answered() -> int:
        with lock:
            return sum(len(lk) - 1 for lk in lines)

    while any(p.poll() is None for p in procs):
        if not killed and len(lines[0]) > corrections // 2:
            os.kill(procs[0].pid, signal.SIGKILL)  # station 0 dies mid-correction
            killed = True
        if restarted is None and answered() > 0.4 * total:
            t0, wall = time.perf_counter(), time.time()
            server.restart()
            restarted = time.perf_counter() - t0
            restart_window = (wall, time.time())
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    for t in readers:
        t.join()
    time.sleep(2.0)  # the last notifications reach the observer
    observer.stop()
    attempts = [x for lk in lines for x in lk if "seq" in x]
    return {
        "attempts": attempts,
        "elapsed": elapsed,
        "restart_s": restarted,
        "restart_window": restart_window,
        "observer": observer,
        "killed": killed,
    }


def verify(url: str, initial: dict[int, tuple[str | None, int]], attempts: list[dict]) -> dict[str, object]:
    """The audit trail against what the stations were told, and the labels against a replay."""
    from collections import Counter

    from yawbcc_desktop.core.store import ReviewSession

    with ReviewSession.open(url, readonly=True) as s:
        trail = [r for r in s.history() if "#" in r.reviewer]
        cells = {c.id: (c.label, c.version) for c in s.cells()}
    tags = Counter(r.reviewer for r in trail)
    acked = {f"r{a['station']}#{a['seq']}": a for a in attempts if a["outcome"] == "acked"}
    asked = {f"r{a['station']}#{a['seq']}": a for a in attempts}
    by_tag = {r.reviewer: r for r in trail}
    missing = [t for t in acked if tags[t] != 1 or by_tag[t].action_id != acked[t]["action"]]
    doubled = [t for t, n in tags.items() if n > 1]
    # The killed station's correction in flight may have committed without its line printed.
    in_flight = f"r0#{max((a['seq'] for a in attempts if a['station'] == 0), default=-1) + 1}"
    unasked = [t for t in tags if t not in asked and t != in_flight]
    unacked_in_trail = [t for t in tags if t in asked and t not in acked]
    replay = {i: label for i, (label, _) in initial.items()}
    changes = Counter()
    broken_chain = 0
    for r in trail:  # oldest first: each row's "before" is what the rows before it left
        broken_chain += replay[r.cell_id] != r.previous
        replay[r.cell_id] = r.label
        changes[r.cell_id] += 1
    labels_match = all(cells[i][0] == replay[i] for i in cells)
    versions_match = all(cells[i][1] == initial[i][1] + changes[i] for i in cells)
    return {
        "trail_rows": len(trail),
        "acked_missing": len(missing),
        "doubled": len(doubled),
        "unasked_in_trail": len(unasked),
        "unacked_but_saved": len(unacked_in_trail),
        "rows_not_following_the_previous": broken_chain,
        "labels_equal_replay": labels_match,
        "versions_equal_changes": versions_match,
    }


def window_open_s(location: str, cells: int, scratch: Path) -> float:
    from benchmarks.big_session import process_for, wait_until
    from yawbcc_desktop.gui.app import application
    from yawbcc_desktop.gui.main_window import MainWindow
    from yawbcc_desktop.gui.settings import AppSettings

    app = application()
    win = MainWindow(AppSettings(scratch / "config"), attended=False, mode="smear")
    win.resize(1600, 1000)
    win.show()
    process_for(app, 0.5)
    started = time.perf_counter()
    win.review.open_session(location)  # what File › Open session does once a session is chosen
    c = win.controller
    wait_until(app, lambda: not c.loading and c.cells.rowCount() == c.cell_filter.rowCount() == cells)
    app.processEvents()
    opened = time.perf_counter() - started
    win.close()
    return opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=8)
    parser.add_argument("--corrections", type=int, default=500)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--station", type=int, help=argparse.SUPPRESS)  # a reviewer process
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.station is not None:
        station(args.url, args.station, args.corrections, seed=args.station)
        return

    from benchmarks.big_session import build_session
    from tests.postgres_server import PostgresServer, free_port
    from yawbcc_desktop.core.store import ReviewSession

    server = PostgresServer(port=free_port(), durable=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="yawbcc-stations-") as tmp:
            scratch = Path(tmp)
            url = server.url("bench")
            started = time.perf_counter()
            with ReviewSession.open(build_session(scratch / "bench.yawbcc", args.cells), readonly=True) as local:
                build = time.perf_counter() - started
                started = time.perf_counter()
                local.copy_to(url).close()
                copy = time.perf_counter() - started
            with ReviewSession.open(url, readonly=True) as s:
                initial = {c.id: (c.label, c.version) for c in s.cells()}
            load = os.getloadavg()[0]  # other work on the machine weighs on every figure: say how much
            print(
                f"cells={args.cells} build_s={build:.1f} copy_to_server_s={copy:.1f} cpus={os.cpu_count()} load_1min={load:.1f}"
            )
            run = run_stations(server, url, args.stations, args.corrections)
            attempts = run["attempts"]
            outcomes = {o: sum(a["outcome"] == o for a in attempts) for o in ("acked", "conflict", "unreachable")}
            latencies = [a["latency"] * 1000 for a in attempts if a["outcome"] == "acked"]
            seen_at = run["observer"].seen_at
            acked = [a for a in attempts if a["outcome"] == "acked"]
            reach = [(seen_at[a["action"]] - a["at"]) * 1000 for a in acked if a["action"] in seen_at]
            # Steady state: changes acknowledged away from the restart (the observer is reconnecting then).
            down, up = run["restart_window"]
            steady = [
                (seen_at[a["action"]] - a["at"]) * 1000
                for a in acked
                if a["action"] in seen_at and not down - 1 <= a["at"] <= up + 5
            ]
            print(
                f"stations={args.stations} corrections_each={args.corrections} asked={len(attempts)} "
                f"acked={outcomes['acked']} conflicts_reported={outcomes['conflict']} "
                f"refused_server_down={outcomes['unreachable']} station_killed={run['killed']} "
                f"server_restart_s={run['restart_s']:.1f}"
            )
            print(
                f"corrections_per_s={outcomes['acked'] / run['elapsed']:.0f} latency_p50_ms={percentile(latencies, 0.5):.1f} "
                f"latency_p99_ms={percentile(latencies, 0.99):.1f} reach_p50_ms={percentile(reach, 0.5):.0f} "
                f"reach_p99_ms={percentile(reach, 0.99):.0f} reach_max_ms={max(reach, default=float('nan')):.0f} "
                f"reached={len(reach)}/{outcomes['acked']} steady_reach_p50_ms={percentile(steady, 0.5):.0f} "
                f"steady_reach_p99_ms={percentile(steady, 0.99):.0f}"
            )
            print(f"load_1min_after={os.getloadavg()[0]:.1f}", flush=True)
            checks = verify(url, initial, attempts)
            print(" ".join(f"{k}={v}" for k, v in checks.items()), flush=True)
            # The same session from its file on the same machine, the run before and after: the baseline.
            file = str(scratch / "bench.yawbcc")
            opened = [window_open_s(where, args.cells, scratch) for where in (file, url, file)]
            print(f"window_open_server_s={opened[1]:.2f} window_open_file_s={opened[0]:.2f},{opened[2]:.2f}")
    finally:
        server.remove()


if __name__ == "__main__":
    main()
