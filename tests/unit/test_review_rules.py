"""The to-review rule is written once (``review_rules.QUEUE_REASONS``) and used in three forms:
per cell, on numpy columns, in SQL.  These tests check that the three pick the same cells on
the edge cases, and that the session's queue and the window's statuses follow them."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from yawbcc_desktop.core import review_rules
from yawbcc_desktop.core.cells import CellRegion
from yawbcc_desktop.core.classes import GROUPS, REVIEW_LABELS
from yawbcc_desktop.core.pipeline import CellRecord, ImageResult
from yawbcc_desktop.core.review_rules import CELL_STATUSES, CONFIDENT, CONFIRMED, CORRECTED, TO_REVIEW
from yawbcc_desktop.core.store import CellCache, ReviewSession

T = 0.9
# (label, predicted, confidence, flags, waits, status) at threshold T: nan is never classified.
EDGE_CASES = [
    (None, "", math.nan, "", True, TO_REVIEW),  # not classified
    (None, "NEUTROPHIL", T, "", False, CONFIDENT),  # exactly at the threshold: confident
    (None, "NEUTROPHIL", math.nextafter(T, 0), "", True, TO_REVIEW),  # just below
    (None, "NEUTROPHIL", 1.0, "", False, CONFIDENT),
    (None, "NEUTROPHIL", 0.0, "", True, TO_REVIEW),
    (None, "PLATELET", 0.99, review_rules.SIZE_SAYS_WBC, True, TO_REVIEW),  # flagged, confident
    (None, "", math.nan, review_rules.UNFAMILIAR, True, TO_REVIEW),  # flagged and not classified
    (None, "MONOCYTE", 0.5, f"{review_rules.UNFAMILIAR}; {review_rules.SIZE_SAYS_PLATELET}", True, TO_REVIEW),
    ("NEUTROPHIL", "NEUTROPHIL", 0.3, "", False, CONFIRMED),  # reviewed: never waits
    ("LYMPHOCYTE", "NEUTROPHIL", 0.99, review_rules.UNFAMILIAR, False, CORRECTED),
    ("ARTEFACT", "", math.nan, "", False, CORRECTED),  # a cell never classified, called an artefact
]


def sql_queue(threshold: float) -> list[bool]:
    """The SQL form over a table with the session's cell columns (NULL: never classified)."""
    with sqlite3.connect(":memory:") as conn:
        conn.execute("CREATE TABLE cell (id INTEGER PRIMARY KEY, label TEXT, confidence REAL, flags TEXT NOT NULL)")
        conn.executemany(
            "INSERT INTO cell VALUES (?, ?, ?, ?)",
            [(i, label, None if math.isnan(c) else c, flags) for i, (label, _, c, flags, *_) in enumerate(EDGE_CASES)],
        )
        where, params = review_rules.queue_where(threshold, label="label", confidence="confidence", flags="flags")
        picked = {r[0] for r in conn.execute(f"SELECT id FROM cell WHERE {where}", params)}
    return [i in picked for i in range(len(EDGE_CASES))]


def test_per_cell_array_and_sql_forms_pick_the_same_cells():
    expected = [case[4] for case in EDGE_CASES]
    per_cell = [label is None and bool(review_rules.review_reasons(c, T, flags)) for label, _, c, flags, *_ in EDGE_CASES]
    reviewed = np.array([case[0] is not None for case in EDGE_CASES])
    confidence = np.array([case[2] for case in EDGE_CASES])
    flagged = np.array([bool(case[3]) for case in EDGE_CASES])
    arrays = ~reviewed & review_rules.waits_for_review(confidence, T, flagged)
    assert per_cell == expected
    assert arrays.tolist() == expected
    assert sql_queue(T) == expected


def test_statuses_per_cell_and_on_columns_agree():
    codes = {label: i for i, label in enumerate(REVIEW_LABELS)}
    label = np.array([codes[c[0]] if c[0] else -1 for c in EDGE_CASES])
    predicted = np.array([codes.get(c[1], len(REVIEW_LABELS)) for c in EDGE_CASES])
    confidence = np.array([c[2] for c in EDGE_CASES])
    flagged = np.array([bool(c[3]) for c in EDGE_CASES])
    per_cell = [review_rules.review_status(lab, pred, c, T, flags) for lab, pred, c, flags, *_ in EDGE_CASES]
    on_columns = review_rules.status_codes(label, predicted, confidence, T, flagged)
    assert per_cell == [c[5] for c in EDGE_CASES]
    assert [CELL_STATUSES[k] for k in on_columns] == per_cell


def test_reasons_say_why_in_the_reviewers_words():
    assert review_rules.review_reasons(None, T, "") == [review_rules.NOT_CLASSIFIED]
    assert review_rules.review_reasons(math.nan, T, [review_rules.UNFAMILIAR]) == [
        review_rules.NOT_CLASSIFIED,
        review_rules.UNFAMILIAR,
    ]
    assert review_rules.review_reasons(0.5, T, review_rules.SIZE_SAYS_WBC) == [
        review_rules.LOW_CONFIDENCE,
        review_rules.SIZE_SAYS_WBC,
    ]
    assert review_rules.review_reasons(T, T, "") == []


@pytest.mark.parametrize("threshold_at", [0, 1, 2])
def test_a_session_queue_the_cells_and_the_cache_columns_agree(tmp_path, threshold_at):
    """Through the real store: thresholds exactly at stored confidences (float32 ones)."""
    confidences = [0.6, 0.9, 0.97]
    records = []
    for i, c in enumerate(confidences + [None]):
        probs = None
        if c is not None:
            probs = np.full(len(GROUPS), (1 - c) / (len(GROUPS) - 1), np.float32)
            probs[i % len(GROUPS)] = c
        flags = [review_rules.UNFAMILIAR] if i == 2 else []
        records.append(CellRecord("/lab/a.png", i, CellRegion(i, 0, 8, 8, None), probs, "m", flags=flags))
    with ReviewSession.create(tmp_path / "s.yawbcc") as session:
        ids = session.add_image(ImageResult("/lab/a.png", "smear", 64, 64, records))
        session.confirm([ids[0]], "Ann")
        cells = session.cells(ids)
        threshold = cells[threshold_at].confidence
        cache = CellCache()
        cache.add(cells)
        by_columns = cache.columns().status_codes(threshold) == CELL_STATUSES.index(TO_REVIEW)
        assert session.cell_ids(queue_threshold=threshold) == [c.id for c in cells if c.in_queue(threshold)]
        assert [c.id for c, waits in zip(cells, by_columns) if waits] == [c.id for c in cells if c.in_queue(threshold)]
        assert session.to_review_count(threshold) == sum(c.status(threshold) == TO_REVIEW for c in cells)
