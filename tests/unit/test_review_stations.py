"""Several review stations on one session (the PostgreSQL store), and what both stores share:
a version per cell, conflicts named, sign-off locks, copy between stores, a station killed
or a server restarted losing nothing acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.unit.test_store import image_result
from yawbcc_desktop.core.store import (
    CellsChanged,
    ReviewSession,
    SampleSignedOff,
    SessionError,
    SessionExists,
    SessionNotFound,
    SessionUnreachable,
)


def _slide(session: ReviewSession, images: int = 3, cells: int = 4) -> list[int]:
    ids: list[int] = []
    for k in range(images):
        ids += session.add_image(image_result(f"/lab/slide/f{k}.png", [("NEUTROPHIL", 0.6)] * cells))
    return ids


def test_a_stale_version_is_refused_with_who_changed_it_to_what(session):
    """Both stores: a correction names the version it saw; a stale one saves nothing."""
    ids = _slide(session, 1, 2)
    seen = {c.id: c.version for c in session.cells(ids)}
    assert seen == {ids[0]: 0, ids[1]: 0}
    session.station = "bench-2"
    session.set_label([ids[0]], "MONOCYTE", "Ann", seen=seen)
    before = session.history()
    with pytest.raises(CellsChanged, match="MONOCYTE by Ann at bench-2") as err:
        session.set_label(ids, "IG", "Bob", seen=seen)  # saw cell 0 before Ann's change
    [change] = err.value.changes
    assert tuple(change)[1:] == ("MONOCYTE", "Ann", "bench-2", change.at, 1) and change.cell_id == ids[0]
    assert session.history() == before and session.cell(ids[1]).label is None  # all or nothing
    # Bob looks again and chooses to apply his label over Ann's.
    session.set_label(ids, "IG", "Bob", seen={c.id: c.version for c in session.cells(ids)})
    assert [(c.label, c.version) for c in session.cells(ids)] == [("IG", 2), ("IG", 1)]
    assert [(r.reviewer, r.station) for r in session.history()] == [("Ann", "bench-2"), ("Bob", "bench-2"), ("Bob", "bench-2")]


def test_the_window_s_cells_are_the_version_it_corrects_from(session):
    """Without ``seen``, a correction checks the versions of the cells the window holds."""
    ids = _slide(session, 1, 2)
    session.cache.add(session.cells(ids))
    session.set_label([ids[0]], "LYMPHOCYTE", "Ann")
    assert session.cache.cell(0).version == 1  # the window's cell follows its own correction
    session.undo("Ann")
    assert session.cache.cell(0).version == 2 and session.cache.cell(0).label is None


@pytest.fixture
def server_location(postgres_server) -> str:
    return postgres_server.url(f"stations{os.getpid()}_{time.monotonic_ns()}")


def test_stations_see_each_other_s_corrections_and_conflicts(server_location):
    with ReviewSession.create(server_location) as ann, ReviewSession.open(server_location) as bob:
        ann.station, bob.station = "station-a", "station-b"
        ids = _slide(ann)
        bob.cache.add(bob.cells())  # Bob's window shows the slide
        heard, links = threading.Event(), []
        assert bob.watch(heard.set, links.append) and bob.several_stations
        shown: list[list[int]] = []
        bob.cache.listen(shown.append)
        time.sleep(0.3)  # the listener is connected
        started = time.monotonic()
        ann.set_label(ids[:2], "EOSINOPHIL", "Ann")
        assert heard.wait(2.0), "Bob's station did not hear Ann's correction within 2 s"
        waited = time.monotonic() - started
        assert bob.catch_up() == ids[:2] and shown == [ids[:2]] and waited < 2.0
        assert [c.label for c in bob.cache.cells()[:3]] == ["EOSINOPHIL", "EOSINOPHIL", None]
        assert bob.to_review_count(0.9) == len(ids) - 2 and bob.label_counts()["EOSINOPHIL"] == 2
        # Ann changes a cell Bob's window still shows at its old version: Bob is told, not overwritten.
        ann.set_label([ids[2]], "BASOPHIL", "Ann")
        with pytest.raises(CellsChanged, match="BASOPHIL by Ann at station-a"):
            bob.set_label([ids[2]], "IG", "Bob")
        assert ann.cell(ids[2]).label == "BASOPHIL"
        bob.catch_up()
        bob.set_label([ids[2]], "IG", "Bob")  # having seen it, Bob chooses his own
        assert ann.cell(ids[2]).label == "IG"
        assert [(r.label, r.reviewer, r.station) for r in ann.history(ids[2])] == [
            ("BASOPHIL", "Ann", "station-a"),
            ("IG", "Bob", "station-b"),
        ]
        assert links == []  # the server never went


def test_sign_off_locks_the_sample_for_every_station(server_location):
    with ReviewSession.create(server_location) as ann, ReviewSession.open(server_location) as bob:
        ids = _slide(ann, 2, 2)
        ann.confirm(ids, "Ann")
        signed = ann.sign_off("Ann", 0.9, folder="/lab/slide")
        with pytest.raises(SampleSignedOff, match="signed off by Ann"):
            bob.set_label(ids[:1], "IG", "Bob")
        assert bob.current_sign_off("/lab/slide") == signed
        bob.set_label(ids[:1], "IG", "Bob", reopen=True)
        assert ann.current_sign_off("/lab/slide") is None


def test_concurrent_corrections_of_the_same_cells_are_each_saved_or_refused(server_location):
    """Four stations race on three cells, each correcting from the version it read: every
    acknowledged correction is in the trail once, every other one was refused, none lost."""
    with ReviewSession.create(server_location) as s:
        ids = _slide(s, 1, 3)
    acked: list[tuple[int, str]] = []
    refused: list[int] = []
    unchanged: list[int] = []
    lock = threading.Lock()

    def station(k: int) -> None:
        with ReviewSession.open(server_location) as me:
            me.station = f"s{k}"
            for n in range(15):
                cell = ids[n % 3]
                seen = {cell: me.cell(cell).version}
                label = ["IG", "MONOCYTE", "LYMPHOCYTE", "BASOPHIL"][(k + n) % 4]
                time.sleep(0.005)  # the reviewer looks at the cell: others may change it meanwhile
                try:
                    done = me.set_label([cell], label, f"r{k}", seen=seen)
                except CellsChanged:
                    with lock:
                        refused.append(k)
                    continue
                with lock:
                    if done is not None:
                        acked.append((done.id, label))
                    else:
                        unchanged.append(k)  # it already had that label

    threads = [threading.Thread(target=station, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with ReviewSession.open(server_location, readonly=True) as s:
        trail = s.history()
        assert sorted((r.action_id, r.label) for r in trail) == sorted(acked)  # each exactly once
        assert len(acked) + len(refused) + len(unchanged) == 60 and refused  # every one answered; the race happened
        final = {}
        for r in trail:
            final[r.cell_id] = r.label
        assert {c.id: c.label for c in s.cells(ids)} == final  # the labels are a replay of the trail
        assert [c.version for c in s.cells(ids)] == [sum(r.cell_id == i for r in trail) for i in ids]


def test_copy_between_the_file_and_the_server_keeps_everything(tmp_path, server_location):
    with ReviewSession.create(tmp_path / "bench.yawbcc") as local:
        ids = _slide(local)
        local.set_label(ids[:2], "MONOCYTE", "Ann")
        local.undo("Ann")
        local.set_label(ids[3:5], "IG", "Ann")
        local.confirm(ids, "Bob")
        local.sign_off("Bob", 0.9)
        with local.copy_to(server_location) as shared:
            with pytest.raises(SessionExists):
                local.copy_to(server_location)
            shared.set_label(ids[:1], "BASOPHIL", "Cy", reopen=True)  # ids go on after the copied ones
            back = shared.copy_to(tmp_path / "back.yawbcc")
        with ReviewSession.open(server_location, readonly=True) as shared:
            for s in (shared, back):
                assert [im.path for im in s.images()] == [im.path for im in local.images()]
                assert s.history()[:-1] == local.history() and s.history()[-1].label == "BASOPHIL"
                assert s.history()[-1].id == local.history()[-1].id + 1
                assert s.info() == local.info()
                assert [c.version for c in s.cells()][1:] == [c.version for c in local.cells()][1:]
                assert [(o.reviewer, o.counts) for o in s.sign_offs()] == [(o.reviewer, o.counts) for o in local.sign_offs()]
        back.close()


def test_a_server_url_names_its_session_and_holds_no_password(postgres_server):
    url = postgres_server.url("nosuch")
    with pytest.raises(SessionNotFound):
        ReviewSession.open(url)
    assert not ReviewSession.exists(url)
    with pytest.raises(SessionError, match="names no session"):
        ReviewSession.open(url.replace("session=nosuch", "x=1"))
    with pytest.raises(SessionError, match="must not hold a password") as err:
        ReviewSession.open("postgresql://ann:secret@db.lab/yawbcc?session=x")
    assert "secret" not in str(err.value) and "secret" not in err.value.path
    with pytest.raises(SessionUnreachable, match="cannot be reached"):
        ReviewSession.open("postgresql://ann@127.0.0.1:1/yawbcc?session=x&connect_timeout=2")


_STATION = r"""
import sys
from yawbcc_desktop.core.store import ReviewSession
session = ReviewSession.open(sys.argv[1])
session.station = "doomed"
ids = session.cell_ids()
n = 0
while True:
    cell = ids[n % len(ids)]
    label = ["IG", "MONOCYTE"][(n // len(ids)) % 2]  # each pass changes every cell
    done = session.set_label([cell], label, "Dee", seen={cell: session.cell(cell).version})
    print("acked", done.id, cell, label, flush=True)
    n += 1
"""


def test_a_station_killed_mid_correction_loses_nothing_it_acknowledged(server_location):
    with ReviewSession.create(server_location) as s:
        _slide(s, 2, 5)
    proc = subprocess.Popen([sys.executable, "-c", _STATION, server_location], stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        while len(lines) < 40:
            line = proc.stdout.readline()
            assert line, "the station ended early"
            lines.append(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    lines += proc.stdout.read().splitlines()
    acked = [tuple(line.split()[1:]) for line in lines if line.startswith("acked")]
    with ReviewSession.open(server_location) as s:
        trail = {(str(r.action_id), str(r.cell_id), r.label) for r in s.history()}
        assert set(acked) <= trail and len(trail) - len(acked) <= 1  # at most the one in flight
        assert len({r.action_id for r in s.history()}) == len(s.history())
        s.set_label(s.cell_ids()[:1], "BASOPHIL", "Ann", reopen=True)  # the killed station blocks nobody


def test_a_server_restart_is_reported_and_the_station_reconnects(own_postgres_server):
    server = own_postgres_server
    url = server.url("restart")
    with ReviewSession.create(url) as ann, ReviewSession.open(url) as bob:
        ids = _slide(ann, 1, 3)
        links: list[bool] = []
        news = threading.Event()
        bob.watch(news.set, links.append)
        time.sleep(0.3)
        ann.set_label(ids[:1], "IG", "Ann")
        server.stop()
        with pytest.raises(SessionUnreachable, match="cannot be reached"):
            ann.set_label(ids[1:2], "IG", "Ann")
        deadline = time.monotonic() + 10
        while links != [False] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert links == [False]  # Bob's window is told the server is gone
        server.start()
        news.clear()
        ann.set_label(ids[1:2], "MONOCYTE", "Ann")  # Ann's station reconnects by itself
        assert news.wait(5) and links == [False, True]
        assert [c.label for c in bob.cells(ids)] == ["IG", "MONOCYTE", None]
        assert [r.label for r in bob.history()] == ["IG", "MONOCYTE"]


def test_a_session_file_needs_no_server_driver(tmp_path):
    """The installer ships no server: psycopg is imported only for a postgresql:// URL."""
    script = (
        "import sys; from yawbcc_desktop.core.store import ReviewSession\n"
        f"s = ReviewSession.create({str(tmp_path / 'a.yawbcc')!r}); s.set_label(s.cell_ids(), 'IG', 'Ann'); s.close()\n"
        "import yawbcc_desktop.cli\n"
        "assert not any(m.split('.')[0] in ('psycopg', 'psycopg_binary') for m in sys.modules), 'psycopg imported'\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_a_correction_committed_after_a_later_numbered_one_is_still_caught_up(server_location):
    """Ids are taken when a correction starts: the slower one commits last, with the lower id."""
    import psycopg

    with ReviewSession.create(server_location) as ann, ReviewSession.open(server_location) as watcher:
        ids = _slide(ann, 1, 3)
        watcher.cache.add(watcher.cells())
        slow = psycopg.connect(ann.conninfo)  # a station whose correction takes its time
        slow.execute(f"SET search_path TO {ann.schema}")
        [(action,)] = slow.execute(
            "INSERT INTO review_action (kind, reviewer, at, station) VALUES ('set', 'Slow', 'now', 's') RETURNING id"
        ).fetchall()
        slow.execute(
            "INSERT INTO correction (action_id, cell_id, predicted, previous, label, reviewer, at) "
            "VALUES (%s, %s, 'NEUTROPHIL', NULL, 'IG', 'Slow', 'now')",
            (action, ids[0]),
        )
        slow.execute("UPDATE cell SET label = 'IG', version = version + 1 WHERE id = %s", (ids[0],))
        later = ann.set_label([ids[1]], "MONOCYTE", "Ann")  # numbered after, committed first
        assert later.id > action and watcher.catch_up() == [ids[1]]
        slow.commit()
        slow.close()
        assert watcher.catch_up() == [ids[0]] and watcher.caught_up_actions == [action]
        assert [c.label for c in watcher.cache.cells()] == ["IG", "MONOCYTE", None]
        assert watcher.catch_up() == []


def test_the_preferences_keep_a_server_but_never_a_password(tmp_path):
    from yawbcc_desktop.core.preferences import Preferences, load_preferences, save_preferences, server_problem

    assert server_problem("") == "" and server_problem("postgresql://db.lab/yawbcc?sslmode=require") == ""
    assert "password" in server_problem("postgresql://ann:secret@db.lab/yawbcc")
    assert "names no session" in server_problem("postgresql://db.lab/yawbcc?session=x")
    assert "URL" in server_problem("db.lab")
    path = tmp_path / "preferences.json"
    save_preferences(Preferences(review_server="postgresql://db.lab/yawbcc"), path)
    assert load_preferences(path).review_server == "postgresql://db.lab/yawbcc"
    path.write_text(path.read_text().replace("db.lab", "ann:secret@db.lab"))
    assert load_preferences(path).review_server == ""  # a file edited by hand with a password: not used


def test_the_password_comes_from_libpq_s_password_file(tmp_path, monkeypatch):
    """A server that asks for a password: the URL holds none, the password file does."""
    from tests.conftest import missing_data
    from tests.postgres_server import PostgresServer, server_bin

    if server_bin() is None:
        missing_data("PostgreSQL's server programs are not installed (apt-get install postgresql)")
    server = PostgresServer(password="s3cret-ward").start()
    try:
        url = server.url("ward")
        monkeypatch.delenv("PGPASSWORD", raising=False)
        monkeypatch.setenv("PGPASSFILE", str(tmp_path / "nothing-here"))
        with pytest.raises(SessionUnreachable, match="password"):
            ReviewSession.create(url)
        passfile = tmp_path / "pgpass"
        passfile.write_text("*:*:*:yawbcc:s3cret-ward\n")
        passfile.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(passfile))
        with ReviewSession.create(url) as s:
            _slide(s, 1, 2)
        with ReviewSession.open(url, readonly=True) as s:
            assert len(s.cell_ids()) == 2 and "s3cret" not in s.location
    finally:
        server.remove()
