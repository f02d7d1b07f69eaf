"""``ReviewSession``: the store's one contract, whatever holds the session.

Two stores keep a session: an SQLite file (``sqlite_store``, the embedded default, one
station) and a PostgreSQL server (``postgres_store``, several stations on one queue), chosen
by where the session is: a path, or ``postgresql://host/db?session=NAME``.  Everything a
station does to a session — analysed images, corrections with their audit rows, sign-off,
the queries the window and the export run — is written once, here, in SQL both understand;
a store adds only how it connects, begins a transaction, locks and tells other stations.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..classes import REVIEW_LABELS
from ..vocabulary import FAILED
from .cache import CellCache
from .catch_up import ActionsSeen
from .errors import CellsChanged, ChangedCell, SampleSignedOff, SessionClosed, SessionReadOnly, SignOffRefused
from .locations import store_for
from .notes import SampleNotes
from .queries import CELLS, fetch_in, where_cells
from .reads import FINAL, SIGN_OFF_SELECT, Connection, SessionReads
from .records import CELL_INSERT, CellChange, Correction, SignOff, abspath, cell_values, now, real

if TYPE_CHECKING:
    from ..pipeline import ImageResult


def unfamiliar_threshold(bundle: Any) -> float | None:
    """The image score above which ``bundle`` (a ``ModelBundle``) calls an image unfamiliar,
    as ``add_images`` keeps it; None without a familiarity model.  ``Familiarity.image_score``
    is in units of its thresholds: an image is unfamiliar above 1."""
    return 1.0 if getattr(bundle, "familiarity", None) is not None else None


class ReviewSession(SessionReads, SampleNotes):
    """An open review session.  Use ``create``, ``open`` or ``open_or_create`` with a path
    (an SQLite file) or a ``postgresql://`` URL (a session on the lab's server).

    Threads: one session may be shared by the threads of a process (the GUI corrects from
    its main thread while the analysis worker calls ``add_image``); each thread gets its own
    connection.  Undo/redo and ``cache`` (the cells a window shows, kept in step with every
    correction) are meant for one thread, the GUI's.  Stop the worker before ``close()``.
    """

    several_stations = False  # True where other stations may change the session meanwhile

    def __init__(self, location: str, readonly: bool):
        self.location = location  # the path or URL it was opened by (no password: see postgres_store)
        self.readonly = readonly
        self.station = socket.gethostname()  # what the audit trail says each correction was made on
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._guard = threading.RLock()
        self._closed = False
        self._undo: list[Correction] = []
        self._redo: list[Correction] = []
        self._seen = ActionsSeen()  # the review actions ``catch_up`` has shown
        self.caught_up_actions: list[int] = []  # the review actions the last ``catch_up`` brought
        self.cache = CellCache()

    # -- opening and closing: the store is picked by the location

    @classmethod
    def create(cls, location: str | os.PathLike[str]) -> ReviewSession:
        """A new, empty session; ``SessionExists`` if one is already there (never overwritten)."""
        return store_for(location).create(location)

    @classmethod
    def open(cls, location: str | os.PathLike[str], readonly: bool = False) -> ReviewSession:
        """Reopen a session: everything committed in it, by any station or process, is there."""
        return store_for(location).open(location, readonly)

    @classmethod
    def exists(cls, location: str | os.PathLike[str]) -> bool:
        """Whether a session (or anything in the way of a new one) is at ``location``."""
        return store_for(location).exists(location)

    @classmethod
    def open_or_create(cls, location: str | os.PathLike[str]) -> ReviewSession:
        """``open`` if it exists, else ``create`` (the CLI's ``--session``)."""
        store = store_for(location)
        return store.open(location) if store.exists(location) else store.create(location)

    def copy_to(self, location: str | os.PathLike[str]) -> ReviewSession:
        """A complete copy at ``location`` (images, cells, every correction and sign-off, in
        either store), opened for review; this session stays open and as it was.
        ``SessionExists`` if a session is there already: nothing is overwritten."""
        from .transfer import copy_session

        return copy_session(self, location)

    @property
    def name(self) -> str:
        """The short name a window's title shows."""
        raise NotImplementedError

    def close(self) -> None:
        """Close every thread's connection (and what the store holds); idempotent."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            for conn in self._connections:
                with contextlib.suppress(*self.backend_errors):
                    conn.close()
            self._connections.clear()
        self._release()

    def _release(self) -> None:
        """What the store lets go of once the connections are closed (a lock, a listener)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ReviewSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, readonly={self.readonly})"

    # -- what a store provides

    def _connect(self) -> Connection:
        raise NotImplementedError

    def _begin(self, conn: Connection) -> None:
        raise NotImplementedError

    _snapshot_begin = "BEGIN"  # a read transaction that sees one state of the session throughout

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """Reads that see one state of the session, whatever other writers do meanwhile."""
        conn = self._conn()
        conn.execute(self._snapshot_begin)
        try:
            yield conn
        finally:
            with contextlib.suppress(*self.backend_errors):
                conn.execute("ROLLBACK")

    def _after_copy(self, conn: Connection) -> None:
        """Inside the transaction that copied rows into this new session (``transfer``)."""

    def _discard(self) -> None:
        """Close and remove a session this process has just made (a copy that failed half-way)."""
        raise NotImplementedError

    def _current(self, conn: Connection, ids: list[int]) -> list[tuple[Any, ...]]:
        """Inside a correction's transaction: (id, label, version) of the cells ``ids``, held
        until it ends where other stations may write meanwhile (they wait)."""
        return fetch_in(conn, "SELECT id, label, version FROM cell WHERE id IN ({})", ids)

    def _lock_session(self, conn: Connection) -> None:
        """Inside a sign-off's transaction: no correction commits until it ends."""

    def _announce(self, conn: Connection, action_id: int) -> None:
        """Inside the transaction: tell other stations, once committed, that the session changed."""

    def watch(self, news: Callable[[], None], link: Callable[[bool], None]) -> bool:
        """Call ``news()`` whenever another station commits a change, and ``link(False)`` /
        ``link(True)`` when the server goes and comes back; from another thread.  False (and
        nothing is called) where no other station can change the session: an SQLite file."""
        return False

    # -- connections and transactions

    def _conn(self) -> Connection:
        if self._closed:
            raise SessionClosed(self.location)
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._guard:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        """Forget this thread's connection (a broken one): the next call opens another."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._guard, contextlib.suppress(ValueError):
                self._connections.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One transaction: committed (durably) on exit, rolled back on any error."""
        if self.readonly:
            raise SessionReadOnly(self.location)
        conn = self._conn()
        try:
            self._begin(conn)
        except self.backend_errors as exc:
            if not self._stale_connection(exc):
                raise self._error(exc, writing=True) from exc
            conn = self._conn()  # nothing was sent yet: begin again on a new connection
            try:
                self._begin(conn)
            except self.backend_errors as again:
                raise self._error(again, writing=True) from again
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(*self.backend_errors):
                conn.execute("ROLLBACK")
            if isinstance(exc, self.backend_errors):
                raise self._error(exc, writing=True) from exc
            raise

    # -- analysis results (any thread; the GUI's worker)

    def add_image(self, result: ImageResult, unfamiliar_threshold: float | None = None) -> list[int] | None:
        """Store one analysed image and its cells in one transaction; returns the new cell ids.

        An image already in the session keeps what it has (its cells may carry corrections)
        and ``None`` is returned; one that had failed is replaced by the new result.
        ``unfamiliar_threshold``: the model's familiarity threshold (None: it has none),
        kept to say why an image is unfamiliar.
        """
        return self.add_images([result], unfamiliar_threshold)[0]

    def add_images(self, results: Iterable[ImageResult], unfamiliar_threshold: float | None = None) -> list[list[int] | None]:
        """``add_image`` for several results in one transaction (fewer disk syncs)."""
        out: list[list[int] | None] = []
        analysed_at = now()
        with self._write() as conn:
            for result in results:
                out.append(self._insert_image(conn, result, analysed_at, unfamiliar_threshold))
            self._announce(conn, 0)
        return out

    def _insert_image(
        self, conn: Connection, result: ImageResult, analysed_at: str, unfamiliar_threshold: float | None
    ) -> list[int] | None:
        path = abspath(result.path)
        row = conn.execute("SELECT id, status FROM image WHERE path = ?", (path,)).fetchone()
        values = (
            result.status, result.error or "", result.mode, result.width, result.height, analysed_at,
            real(result.um_per_px), result.scale_source, real(result.unfamiliar_score), int(bool(result.unfamiliar)),
            real(unfamiliar_threshold),
        )  # fmt: skip
        if row is not None and row[1] != FAILED:
            return None
        if row is not None:  # a failed image has no cells: the retry only replaces its row
            image_id = row[0]
            conn.execute(
                "UPDATE image SET status=?, error=?, mode=?, width=?, height=?, analysed_at=?, um_per_px=?, "
                "scale_source=?, unfamiliar_score=?, unfamiliar=?, unfamiliar_threshold=? WHERE id=?",
                (*values, image_id),
            )
        else:
            image_id = conn.execute(
                "INSERT INTO image (path, folder, status, error, mode, width, height, analysed_at, um_per_px, "
                "scale_source, unfamiliar_score, unfamiliar, unfamiliar_threshold) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (path, os.path.dirname(path), *values),
            ).fetchone()[0]
        return [conn.execute(CELL_INSERT, cell_values(image_id, cell)).fetchone()[0] for cell in result.cells]

    # -- corrections (the GUI's main thread)

    def set_label(
        self,
        cell_ids: Iterable[int],
        label: str,
        reviewer: str,
        seen: dict[int, int] | None = None,
        reopen: bool = False,
    ) -> Correction | None:
        """Give ``label`` (a group or ``ARTEFACT``) to cells, committed at once; undoable.

        Returns ``None`` when every cell already had that label from a reviewer.  ``seen``:
        the version of each cell the reviewer looked at (default: those of ``cache``, what
        the window shows); if another station changed one since, ``CellsChanged`` says who
        changed it to what and nothing is saved.  Cells of a signed-off sample are refused
        (``SampleSignedOff``) unless ``reopen``.
        """
        if label not in REVIEW_LABELS:
            raise ValueError(f"unknown label {label!r}; expected one of {', '.join(REVIEW_LABELS)}")
        ids = list(dict.fromkeys(int(i) for i in cell_ids))
        return self._record("set", _reviewer(reviewer), dict.fromkeys(ids, label), seen=seen, reopen=reopen, push=True)

    def confirm(
        self, cell_ids: Iterable[int], reviewer: str, seen: dict[int, int] | None = None, reopen: bool = False
    ) -> Correction | None:
        """Mark cells reviewed with the label they show now (the model's, unless corrected); undoable.

        Cells never classified have no label to confirm and are left as they are.
        """
        ids = list(dict.fromkeys(int(i) for i in cell_ids))
        cells = self.cells(ids)
        if seen is None:
            seen = {c.id: c.version for c in cells} | self.cache.versions(ids)
        wanted = {c.id: c.final_label for c in cells if c.final_label}
        return self._record("confirm", _reviewer(reviewer), wanted, seen=seen, reopen=reopen, push=True)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self, reviewer: str, reopen: bool = False) -> Correction | None:
        """Revert the latest correction of this session object by appending new audit rows.

        The undo history lives as long as this object; the audit trail in the store, forever.
        """
        return self._revert("undo", self._undo, self._redo, reviewer, reopen)

    def redo(self, reviewer: str, reopen: bool = False) -> Correction | None:
        """Apply again what the latest ``undo`` reverted (as new audit rows)."""
        return self._revert("redo", self._redo, self._undo, reviewer, reopen)

    def _revert(
        self, kind: str, source: list[Correction], target: list[Correction], reviewer: str, reopen: bool
    ) -> Correction | None:
        """Put back the labels the latest correction of ``source`` replaced; that correction
        moves to ``target`` (undo <-> redo) once written."""
        if not source:
            return None
        latest = source[-1]
        wanted = {c.cell_id: c.before for c in latest.changes}
        done = self._record(kind, _reviewer(reviewer), wanted, latest.id, seen=None, reopen=reopen)
        source.pop()
        if done is not None:
            target.append(done)
        return done

    def _record(
        self,
        kind: str,
        reviewer: str,
        wanted: Mapping[int, str | None],
        reverts: int | None = None,
        seen: dict[int, int] | None = None,
        reopen: bool = False,
        push: bool = False,
    ) -> Correction | None:
        if not wanted:
            return None
        at = now()
        ids = list(wanted)
        seen = self.cache.versions(ids) if seen is None else seen
        with self._guard, self._write() as conn:
            current = {r[0]: (r[1], r[2]) for r in self._current(conn, ids)}
            missing = set(wanted) - set(current)
            if missing:
                raise ValueError(f"no cell with id {sorted(missing)[:5]} in {self.location}")
            stale = [i for i in ids if i in seen and seen[i] != current[i][1]]
            if stale:
                raise CellsChanged(self.location, self._latest_changes(conn, stale))
            changes = tuple(CellChange(i, current[i][0], new) for i, new in wanted.items() if current[i][0] != new)
            if not changes:
                return None
            if not reopen:
                self._refuse_if_signed_off(conn, [c.cell_id for c in changes])
            action_id = conn.execute(
                "INSERT INTO review_action (kind, reverts, reviewer, at, station) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (kind, reverts, reviewer, at, self.station),
            ).fetchone()[0]
            conn.executemany(
                "INSERT INTO correction (action_id, cell_id, predicted, previous, label, reviewer, at) "
                "SELECT ?, id, predicted, ?, ?, ?, ? FROM cell WHERE id = ?",
                [(action_id, c.before, c.after, reviewer, at, c.cell_id) for c in changes],
            )
            conn.executemany(
                "UPDATE cell SET label = ?, reviewer = ?, reviewed_at = ?, version = version + 1 WHERE id = ?",
                [(c.after, reviewer, at, c.cell_id) if c.after else (None, "", "", c.cell_id) for c in changes],
            )
            self._announce(conn, action_id)
            correction = Correction(action_id, kind, reviewer, at, changes, reverts)
            if push:
                self._undo.append(correction)
                self._redo.clear()
        # Committed: the cells in memory take the new labels here and only here, then whoever
        # shows them is told.
        self.cache.tell(self.cache.relabel(changes, reviewer, at))
        return correction

    def _latest_changes(self, conn: Connection, ids: list[int]) -> list[ChangedCell]:
        """Who last changed each cell to what (``CellsChanged``)."""
        rows = fetch_in(
            conn,
            "SELECT c.id, c.label, a.reviewer, a.station, a.at, c.version FROM cell c "
            "JOIN correction k ON k.id = (SELECT MAX(id) FROM correction WHERE cell_id = c.id) "
            "JOIN review_action a ON a.id = k.action_id WHERE c.id IN ({})",
            ids,
        )
        return [ChangedCell(*r) for r in sorted(rows)]

    def _refuse_if_signed_off(self, conn: Connection, ids: list[int]) -> None:
        # One query where nothing is signed off (the usual case): the latest sign-off of each
        # scope the cells are in, the whole session's included.
        latest = fetch_in(
            conn,
            f"{SIGN_OFF_SELECT} WHERE id IN (SELECT MAX(id) FROM sign_off WHERE folder = '' OR folder IN "
            f"(SELECT i.folder {CELLS} WHERE c.id IN ({{}})) GROUP BY folder) ORDER BY folder",
            ids,
        )
        for row in latest:
            if self._sign_off_from_row(conn, row).current:
                raise SampleSignedOff(self.location, row[1], row[2], row[3])

    def sign_off(self, reviewer: str, threshold: float, folder: str | os.PathLike[str] | None = None) -> SignOff:
        """Record that ``reviewer`` signs off the session (or one folder's count).

        Refused with ``SignOffRefused`` while any cell of the to-review queue in that scope
        is unreviewed.  Checked and recorded in one transaction, no correction committing
        meanwhile; from then on its cells are locked for every station until reopened.
        """
        reviewer = _reviewer(reviewer)
        scope = abspath(folder) if folder is not None else ""
        at = now()
        with self._write() as conn:
            self._lock_session(conn)
            where, params = where_cells(folder=scope or None, queue_threshold=threshold)
            waiting = conn.execute(f"SELECT COUNT(*) {CELLS} {where}", params).fetchone()
            if waiting[0]:
                raise SignOffRefused(waiting[0], f"in {scope}" if scope else "in this session")
            where, params = where_cells(folder=scope or None)
            counts = dict(conn.execute(f"SELECT {FINAL}, COUNT(*) {CELLS} {where} GROUP BY final", params).fetchall())
            last_cell = conn.execute(f"SELECT COALESCE(MAX(c.id), 0) {CELLS} {where}", params).fetchone()[0]
            last_correction = conn.execute("SELECT COALESCE(MAX(id), 0) FROM correction").fetchone()[0]
            sign_id = conn.execute(
                "INSERT INTO sign_off (folder, reviewer, at, threshold, last_correction, last_cell, counts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (scope, reviewer, at, float(threshold), last_correction, last_cell, json.dumps(counts, sort_keys=True)),
            ).fetchone()[0]
            self._announce(conn, 0)
        return SignOff(sign_id, scope, reviewer, at, float(threshold), counts, True)

    # -- other stations' changes (the GUI's main thread, when ``watch`` says there is news)

    def catch_up(self) -> list[int]:
        """Read again the cells changed since the last ``catch_up`` (by any station), update
        ``cache`` and tell its listeners; returns their ids.  Cheap when nothing changed."""
        rows = self._seen.news(self._read)
        if not rows:
            return []
        self.caught_up_actions = sorted({a for _, a in rows})  # what this call brought (benchmarks)
        ids = sorted({c for c, _ in rows})
        changed = self.cache.refresh(self.cells(ids))
        self.cache.tell(changed)
        return ids

    def _start_catching_up(self) -> None:
        """From now on ``catch_up`` shows only what changes later (at open)."""
        self._seen.start(self._read)


def _reviewer(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValueError("a correction needs the reviewer's name (set it in preferences)")
    return name
