"""Start-up, command line, screenshots, model errors, recent files and drag-and-drop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage

from yawbcc_desktop.core.vocabulary import QUEUED
from yawbcc_desktop.gui.app import build_parser, main
from yawbcc_desktop.gui.settings import config_dir
from yawbcc_desktop.gui.widgets.model_chooser import ModelChooser

REPO = Path(__file__).resolve().parents[2]


def test_command_line():
    args = build_parser().parse_args(["a.jpg", "folder", "--model", "lite0-fast", "--mode", "smear"])
    assert args.paths == ["a.jpg", "folder"] and args.model == "lite0-fast" and args.mode == "smear"
    assert build_parser().parse_args(["--screenshot", "out.png", "x"]).screenshot == "out.png"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--mode", "sideways"])


def test_window_opens_without_tensorflow_or_scikit_image():
    """The GUI thread never imports TensorFlow: building and showing the window loads neither
    it nor the segmentation stack (the worker thread does, later)."""
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from yawbcc_desktop.gui.app import application\n"
        "from yawbcc_desktop.gui.main_window import MainWindow\n"
        "from yawbcc_desktop.gui.settings import AppSettings\n"
        "app = application()\n"
        "w = MainWindow(AppSettings(remember=False), attended=False)\n"
        "w.show(); app.processEvents()\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'skimage', 'scipy.ndimage') if m in sys.modules]\n"
        "print(heavy, round(time.perf_counter() - t, 2))\n"
        "w.close()\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    heavy, seconds = out.stdout.strip().rsplit(" ", 1)
    assert heavy == "[]", out.stdout
    print(f"window built and shown in {seconds} s")


def test_missing_model_is_named_with_what_to_do(bare_window):
    assert not bare_window.controller.use_model("no-such-model")
    title, message = bare_window.notifier.history[-1]
    assert title == "Model not available"
    assert "no-such-model" in message and "available:" in message
    assert bare_window.model_button.text() == "No usable model"


def test_broken_bundle_is_reported_by_the_worker(bare_window, qtbot, tiny_bundle, tmp_path, cell_folder):
    broken = tmp_path / "broken-bundle"
    broken.mkdir()
    (broken / "model.json").write_text((tiny_bundle / "model.json").read_text())
    (broken / "model.keras").write_bytes(b"this is not a keras archive")
    with qtbot.waitSignal(bare_window.controller.model_failed, timeout=120_000):
        bare_window.controller.use_model(str(broken))
    title, message = bare_window.notifier.history[-1]
    assert title == "Model not available" and str(broken) in message
    # Images opened meanwhile wait in the queue instead of failing.
    bare_window.open_paths([str(cell_folder)])
    assert bare_window.controller.store.status_counts() == {QUEUED: 16}
    assert "waiting for a usable model" in bare_window.progress.detail.text()


def test_model_chooser_shows_the_model_cards(qtbot, tiny_bundle, tmp_path, monkeypatch):
    bad = tmp_path / "models" / "half-copied"
    bad.mkdir(parents=True)
    (bad / "model.json").write_text("{not json")
    monkeypatch.setenv("YAWBCC_MODELS", os.pathsep.join([str(tiny_bundle.parent), str(bad.parent)]))
    chooser = ModelChooser(str(tiny_bundle))
    qtbot.addWidget(chooser)
    names = [chooser.table.item(r, 0).text() for r in range(chooser.table.rowCount())]
    assert "tiny-test" in names and "half-copied" in names
    row = names.index("half-copied")
    chooser.table.selectRow(row)
    assert not chooser.use.isEnabled() and "cannot be used" in chooser.card_text.text()
    row = names.index("tiny-test")
    chooser.table.selectRow(row)
    assert chooser.use.isEnabled() and "efficientnet-lite0" in chooser.card_text.text()
    assert chooser.table.item(row, 2).text() == "64 px"
    chooser.use.click()
    assert chooser.chosen == str(tiny_bundle)


def test_recent_files_and_drag_and_drop(bare_window, cell_folder, pbc):
    image = next(p for p in sorted((pbc / "basophil").glob("*.jpg")))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image)), QUrl.fromLocalFile(str(cell_folder))])
    no_keys = Qt.KeyboardModifier.NoModifier
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, no_keys)
    bare_window.dropEvent(drop)
    assert bare_window.controller.store.image_count == 17
    recent = bare_window.settings.recent_files()
    assert recent[:2] == [str(image.resolve()), str(cell_folder.resolve())]
    bare_window.dialogs.fill_recent_menu(bare_window.recent_menu)
    texts = [a.text() for a in bare_window.recent_menu.actions()]
    assert image.name in texts and cell_folder.name in texts
    # Opening the same files again adds nothing twice.
    assert bare_window.open_paths([str(cell_folder)]) == 0


def test_settings_live_in_the_user_config_folder(monkeypatch):
    monkeypatch.delenv("YAWBCC_CONFIG_DIR")
    folder = config_dir()
    assert folder.name == "yawbcc-desktop" and REPO not in folder.parents  # never the install folder


def test_screenshot_flag_writes_the_window(tiny_bundle, cell_folder, tmp_path):
    out = tmp_path / "shots" / "cells.png"
    files = sorted(str(p) for p in cell_folder.rglob("*.jpg"))[:6]
    status = main(["--screenshot", str(out), "--model", str(tiny_bundle), "--mode", "cell", *files])
    assert status == 0 and out.is_file()
    picture = QImage(str(out))
    assert (picture.width(), picture.height()) == (1600, 1000)
    assert not list(out.parent.glob("*.partial*"))


# PySide6 6.12's bug, simulated on any version: each void call drops one reference to None.
_LEAKY_PYSIDE = (
    "import ctypes\n"
    "import PySide6.QtCore as core\n"
    "class Leaky(core.QObject):\n"
    "    def setObjectName(self, name):\n"
    "        super().setObjectName(name)\n"
    "        ctypes.pythonapi.Py_DecRef(ctypes.py_object(None))\n"
    "core.QObject = Leaky\n"
)
_LONG_SESSION = "probe = core.QObject()\nfor _ in range(300_000):\n    probe.setObjectName('')\nprint('alive')\n"


def test_long_sessions_survive_pysides_none_reference_leak():
    """PySide6 6.12 on Python 3.11 drops a reference to None per void call; without the guard
    in yawbcc_desktop.gui a long session aborts the interpreter ("deallocating None").  The
    pinned PySide6 has no such bug, so the leak is simulated: it kills a bare interpreter, and
    importing yawbcc_desktop.gui (which installs the guard) keeps it alive."""
    if sys.version_info >= (3, 12):
        pytest.skip("None is immortal from Python 3.12: the bug cannot abort")

    def run(guard: str):
        code = _LEAKY_PYSIDE + guard + _LONG_SESSION
        return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)

    bare = run("")
    assert bare.returncode != 0 and "alive" not in bare.stdout, "the simulated leak no longer aborts: the test proves nothing"
    guarded = run("import yawbcc_desktop.gui\n")
    assert guarded.returncode == 0 and guarded.stdout.strip() == "alive", guarded.stderr[-500:]


def test_segmenter_from_preferences_and_command_line(bare_window, tmp_path):
    from yawbcc_desktop.core.preferences import load_preferences
    from yawbcc_desktop.gui.widgets.preferences_dialog import PreferencesDialog

    w = bare_window
    assert build_parser().parse_args(["--segmenter", "unet"]).segmenter == "unet"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--segmenter", "scissors"])
    dialog = PreferencesDialog(w.review.prefs, w)
    assert dialog.segmenter.currentData() == w.review.prefs.segmenter == w.controller.settings.segmenter == "auto"
    dialog.segmenter.setCurrentIndex(dialog.segmenter.findData("classic"))
    w.review.set_preferences(dialog.preferences())
    assert w.controller.settings.segmenter == "classic"
    assert load_preferences(w.review._prefs_path).segmenter == "classic"
    # What the analysis is asked for next is what the worker hands the segmentation.
    image = tmp_path / "cell.png"
    QImage(40, 40, QImage.Format.Format_RGB888).save(str(image))
    assert w.controller.worker.settings.segmenter == "auto"
    w.controller.open_paths([image])
    assert w.controller.worker.settings.segmenter == "classic"
    dialog.restore_defaults()
    assert dialog.preferences().segmenter == "auto"


def test_lab_pixel_size_from_preferences_measured_on_the_session(bare_window, tmp_path):
    """Preferences › Pixel size: measured on the session's images (the median of those measured
    on red cells, 20 at least), saved, and handed to the segmentation of the next images."""
    from yawbcc_desktop.core.preferences import load_preferences
    from yawbcc_desktop.core.scale import FROM_LAB, FROM_RED_CELLS, FROM_WHITE_CELL
    from yawbcc_desktop.gui.widgets.preferences_dialog import PreferencesDialog

    w = bare_window
    few = [(0.09 + 0.001 * i, FROM_RED_CELLS) for i in range(19)] + [(0.2, FROM_WHITE_CELL), (0.0965, FROM_LAB)]
    dialog = PreferencesDialog(w.review.prefs, w, few)
    assert not dialog.lab_scale.isChecked() and not dialog.um_per_px.isEnabled()
    dialog.lab_scale.setChecked(True)  # no value of the lab's yet, none measurable: said, not silently PBC's
    assert "is a CellaVision analyser's: type your camera's calibrated value" in dialog.measured.text()
    dialog.lab_scale.setChecked(False)
    dialog.measure.click()
    assert "19 of the session's images" in dialog.measured.text() and not dialog.lab_scale.isChecked()
    assert dialog.preferences().lab_um_per_px is None
    dialog = PreferencesDialog(w.review.prefs, w, [*few, (0.2, FROM_RED_CELLS)])
    dialog.lab_scale.setChecked(True)  # turned on with enough images measured: the median is taken
    assert dialog.lab_scale.isChecked() and dialog.um_per_px.isEnabled()
    assert dialog.measured.text().startswith("Median of 20 images measured on their red cells: 0.0995")
    assert dialog.preferences().lab_um_per_px == pytest.approx(0.0995)  # the median of the 20 red-cell images
    w.review.set_preferences(dialog.preferences())
    assert load_preferences(w.review._prefs_path).lab_um_per_px == pytest.approx(0.0995)
    image = tmp_path / "cell.png"
    QImage(40, 40, QImage.Format.Format_RGB888).save(str(image))
    w.controller.open_paths([image])
    assert w.controller.worker.settings.lab_um_per_px == pytest.approx(0.0995)
    assert w.controller.worker.settings.segmenter == "auto"  # one setting changed, the other kept
    dialog.restore_defaults()
    assert dialog.preferences().lab_um_per_px is None
