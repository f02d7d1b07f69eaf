"""A big session in the review window's models: benchmarks/big_session.py's builder at
2,000 cells.  The filter and the sort work on whole columns (``CellCache.columns``); these
tests check that they pick and order exactly what the per-cell rules say.  (Speed is the
benchmark's to measure, never asserted here.)"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt

from benchmarks.big_session import build_session
from yawbcc_desktop.core import review_rules
from yawbcc_desktop.core.classes import REVIEW_LABELS
from yawbcc_desktop.core.review_rules import CELL_STATUSES, CORRECTED, TO_REVIEW
from yawbcc_desktop.core.store import ReviewSession
from yawbcc_desktop.gui.cell_filter import CellFilter
from yawbcc_desktop.gui.cell_store import CellStore, read_session
from yawbcc_desktop.gui.cell_table_model import COLUMN, COLUMNS, CellTableModel, RowIdRole, SortRole


@pytest.fixture(scope="module")
def big_session(tmp_path_factory):
    return build_session(tmp_path_factory.mktemp("big") / "big.yawbcc", 2000)


@pytest.fixture
def loaded(big_session, tmp_path):
    """A copy of the session, its cells in a store, the cell model, the filter, one section per
    class; the views are told of each correction, as the review controller tells them."""
    owner = QObject()
    store = CellStore()
    session = ReviewSession.open(shutil.copy(big_session, tmp_path / "big.yawbcc"))
    store.take(read_session(session))
    model = CellTableModel(store, parent=owner)
    session.cache.listen(lambda ids: model.labels_changed(store.rows_of(ids)))
    shown = CellFilter(parent=owner)
    shown.setSourceModel(model)
    sections = {g: shown.for_group(g) for g in REVIEW_LABELS}
    yield store, model, shown, sections, session
    session.close()
    owner.deleteLater()


def test_the_builder_makes_a_session_with_every_kind_of_cell(big_session):
    with ReviewSession.open(big_session, readonly=True) as session:
        s = session.summary(0.7)
        cells = session.cells()
    assert s.cells == 2000 and s.images == 50 and 0 < s.corrected < s.reviewed < 2000
    assert 0 < s.to_review < 2000 and any(c.flags for c in cells)
    assert len({c.predicted for c in cells}) > 4


def test_columns_agree_with_each_cell(loaded):
    store, *_ = loaded
    columns = store.columns()
    for threshold in (0.5, 0.9):
        store.review_threshold = threshold
        codes = columns.status_codes(threshold)
        assert [CELL_STATUSES[k] for k in codes] == [store.status(r) for r in range(store.cell_count)]
        assert store.to_review_count() == sum(c.status(threshold) == TO_REVIEW for c in store.cells())
    waits = review_rules.waits_for_review(np.array([np.nan, 0.2, 0.9, 0.9]), 0.5, np.array([False, False, False, True]))
    assert waits.tolist() == [True, True, False, True]  # not classified, low, confident, flagged


def test_filters_pick_exactly_the_cells_the_rules_say(loaded, qtmodeltester):
    store, model, shown, sections, _ = loaded
    t = store.review_threshold
    assert shown.rowCount() == 2000 and sum(s.rowCount() for s in sections.values()) == 2000
    shown.set_criteria(groups=frozenset({"LYMPHOCYTE", "NEUTROPHIL"}), confidence=(0.6, 1.0), statuses=frozenset({TO_REVIEW}))
    expected = [
        r
        for r, c in enumerate(store.cells())
        if c.final_label in ("LYMPHOCYTE", "NEUTROPHIL") and 0.6 <= c.confidence <= 1.0 and c.status(t) == TO_REVIEW
    ]
    assert [shown.index(r, 0).data(RowIdRole) for r in range(shown.rowCount())] == expected
    assert sections["LYMPHOCYTE"].rowCount() + sections["NEUTROPHIL"].rowCount() == len(expected)
    assert sections["EOSINOPHIL"].rowCount() == 0
    qtmodeltester.check(shown, force_py=True)
    qtmodeltester.check(sections["NEUTROPHIL"], force_py=True)


@pytest.mark.parametrize("key", [c.key for c in COLUMNS])
def test_every_column_sorts_as_its_sort_values_say(loaded, key):
    store, model, shown, *_ = loaded
    for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
        shown.sort(COLUMN[key], order)
        rows = [(model.index(r, COLUMN[key]).data(SortRole), model.index(r, 0).data(RowIdRole)) for r in range(2000)]
        # Sorted by the column's value; ties keep analysis order in both directions.
        descending = order == Qt.SortOrder.DescendingOrder
        expected = sorted(rows, key=lambda v: (v[0], -v[1] if descending else v[1]), reverse=descending)
        assert rows == expected, key


def test_a_selected_cell_stays_selected_through_filters_sorts_and_corrections(loaded):
    store, model, shown, sections, session = loaded
    row_id = next(r for r, c in enumerate(store.cells()) if c.final_label == "MONOCYTE" and not c.reviewed)
    held = QPersistentModelIndex(shown.mapFromSource(model.index_of_id(row_id)))
    in_section = QPersistentModelIndex(sections["MONOCYTE"].mapFromSource(model.index_of_id(row_id)))
    shown.sort(COLUMN["confidence"], Qt.SortOrder.DescendingOrder)
    assert held.data(RowIdRole) == row_id and in_section.data(RowIdRole) == row_id
    shown.set_criteria(groups=frozenset({"MONOCYTE"}))
    assert held.data(RowIdRole) == row_id
    # A reviewer calls it a basophil: it leaves the monocyte section and the monocyte filter.
    session.set_label([store.cell(row_id).id], "BASOPHIL", "anna")
    assert store.status(row_id) == CORRECTED
    assert not in_section.isValid() and not held.isValid()
    shown.set_criteria(groups=frozenset(REVIEW_LABELS))
    assert shown.mapFromSource(model.index_of_id(row_id)).data(RowIdRole) == row_id
    assert sections["BASOPHIL"].mapFromSource(model.index_of_id(row_id)) != QModelIndex()


def test_sorting_again_as_it_is_sorted_does_nothing_until_labels_change(loaded):
    """QTableView.sortByColumn asks the model twice; on a big session each sort costs."""
    store, model, shown, _, session = loaded
    layouts = []
    model.layoutChanged.connect(lambda *a: layouts.append(1))
    column = COLUMN["final"]
    model.sort(column, Qt.SortOrder.AscendingOrder)
    model.sort(column, Qt.SortOrder.AscendingOrder)
    assert len(layouts) == 1
    row_id = model.row_id_at(0)  # the first cell in final-label order, relabelled to the last class
    session.set_label([store.cell(row_id).id], REVIEW_LABELS[-1], "anna")
    assert model.row_id_at(0) == row_id  # rows stay put under the reviewer's eyes
    model.sort(column, Qt.SortOrder.AscendingOrder)
    assert len(layouts) == 2 and model.row_id_at(0) != row_id
