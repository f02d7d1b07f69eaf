"""Which review actions a station has not shown yet (``ReviewSession.catch_up``).

Action ids are handed out when a correction starts, not when it commits: with several
stations a correction can commit after a later-numbered one.  So "everything above the
highest id seen" is not enough; ids skipped below it (*gaps*: not committed yet, or rolled
back) are asked again for a while, until they appear or are surely never coming.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

GAP_WAIT_S = 120.0  # a correction's transaction lasts milliseconds; a gap this old was rolled back
MAX_GAPS = 400  # asked as query parameters: SQLite takes up to 999
AT_OPEN = 200  # ids below the highest that may still be in flight when a session is opened


class ActionsSeen:
    """The actions shown so far: every id up to ``top`` but the ``gaps``."""

    def __init__(self) -> None:
        self.top = 0
        self.gaps: dict[int, float] = {}  # id -> when it was first missed

    def start(self, read: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]) -> None:
        """At open: what is committed counts as seen; missing recent ids may still commit."""
        self.top = int(read("SELECT COALESCE(MAX(id), 0) FROM review_action", ())[0][0])
        low = max(0, self.top - AT_OPEN)
        present = {r[0] for r in read("SELECT id FROM review_action WHERE id > ?", (low,))}
        self._missed(set(range(low + 1, self.top)) - present)

    def news(self, read: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]) -> list[tuple[int, int]]:
        """(cell id, action id) of every correction row committed since the last call."""
        now = time.monotonic()
        self.gaps = {g: t for g, t in self.gaps.items() if now - t < GAP_WAIT_S}
        sql = "SELECT k.cell_id, k.action_id FROM correction k WHERE k.action_id > ?"
        if self.gaps:
            sql += f" OR k.action_id IN ({','.join('?' * len(self.gaps))})"
        rows = [(int(c), int(a)) for c, a in read(sql, (self.top, *self.gaps))]
        found = {a for _, a in rows}
        for action in found:
            self.gaps.pop(action, None)
        top = max(found | {self.top})
        self._missed(set(range(self.top + 1, top)) - found)
        self.top = top
        return rows

    def _missed(self, ids: set[int]) -> None:
        now = time.monotonic()
        for action in ids:
            self.gaps.setdefault(action, now)
        if len(self.gaps) > MAX_GAPS:  # the oldest go first
            for action in sorted(self.gaps, key=self.gaps.__getitem__)[: len(self.gaps) - MAX_GAPS]:
                del self.gaps[action]
