"""A new lab's first session: the unreviewed cells as unlabelled data, the lab's review rule,
the cells suggested for review, and LISC's copies of one cell kept together."""

from __future__ import annotations

import numpy as np
import pytest

from yawbcc_desktop.core.adaptation import LabReviewRule
from yawbcc_desktop.core.review_rules import (
    BELOW_LAB_BAR,
    CALLED_OTHERWISE_BEFORE,
    CLASS_NOT_YET_RELIABLE,
    NEIGHBOURS_CALLED_OTHERWISE,
)
from yawbcc_desktop.core.suggest import cells_to_review_for_adapting, uncertainty


def _shifted_lab(rng, n_per_class: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A lab whose cells sit away from the replay's classes, their classes compressed."""
    y = np.repeat(np.arange(len(centres)), n_per_class)
    x = 0.35 * centres[y] + 2.5 * centres[0] + rng.normal(0, 0.6, (len(y), centres.shape[1]))
    return x, y


def test_agreeing_pseudo_labels_of_the_unreviewed_cells_improve_the_head():
    from training.head_fit import _softmax
    from training.semi_supervised import LabCells, fit_lab_head

    rng = np.random.default_rng(5)
    centres = rng.normal(0, 2, (3, 16))
    r_y = rng.integers(0, 3, 300)
    replay = centres[r_y] + rng.normal(0, 0.5, (300, 16))
    w0, b0 = centres.T.copy(), np.zeros(3)
    reviewed, y = _shifted_lab(rng, 2, centres)  # two reviewed cells per class
    others, truth = _shifted_lab(rng, 150, centres)
    mirror = others + rng.normal(0, 0.05, others.shape)  # the mirror view: nearly the same features
    w, b, used = fit_lab_head(reviewed, y, replay, r_y, w0, b0)
    supervised = np.mean(_softmax(others @ w + b).argmax(axis=1) == truth)
    w, b, used = fit_lab_head(reviewed, y, replay, r_y, w0, b0, LabCells(others, mirror))
    semi = np.mean(_softmax(others @ w + b).argmax(axis=1) == truth)
    assert used > 300 and semi > supervised + 0.01  # measured: 0.887 -> 0.904
    # Views that disagree give no pseudo-label at all: the fit is the supervised one.
    _, _, none_used = fit_lab_head(reviewed, y, replay, r_y, w0, b0, LabCells(others, -others))
    assert none_used == 0


def adapted_random_bundle(folder, rule: LabReviewRule):
    """A random bundle with a familiarity model, framed in µm, whose card carries ``rule``."""
    from dataclasses import replace

    from training.bundle import write_random_bundle
    from training.card import write_card
    from yawbcc_desktop.core.classifier import read_card

    folder = write_random_bundle(folder, folder.name, 64, 0.5, familiarity=True, um_per_px=0.5)
    card = read_card(folder)
    write_card(folder, replace(card, extra={**card.extra, "lab_review": rule.to_card()}))
    return folder


def pbc_crops(data_dir) -> list:
    """Four PBC crops each of three classes."""
    return [p for g in ("neutrophil", "lymphocyte", "eosinophil") for p in sorted((data_dir / "pbc" / g).glob("*.jpg"))[1:5]]


def test_the_lab_rule_queues_untaught_classes_and_calls_adapting_changed():
    from training.adapt import lab_review_rule

    order = ["NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE", "EOSINOPHIL"]
    rule = lab_review_rule(order, ["NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE"], "lab")
    assert rule.min_confidence == 0.0 and rule.changed_calls and not rule.session_neighbours
    assert rule.unreliable_classes == ("EOSINOPHIL",)  # too few corrections to adapt it
    assert rule.reasons("NEUTROPHIL", 0.55, None, "NEUTROPHIL") == []  # the user's threshold judges confidence
    assert rule.reasons("NEUTROPHIL", 0.999, None, "MONOCYTE") == [CALLED_OTHERWISE_BEFORE]
    assert rule.reasons("EOSINOPHIL", 0.99, None, None) == [CLASS_NOT_YET_RELIABLE]
    assert LabReviewRule.from_card({"lab_review": rule.to_card()}) == rule
    # A bundle adapted before 2026-12-08 keeps its bar and has no changed-call check.
    old = LabReviewRule.from_card({"lab_review": {"lab": "x", "min_confidence": 0.761, "unreliable_classes": ["LYMPHOCYTE"]}})
    assert old is not None and not old.changed_calls
    assert old.reasons("NEUTROPHIL", 0.70, None, "MONOCYTE") == [BELOW_LAB_BAR]
    assert LabReviewRule.from_card({}) is None


def test_suggested_cells_cover_every_kind_of_cell_in_the_session():
    rng = np.random.default_rng(0)
    sure = np.eye(4)[rng.integers(0, 3, 300)] * 0.9 + 0.025  # three classes, sure
    doubtful = np.tile([0.4, 0.35, 0.15, 0.1], (20, 1)) + rng.uniform(0, 0.02, (20, 4))
    rare = np.array([[0.05, 0.05, 0.05, 0.85]])  # one cell of a fourth class
    probs = np.concatenate([sure, doubtful, rare])
    probs /= probs.sum(axis=1, keepdims=True)
    picked = cells_to_review_for_adapting(probs, 8)
    assert len(set(picked)) == 8
    assert set(probs[picked].argmax(axis=1)) == {0, 1, 2, 3}  # every class the model sees
    assert len(probs) - 1 in picked
    assert any(300 <= i < 320 for i in picked)  # the doubtful cells, a kind of their own
    assert uncertainty(probs[300:320]).min() > uncertainty(probs[:300]).max()
    assert len(cells_to_review_for_adapting(probs[:3], 10)) == 3
    assert len(cells_to_review_for_adapting(probs, 0)) == 0


def test_lisc_copies_of_one_cell_share_a_source_cell(data_dir):
    from training.domains import lisc_cells
    from training.source_cells import group_copies

    folder = data_dir / "lisc" / "lymphocyte"
    paths = sorted(folder.glob("*.jpg"))[:12]
    cells = group_copies(paths)
    # 0000-0002 are copies of one cell (shifted), 0003 another cell (looked at).
    assert cells[0] == cells[1] == cells[2] != cells[3]
    table = lisc_cells(data_dir / "lisc")
    assert len(table) == 1287 and set(table.domain) == {"lisc"}
    assert table.groupby("split").size()["test"] > 250


def test_an_adapted_bundle_queues_its_labs_cells_by_its_rule(tmp_path, data_dir):
    from dataclasses import replace

    from training.bundle import write_random_bundle
    from training.card import write_card
    from yawbcc_desktop.core.classes import GROUPS
    from yawbcc_desktop.core.classifier import ModelBundle, read_card
    from yawbcc_desktop.core.pipeline import analyse

    folder = write_random_bundle(tmp_path / "lab-a", "lab-a", 64, 0.5)
    card = read_card(folder)
    rule = LabReviewRule("lab-a", 0.4, ("NEUTROPHIL",))
    write_card(folder, replace(card, extra={**card.extra, "lab_review": rule.to_card()}))
    bundle = ModelBundle(folder)
    assert bundle.lab_rule == rule
    paths = pbc_crops(data_dir)
    cells = [c for r in analyse(paths, "cell", bundle) for c in r.cells]
    assert len(cells) == 12
    for c in cells:
        said, sure = GROUPS[int(np.argmax(c.probs))], float(np.max(c.probs))
        assert (BELOW_LAB_BAR in c.flags) == (sure < 0.4)
        assert (CLASS_NOT_YET_RELIABLE in c.flags) == (said == "NEUTROPHIL")
    assert any(c.flags for c in cells)


def test_neighbour_agreement_counts_the_nearest_other_cells_not_the_cell_itself():
    from yawbcc_desktop.core.familiarity import neighbour_agreement

    rng = np.random.default_rng(0)
    cell = rng.normal(size=16)
    near = cell + 0.05 * rng.normal(size=(10, 16))  # ten cells much like it, called class 0
    far = rng.normal(size=(10, 16))  # ten others, called class 1
    refs = np.vstack([cell, near, far])
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    classes = np.array([2] + [0] * 10 + [1] * 10)  # the cell itself, kept in the session as class 2
    got = neighbour_agreement(cell[None] * 3.0, np.array([0]), refs, classes)
    assert got.tolist() == [1.0]  # its own copy is not one of its neighbours
    assert neighbour_agreement(cell[None], np.array([2]), refs, classes).tolist() == [0.0]
    skip = np.zeros((1, len(refs)), bool)
    skip[0, 1:6] = True  # five of its near cells left out (copies of one source cell)
    assert neighbour_agreement(cell[None], np.array([0]), refs, classes, skip).tolist() == [0.5]
    rule = LabReviewRule("lab", 0.5, (), session_neighbours=True)
    assert rule.reasons("NEUTROPHIL", 0.9, 1.0) == [] and rule.reasons("NEUTROPHIL", 0.9, 0.9) == [NEIGHBOURS_CALLED_OTHERWISE]
    assert LabReviewRule.from_card({"lab_review": rule.to_card()}) == rule
    # A card from before the check: no check.
    assert LabReviewRule.from_card({"lab_review": {"lab": "x", "min_confidence": 0.5}}).session_neighbours is False


def test_an_adapted_bundle_checks_each_cell_against_its_labs_session_cells(tmp_path, data_dir):
    from yawbcc_desktop.core.adaptation import LAB_CELLS_FILE
    from yawbcc_desktop.core.classes import GROUPS
    from yawbcc_desktop.core.classifier import ModelBundle, ModelBundleError
    from yawbcc_desktop.core.pipeline import analyse

    folder = adapted_random_bundle(tmp_path / "lab-b", LabReviewRule("lab-b", 0.0, (), session_neighbours=True))
    with pytest.raises(ModelBundleError, match=LAB_CELLS_FILE):
        ModelBundle(folder)  # the rule asks for the lab's cells: without them the bundle is refused, not run unchecked
    np.savez(folder / LAB_CELLS_FILE, features=np.zeros((1, 1), np.float16), classes=np.zeros(1, np.int8))
    dim = ModelBundle(folder).features(np.zeros((1, 64, 64, 3), np.uint8)).shape[1]
    paths = pbc_crops(data_dir)
    refs = np.random.default_rng(1).normal(size=(30, dim))
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    for group in ("NEUTROPHIL", "LYMPHOCYTE"):
        np.savez(folder / LAB_CELLS_FILE, features=refs.astype(np.float16), classes=np.full(30, GROUPS.index(group), np.int8))
        cells = [c for r in analyse(paths, "cell", ModelBundle(folder)) for c in r.cells]
        assert len(cells) == 12
        for c in cells:
            said = GROUPS[int(np.argmax(c.probs))]
            # Every cell of the lab's session was called `group`: only a cell called otherwise waits for it.
            assert (NEIGHBOURS_CALLED_OTHERWISE in c.flags) == (said != group)


def test_an_adapted_bundle_queues_the_cells_whose_class_adapting_changed(tmp_path, data_dir):
    from yawbcc_desktop.core.adaptation import BASE_HEAD_FILE
    from yawbcc_desktop.core.classes import GROUPS
    from yawbcc_desktop.core.classifier import ModelBundle, ModelBundleError, read_card
    from yawbcc_desktop.core.pipeline import analyse

    folder = adapted_random_bundle(tmp_path / "lab-c", LabReviewRule("lab-c", 0.0, (), changed_calls=True))
    with pytest.raises(ModelBundleError, match=BASE_HEAD_FILE):
        ModelBundle(folder)  # the rule asks for the head before adapting: without it the bundle is refused
    import keras

    # A head with a clear call (a random bundle's pooled features are about 1e-12: its own
    # head gives every class the same probability, and a tie is no call to compare).
    model = keras.saving.load_model(folder / "model.keras", compile=False)
    kernel, bias = model.get_layer("logits").get_weights()
    kernel = (np.random.default_rng(0).normal(0, 1.0, kernel.shape) * 1e13).astype(np.float32)
    model.get_layer("logits").set_weights([kernel, bias])
    model.save(folder / "model.keras")
    paths = pbc_crops(data_dir)
    # The head before adapting is the model's own: adapting changed no call, no cell waits for it.
    np.savez(folder / BASE_HEAD_FILE, kernel=kernel, bias=bias)
    cells = [c for r in analyse(paths, "cell", ModelBundle(folder)) for c in r.cells]
    assert len(cells) == 12 and not any(CALLED_OTHERWISE_BEFORE in c.flags for c in cells)
    # A head before adapting that called every cell one class: the cells called otherwise now wait.
    said = [GROUPS[int(np.argmax(c.probs))] for c in cells]
    order = read_card(folder).class_order
    other = next(g for g in order if g != said[0] and g in GROUPS)
    forced = bias.copy()
    forced[order.index(other)] += 1e4
    np.savez(folder / BASE_HEAD_FILE, kernel=kernel, bias=forced)
    cells = [c for r in analyse(paths, "cell", ModelBundle(folder)) for c in r.cells]
    said = [GROUPS[int(np.argmax(c.probs))] for c in cells]
    assert [CALLED_OTHERWISE_BEFORE in c.flags for c in cells] == [g != other for g in said]
    assert CALLED_OTHERWISE_BEFORE in cells[0].flags
