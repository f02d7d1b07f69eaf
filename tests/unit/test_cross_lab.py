"""Cross-lab pieces of the core and training: pixel size, physical framing, familiarity,
review flags, the three domains' cell tables, stain augmentation, head adaptation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from yawbcc_desktop.core import review_rules
from yawbcc_desktop.core.cells import CellRegion
from yawbcc_desktop.core.classifier import Classified
from yawbcc_desktop.core.familiarity import AcquisitionModel, Familiarity, acquisition_signature
from yawbcc_desktop.core.imageio import read_rgb
from yawbcc_desktop.core.preprocess import uint8_percentiles
from yawbcc_desktop.core.scale import (
    FROM_DEFAULT,
    FROM_LAB,
    FROM_RED_CELLS,
    FROM_WHITE_CELL,
    check_um_per_px,
    estimate_um_per_px,
    lab_pixel_size,
    scaled_cell_input,
)


def _sample(folder, pattern, n):
    """n files spread over the folder (hidden files such as macOS metadata left out)."""
    files = sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))
    return files[:: max(1, len(files) // n)][:n]


def test_pixel_size_from_red_cells_per_lab(data_dir):
    """Each lab's images agree on one pixel size, and the labs differ as their optics do."""
    pbc = [estimate_um_per_px(read_rgb(p)) for p in _sample(data_dir / "pbc" / "neutrophil", "*.jpg", 12)]
    bccd = [estimate_um_per_px(read_rgb(p)) for p in _sample(data_dir / "bccd" / "JPEGImages", "*.jpg", 12)]
    assert all(e.source == FROM_RED_CELLS for e in pbc + bccd)
    pbc_um = np.median([e.um_per_px for e in pbc])
    bccd_um = np.median([e.um_per_px for e in bccd])
    assert 0.085 < pbc_um < 0.11 and 0.06 < bccd_um < 0.09
    assert np.std([e.um_per_px for e in pbc]) / pbc_um < 0.12


def test_pixel_size_falls_back_to_white_cell_then_default():
    blank = np.full((200, 200, 3), 235, np.uint8)
    assert estimate_um_per_px(blank).source == FROM_DEFAULT
    cell = CellRegion(50, 50, 100, 100, np.ones((100, 100), bool))
    est = estimate_um_per_px(blank, [cell])
    assert est.source == FROM_WHITE_CELL
    # A 100 px disc-equivalent outline is a 13 µm white cell.
    assert est.um_per_px == pytest.approx(13.0 / np.sqrt(4 * 10000 / np.pi), rel=1e-6)


def test_a_lab_set_pixel_size_replaces_each_images_own_and_its_sizes_count(data_dir):
    """The lab's pixel size frames every image at that size (source "set by the lab"), the
    size rules trust it as they trust red cells, and the lab's value is the median of its
    images measured on red cells."""
    from yawbcc_desktop.core.pipeline import segment_image
    from yawbcc_desktop.core.preferences import AnalysisSettings

    path = _sample(data_dir / "pbc" / "lymphocyte", "*.jpg", 1)[0]
    own = segment_image(path, "cell")
    lab = segment_image(path, "cell", settings=AnalysisSettings(lab_um_per_px=0.0965))
    assert own.scale_source == FROM_RED_CELLS and (lab.um_per_px, lab.scale_source) == (0.0965, FROM_LAB)
    assert own.um_per_px != 0.0965
    cell, same = own.cells[0], lab.cells[0]
    assert same.diameter_um == pytest.approx(cell.diameter_um * 0.0965 / own.um_per_px)
    assert review_rules.measured_diameter(same.diameter_um, lab.scale_source) == same.diameter_um
    assert np.isnan(review_rules.measured_diameter(12.0, FROM_WHITE_CELL))
    with pytest.raises(ValueError, match="outside"):
        check_um_per_px(3.0)
    # The median of the images measured on red cells; too few, or other rulers, give none.
    pbc = [estimate_um_per_px(read_rgb(p)) for p in _sample(data_dir / "pbc" / "neutrophil", "*.jpg", 20)]
    pairs = [(e.um_per_px, e.source) for e in pbc]
    assert lab_pixel_size(pairs) == pytest.approx(np.median([e.um_per_px for e in pbc]))
    assert lab_pixel_size(pairs[:19]) is None
    assert lab_pixel_size(pairs[:19] + [(0.2, FROM_WHITE_CELL)]) is None


def test_scaled_input_spans_the_same_micrometres_at_any_magnification():
    """The same slide imaged at two magnifications gives the same model input."""
    rng = np.random.default_rng(0)
    slide = (rng.random((60, 60, 3)) * 255).astype(np.uint8)
    fine = np.kron(slide, np.ones((4, 4, 1), np.uint8))  # 0.05 µm/px
    coarse = np.kron(slide, np.ones((2, 2, 1), np.uint8))  # 0.10 µm/px
    a = scaled_cell_input(fine, (120, 120), 0.05, 32, 0.25, balance=False).astype(float)
    b = scaled_cell_input(coarse, (60, 60), 0.10, 32, 0.25, balance=False).astype(float)
    assert a.shape == b.shape == (32, 32, 3)
    assert np.abs(a - b).mean() < 6.0


def test_familiarity_separates_a_shifted_domain(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 600)
    centres = rng.normal(0, 3, (4, 64))
    train = centres[labels] + rng.normal(0, 1, (600, 64))
    fam = Familiarity.fit(train, labels, k=16)
    held = centres[labels[:200]] + rng.normal(0, 1, (200, 64))
    shifted = held + rng.normal(0, 1, 64) * 3
    fam.threshold = float(np.quantile(fam.cell_scores(held), 0.99))
    assert np.mean(fam.cell_scores(shifted) > fam.threshold) > 0.9
    fam.save(tmp_path / "f.npz")
    again = Familiarity.load(tmp_path / "f.npz")
    assert np.allclose(again.cell_scores(shifted), fam.cell_scores(shifted))


def test_acquisition_signature_tells_labs_apart(data_dir, tmp_path):
    def signatures(paths):
        out = []
        for p in paths:
            rgb = read_rgb(p)
            out.append(acquisition_signature(rgb, estimate_um_per_px(rgb).um_per_px))
        return np.stack(out)

    pbc = signatures(_sample(data_dir / "pbc" / "lymphocyte", "*.jpg", 30))
    bccd = signatures(_sample(data_dir / "bccd" / "JPEGImages", "*.jpg", 10))
    model = AcquisitionModel.fit(pbc[:20], np.zeros(20))
    model.threshold = max(model.score(s) for s in pbc[20:])
    assert all(model.score(s) > model.threshold for s in bccd)
    # A lab added by adaptation becomes familiar.
    assert all(model.with_references(bccd[:5]).score(s) < model.score(s) for s in bccd[5:])
    # Saved with the feature model and read back whole.
    fam = Familiarity.fit(np.random.default_rng(0).normal(size=(50, 8)), np.arange(50) % 2, k=4)
    fam.acquisition = model
    fam.save(tmp_path / "f.npz")
    again = Familiarity.load(tmp_path / "f.npz").acquisition
    assert again is not None and again.threshold == model.threshold
    assert np.allclose([again.score(s) for s in bccd], [model.score(s) for s in bccd], rtol=1e-4)


def test_signature_percentiles_are_numpys_on_real_images(data_dir):
    import cv2

    paths = _sample(data_dir / "pbc" / "eosinophil", "*.jpg", 3) + _sample(data_dir / "bccd" / "JPEGImages", "*.jpg", 3)
    for p in paths:
        lab = cv2.cvtColor(read_rgb(p), cv2.COLOR_RGB2LAB).reshape(-1, 3)
        for values in (lab, lab[:7]):  # a few pixels too: interpolation between neighbours
            expected = np.percentile(values.astype(np.float64), (10, 50, 90, 0, 100), axis=0).T
            np.testing.assert_allclose(uint8_percentiles(values, (10, 50, 90, 0, 100)), expected, atol=1e-9)


def test_review_flags():
    assert review_rules.analysis_flags("PLATELET", 14.0, False) == [review_rules.SIZE_SAYS_WBC]
    assert review_rules.analysis_flags("PLATELET", 14.0, True) == [review_rules.UNFAMILIAR, review_rules.SIZE_SET_ASIDE]
    # A size counts only against the red cells' ruler (a lone cell measured by itself is 13 µm).
    assert np.isnan(review_rules.measured_diameter(13.0, "white cell"))
    assert review_rules.measured_diameter(13.0, "red cells") == 13.0
    assert review_rules.analysis_flags("LYMPHOCYTE", 3.0, False) == [review_rules.SIZE_SAYS_PLATELET]
    assert review_rules.analysis_flags("NEUTROPHIL", 13.0, True) == [review_rules.UNFAMILIAR]
    assert review_rules.analysis_flags("PLATELET", 5.8, False) == []
    joined = review_rules.join_flags([review_rules.UNFAMILIAR])
    assert review_rules.review_reasons(0.99, 0.9, joined) == [review_rules.UNFAMILIAR]
    assert review_rules.review_reasons(0.5, 0.9, "") == [review_rules.LOW_CONFIDENCE]
    assert review_rules.review_reasons(0.99, 0.9, []) == []


def test_on_an_unfamiliar_image_a_cell_wider_than_any_platelet_is_not_classed_as_one(data_dir):
    """On an unfamiliar image the model's platelet share goes to the other classes in
    proportion for a cell over 10 µm; on a familiar one its call stands.  Either way the cell
    waits for review; a platelet-sized cell keeps what the model said."""
    from types import SimpleNamespace

    from yawbcc_desktop.core.classes import GROUPS
    from yawbcc_desktop.core.pipeline import classify_batch, segment_image

    said = np.zeros(len(GROUPS), np.float32)
    said[[GROUPS.index(g) for g in ("PLATELET", "ERYTHROBLAST", "NEUTROPHIL", "MONOCYTE")]] = 0.8, 0.1, 0.06, 0.04
    ruled = review_rules.size_ruled(said, 14.0, True)
    # The white-cell classes share it: not the erythroblast, which counts outside the white cells.
    assert ruled[GROUPS.index("PLATELET")] == 0 and ruled[GROUPS.index("ERYTHROBLAST")] == 0
    assert abs(ruled.sum() - 1) < 1e-6 and abs(ruled[GROUPS.index("NEUTROPHIL")] - 0.6) < 1e-6
    assert review_rules.size_ruled(said, 14.0, False) is said
    for small_or_unmeasured in (6.0, float("nan")):
        assert review_rules.size_ruled(said, small_or_unmeasured, True) is said

    # Wired into the analysis: a BCCD field's real cells, a model that calls everything a
    # platelet, the image unfamiliar to it or not.
    for unfamiliar in (False, True):
        result = segment_image(data_dir / "bccd" / "JPEGImages" / "BloodImage_00001.jpg", "smear")
        result.inputs = np.zeros((len(result.cells), 8, 8, 3), np.uint8)
        familiarity = SimpleNamespace(image_score=lambda scores, signature: 1.0, is_unfamiliar=lambda score, u=unfamiliar: u)
        bundle = SimpleNamespace(
            name="platelets-only",
            familiarity=familiarity,
            classify=lambda x: Classified(np.tile(said, (len(x), 1)), np.zeros(len(x)), None),
            lab_rule=None,
        )
        classify_batch([result], bundle)
        sizes = [c.diameter_um for c in result.cells]
        assert max(sizes) > 10 and min(sizes) < 10  # its neutrophil and its platelets
        assert result.scale_source == "red cells"
        for cell in result.cells:
            big = cell.diameter_um > review_rules.PLATELET_MAX_UM
            assert cell.predicted == ("NEUTROPHIL" if big and unfamiliar else "PLATELET")
            flag = review_rules.SIZE_SET_ASIDE if unfamiliar else review_rules.SIZE_SAYS_WBC
            assert (flag in cell.flags) == big

    # A single-cell crop whose scale came from the cell itself: its 13 µm proves nothing.
    crop = segment_image(next((data_dir / "pbc" / "platelet").glob("*.jpg")), "cell")
    crop.scale_source, crop.cells[0].diameter_um = "white cell", 13.0
    crop.inputs = np.zeros((1, 8, 8, 3), np.uint8)
    classify_batch([crop], bundle)  # the last bundle: every image unfamiliar
    assert crop.cells[0].predicted == "PLATELET" and crop.cells[0].flags == [review_rules.UNFAMILIAR]


def test_domain_tables(data_dir):
    from training.domains import bccd_cells, bionet_cells

    bccd = bccd_cells(data_dir / "bccd")
    bionet = bionet_cells(data_dir / "deepbionet")
    assert len(bionet) == 361 and set(bionet.group) == {"NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE"}
    assert 250 < len(bccd) < 300 and bccd[["cx", "cy"]].notna().all().all()
    # BCCD boxed one platelet as a white cell: left out, and its field's other white cell kept.
    field_113 = bccd[bccd.path.str.endswith("BloodImage_00113.jpg")]
    assert len(field_113) == 1 and field_113.box_w.iloc[0] > 100
    assert bccd[["box_w", "box_h"]].max(axis=1).min() >= 60
    # Fields are split as wholes: every cell of a field on one side.
    assert (bccd.groupby("path")["split"].nunique() == 1).all()
    for table in (bccd, bionet):
        assert set(table.split) == {"train", "valid", "test"}


def test_platelets_of_the_smear_labs(data_dir):
    """Platelets from BCCD's and Bio-Net's detection boxes: one per field, a bounded number
    per lab, on the same side of the split as the rest of their field."""
    import pandas as pd

    from training.domains import PLATELETS_PER_LAB, bccd_cells, box_platelets, platelet_cells

    platelets = platelet_cells(data_dir)
    assert set(platelets.group) == {"PLATELET"} and set(platelets.domain) == {"bccd", "bionet"}
    assert (platelets.groupby("domain").size() == PLATELETS_PER_LAB).all()
    assert platelets.path.is_unique
    assert platelets.path[platelets.domain.eq("bionet")].str.contains("fields").all()
    # A platelet box is a fraction of a white cell's.
    bccd = bccd_cells(data_dir / "bccd")
    assert platelets.box_w.median() < 0.3 * bccd.box_w.median()
    wbc_split = dict(zip(bccd.path, bccd.split))
    shared = [(p, s) for p, s in zip(platelets.path, platelets.split) if p in wbc_split]
    assert shared and all(wbc_split[p] == s for p, s in shared)
    for _d, table in platelets.groupby("domain"):
        assert set(table.split) == {"train", "valid", "test"}
    # They are told apart from the white cells (the familiarity model leaves them out).
    both = pd.concat([bccd, platelets], ignore_index=True)
    assert box_platelets(both).tolist() == [False] * len(bccd) + [True] * len(platelets)


def test_nucleus_locator_finds_the_white_cell(data_dir):
    """On Bio-Net fields (one white cell each, no box) the located centre falls inside a white
    cell the application's smear segmentation finds, in both colour series: the cyan one
    (blue red cells, where the first locator took a red cell in fields 18, 19, 22 and 25)
    and the yellow one."""
    from training.domains import locate_nucleus
    from yawbcc_desktop.core.cells import WBC
    from yawbcc_desktop.core.segmentation import find_cells

    cells = data_dir / "deepbionet" / "cells"
    paths = [cells / "lymphocyte" / f"{n}.jpg" for n in (18, 19, 22, 25)]
    paths += _sample(cells / "neutrophil", "*.jpg", 6) + _sample(cells / "eosinophil", "*.jpg", 4)
    for p in paths:
        rgb = read_rgb(p)
        wbcs = [r for r in find_cells(rgb, "smear")[1] if r.kind == WBC]
        assert any(r.box_holds(*locate_nucleus(rgb)) for r in wbcs), p


def test_stain_augmentation_keeps_shape_and_range():
    from training.stain import stain_augment, yuv_stats

    rng = np.random.default_rng(2)
    batch = (rng.random((6, 48, 48, 3)) * 255).astype(np.uint8)
    out = stain_augment(batch, 40, yuv_stats(batch)).numpy()
    assert out.shape == (6, 40, 40, 3)
    assert out.min() >= 0 and out.max() <= 255
    assert np.abs(out.mean(axis=(1, 2, 3)) - batch[:, 4:44, 4:44].mean(axis=(1, 2, 3))).max() > 1.0


def test_clean_share_keeps_a_cells_own_colours(data_dir):
    """With every image in the clean share only the geometry changes: each PBC cell keeps its
    mean colour; with none, the colour augmentation moves it."""
    import cv2

    from training.stain import stain_augment, yuv_stats
    from yawbcc_desktop.core.imageio import read_rgb

    paths = sorted((data_dir / "pbc" / "neutrophil").glob("SNE_*.jpg"))[:6]
    # As the training cache holds them: 1.2 times the model's input around the cell.
    batch = np.stack([cv2.resize(read_rgb(p)[:336, :336], (192, 192), interpolation=cv2.INTER_AREA) for p in paths])
    own = batch[:, 16:176, 16:176].reshape(6, -1, 3).mean(axis=1)
    import keras

    keras.utils.set_random_seed(0)  # the scale jitter alone moves a mean colour by up to 7 levels on some draws
    clean = stain_augment(batch, 160, yuv_stats(batch), 1.0, clean_share=1.0).numpy().reshape(6, -1, 3).mean(axis=1)
    drawn = stain_augment(batch, 160, yuv_stats(batch), 1.0, clean_share=0.0).numpy().reshape(6, -1, 3).mean(axis=1)
    assert np.abs(clean - own).max() < 6.0
    assert np.abs(drawn - own).max() > 10.0


def test_coarse_share_takes_away_the_fine_detail_a_low_resolution_camera_never_had(data_dir):
    """Seen through the coarser camera, a PBC neutrophil's granules and edges soften:
    the mean difference between neighbouring pixels falls well below that of the sharp image."""
    import cv2
    import keras

    from training.stain import stain_augment, yuv_stats
    from yawbcc_desktop.core.imageio import read_rgb

    paths = sorted((data_dir / "pbc" / "neutrophil").glob("SNE_*.jpg"))[:8]
    batch = np.stack([cv2.resize(read_rgb(p)[:336, :336], (192, 192), interpolation=cv2.INTER_AREA) for p in paths])

    def detail(share):
        keras.utils.set_random_seed(0)
        out = stain_augment(batch, 160, yuv_stats(batch), 0.0, clean_share=0.0, coarse_share=share).numpy().mean(axis=3)
        return np.abs(np.diff(out, axis=2)).mean()

    assert detail(1.0) < 0.85 * detail(0.0)


def test_head_fit_learns_a_new_lab_and_keeps_the_replay():
    from training.head_fit import _sample_weights, _softmax, fit_head

    rng = np.random.default_rng(3)
    centres = rng.normal(0, 2, (3, 16))
    replay_y = rng.integers(0, 3, 300)
    replay = centres[replay_y] + rng.normal(0, 0.5, (300, 16))
    w0, b0 = centres.T.copy(), np.zeros(3)  # a head that knows the replay domain
    lab_y = rng.integers(0, 3, 40)
    # A lab whose cells all sit towards class 0 of the replay, their classes compressed.
    lab = 0.3 * centres[lab_y] + 3 * centres[0] + rng.normal(0, 0.3, (40, 16))
    before = np.mean((lab @ w0 + b0).argmax(axis=1) == lab_y)
    w, b = fit_head(np.concatenate([lab, replay]), np.concatenate([lab_y, replay_y]), _sample_weights(40, 300), w0, b0)
    assert before < 0.5 and np.mean(_softmax(lab @ w + b).argmax(axis=1) == lab_y) > 0.9
    assert np.mean((replay @ w + b).argmax(axis=1) == replay_y) > 0.9


def test_corrections_name_bad_rows(tmp_path, data_dir):
    from training.corrections import read_corrections

    good = str(sorted((data_dir / "pbc" / "basophil").glob("*.jpg"))[0])
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    csv = tmp_path / "cells.csv"
    pd.DataFrame(
        {
            "path": [good, str(bad), good, good],
            "final_label": ["BASOPHIL", "NEUTROPHIL", "BLAST", "ARTEFACT"],
            "reviewed": ["yes", "yes", "yes", "yes"],
        }
    ).to_csv(csv, index=False)
    c = read_corrections(csv)
    assert list(c.rows["label"]) == ["BASOPHIL"]
    assert len(c.skipped) == 2
    assert c.skipped[0].startswith("row 3:") and "broken.jpg" in c.skipped[0]
    assert c.skipped[1].startswith("row 4:") and "BLAST" in c.skipped[1]


def test_warm_up_traces_the_model_a_run_calls(familiar_bundle):
    """With a familiarity model a run calls the probabilities-and-features model; warming up
    the plain model left its two traces (half a second each) to the middle of the first run."""
    from yawbcc_desktop.core.classifier import ModelBundle

    bundle = ModelBundle(familiar_bundle)
    assert bundle._with_features is not None and bundle._with_features.predict_function is None
    bundle.warm_up()
    assert bundle._with_features.predict_function is not None
    probs, scores, *_ = bundle.classify(np.zeros((3, 64, 64, 3), np.uint8))
    assert probs.shape == (3, 8) and scores.shape == (3,)
