"""``yawbcc adapt`` (and ``python -m training adapt``'s JSON events) on real PBC cells.

The bundle is the tests' tiny one with a replay sample (random weights, 64 px): the run's
bookkeeping is checked -- rows read and skipped, messages, exit codes, the bundle written
whole or not at all -- never what the model learns.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.card import write_card
from yawbcc_desktop.cli import EXIT_OK, EXIT_UNUSABLE, main
from yawbcc_desktop.core.adaptation import BASE_HEAD_FILE, LAB_CELLS_FILE
from yawbcc_desktop.core.card_text import adaptation_text
from yawbcc_desktop.core.classes import ARTEFACT, GROUPS
from yawbcc_desktop.core.classifier import ModelBundle, read_card
from yawbcc_desktop.core.familiarity import FAMILIARITY_FILE, Familiarity
from yawbcc_desktop.core.store import ReviewSession

CLASSES = ("NEUTROPHIL", "LYMPHOCYTE", "MONOCYTE", "EOSINOPHIL", "PLATELET", "ERYTHROBLAST")


def pbc_images(pbc: Path, group: str, count: int, start: int = 50) -> list[Path]:
    found = sorted(p for p in (pbc / group.lower()).glob("*.jpg") if not p.name.startswith("."))
    return found[start : start + count]


@pytest.fixture(autouse=True)
def _own_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("YAWBCC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def write_corrections(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A cells CSV as ``yawbcc export --cells`` writes it, with the columns adapt reads."""
    frame = pd.DataFrame(rows, columns=["path", "final_label", "reviewed"]).assign(mode="cell", reviewer="Ann")
    frame.to_csv(path, index=False, encoding="utf-8-sig")
    return path


def classified_lab(pbc: Path, bundle: Path, tmp_path: Path, start: int) -> tuple[Path, Path]:
    """A lab folder of 6 real PBC cells of each of CLASSES, classified into a session by
    ``yawbcc classify --session``: the folder and the session file."""
    lab = tmp_path / "lab"
    lab.mkdir()
    for group in CLASSES:
        for src in pbc_images(pbc, group, 6, start=start):
            shutil.copy(src, lab / f"{group.lower()}_{src.name}")
    session_file = tmp_path / "lab.yawbcc"
    classify = ["classify", str(lab), "--model", str(bundle), "--mode", "cell", "--session", str(session_file)]
    assert main([*classify, "--quiet"]) == EXIT_OK
    return lab, session_file


def test_yawbcc_adapt_end_to_end_on_real_images(pbc, adaptable_bundle, tmp_path, capsys, monkeypatch):
    # A lab's session: real cells classified by the model, then reviewed with their true class.
    lab, session_file = classified_lab(pbc, adaptable_bundle, tmp_path, start=50)
    with ReviewSession.open(session_file) as s:
        cells = s.cells()
        assert len(cells) == 36
        group = {c.id: Path(c.path).name.split("_")[0].upper() for c in cells}
        for c in cells:
            s.set_label([c.id], group[c.id], "Ann")
        first = {g: next(c for c in cells if group[c.id] == g) for g in CLASSES}
        s.set_label([first["NEUTROPHIL"].id], ARTEFACT, "Ann")  # not a cell: left out
        gone = first["LYMPHOCYTE"].path
    Path(gone).unlink()  # a reviewed image deleted since: its row is skipped and named
    cells_csv = tmp_path / "cells.csv"
    assert main(["export", str(session_file), "--cells", str(cells_csv)]) == EXIT_OK
    capsys.readouterr()
    gone_row = pd.read_csv(cells_csv, encoding="utf-8-sig").reset_index().set_index("path").loc[gone, "index"] + 2

    dest = tmp_path / "models"
    args = ["adapt", "--model", str(adaptable_bundle), "--corrections", str(cells_csv), "--name", "lab-a", "--dest", str(dest)]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    # Progress on stderr, the skipped row named by file and row; the figures in plain words on stdout.
    assert f"yawbcc adapt: {cells_csv}: row {gone_row}: {gone}:" in err
    assert "yawbcc adapt: framing the cells and computing their features 34/34" in err
    assert "yawbcc adapt: writing the new bundle 4/4" in err
    assert out.startswith("Adapted tiny-adaptable to lab-a as lab-a: 34 cells (")
    assert "On the lab's cells, cross-validated (5 folds" in out and "% before," in out and "% after" in out
    assert "On the base model's replay sample (its training labs: bccd, pbc): accuracy" in out
    assert f"New bundle: {dest / 'lab-a'}" in out and '"event"' not in out
    card = read_card(dest / "lab-a")
    assert card.extra["adapted_from"] == "tiny-adaptable" and card.extra["adaptation"]["cells"] == 34
    assert card.extra["training_domains"][-1] == "lab-a" and not list(dest.glob(".*"))
    bundle = ModelBundle(dest / "lab-a")  # a whole bundle: it loads and classifies
    assert bundle.familiarity is not None and bundle.name == "lab-a"
    again = ["classify", str(lab), "--model", str(dest / "lab-a"), "--mode", "cell", "--out", str(tmp_path / "r.csv")]
    assert main([*again, "--quiet"]) == EXIT_OK
    assert set(pd.read_csv(tmp_path / "r.csv", encoding="utf-8-sig")["model"]) == {"lab-a"}
    # yawbcc models says where it comes from.
    capsys.readouterr()
    monkeypatch.setenv("YAWBCC_MODELS", str(dest))
    assert main(["models"]) == EXIT_OK
    listing = capsys.readouterr().out
    assert f"  adapted:     from tiny-adaptable for lab-a on {card.extra['adaptation']['date'][:10]}, 34 cells" in listing
    # The same name again is refused before any work.
    assert main(args) == EXIT_UNUSABLE and "exists already; choose another name" in capsys.readouterr().err


def test_unreadable_rows_and_unknown_labels_are_named_and_too_few_cells_refused(pbc, adaptable_bundle, tmp_path, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    good = [(str(p), "NEUTROPHIL", "yes") for p in pbc_images(pbc, "NEUTROPHIL", 10)]
    good += [(str(p), "LYMPHOCYTE", "yes") for p in pbc_images(pbc, "LYMPHOCYTE", 4)]
    rows = [
        *good,  # rows 2-15
        (str(tmp_path / "missing.jpg"), "MONOCYTE", "yes"),  # row 16
        (str(text), "MONOCYTE", "yes"),  # row 17
        (str(pbc_images(pbc, "MONOCYTE", 1)[0]), "Blast", "yes"),  # row 18
        (str(pbc_images(pbc, "MONOCYTE", 1)[0]), "ARTEFACT", "yes"),  # row 19: not a cell, quietly left out
        (str(pbc_images(pbc, "MONOCYTE", 1)[0]), "FOO", "no"),  # row 20: not reviewed, not read
    ]
    csv_path = write_corrections(tmp_path / "cells.csv", rows)
    args = ["adapt", "--model", str(adaptable_bundle), "--corrections", str(csv_path), "--name", "x"]
    args += ["--dest", str(tmp_path / "m")]
    assert main(args) == EXIT_UNUSABLE
    out, err = capsys.readouterr()
    assert out == ""
    assert f"yawbcc adapt: {csv_path}: row 16: {tmp_path / 'missing.jpg'}: " in err
    assert f"yawbcc adapt: {csv_path}: row 17: {text}: " in err
    assert f"yawbcc adapt: {csv_path}: row 18: unknown label 'Blast' (expected one of BASOPHIL," in err
    assert "row 19" not in err and "row 20" not in err
    assert (
        "yawbcc adapt: only 10 reviewed cells in classes with at least 5 cells; adapting needs at least 30 "
        "(cells per class: NEUTROPHIL 10, LYMPHOCYTE 4 (under 5)). Review more cells first." in err
    )
    assert "loading the model" not in err and not (tmp_path / "m").exists()  # refused before the model loads

    # python -m training adapt says the same as JSON events on stdout.
    from training.__main__ import main as training_main

    assert training_main(args) == 2
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    skipped = [e["message"] for e in events if e["event"] == "skipped"]
    assert len(skipped) == 3 and skipped[2].startswith(f"{csv_path}: row 18: unknown label")
    assert events[-1]["event"] == "error" and events[-1]["message"].startswith("only 10 reviewed cells")
    assert {e["stage"] for e in events if e["event"] == "progress"} == {"reading"}


def test_bad_input_exits_2_with_one_clear_message(pbc, adaptable_bundle, tiny_bundle, tmp_path, capsys):
    def adapt(*extra: str) -> str:
        assert main(["adapt", "--name", "x", "--dest", str(tmp_path / "m"), *extra]) == EXIT_UNUSABLE
        out, err = capsys.readouterr()
        assert out == ""
        return err

    missing = tmp_path / "nowhere.csv"
    err = adapt("--model", str(adaptable_bundle), "--corrections", str(missing))
    assert f"yawbcc adapt: {missing}: no such corrections file" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "the corrections file is empty" in adapt("--model", str(adaptable_bundle), "--corrections", str(empty))
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("file,class\na.jpg,NEUTROPHIL\n")
    assert "needs the columns path and final_label" in adapt("--model", str(adaptable_bundle), "--corrections", str(wrong))
    ok = write_corrections(tmp_path / "ok.csv", [(str(p), "NEUTROPHIL", "yes") for p in pbc_images(pbc, "NEUTROPHIL", 2)])
    err = adapt("--model", str(tiny_bundle), "--corrections", str(ok))
    assert "this bundle has no replay.npz" in err and "cannot be adapted" in err
    err = adapt("--model", str(adaptable_bundle), "--corrections", str(ok), "--um-per-px", "0.1")
    assert "--um-per-px goes with --images" in err  # corrections carry each image's pixel size
    assert "not found" in adapt("--model", "no-such-model", "--corrections", str(ok))
    assert "cannot be a bundle name" in adapt("--model", str(adaptable_bundle), "--corrections", str(ok), "--name", "../up")
    assert not (tmp_path / "m").exists()


def test_an_interrupted_run_writes_nothing(pbc, adaptable_bundle, tmp_path, capsys, monkeypatch):
    """Ctrl-C or SIGTERM while the bundle is being written: the partial folder goes, no bundle appears."""
    import training.adapt

    def interrupted(*_args, **_kwargs):
        assert (tmp_path / "m" / ".lab-x.partial" / "model.keras").is_file()  # half written
        raise KeyboardInterrupt

    monkeypatch.setattr(training.adapt, "_adapt_familiarity", interrupted)
    rows = [(str(p), g, "yes") for g in CLASSES[:5] for p in pbc_images(pbc, g, 6)]
    csv_path = write_corrections(tmp_path / "cells.csv", rows)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / ".lab-x.partial").mkdir()  # a stale one from a killed run is replaced
    (tmp_path / "m" / ".lab-x.partial" / "junk").write_text("old")
    args = ["adapt", "--model", str(adaptable_bundle), "--corrections", str(csv_path), "--name", "lab-x"]
    assert main([*args, "--dest", str(tmp_path / "m"), "--json"]) == 130
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[-1]) == {"event": "cancelled"} and "cancelled; no bundle was written" in err
    assert list((tmp_path / "m").iterdir()) == []


def test_the_installed_build_says_adapting_needs_the_source_install(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setitem(sys.modules, "training.adapt_command", None)  # as in the build: no training module
    args = ["adapt", "--model", "x", "--corrections", str(tmp_path / "c.csv"), "--name", "y"]
    assert main(args) == EXIT_UNUSABLE
    assert "adapting a model is not part of this installation; use a source install" in capsys.readouterr().err


def test_replay_sample_makes_a_pbc_only_bundle_adaptable(pbc, tiny_bundle, tmp_path):
    """``python -m training replay``: a PBC-only bundle gets its replay sample (what adapt
    needs) from the train side of its split, by class."""
    from training.__main__ import main as training
    from yawbcc_desktop.core.adaptation import REPLAY_FILE

    folder = tmp_path / "pbc-only"
    shutil.copytree(tiny_bundle, folder)
    (folder / REPLAY_FILE).unlink(missing_ok=True)
    rows = [(str(p), p.name, g, "train") for g in CLASSES for p in pbc_images(pbc, g, 4)]
    rows += [(str(p), p.name, g, "test") for g in CLASSES for p in pbc_images(pbc, g, 2, start=80)]
    split = tmp_path / "split.csv"
    table = pd.DataFrame(rows, columns=["path", "image", "group", "split"])
    table.assign(label="", sha1=range(len(rows))).to_csv(split, index=False)
    assert training(["replay", "--model", str(folder), "--split", str(split), "--per-class", "3"]) == 0
    with np.load(folder / REPLAY_FILE) as replay:
        width = ModelBundle(folder).features(np.zeros((1, 64, 64, 3), np.uint8)).shape[1]
        assert replay["features"].shape == (3 * len(CLASSES), width)
        assert set(replay["domains"]) == {"pbc"} and np.bincount(replay["labels"]).max() == 3
    said = read_card(folder).extra["replay"]
    assert said["cells"] == 3 * len(CLASSES) and said["command"].startswith("python -m training replay")


def test_temperature_is_kept_when_the_lab_cells_show_no_mistakes(adaptable_bundle):
    """Out-of-fold predictions without errors put the likelihood's best at the sharpest
    temperature allowed (every later cell would look certain): the base one is kept."""
    from training.adapt import Corrections, adapt

    bundle = ModelBundle(adaptable_bundle)
    order = bundle.card.class_order
    width = bundle.features(np.zeros((1, 64, 64, 3), np.uint8)).shape[1]
    labels = [g for g in order[:4] for _ in range(12)]
    rows = pd.DataFrame({"path": [f"cell{i}.jpg" for i in range(len(labels))], "label": labels, "mode": "cell"})
    rng = np.random.default_rng(0)
    feats = rng.normal(0, 0.01, (len(labels), width))
    for i, g in enumerate(labels):
        feats[i, order.index(g)] += 50.0  # one feature per class: no fold can get a cell wrong
    result = adapt(bundle, Corrections(rows, [], "", []), log=lambda _m: None, features=feats)
    assert result.report["accuracy_after_cross_validated"] == 1.0
    assert result.temperature == bundle.card.temperature
    assert "0 out-of-fold errors" in result.report["temperature_how"]


def bccd_fields(bccd: Path, count: int) -> list[Path]:
    return sorted((bccd / "JPEGImages").glob("BloodImage_*.jpg"))[:count]


def test_adapting_to_a_labs_images_changes_only_the_batch_norm_statistics(bccd, adaptable_bundle, tmp_path, capsys):
    import keras

    from training.domain_fit import batchnorm_layers

    lab = tmp_path / "lab"
    lab.mkdir()
    for src in bccd_fields(bccd, 24):
        shutil.copy(src, lab / src.name)
    (lab / "BloodImage_broken.jpg").write_text("not a picture")  # named and left out; the rest goes on
    dest = tmp_path / "models"
    args = ["adapt", "--model", str(adaptable_bundle), "--images", str(lab), "--name", "lab-img", "--dest", str(dest)]
    code = main([*args, "--um-per-px", "0.075"])  # the lab's pixel size, as its Preferences set it
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert f"yawbcc adapt: {lab / 'BloodImage_broken.jpg'}:" in err
    assert out.startswith("Adapted tiny-adaptable to lab-img's images as lab-img: batch-norm statistics measured on ")
    assert "of 24 images, 50 % the lab's." in out and "stay flagged unfamiliar" in out

    folder = dest / "lab-img"
    card = read_card(folder)
    assert card.extra["adapted_from"] == "tiny-adaptable"
    assert card.extra["adaptation"]["source"] == "images" and card.extra["adaptation"]["share"] == 0.5
    assert card.extra["adaptation"]["cells"] >= 50 and card.extra["adaptation"]["images"] == 24
    assert card.extra["adaptation"]["lab_um_per_px"] == 0.075
    assert card.metrics == {}  # the base's test figures are not this bundle's
    assert (folder / "familiarity.npz").is_file() and not (folder / "replay.npz").exists()

    base = keras.saving.load_model(adaptable_bundle / "model.keras", compile=False)
    new = ModelBundle(folder).model
    base_bns = {id(b) for b in batchnorm_layers(base)}
    moved = 0
    for old_layer, new_layer in zip(_leaves(base), _leaves(new)):
        for w_old, w_new, var in zip(old_layer.get_weights(), new_layer.get_weights(), old_layer.weights):
            if id(old_layer) in base_bns and ("moving" in var.path):
                moved += not np.allclose(w_old, w_new)
            else:
                np.testing.assert_array_equal(w_old, w_new)  # nothing trained
    assert moved >= len(base_bns)  # each layer's mean and variance, most of them at least
    # The adapted bundle classifies (a lab's field, found and framed as the application does).
    field, csv = lab / bccd_fields(bccd, 1)[0].name, tmp_path / "cells.csv"
    assert main(["classify", str(field), "--model", str(folder), "--out", str(csv), "--quiet"]) == EXIT_OK
    rows = pd.read_csv(csv, encoding="utf-8-sig")
    assert len(rows) >= 1 and set(rows["model"]) == {"lab-img"}


def _leaves(model):
    from training.domain_fit import _all_layers

    return [layer for layer in _all_layers(model) if not hasattr(layer, "layers")]


def test_the_lab_statistics_are_the_chunk_mean_mixed_with_the_base(bccd, adaptable_bundle):
    import keras

    from training.adapt_images import lab_inputs, measure_statistics
    from training.domain_fit import batchnorm_layers

    bundle = ModelBundle(adaptable_bundle)
    inputs, images = lab_inputs(bundle, bccd_fields(bccd, 6))
    assert images == 6 and len(inputs) >= 6

    def stats(share: float) -> list[np.ndarray]:
        model = keras.saving.load_model(adaptable_bundle / "model.keras", compile=False)
        if share:
            measure_statistics(model, inputs, share, chunk=len(inputs))
        return [b.moving_mean.numpy().copy() for b in batchnorm_layers(model)]

    base, lab, half = stats(0.0), stats(1.0), stats(0.5)
    for b, m, h in zip(base, lab, half):
        np.testing.assert_allclose(h, 0.5 * b + 0.5 * m, rtol=1e-4, atol=1e-5)
    # What a layer keeps is the mean over the chunks of each chunk's mean and variance of its input.
    x = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3)
    small = keras.Model(x, keras.layers.BatchNormalization()(conv(x)))
    rgb = inputs[:, :8, :8].astype(np.float32)
    measure_statistics(small, rgb, 1.0, chunk=len(rgb) // 2)
    halves = [np.asarray(conv(rgb[: len(rgb) // 2])), np.asarray(conv(rgb[len(rgb) // 2 : 2 * (len(rgb) // 2)]))]
    bn = batchnorm_layers(small)[0]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([h.mean(axis=(0, 1, 2)) for h in halves], axis=0), rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([h.var(axis=(0, 1, 2)) for h in halves], axis=0), rtol=1e-3)
    with pytest.raises(ValueError, match="share"):
        measure_statistics(small, rgb, 0.0)


def test_too_few_cells_in_the_lab_images_exit_2_and_write_nothing(bccd, adaptable_bundle, tmp_path, capsys):
    dest = tmp_path / "models"
    fields = [str(p) for p in bccd_fields(bccd, 3)]
    code = main(["adapt", "--model", str(adaptable_bundle), "--images", *fields, "--name", "few", "--dest", str(dest)])
    _out, err = capsys.readouterr()
    assert code == EXIT_UNUSABLE
    assert "cells found in 3 images; measuring a lab's statistics needs at least 50 cells" in err
    assert not (dest / "few").exists() and not (dest / ".few.partial").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["adapt", "--model", str(adaptable_bundle), "--images", str(empty), "--name", "few", "--dest", str(dest)]) == 2
    assert f"no image found in {empty}" in capsys.readouterr()[1]
    assert main(["adapt", "--model", str(adaptable_bundle), "--images", *fields, "--name", "few", "--um-per-px", "5"]) == 2
    assert "--um-per-px: a pixel size of 5 µm is outside" in capsys.readouterr()[1]


def test_at_most_the_cap_of_the_lab_cells_is_kept_a_uniform_draw(bccd, adaptable_bundle):
    from training.adapt_images import lab_inputs

    bundle = ModelBundle(adaptable_bundle)
    fields = bccd_fields(bccd, 5)
    every, images = lab_inputs(bundle, fields)
    capped, _ = lab_inputs(bundle, fields, max_cells=4)
    assert images == 5 and len(every) > 4 and len(capped) == 4
    # Each kept cell is one of the cells found, none twice.
    found = {cell.tobytes() for cell in every}
    assert {cell.tobytes() for cell in capped} <= found and len({cell.tobytes() for cell in capped}) == 4


def test_adapt_learns_from_the_unreviewed_rows_and_names_the_unreadable_ones(
    pbc, adaptable_bundle, tmp_path, capsys, monkeypatch
):
    # A session of 6 classes x 6 cells: 5 of each class reviewed, the sixth left for the model.
    _lab, session_file = classified_lab(pbc, adaptable_bundle, tmp_path, start=80)
    with ReviewSession.open(session_file) as s:
        cells = s.cells()
        group = {c.id: Path(c.path).name.split("_")[0].upper() for c in cells}
        reviewed = [c for g in CLASSES for c in [c for c in cells if group[c.id] == g][:5]]
        for c in reviewed:
            s.set_label([c.id], group[c.id], "Ann")
        left = [c for c in cells if c not in reviewed]
    cells_csv = tmp_path / "cells.csv"
    assert main(["export", str(session_file), "--cells", str(cells_csv)]) == EXIT_OK
    Path(left[0].path).unlink()  # an unreviewed image deleted since the export
    frame = pd.read_csv(cells_csv, encoding="utf-8-sig")
    gone_row = int(frame.index[frame["path"] == left[0].path][0]) + 2
    capsys.readouterr()

    dest = tmp_path / "models"
    args = ["adapt", "--model", str(adaptable_bundle), "--corrections", str(cells_csv), "--dest", str(dest)]
    assert main([*args, "--name", "semi"]) == EXIT_OK
    out, err = capsys.readouterr()
    assert f"yawbcc adapt: {cells_csv}: rows {gone_row}: {left[0].path}: " in err and "(unreviewed cells: left out)" in err
    assert "framing the unreviewed cells (the lab's unlabelled cells) 6/6" in err
    assert "Unreviewed cells of the lab: 5;" in out and "30 cells" in out
    card = read_card(dest / "semi")
    assert card.extra["adaptation"]["unreviewed_cells"] == 5 and card.extra["adaptation"]["cells"] == 30
    rule = card.extra["lab_review"]
    assert rule["lab"] == "semi" and rule["min_confidence"] == 0.0 and rule["changed_calls"] is True
    assert "when adapting changed its class" in out
    # The head before adapting is kept beside the new one: the base bundle's own.
    kept = np.load(dest / "semi" / BASE_HEAD_FILE)
    base_kernel, base_bias = ModelBundle(adaptable_bundle).model.get_layer("logits").get_weights()
    assert np.array_equal(kept["kernel"], base_kernel) and np.array_equal(kept["bias"], base_bias)
    # 35 cells are too few a session for the neighbour check; with a lower floor it is kept.
    assert rule["session_neighbours"] is False and not (dest / "semi" / LAB_CELLS_FILE).exists()
    monkeypatch.setattr("training.adapt.MIN_NEIGHBOUR_CELLS", 30)
    assert main([*args, "--name", "semi-neighbours"]) == EXIT_OK
    out, _err = capsys.readouterr()
    assert "or when not all its nearest cells of this session (35 kept in the bundle)" in out
    adapted = ModelBundle(dest / "semi-neighbours")
    assert adaptation_text(adapted.card.extra).endswith(
        "30 cells; checks each cell against 35 cells of that session; queues the cells whose class adapting changed"
    )
    assert adapted.lab_rule is not None and adapted.lab_rule.session_neighbours and adapted.lab_cells is not None
    feats, classes = adapted.lab_cells
    assert feats.shape[0] == len(classes) == 35 and np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-2)
    # The reviewed cells are kept with the reviewer's class.
    assert sorted(GROUPS[i] for i in classes[:30]) == sorted(group[c.id] for c in reviewed)
    # Exported as a bundle, it keeps them too.
    from training.__main__ import main as training

    assert training(["export", str(dest / "semi-neighbours"), "--name", "exported", "--dest", str(tmp_path / "out")]) == 0
    assert ModelBundle(tmp_path / "out" / "exported").lab_cells is not None
    capsys.readouterr()
    # A base with the per-cell check: the adapted bundle runs the lab's check instead, and its
    # card does not claim the base's bar.
    checked = tmp_path / "tiny-checked"
    shutil.copytree(adaptable_bundle, checked)
    familiarity = Familiarity.load(checked / FAMILIARITY_FILE)
    familiarity.neighbour_threshold = 0.5
    familiarity.save(checked / FAMILIARITY_FILE)
    card = read_card(checked)
    card.extra["neighbour_check"] = {"threshold": 0.5}
    write_card(checked, card)
    assert ModelBundle(checked).cell_check is not None
    checked_args = ["adapt", "--model", str(checked), "--corrections", str(cells_csv), "--dest", str(dest)]
    assert main([*checked_args, "--name", "from-checked"]) == EXIT_OK
    capsys.readouterr()
    adapted = ModelBundle(dest / "from-checked")
    assert adapted.cell_check is None and adapted.lab_cells is not None and "neighbour_check" not in adapted.card.extra
    # The reviewed rows alone when asked: the unreviewed ones are not read at all.
    assert main([*args, "--name", "supervised", "--reviewed-only"]) == EXIT_OK
    out, err = capsys.readouterr()
    assert "Unreviewed cells" not in out and "unreviewed cells: left out" not in err
    assert read_card(dest / "supervised").extra["adaptation"]["unreviewed_cells"] == 0
