"""The Qt models over the cell store, without the worker: synthetic cells, real Qt models."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from yawbcc_desktop.core import pipeline, review_rules
from yawbcc_desktop.core.cells import PLATELET, WBC, CellRegion
from yawbcc_desktop.core.classes import ARTEFACT, GROUPS, REVIEW_LABELS
from yawbcc_desktop.core.review_rules import CELL_STATUSES, CONFIDENT, CONFIRMED, CORRECTED, TO_REVIEW
from yawbcc_desktop.core.store import ReviewSession
from yawbcc_desktop.core.vocabulary import ANALYSED, FAILED, QUEUED
from yawbcc_desktop.gui.cell_filter import CellFilter
from yawbcc_desktop.gui.cell_store import AnalysedImage, CellStore
from yawbcc_desktop.gui.cell_table_model import (
    COLUMN,
    COLUMNS,
    FINAL_LABELS,
    NOT_CLASSIFIED_LABEL,
    CellTableModel,
    GroupRole,
    RowIdRole,
    SortRole,
)
from yawbcc_desktop.gui.image_list_model import ImageListModel, ImageStatusFilter, StatusRole, UnfamiliarRole


@pytest.fixture
def owner():
    """Parent of the models under test: it outlives qtmodeltester's teardown (list it first)."""
    from PySide6.QtCore import QObject

    holder = QObject()
    yield holder
    holder.deleteLater()


@pytest.fixture
def session(tmp_path):
    with ReviewSession.create(tmp_path / "review.yawbcc") as s:
        yield s


def fake_result(path: str, specs: list[tuple[str, float]], kind: str = WBC) -> pipeline.ImageResult:
    records = []
    for i, (group, confidence) in enumerate(specs):
        probs = np.full(len(GROUPS), (1 - confidence) / (len(GROUPS) - 1), np.float32)
        probs[GROUPS.index(group)] = confidence
        records.append(pipeline.CellRecord(path, i, CellRegion(10 * i, 5, 40, 42, None, kind), probs, "fake"))
    return pipeline.ImageResult(path, "smear", 640, 480, records)


def fake_image(path: str, specs: list[tuple[str, float]]) -> AnalysedImage:
    """A result no session took (the cells' ids are -1)."""
    return AnalysedImage.from_result(fake_result(path, specs))


def shown_from(session: ReviewSession, store: CellStore, model: CellTableModel, result, threshold=None) -> list[int]:
    """What the worker and the controller do with a result: commit it, show what the session holds."""
    ids = session.add_image(result, threshold)
    store.add_images([result.path])
    model.cells_added(store.record(AnalysedImage.from_result(result, session.cells(ids), threshold)))
    return ids


def told_by(session: ReviewSession, store: CellStore, model: CellTableModel) -> list[list[int]]:
    """The views told of each correction, as the review controller tells them; the ids told."""
    told: list[list[int]] = []
    session.cache.listen(lambda ids: (told.append(ids), model.labels_changed(store.rows_of(ids))))
    return told


def test_cell_from_pipeline_record_keeps_box_and_probabilities():
    region = CellRegion(3, 4, 20, 22, np.ones((22, 20), bool), PLATELET)
    probs = np.linspace(0.01, 0.2, len(GROUPS))
    record = pipeline.CellRecord("a.jpg", 2, region, probs / probs.sum(), "m")
    result = pipeline.ImageResult("a.jpg", "smear", 100, 80, [record])
    image = AnalysedImage.from_result(result)
    assert image.status == ANALYSED and image.mode == "smear" and (image.width, image.height) == (100, 80)
    cell = image.cells[0]
    assert cell.box == (3, 4, 20, 22) and cell.kind == PLATELET
    assert cell.predicted == record.predicted == "PLATELET"
    assert cell.confidence == pytest.approx(record.confidence, rel=1e-6)
    assert cell.region().box == region.box
    failed = AnalysedImage.from_result(pipeline.ImageResult("b.jpg", error="file is empty (0 bytes)"))
    assert failed.status == FAILED and failed.reason == "file is empty (0 bytes)" and not failed.cells


def test_store_keeps_order_ignores_duplicates_and_late_results():
    store = CellStore()
    assert store.add_images(["a", "b", "a"]) == ["a", "b"]
    assert store.add_images(["b", "c"]) == ["c"]
    assert [store.image_at(i).path for i in range(3)] == ["a", "b", "c"]
    assert store.image_row("c") == 2 and store.image_row("zz") == -1
    rows = store.record(fake_image("b", [("MONOCYTE", 0.95), ("PLATELET", 0.4)]))
    assert list(rows) == [0, 1] and store.image("b").status == ANALYSED
    assert not store.record(fake_image("b", [("MONOCYTE", 0.9)]))  # a second result adds nothing
    assert store.status(1) == TO_REVIEW and store.status(0) == CONFIDENT  # threshold 0.90
    assert store.status_counts() == {QUEUED: 2, ANALYSED: 1}
    assert [cid for cid, _ in store.regions_of("b")] == [0, 1]
    store.clear_cells()
    assert store.cell_count == 0 and store.image("b").status == QUEUED and store.image_count == 3


def test_cell_table_model_is_consistent(owner, qtmodeltester):
    store = CellStore()
    model = CellTableModel(store, parent=owner)
    qtmodeltester.check(model, force_py=True)  # then watches every change below
    store.add_images(["x.jpg", "y.jpg"])
    model.cells_added(store.record(fake_image("x.jpg", [("NEUTROPHIL", 0.95), ("LYMPHOCYTE", 0.55)])))
    model.cells_added(store.record(fake_image("y.jpg", [("PLATELET", 0.8)])))
    assert model.rowCount() == 3 and model.columnCount() == len(COLUMNS)
    assert model.index(0, COLUMN["predicted"]).data() == "Neutrophil"
    assert model.index(1, COLUMN["confidence"]).data() == "55.0 %"
    assert model.index(1, COLUMN["status"]).data() == TO_REVIEW
    assert model.index(2, COLUMN["image"]).data() == "y.jpg"
    assert model.index(2, 0).data(RowIdRole) == 2
    assert model.headerData(COLUMN["confidence"], Qt.Orientation.Horizontal) == "Confidence"
    model.sort(COLUMN["confidence"], Qt.SortOrder.DescendingOrder)  # the tester watches this too
    assert [model.index(r, 0).data(RowIdRole) for r in range(3)] == [0, 2, 1]
    store.add_images(["z.jpg"])
    model.cells_added(store.record(fake_image("z.jpg", [("MONOCYTE", 0.7), ("EOSINOPHIL", 0.99)])))
    assert [model.index(r, 0).data(RowIdRole) for r in range(5)] == [4, 0, 2, 3, 1]  # new cells in sorted place
    assert model.index_of_id(3).row() == 3 and model.index_of_id(4).row() == 0
    model.sort(-1)  # back to analysis order
    assert [model.index(r, 0).data(RowIdRole) for r in range(5)] == [0, 1, 2, 3, 4]
    model.reset()
    assert model.rowCount() == 5


def test_filter_by_class_confidence_and_status(owner, qtmodeltester):
    store = CellStore()
    model = CellTableModel(store, parent=owner)
    cells = CellFilter(parent=owner)
    cells.setSourceModel(model)
    neutrophils = cells.for_group("NEUTROPHIL")
    store.add_images(["x.jpg"])
    specs = [("NEUTROPHIL", 0.95), ("NEUTROPHIL", 0.5), ("LYMPHOCYTE", 0.7), ("PLATELET", 0.3)]
    model.cells_added(store.record(fake_image("x.jpg", specs)))
    assert cells.rowCount() == 4 and neutrophils.rowCount() == 2
    cells.set_criteria(groups=frozenset({"NEUTROPHIL", "PLATELET"}))
    assert cells.rowCount() == 3 and cells.is_filtering()
    cells.set_criteria(confidence=(0.45, 1.0))
    assert {cells.index(r, 0).data(GroupRole) for r in range(cells.rowCount())} == {"NEUTROPHIL"}
    assert neutrophils.rowCount() == 2
    cells.set_criteria(statuses=frozenset({TO_REVIEW}))
    assert cells.rowCount() == 1 and neutrophils.rowCount() == 1
    cells.set_criteria(groups=frozenset(FINAL_LABELS), confidence=(0.0, 1.0), statuses=frozenset(CELL_STATUSES))
    assert cells.rowCount() == 4 and not cells.is_filtering()
    cells.sort(COLUMN["confidence"], Qt.SortOrder.DescendingOrder)
    assert [cells.index(r, 0).data(RowIdRole) for r in range(4)] == [0, 2, 1, 3]
    qtmodeltester.check(cells, force_py=True)
    qtmodeltester.check(neutrophils, force_py=True)


def test_corrections_move_cells_to_their_final_label_everywhere(owner, qtmodeltester, session, tmp_path):
    """A correction goes to the session, which relabels the cells the views read and tells
    them which; nothing else applies it."""
    store = CellStore(session.cache)
    model = CellTableModel(store, parent=owner)
    cells = CellFilter(parent=owner)
    cells.setSourceModel(model)
    sections = {g: cells.for_group(g) for g in REVIEW_LABELS}
    told = told_by(session, store, model)
    x = str(tmp_path / "x.jpg")
    ids = shown_from(session, store, model, fake_result(x, [("NEUTROPHIL", 0.95), ("NEUTROPHIL", 0.5), ("LYMPHOCYTE", 0.7)]))
    qtmodeltester.check(cells, force_py=True)
    assert store.to_review_count() == 2
    cells.set_criteria(statuses=frozenset({TO_REVIEW}))
    assert cells.rowCount() == 2
    # A reviewer calls the third cell an artefact, and the uncertain neutrophil a lymphocyte.
    session.set_label([ids[2]], ARTEFACT, "anna")
    session.set_label([ids[1]], "LYMPHOCYTE", "anna")
    assert told == [[ids[2]], [ids[1]]]
    assert store.status(1) == CORRECTED and store.cell(1).final_label == "LYMPHOCYTE"
    assert store.cell(1) is session.cache.cell(1) and store.cell(1).reviewer == "anna"  # the session's cell, once
    assert store.to_review_count() == 0 and cells.rowCount() == 0  # the queue is empty
    cells.set_criteria(statuses=frozenset(CELL_STATUSES))
    assert sections["NEUTROPHIL"].rowCount() == 1 and sections["LYMPHOCYTE"].rowCount() == 1
    assert sections[ARTEFACT].rowCount() == 1
    assert model.index_of_id(1, COLUMN["final"]).data() == "Lymphocyte"
    assert model.index_of_id(1, COLUMN["status"]).data() == CORRECTED
    assert model.index_of_id(1, COLUMN["final"]).data(Qt.ItemDataRole.FontRole).bold()  # corrected looks different
    assert "corrected from Neutrophil by anna" in model.index_of_id(1, 0).data(Qt.ItemDataRole.ToolTipRole)
    # Undo puts the cell back in the queue; confirming keeps the model's class.
    session.undo("anna")
    assert store.status(1) == TO_REVIEW and store.cell(1).reviewer == "" and sections["NEUTROPHIL"].rowCount() == 2
    session.confirm([ids[0]], "anna")
    assert store.status(0) == CONFIRMED and told[-1] == [ids[0]]
    store.review_threshold = 0.4  # a lower threshold (preferences) empties the queue
    assert store.status(1) == CONFIDENT and store.to_review_count() == 0
    # A cell of the session that the views do not show: they are told, nothing of theirs moves.
    other = session.add_image(fake_result(str(tmp_path / "y.jpg"), [("MONOCYTE", 0.6)]))
    session.set_label(other, "IG", "anna")
    assert told[-1] == other and store.rows_of(other) == [] and store.cell_count == 3


def test_image_list_model_and_status_filter(owner, qtmodeltester):
    store = CellStore()
    model = ImageListModel(store, parent=owner)
    by_status = ImageStatusFilter(owner)
    by_status.setSourceModel(model)
    store.add_images(["a.jpg", "b.jpg", "c.jpg"])
    model.images_added()
    store.record(AnalysedImage("b.jpg", FAILED, "not an image (unknown or corrupt format)"))
    model.image_changed("b.jpg")
    assert model.index(1).data(StatusRole) == FAILED
    assert "not an image" in model.index(1).data(Qt.ItemDataRole.ToolTipRole)
    by_status.set_statuses(frozenset({FAILED}))
    assert by_status.rowCount() == 1
    qtmodeltester.check(model, force_py=True)
    qtmodeltester.check(by_status, force_py=True)


def test_twenty_thousand_cells_filter_and_sort_exactly():
    """20,000 cells streamed image by image: every row is there, the confidence filter shows
    exactly the cells in range (in the table and in each class section), the sort orders all
    of them.  (Speed is measured by benchmarks/gui_review.py, not asserted here.)"""
    store = CellStore()
    model = CellTableModel(store)
    cells = CellFilter()
    cells.setSourceModel(model)
    sections = [cells.for_group(g) for g in GROUPS]
    rng = np.random.default_rng(0)
    images = [f"field_{i:05d}.jpg" for i in range(2000)]
    store.add_images(images)
    made: list[tuple[str, float]] = []
    for path in images:  # as the worker streams them: one image at a time
        specs = [(GROUPS[int(g)], float(c)) for g, c in zip(rng.integers(0, 8, 10), rng.uniform(0.3, 1.0, 10))]
        made += specs
        model.cells_added(store.record(fake_image(path, specs)))
    assert model.rowCount() == 20_000 and sum(s.rowCount() for s in sections) == 20_000
    confident = [(g, c) for g, c in made if c >= 0.9]
    cells.set_criteria(confidence=(0.9, 1.0))
    assert cells.rowCount() == len(confident) and 0 < len(confident) < 20_000
    for group, section in zip(GROUPS, sections):
        assert section.rowCount() == sum(g == group for g, _ in confident), group
    cells.sort(COLUMN["confidence"], Qt.SortOrder.DescendingOrder)
    shown = [cells.index(r, COLUMN["confidence"]).data(SortRole) for r in range(cells.rowCount())]
    assert shown == sorted(shown, reverse=True) and min(shown) >= 0.9 - 1e-6
    assert shown == pytest.approx(sorted((c for _, c in confident), reverse=True), abs=1e-6)
    cells.set_criteria(confidence=(0.0, 1.0))  # sorted and unfiltered: every cell again, in order
    assert cells.rowCount() == 20_000 and sum(s.rowCount() for s in sections) == 20_000
    everything = [cells.index(r, COLUMN["confidence"]).data(SortRole) for r in range(20_000)]
    assert everything == sorted(everything, reverse=True)


def test_flags_put_confident_cells_in_the_queue_and_say_why(owner, qtmodeltester, session, tmp_path):
    """The GUI's queue is core.review_rules': an unfamiliar image or a size against the class
    makes a 99 % cell wait; the table, the filter, the count and the image list say so."""
    store = CellStore(session.cache)
    model = CellTableModel(store, parent=owner)
    cells = CellFilter(parent=owner)
    cells.setSourceModel(model)
    images = ImageListModel(store, parent=owner)
    told_by(session, store, model)
    big_platelet = review_rules.PLATELET_MAX_UM + 5.0
    results = []
    for path, unfamiliar in ((str(tmp_path / "u.jpg"), True), (str(tmp_path / "f.jpg"), False)):
        records = []
        for i, (group, confidence, diameter) in enumerate((("NEUTROPHIL", 0.99, 12.0), ("PLATELET", 0.99, big_platelet))):
            probs = np.full(len(GROUPS), (1 - confidence) / (len(GROUPS) - 1))
            probs[GROUPS.index(group)] = confidence
            record = pipeline.CellRecord(path, i, CellRegion(10 * i, 0, 8, 8, None), probs, "m1", diameter_um=diameter)
            record.flags = review_rules.analysis_flags(record.predicted, diameter, unfamiliar)
            records.append(record)
        result = pipeline.ImageResult(path, "smear", 64, 64, records, um_per_px=0.1, unfamiliar_score=2.5, unfamiliar=unfamiliar)
        results.append(result)
    store.add_images([r.path for r in results])
    images.images_added()
    ids = [shown_from(session, store, model, result, 1.0) for result in results]
    qtmodeltester.check(cells, force_py=True)
    # Every cell of the unfamiliar image waits; of the familiar one, only the oversized "platelet".
    assert [store.status(r) for r in range(4)] == [TO_REVIEW, TO_REVIEW, CONFIDENT, TO_REVIEW]
    assert store.to_review_count() == 3
    why = [model.index_of_id(r, COLUMN["why"]).data() for r in range(4)]
    assert why == [
        review_rules.UNFAMILIAR,
        f"{review_rules.UNFAMILIAR}; {review_rules.SIZE_SET_ASIDE}",
        "",
        review_rules.SIZE_SAYS_WBC,
    ]
    cells.set_criteria(statuses=frozenset({TO_REVIEW}))
    assert sorted(cells.index(r, 0).data(RowIdRole) for r in range(cells.rowCount())) == [0, 1, 3]
    # Reviewed: out of the queue whatever its flags.
    session.confirm([ids[0][0]], "anna")
    assert store.status(0) == CONFIRMED and store.to_review_count() == 2 and cells.rowCount() == 2
    assert model.index_of_id(0, COLUMN["why"]).data() == ""
    # The image list marks the unfamiliar image, with why; the store counts them for the banner.
    assert store.unfamiliar_images() == (1, 2, "m1")
    tip = images.index(0).data(Qt.ItemDataRole.ToolTipRole)
    assert "unfamiliar to model m1: score 2.50 > threshold 1.00" in tip
    assert images.index(0).data(UnfamiliarRole) and not images.index(1).data(UnfamiliarRole)
    assert "unfamiliar" not in images.index(1).data(Qt.ItemDataRole.ToolTipRole)
    store.clear_cells()  # re-analysis: nothing is known of the images any more
    model.reset()
    images.reset()
    assert store.unfamiliar_images() == (0, 0, "")


def test_cells_never_classified_are_shown_filtered_and_sorted_as_to_review(owner, qtmodeltester, session, tmp_path):
    """A segmented-only cell (no probabilities, nan confidence) is a row like any other: to
    review, "—" for what it does not have, its own gallery group, last when sorted."""
    store = CellStore(session.cache)
    model = CellTableModel(store, parent=owner)
    cells = CellFilter(parent=owner)
    cells.setSourceModel(model)
    unclassified = cells.for_group(NOT_CLASSIFIED_LABEL)
    told_by(session, store, model)
    path = str(tmp_path / "mixed.jpg")
    result = fake_result(path, [("NEUTROPHIL", 0.95), ("LYMPHOCYTE", 0.5)])
    result.cells += [pipeline.CellRecord(path, i, CellRegion(10 * i, 50, 40, 42, None, WBC)) for i in (2, 3)]
    store.add_images([path])
    ids = shown_from(session, store, model, result)
    qtmodeltester.check(cells, force_py=True)
    assert model.rowCount() == cells.rowCount() == 4 and unclassified.rowCount() == 2
    assert [store.status(r) for r in range(4)] == [CONFIDENT, TO_REVIEW, TO_REVIEW, TO_REVIEW]
    assert store.to_review_count() == session.to_review_count(store.review_threshold) == 3
    row = [model.index(2, COLUMN[key]).data() for key in ("predicted", "confidence", "final", "status", "why")]
    assert row == ["—", "—", "Not classified", TO_REVIEW, review_rules.NOT_CLASSIFIED]
    for key in ("predicted", "confidence", "final", "status", "why"):
        model.sort(COLUMN[key], Qt.SortOrder.AscendingOrder)
        shown = [model.index(r, 0).data(RowIdRole) for r in range(4)]
        assert sorted(shown) == [0, 1, 2, 3]
    model.sort(COLUMN["confidence"], Qt.SortOrder.DescendingOrder)
    assert [model.index(r, 0).data(RowIdRole) for r in range(4)] == [0, 1, 2, 3]  # no confidence: last, in order
    model.sort(-1)
    # Raising the lowest confidence hides them (no confidence at all), as leaving out their group does.
    cells.set_criteria(confidence=(0.3, 1.0))
    assert cells.rowCount() == 2 and unclassified.rowCount() == 0
    cells.set_criteria(confidence=(0.0, 1.0), groups=frozenset(REVIEW_LABELS))
    assert cells.rowCount() == 2 and cells.is_filtering()
    cells.set_criteria(groups=frozenset(FINAL_LABELS), statuses=frozenset({TO_REVIEW}))
    assert cells.rowCount() == 3 and unclassified.rowCount() == 2
    # Labelled: the reviewer's class, out of the queue and of the group, a correction.
    session.set_label([ids[2]], "MONOCYTE", "anna")
    assert store.status(2) == CORRECTED and store.cell(2).final_label == "MONOCYTE"
    assert store.to_review_count() == session.to_review_count(store.review_threshold) == 2
    assert unclassified.rowCount() == 1 and cells.rowCount() == 2
    assert model.index_of_id(2, COLUMN["final"]).data() == "Monocyte"
    # Confirming has nothing to confirm for a cell never classified.
    assert session.confirm([ids[3]], "anna") is None and store.status(3) == TO_REVIEW
