"""Review sessions on disk: corrections with an audit trail, undo/redo, the to-review queue,
sign-off, and files that must never be lost or overwritten (killed process, corrupt,
newer version, locked)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from yawbcc_desktop.core import review_rules
from yawbcc_desktop.core.cells import CellRegion
from yawbcc_desktop.core.classes import ARTEFACT, GROUPS, REVIEW_LABELS
from yawbcc_desktop.core.pipeline import CellRecord, ImageResult
from yawbcc_desktop.core.store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    ReviewSession,
    SampleSignedOff,
    SessionCorrupt,
    SessionExists,
    SessionLocked,
    SessionNotFound,
    SessionReadOnly,
    SessionTooNew,
    SignOffRefused,
)
from yawbcc_desktop.core.store.postgres_store import PostgresSession


def probs_for(group: str, confidence: float) -> np.ndarray:
    """Probabilities with ``group`` on top at ``confidence``, the rest shared evenly."""
    p = np.full(len(GROUPS), (1.0 - confidence) / (len(GROUPS) - 1), np.float32)
    p[GROUPS.index(group)] = confidence
    return p


def image_result(path: str, predictions: list[tuple[str, float]], mode: str = "smear", model: str = "m1") -> ImageResult:
    rng = np.random.default_rng(len(path))
    cells = []
    for i, (group, conf) in enumerate(predictions):
        mask = rng.random((30, 20)) > 0.4
        region = CellRegion(10 * i, 5, 20, 30, mask, "PLATELET" if group == "PLATELET" else "WBC")
        cells.append(CellRecord(path, i, region, probs_for(group, conf), model))
    return ImageResult(path, mode, 640, 480, cells)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- 3. sessions on disk ------------------------------------------------------------------------


def test_new_session_is_wal_versioned_and_reopens_with_everything(tmp_path):
    path = tmp_path / "s.yawbcc"
    with ReviewSession.create(path) as s:
        first = s.add_image(image_result("/lab/a/f1.png", [("NEUTROPHIL", 0.99), ("LYMPHOCYTE", 0.6)]))
        s.add_image(ImageResult("/lab/a/empty.png", "smear", 640, 480, []))
        s.add_image(ImageResult("/lab/b/bad.png", error="not an image"))
        s.set_label([first[1]], "MONOCYTE", "Ann")
        original_mask = s.cell_mask(first[0])
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    raw.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yawbcc"]  # no lock, no WAL left after close

    with ReviewSession.open(path) as s:
        images = s.images()
        assert [(im.path, im.status, im.cell_count) for im in images] == [
            ("/lab/a/f1.png", "analysed", 2),
            ("/lab/a/empty.png", "no cell found", 0),
            ("/lab/b/bad.png", "failed", 0),
        ]
        assert images[2].error == "not an image" and images[0].mode == "smear" and images[0].width == 640
        a, b = s.cells(first)
        assert (a.box, a.kind, a.model, a.predicted, a.label) == ((0, 5, 20, 30), "WBC", "m1", "NEUTROPHIL", None)
        assert a.confidence == pytest.approx(0.99) and np.allclose(a.probs, probs_for("NEUTROPHIL", 0.99))
        assert (b.predicted, b.label, b.final_label, b.reviewer) == ("LYMPHOCYTE", "MONOCYTE", "MONOCYTE", "Ann")
        assert b.corrected and b.reviewed and not a.reviewed
        assert np.array_equal(s.cell_mask(a.id), original_mask)
        [row] = s.history()
        assert (row.cell_id, row.predicted, row.previous, row.label, row.reviewer, row.kind) == (
            b.id, "LYMPHOCYTE", None, "MONOCYTE", "Ann", "set",
        )  # fmt: skip
        assert s.folders() == ["/lab/a", "/lab/b"]


def test_an_analysed_image_is_kept_a_failed_one_retried(session):
    ids = session.add_image(image_result("/lab/x.png", [("EOSINOPHIL", 0.95)]))
    session.set_label(ids, "BASOPHIL", "Ann")
    assert session.add_image(image_result("/lab/x.png", [("NEUTROPHIL", 0.99), ("IG", 0.99)])) is None
    assert [c.final_label for c in session.cells(image_id=session.image("/lab/x.png").id)] == ["BASOPHIL"]
    assert session.add_image(ImageResult("/lab/y.png", error="truncated")) == []
    assert session.analysed_paths() == {"/lab/x.png"}
    retried = session.add_image(image_result("/lab/y.png", [("MONOCYTE", 0.97)]))
    assert len(retried) == 1 and session.image("/lab/y.png").status == "analysed"
    assert [im.path for im in session.images()] == ["/lab/x.png", "/lab/y.png"]


def test_killed_process_loses_no_committed_image_or_correction(tmp_path):
    """kill -9 a real writer mid-loop; every image and correction it reported is in the file."""
    path = tmp_path / "killed.yawbcc"
    script = r"""
import sys
import numpy as np
from yawbcc_desktop.core.cells import CellRegion
from yawbcc_desktop.core.pipeline import CellRecord, ImageResult
from yawbcc_desktop.core.store import ReviewSession

session = ReviewSession.open_or_create(sys.argv[1])
rng = np.random.default_rng(0)
k = 0
while True:
    path = f"/lab/slide/field{k:05d}.png"
    cells = [CellRecord(path, i, CellRegion(9 * i, 0, 8, 8, np.ones((8, 8), bool)),
                        rng.dirichlet(np.ones(8)).astype(np.float32), "m1") for i in range(3)]
    ids = session.add_image(ImageResult(path, "smear", 64, 64, cells))
    print("image", path, flush=True)
    session.set_label(ids[:2], "LYMPHOCYTE", "Ann")
    print("corrected", ids[0], ids[1], flush=True)
    k += 1
"""
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while sum(line.startswith("corrected") for line in lines) < 25:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer ended early: {proc.stderr.read()}")
            lines.append(line.split("\n")[0])
            assert time.monotonic() < deadline, "writer too slow"
        # While it runs: a second writer is refused with who holds it; a reader is fine.
        with pytest.raises(SessionLocked, match=f"process {proc.pid}"):
            ReviewSession.open(path)
        with ReviewSession.open(path, readonly=True) as reader:
            assert reader.summary(0.9).images >= 25
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    lines += proc.stdout.read().splitlines()  # reported (so committed) before the kill
    assert proc.returncode == -signal.SIGKILL
    assert Path(f"{path}.lock").exists()  # stale lock file of the killed writer

    with ReviewSession.open(path) as s:  # the stale lock does not block; quick_check passes
        saved = {im.path for im in s.images()}
        reported_images = {line.split()[1] for line in lines if line.startswith("image")}
        assert reported_images <= saved
        corrected = [int(i) for line in lines if line.startswith("corrected") for i in line.split()[1:]]
        cells = s.cells(corrected)
        assert len(cells) == len(corrected) >= 50
        assert all(c.label == "LYMPHOCYTE" and c.reviewer == "Ann" for c in cells)
        assert {r.cell_id for r in s.history()} >= set(corrected)
        # And it is writable again.
        assert s.set_label(corrected[:1], "MONOCYTE", "Bob") is not None


def _session_file(tmp_path: Path, name: str = "good.yawbcc") -> Path:
    path = tmp_path / name
    with ReviewSession.create(path) as s:
        for k in range(40):
            ids = s.add_image(image_result(f"/lab/f{k}.png", [("NEUTROPHIL", 0.9)] * 4))
            s.set_label(ids[:1], "IG", "Ann")
    return path


def _corrupt(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.yawbcc"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    elif kind == "text":
        path.write_text("cells,labels\n1,2\n")
    elif kind == "other_sqlite":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (x)")
        conn.commit()
        conn.close()
    else:
        good = _session_file(tmp_path, "src.yawbcc").read_bytes()
        if kind == "truncated":
            data = good[: len(good) // 2]
        else:  # damaged: garbage over pages in the middle, header intact
            page = 4096
            start = (len(good) // page // 2) * page
            noise = np.random.default_rng(1).integers(0, 256, 2 * page, dtype=np.uint8).tobytes()
            data = good[:start] + noise + good[start + 2 * page :]
        path.write_bytes(data)
        (tmp_path / "src.yawbcc").unlink()
    return path


@pytest.mark.parametrize("kind", ["empty", "garbage", "text", "other_sqlite", "truncated", "damaged"])
@pytest.mark.parametrize("readonly", [False, True])
def test_corrupt_file_gives_a_clear_message_and_is_left_untouched(tmp_path, kind, readonly):
    path = _corrupt(kind, tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(SessionCorrupt) as err:
        with ReviewSession.open(path, readonly=readonly) as s:
            s.summary(0.9)  # read-only opens skip the full check; reading must still fail cleanly
            s.cells(s.cell_ids())
    assert str(path) in str(err.value) and "left untouched" in str(err.value)
    assert snapshot(tmp_path) == before  # same bytes, no WAL or lock file left behind
    with pytest.raises(SessionExists):
        ReviewSession.create(path)
    assert snapshot(tmp_path) == before


def test_session_from_a_newer_version_is_refused_untouched(tmp_path):
    path = _session_file(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = snapshot(tmp_path)
    for readonly in (False, True):
        with pytest.raises(SessionTooNew, match="newer YAWBCC") as err:
            ReviewSession.open(path, readonly=readonly)
        assert err.value.version == SCHEMA_VERSION + 1
    assert snapshot(tmp_path) == before


def test_a_session_has_one_writer_and_a_stale_lock_does_not_block(tmp_path):
    path = _session_file(tmp_path)
    first = ReviewSession.open(path)
    with pytest.raises(SessionLocked, match=f"process {os.getpid()}"):
        ReviewSession.open(path)
    with pytest.raises(SessionLocked):
        ReviewSession.open_or_create(path)
    with ReviewSession.open(path, readonly=True) as reader:  # export while the GUI holds it
        assert reader.summary(0.5).cells == 160
        with pytest.raises(SessionReadOnly):
            reader.set_label([1], "IG", "Ann")
    first.close()
    Path(f"{path}.lock").write_text('{"pid": 999999, "host": "gone", "since": "yesterday"}')  # no OS lock behind it
    with ReviewSession.open(path) as again:
        assert again.summary(0.5).reviewed == 40


def test_missing_and_existing_files(tmp_path):
    with pytest.raises(SessionNotFound, match="does not exist"):
        ReviewSession.open(tmp_path / "nope.yawbcc")
    assert not list(tmp_path.iterdir())
    path = _session_file(tmp_path)
    with pytest.raises(SessionExists, match="never overwritten"):
        ReviewSession.create(path)


# -- 1. corrections, undo/redo, artefacts --------------------------------------------------------


def test_set_label_undo_redo_append_to_the_audit_trail(session):
    ids = session.add_image(image_result("/lab/f.png", [("NEUTROPHIL", 0.99), ("NEUTROPHIL", 0.7), ("MONOCYTE", 0.8)]))
    assert not session.can_undo
    done = session.set_label(ids[:2], "LYMPHOCYTE", "Ann")
    assert done.kind == "set" and done.cell_ids == ids[:2] and session.can_undo and not session.can_redo
    assert [c.final_label for c in session.cells(ids)] == ["LYMPHOCYTE", "LYMPHOCYTE", "MONOCYTE"]
    session.set_label([ids[0]], ARTEFACT, "Bob")
    assert session.cell(ids[0]).final_label == ARTEFACT

    undone = session.undo("Bob")
    assert undone.kind == "undo" and session.cell(ids[0]).label == "LYMPHOCYTE"
    session.undo("Bob")
    assert [c.label for c in session.cells(ids)] == [None, None, None] and not session.can_undo
    assert [c.final_label for c in session.cells(ids)] == ["NEUTROPHIL", "NEUTROPHIL", "MONOCYTE"]
    redone = session.redo("Cy")
    assert redone.kind == "redo" and [c.label for c in session.cells(ids[:2])] == ["LYMPHOCYTE", "LYMPHOCYTE"]
    assert session.can_redo and session.can_undo
    session.set_label([ids[2]], "EOSINOPHIL", "Cy")  # a new correction clears the redo stack
    assert not session.can_redo and session.redo("Cy") is None

    history = session.history()
    assert [(r.kind, r.cell_id, r.previous, r.label, r.reviewer) for r in history] == [
        ("set", ids[0], None, "LYMPHOCYTE", "Ann"),
        ("set", ids[1], None, "LYMPHOCYTE", "Ann"),
        ("set", ids[0], "LYMPHOCYTE", ARTEFACT, "Bob"),
        ("undo", ids[0], ARTEFACT, "LYMPHOCYTE", "Bob"),
        ("undo", ids[0], "LYMPHOCYTE", None, "Bob"),
        ("undo", ids[1], "LYMPHOCYTE", None, "Bob"),
        ("redo", ids[0], None, "LYMPHOCYTE", "Cy"),
        ("redo", ids[1], None, "LYMPHOCYTE", "Cy"),
        ("set", ids[2], None, "EOSINOPHIL", "Cy"),
    ]
    assert all(r.predicted for r in history) and [r.id for r in session.history(ids[2])] == [history[-1].id]
    # The trail cannot be rewritten, even with SQL.
    sqls = ["UPDATE correction SET label = 'IG'", "DELETE FROM correction", "DELETE FROM review_action"]
    if isinstance(session, PostgresSession):
        import psycopg

        sqls.append("TRUNCATE correction")
        with psycopg.connect(session.conninfo, autocommit=True) as raw:
            raw.execute(f"SET search_path TO {session.schema}")
            for sql in sqls:
                with pytest.raises(psycopg.errors.RaiseException, match="audit trail"):
                    raw.execute(sql)
        return
    raw = sqlite3.connect(session.path)
    for sql in sqls:
        with pytest.raises(sqlite3.IntegrityError, match="audit trail"):
            raw.execute(sql)
    raw.close()


def test_the_cells_a_window_shows_follow_every_correction_undo_and_redo(session):
    """``ReviewSession.cache``: the session relabels the cells it holds in the call that
    commits, then tells its listeners; a failed correction changes nothing."""
    ids = session.add_image(image_result("/lab/f.png", [("NEUTROPHIL", 0.99), ("NEUTROPHIL", 0.7), ("MONOCYTE", 0.8)]))
    cache, told = session.cache, []
    cache.add(session.cells(ids[:2]))  # the third is not shown
    cache.listen(told.append)
    session.set_label(ids, "LYMPHOCYTE", "Ann")
    assert told == [ids] and [c.label for c in cache.cells()] == ["LYMPHOCYTE", "LYMPHOCYTE"]
    assert cache.cell(0).reviewer == "Ann" and cache.cell(0).reviewed_at == session.cell(ids[0]).reviewed_at
    assert cache.columns().label.tolist() == [REVIEW_LABELS.index("LYMPHOCYTE")] * 2
    session.undo("Ann")
    assert [c.label for c in cache.cells()] == [None, None] and cache.cell(1).reviewer == ""
    assert cache.columns().label.tolist() == [-1, -1]
    session.redo("Ann")
    assert [c.final_label for c in cache.cells()] == ["LYMPHOCYTE"] * 2 and len(told) == 3
    with pytest.raises(ValueError):
        session.set_label([ids[0], 999], "MONOCYTE", "Ann")
    assert len(told) == 3 and cache.cell(0).label == "LYMPHOCYTE"
    assert session.set_label([ids[0]], "LYMPHOCYTE", "Ann") is None and len(told) == 3  # nothing changed


def test_bad_labels_reviewers_and_cells_are_refused(session):
    ids = session.add_image(image_result("/lab/f.png", [("NEUTROPHIL", 0.5)]))
    with pytest.raises(ValueError, match="unknown label"):
        session.set_label(ids, "neutrophil", "Ann")
    with pytest.raises(ValueError, match="reviewer"):
        session.set_label(ids, "IG", "  ")
    with pytest.raises(ValueError, match="no cell"):
        session.set_label([ids[0], 999], "IG", "Ann")
    assert session.cell(ids[0]).label is None and not session.history()
    assert session.set_label(ids, "IG", "Ann") is not None
    assert session.set_label(ids, "IG", "Bob") is None  # nothing changes: no audit row, nothing to undo twice
    assert len(session.history()) == 1


# -- 2. the to-review queue --------------------------------------------------------------------


def test_queue_holds_unreviewed_low_confidence_cells_until_confirmed_or_corrected(session):
    predictions = [("NEUTROPHIL", 0.99), ("NEUTROPHIL", 0.5), ("IG", 0.89), ("MONOCYTE", 0.875)]
    ids = session.add_image(image_result("/lab/f.png", predictions))
    segmented_only = CellRecord("/lab/seg.png", 0, CellRegion(0, 0, 4, 4, None))
    unclassified = session.add_image(ImageResult("/lab/seg.png", "smear", 64, 64, [segmented_only]))
    # At the threshold is confident enough (0.875 is exact in float32); no prediction: review.
    assert session.cell_ids(queue_threshold=0.875) == [ids[1], unclassified[0]]
    assert session.cell_ids(queue_threshold=0.9) == [ids[1], ids[2], ids[3], unclassified[0]]
    assert session.to_review_count(0.9) == 4 and session.summary(0.9).to_review == 4
    assert [c.in_queue(0.9) for c in session.cells(ids)] == [False, True, True, True]

    session.set_label([ids[3]], "MONOCYTE", "Ann")
    confirmed = session.confirm([ids[1], unclassified[0]], "Ann")  # nothing to confirm for the unclassified cell
    assert confirmed.cell_ids == [ids[1]] and session.cell(ids[1]).label == "NEUTROPHIL"
    assert not session.cell(ids[1]).corrected and session.cell(ids[1]).reviewed
    session.set_label([unclassified[0]], "PLATELET", "Ann")
    assert session.cell_ids(queue_threshold=0.9) == [ids[2]]
    session.undo("Ann")
    assert session.cell_ids(queue_threshold=0.9) == [ids[2], unclassified[0]]
    assert session.cell_ids(label="NEUTROPHIL") == ids[:2]
    assert session.cell_ids(queue_threshold=0.9, image_id=session.image("/lab/f.png").id) == [ids[2]]


# -- 5. sign-off ------------------------------------------------------------------------------


def test_sign_off_needs_an_empty_queue_and_goes_stale_on_change(session):
    a = session.add_image(image_result("/lab/p1/f.png", [("NEUTROPHIL", 0.99), ("LYMPHOCYTE", 0.6)]))
    b = session.add_image(image_result("/lab/p2/f.png", [("MONOCYTE", 0.5)]))
    with pytest.raises(SignOffRefused, match="2 cell") as err:
        session.sign_off("Ann", 0.9)
    assert err.value.unreviewed == 2 and session.sign_offs() == []
    session.set_label([a[1]], "MONOCYTE", "Ann")
    signed = session.sign_off("Ann", 0.9, folder="/lab/p1")  # that folder's queue is empty
    assert signed.folder == "/lab/p1" and signed.counts == {"NEUTROPHIL": 1, "MONOCYTE": 1}
    assert session.current_sign_off("/lab/p1") == signed and session.current_sign_off() is None
    session.confirm(b, "Ann")
    whole = session.sign_off("Bob", 0.9)
    assert (whole.reviewer, whole.folder, whole.threshold) == ("Bob", "", 0.9)
    assert session.current_sign_off().id == whole.id
    # Signed off, the cells are locked (for every station), until a reviewer reopens on purpose.
    with pytest.raises(SampleSignedOff, match="signed off by Bob") as locked:
        session.set_label([a[0]], "IG", "Cy")
    assert locked.value.scope == "" and session.cell(a[0]).label is None and session.current_sign_off().id == whole.id
    session.set_label([a[0]], "IG", "Cy", reopen=True)  # a later correction voids both sign-offs it touches
    assert session.current_sign_off() is None and session.current_sign_off("/lab/p1") is None
    assert [s.current for s in session.sign_offs()] == [False]
    session.sign_off("Bob", 0.9)
    session.add_image(image_result("/lab/p3/f.png", [("NEUTROPHIL", 0.99)]))  # a new cell voids it too
    assert session.current_sign_off() is None


# -- threads -------------------------------------------------------------------------------------


def test_worker_thread_adds_images_while_main_thread_corrects(session):
    first = session.add_image(image_result("/lab/main.png", [("NEUTROPHIL", 0.5)] * 20))
    errors = []

    def worker():
        try:
            for k in range(30):
                session.add_image(image_result(f"/lab/w/{k}.png", [("LYMPHOCYTE", 0.95)] * 3))
        except Exception as exc:  # reported to the main thread below
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    for cid in first:
        session.set_label([cid], "MONOCYTE", "Ann")
    thread.join()
    assert not errors
    summary = session.summary(0.9)
    assert (summary.images, summary.cells, summary.corrected) == (31, 110, 20)


# -- what the analysis measured: scale, familiarity, flags; files of the previous format ----------


def measured_result(path: str, unfamiliar: bool = True) -> ImageResult:
    """An image as the analysis leaves it with a familiarity model: scale, scores and flags."""
    result = image_result(path, [("NEUTROPHIL", 0.99), ("PLATELET", 0.97), ("LYMPHOCYTE", 0.5)])
    result.um_per_px, result.scale_source = 0.097, "red cells"
    result.unfamiliar_score, result.unfamiliar = 7.5, unfamiliar
    # The "platelet" is too big for one: size and class disagree.
    sizes = (review_rules.WBC_MIN_UM + 6.0, review_rules.PLATELET_MAX_UM + 3.0, review_rules.WBC_MIN_UM + 3.0)
    for cell, diameter, score in zip(result.cells, sizes, (6.0, 7.5, 9.0)):
        cell.diameter_um, cell.unfamiliar_score = diameter, score
        cell.flags = review_rules.analysis_flags(cell.predicted, cell.diameter_um, unfamiliar)
    return result


def test_scale_familiarity_and_flags_are_stored_and_reopened(tmp_path):
    path = tmp_path / "m.yawbcc"
    with ReviewSession.create(path) as s:
        ids = s.add_image(measured_result("/lab/u.png"), unfamiliar_threshold=3.0)
        s.add_image(image_result("/lab/plain.png", [("NEUTROPHIL", 0.99)]))  # no familiarity model
    with ReviewSession.open(path, readonly=True) as s:
        im, plain = s.images()
        assert (im.um_per_px, im.scale_source, im.unfamiliar_score, im.unfamiliar, im.unfamiliar_threshold) == (
            pytest.approx(0.097), "red cells", 7.5, True, 3.0,
        )  # fmt: skip
        assert np.isnan(plain.um_per_px) and np.isnan(plain.unfamiliar_score) and np.isnan(plain.unfamiliar_threshold)
        assert not plain.unfamiliar and plain.scale_source == ""
        a, b, c = s.cells(ids)
        assert (a.diameter_um, a.unfamiliar_score, a.flags) == (review_rules.WBC_MIN_UM + 6.0, 6.0, "unfamiliar image")
        # The big "platelet": size and class disagree, stored with the unfamiliar flag.
        assert b.flags == f"{review_rules.UNFAMILIAR}; {review_rules.SIZE_SET_ASIDE}"
        assert b.review_reasons(0.9) == [review_rules.UNFAMILIAR, review_rules.SIZE_SET_ASIDE]
        assert c.review_reasons(0.9) == [review_rules.LOW_CONFIDENCE, review_rules.UNFAMILIAR]
        [d] = s.cells(image_id=plain.id)
        assert np.isnan(d.diameter_um) and d.flags == "" and d.review_reasons(0.9) == []


def test_flags_put_confident_cells_in_the_queue_until_reviewed(session):
    flagged = session.add_image(measured_result("/lab/p1/u.png"))
    familiar = session.add_image(measured_result("/lab/p2/f.png", unfamiliar=False))
    # Unfamiliar image: every cell waits, the 99 % one too; a familiar image: only the low
    # confidence cell and the 9 µm platelet.
    assert session.cell_ids(queue_threshold=0.9) == flagged + [familiar[1], familiar[2]]
    assert [c.in_queue(0.9) for c in session.cells(flagged + familiar)] == [True, True, True, False, True, True]
    assert session.to_review_count(0.9, folder="/lab/p1") == 3 and session.summary(0.9).to_review == 5
    # A threshold of 0 leaves only the flagged cells.
    assert session.cell_ids(queue_threshold=0.0) == flagged + [familiar[1]]
    with pytest.raises(SignOffRefused, match="3 cell"):
        session.sign_off("Ann", 0.0, folder="/lab/p1")
    session.confirm(flagged, "Ann")  # reviewed: out of the queue whatever its flags
    assert session.cell(flagged[0]).review_reasons(0.9) == [] and not session.cell(flagged[0]).in_queue(0.9)
    assert session.to_review_count(0.9, folder="/lab/p1") == 0
    assert session.sign_off("Ann", 0.9, folder="/lab/p1").counts == {"NEUTROPHIL": 1, "PLATELET": 1, "LYMPHOCYTE": 1}


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9, 0.97, 0.99, 1.0])
def test_queue_sql_picks_exactly_the_cells_the_rule_says(session, threshold):
    rng = np.random.default_rng(7)
    for k in range(12):
        result = measured_result(f"/lab/r{k}.png", unfamiliar=bool(k % 3 == 0))
        for cell in result.cells:
            cell.probs = probs_for(GROUPS[int(rng.integers(len(GROUPS)))], float(rng.choice([0.3, 0.5, 0.9, 0.97, 1.0])))
            cell.flags = review_rules.analysis_flags(cell.predicted, cell.diameter_um, result.unfamiliar)
        result.cells.append(CellRecord(result.path, 3, CellRegion(0, 0, 4, 4, None)))  # not classified
        session.add_image(result)
    session.confirm(session.cell_ids()[::4], "Ann")
    by_rule = [c.id for c in session.cells(session.cell_ids()) if c.in_queue(threshold)]
    assert session.cell_ids(queue_threshold=threshold) == by_rule
    assert session.to_review_count(threshold) == len(by_rule) > 0


# Format 1, as YAWBCC wrote it before scale and familiarity were stored.
V1_SCHEMA = """
CREATE TABLE session_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE image (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, folder TEXT NOT NULL, status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '', mode TEXT NOT NULL DEFAULT '', width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0, analysed_at TEXT NOT NULL);
CREATE INDEX image_folder ON image(folder);
CREATE TABLE cell (id INTEGER PRIMARY KEY, image_id INTEGER NOT NULL REFERENCES image(id),
    cell_index INTEGER NOT NULL, kind TEXT NOT NULL, x INTEGER NOT NULL, y INTEGER NOT NULL, width INTEGER NOT NULL,
    height INTEGER NOT NULL, mask BLOB, model TEXT NOT NULL DEFAULT '', predicted TEXT, confidence REAL, probs BLOB,
    label TEXT, reviewer TEXT NOT NULL DEFAULT '', reviewed_at TEXT NOT NULL DEFAULT '', UNIQUE (image_id, cell_index));
CREATE INDEX cell_confidence ON cell(confidence);
CREATE TABLE review_action (id INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('set', 'confirm', 'undo', 'redo')),
    reverts INTEGER REFERENCES review_action(id), reviewer TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE correction (id INTEGER PRIMARY KEY, action_id INTEGER NOT NULL REFERENCES review_action(id),
    cell_id INTEGER NOT NULL REFERENCES cell(id), predicted TEXT, previous TEXT, label TEXT, reviewer TEXT NOT NULL,
    at TEXT NOT NULL);
CREATE INDEX correction_cell ON correction(cell_id);
CREATE TABLE sign_off (id INTEGER PRIMARY KEY, folder TEXT NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL,
    threshold REAL NOT NULL, last_correction INTEGER NOT NULL, last_cell INTEGER NOT NULL, counts TEXT NOT NULL);
"""


def _v1_session(path: Path) -> Path:
    """A format-1 file: two images, three cells (confident, unsure, not classified), one correction."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(f"BEGIN; {V1_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1; COMMIT;")
    conn.execute("INSERT INTO session_info VALUES ('class_order', ?)", (json.dumps(GROUPS),))
    conn.execute("INSERT INTO image VALUES (1, '/lab/a/f.png', '/lab/a', 'analysed', '', 'smear', 640, 480, 't0')")
    conn.execute("INSERT INTO image VALUES (2, '/lab/a/g.png', '/lab/a', 'analysed', '', 'cell', 360, 360, 't0')")
    rows = [(1, 1, 0, "NEUTROPHIL", 0.99), (2, 1, 1, "IG", 0.6), (3, 2, 0, None, None)]
    for cid, image_id, index, predicted, confidence in rows:
        probs = probs_for(predicted, confidence).tobytes() if predicted else None
        conn.execute(
            "INSERT INTO cell (id, image_id, cell_index, kind, x, y, width, height, model, predicted, confidence, probs) "
            "VALUES (?, ?, ?, 'WBC', 0, 0, 20, 30, 'm1', ?, ?, ?)",
            (cid, image_id, index, predicted, confidence, probs),
        )
    conn.execute("INSERT INTO review_action VALUES (1, 'set', NULL, 'Ann', 't1')")
    conn.execute("INSERT INTO correction VALUES (1, 1, 2, 'IG', NULL, 'MONOCYTE', 'Ann', 't1')")
    conn.execute("UPDATE cell SET label = 'MONOCYTE', reviewer = 'Ann', reviewed_at = 't1' WHERE id = 2")
    conn.close()
    return path


def _columns(path: Path, tables: tuple[str, ...] = ("image", "cell")) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        return {t: [(r[1], r[2], r[3], r[4]) for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    finally:
        conn.close()


def test_a_previous_format_file_is_read_untouched_and_migrated_when_opened_for_review(tmp_path):
    path = _v1_session(tmp_path / "old.yawbcc")
    before = path.read_bytes()
    # Read-only (export while another YAWBCC has it): readable as this format, not a byte changed.
    with ReviewSession.open(path, readonly=True) as s:
        images = s.images()
        assert [im.path for im in images] == ["/lab/a/f.png", "/lab/a/g.png"]
        assert np.isnan(images[0].um_per_px) and not images[0].unfamiliar and images[0].scale_source == ""
        cells = s.cells(s.cell_ids())
        assert [c.flags for c in cells] == ["", "", ""] and np.isnan(cells[0].diameter_um)
        assert [c.final_label for c in cells] == ["NEUTROPHIL", "MONOCYTE", ""]
        assert s.cell_ids(queue_threshold=0.9) == [3]  # the rule of format 1: the unclassified cell
        assert s.to_review_count(0.9) == 1 and s.summary(0.9).corrected == 1
    assert path.read_bytes() == before
    # Opened for review: migrated in place, every row kept, writable as a new file is.
    with ReviewSession.open(path) as s:
        assert [c.final_label for c in s.cells(s.cell_ids())] == ["NEUTROPHIL", "MONOCYTE", ""]
        assert [(h.cell_id, h.label) for h in s.history()] == [(2, "MONOCYTE")]
        new = s.add_image(measured_result("/lab/b/u.png"), unfamiliar_threshold=3.0)
        assert s.cell_ids(queue_threshold=0.9) == [3, *new]
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()
    with ReviewSession.create(tmp_path / "new.yawbcc"):
        pass
    assert _columns(path) == _columns(tmp_path / "new.yawbcc")
    with ReviewSession.open(path, readonly=True) as s:
        assert s.image("/lab/b/u.png").unfamiliar and s.cell(new[0]).flags == review_rules.UNFAMILIAR


# -- Save session as, and a disk that fills up ----------------------------------------------------


def test_copy_to_is_a_complete_copy_to_work_in_and_never_overwrites(session, tmp_path):
    ids = session.add_image(image_result("/lab/a.png", [("NEUTROPHIL", 0.99), ("MONOCYTE", 0.6)]))
    session.add_image(image_result("/lab/b.png", [("PLATELET", 0.95)]))
    session.set_label([ids[1]], "LYMPHOCYTE", "Ann")
    session.confirm([ids[0]], "Ann")
    taken = tmp_path / "taken.yawbcc"
    taken.write_bytes(b"another reviewer's work")
    with pytest.raises(SessionExists, match="never overwritten"):
        session.copy_to(taken)
    assert taken.read_bytes() == b"another reviewer's work"

    copy = session.copy_to(tmp_path / "copy.yawbcc")
    try:
        assert copy.path == tmp_path / "copy.yawbcc" and not copy.readonly
        assert [i.path for i in copy.images()] == [i.path for i in session.images()] == ["/lab/a.png", "/lab/b.png"]
        assert copy.cell_ids() == session.cell_ids()
        assert [(c.final_label, c.reviewer) for c in copy.cells()] == [(c.final_label, c.reviewer) for c in session.cells()]
        assert [(r.kind, r.cell_id, r.label, r.reviewer) for r in copy.history()] == [
            (r.kind, r.cell_id, r.label, r.reviewer) for r in session.history()
        ]
        assert np.array_equal(copy.cell_mask(ids[0]), session.cell_mask(ids[0]))
        with pytest.raises(SessionLocked):  # the copy is open for review, with its own lock
            ReviewSession.open(copy.path)
        # Work goes on in the copy; the original keeps what it had.
        copy.set_label([ids[0]], "EOSINOPHIL", "Bob")
        assert copy.cell(ids[0]).final_label == "EOSINOPHIL" and session.cell(ids[0]).final_label == "NEUTROPHIL"
        session.set_label([ids[0]], "BASOPHIL", "Ann")  # and the original is still writable
    finally:
        copy.close()
    assert not list(tmp_path.glob(".copy.yawbcc.*"))  # no temporary file left


_FULL_DISK = r"""
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from unit.test_store import image_result
from yawbcc_desktop.core.store import ReviewSession, SessionWriteError

folder = Path({folder!r})
session = ReviewSession.create(folder / "review.yawbcc")
saved = session.add_image(image_result("/lab/saved.png", [("NEUTROPHIL", 0.99)] * 3))
session.set_label(saved[:1], "MONOCYTE", "Ann")
# The disk is full: no file may grow past half the session's size (its log and a copy need more).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, ((folder / "review.yawbcc").stat().st_size // 2, hard))
for name, write in [
    ("add_image", lambda: session.add_image(image_result("/lab/big.png", [("LYMPHOCYTE", 0.5)] * 400))),
    ("copy_to", lambda: session.copy_to(folder / "copy.yawbcc")),
]:
    try:
        write()
        print(name, "WROTE")
    except SessionWriteError as exc:
        print(name, "REFUSED", str(exc))
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
session.close()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_fails_the_write_clearly_and_keeps_what_was_saved(tmp_path):
    """A disk that fills up (simulated by a file-size limit, in a child process): the write
    that does not fit is refused with one message that says what happened and that the saved
    work is safe; the copy is refused the same way and leaves nothing; reopening has it all."""
    code = _FULL_DISK.format(tests=str(Path(__file__).resolve().parents[1]), folder=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    for name in ("add_image", "copy_to"):
        assert lines[name].startswith("REFUSED Could not save to "), lines[name]
        assert "Everything saved before is safe; free disk space" in lines[name]
    assert not (tmp_path / "copy.yawbcc").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "copy" in p.name) == []
    with ReviewSession.open(tmp_path / "review.yawbcc") as reopened:
        assert [i.path for i in reopened.images()] == ["/lab/saved.png"]
        assert [c.final_label for c in reopened.cells()] == ["MONOCYTE", "NEUTROPHIL", "NEUTROPHIL"]
        reopened.add_image(image_result("/lab/after.png", [("LYMPHOCYTE", 0.5)]))  # space again: writes work
