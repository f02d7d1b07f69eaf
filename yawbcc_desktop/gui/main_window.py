"""The review window: assembles the widgets, menus and toolbar, and wires their signals.

Layout: images on the left, the whole image over the selected cell's detail in the centre,
the cells (gallery or table, one filter) on the right.  Logic lives in the controller
(``analysis.py``) and the widgets; this file only connects them.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.imageio import IMAGE_SUFFIXES
from .analysis import MODES, AnalysisController
from .cell_store import CANCELLED
from .icons import icon
from .messages import Notifier
from .selection import CellSelection
from .settings import AppSettings
from .throttle import Throttle
from .widgets.analysis_progress import AnalysisProgress
from .widgets.cell_detail import CellDetail
from .widgets.cell_filter_bar import CellFilterBar
from .widgets.cell_gallery import CellGallery
from .widgets.cell_table import CellTable
from .widgets.image_list import ImageList
from .widgets.image_viewer import ImageViewer
from .widgets.model_chooser import ModelChooser, describe

MODE_NAMES = {"auto": "Auto (per image)", "cell": "Single-cell images", "smear": "Smear fields"}
IMAGE_FILTER = "Images ({})".format(" ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)))


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings, attended: bool = True, mode: str | None = None):
        super().__init__()
        self.settings = settings
        self.setWindowTitle("YAWBCC Desktop")
        self.setWindowIcon(icon("yawbcc"))
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)
        mode = mode or str(settings.value("mode", "auto"))
        self.controller = controller = AnalysisController(mode if mode in MODES else "auto", self)
        self.selection = CellSelection(controller.store, self)
        self.notifier = Notifier(self, attended)

        # -- widgets
        self.viewer = ImageViewer(controller.store, controller.loader)
        self.detail = CellDetail(controller.store, controller.loader)
        self.image_list = ImageList(controller.store, controller.images)
        self.filter_bar = CellFilterBar(controller.cell_filter)
        self.gallery = CellGallery(controller.cell_filter)
        self.table = CellTable(controller.cell_filter)
        self.progress = AnalysisProgress()

        centre = QSplitter(Qt.Orientation.Vertical)
        centre.setObjectName("CentreSplitter")
        centre.setChildrenCollapsible(False)
        centre.addWidget(self.viewer)
        centre.addWidget(self.detail)
        centre.setStretchFactor(0, 3)
        centre.setStretchFactor(1, 2)
        centre.setSizes([560, 360])
        self.centre = centre
        self.setCentralWidget(centre)

        self.cell_tabs = QTabWidget()
        self.cell_tabs.setDocumentMode(True)
        self.cell_tabs.addTab(self.gallery, "Gallery")
        self.cell_tabs.addTab(self.table, "Table")
        cells_panel = QWidget()
        cells_layout = QVBoxLayout(cells_panel)
        cells_layout.setContentsMargins(0, 0, 0, 0)
        cells_layout.setSpacing(0)
        cells_layout.addWidget(self.filter_bar)
        cells_layout.addWidget(self.cell_tabs, 1)
        self.images_dock = self._dock("Images", self.image_list, Qt.DockWidgetArea.LeftDockWidgetArea, 270)
        self.cells_dock = self._dock("Cells", cells_panel, Qt.DockWidgetArea.RightDockWidgetArea, 500)

        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._connect()
        self._restore_layout()
        self._update_actions()

    # ----------------------------------------------------------------- building
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea, width: int) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{title}Dock")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        self.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
        return dock

    def _action(self, text: str, slot, shortcut=None, icon_name: str = "", tip: str = "") -> QAction:
        action = QAction(icon(icon_name) if icon_name else QIcon(), text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(f"{tip} ({action.shortcut().toString()})" if shortcut else tip)
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        self.open_images_action = self._action(
            "Open &images…", self.open_images_dialog, K.Open, "open-images", "Open image files"
        )
        self.open_folder_action = self._action(
            "Open &folder…",
            self.open_folder_dialog,
            "Ctrl+Shift+O",
            "open-folder",
            "Open every image in a folder and its subfolders",
        )
        self.close_all_action = self._action("&Close all images", self.close_all, "Ctrl+Shift+W")
        self.screenshot_action = self._action(
            "Save &screenshot…", self.save_screenshot_dialog, "F12", "screenshot", "Save a picture of the window"
        )
        self.quit_action = self._action("&Quit", self.close, K.Quit)
        self.analyse_action = self._action(
            "&Analyse remaining", self.controller.analyse_remaining, "F5", "analyse", "Analyse the images a cancel left"
        )
        self.reanalyse_action = self._action("&Re-analyse all images", self.reanalyse_all, "Ctrl+Shift+R")
        self.cancel_action = self._action("&Cancel analysis", self.controller.cancel, "Esc", "cancel", "Cancel the analysis")
        self.model_action = self._action(
            "Choose &model…", self.choose_model, "Ctrl+M", "model", "Choose the model that classifies the cells"
        )
        self.zoom_in_action = self._action("Zoom &in", self.viewer.zoom_in, K.ZoomIn, "zoom-in", "Zoom in")
        self.zoom_out_action = self._action("Zoom &out", self.viewer.zoom_out, K.ZoomOut, "zoom-out", "Zoom out")
        self.fit_action = self._action("&Fit image", self.viewer.fit, "Ctrl+0", "zoom-fit", "Fit the image to the view")
        self.actual_action = self._action(
            "&Actual pixels", self.viewer.zoom_actual, "Ctrl+1", "zoom-actual", "One image pixel per screen pixel"
        )
        self.labels_action = self._action("Class &labels on boxes", self.viewer.set_labels_visible, "Ctrl+L", "labels")
        self.labels_action.setCheckable(True)
        self.labels_action.setChecked(True)
        self.labels_action.setToolTip("Show class and confidence above each box (Ctrl+L)")
        self.mode_group = QActionGroup(self)
        self.mode_actions: dict[str, QAction] = {}
        for mode in MODES:
            action = QAction(MODE_NAMES[mode], self, checkable=True)
            action.setChecked(mode == self.controller.mode)
            action.triggered.connect(lambda _checked, m=mode: self.set_mode(m))
            self.mode_group.addAction(action)
            self.mode_actions[mode] = action
        self.about_action = self._action("&About YAWBCC Desktop", self.about)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.open_images_action)
        file_menu.addAction(self.open_folder_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(self.close_all_action)
        file_menu.addAction(self.screenshot_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        analysis = bar.addMenu("&Analysis")
        analysis.addAction(self.analyse_action)
        analysis.addAction(self.reanalyse_action)
        analysis.addAction(self.cancel_action)
        analysis.addSeparator()
        mode_menu = analysis.addMenu("Image &type")
        for action in self.mode_actions.values():
            mode_menu.addAction(action)
        analysis.addAction(self.model_action)
        view = bar.addMenu("&View")
        for action in self._viewer_actions():
            view.addAction(action)
        view.addSeparator()
        view.addAction(self.images_dock.toggleViewAction())
        view.addAction(self.cells_dock.toggleViewAction())
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.about_action)

    def _viewer_actions(self) -> tuple:
        """Zoom and label actions, shown in the View menu and on the toolbar."""
        return (self.zoom_in_action, self.zoom_out_action, self.fit_action, self.actual_action, self.labels_action)

    def _build_toolbar(self) -> None:
        tools = self.addToolBar("Main")
        tools.setObjectName("MainToolbar")
        tools.setMovable(False)
        tools.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tools.addAction(self.open_images_action)
        tools.addAction(self.open_folder_action)
        tools.addSeparator()
        tools.addAction(self.analyse_action)
        tools.addAction(self.cancel_action)
        tools.addSeparator()
        tools.addWidget(QLabel(" Images: "))
        self.mode_box = QComboBox()
        self.mode_box.setToolTip("How new images are read: single-cell crops, whole smear fields, or decided per image")
        for mode in MODES:
            self.mode_box.addItem(MODE_NAMES[mode], mode)
        self.mode_box.setCurrentIndex(MODES.index(self.controller.mode))
        self.mode_box.currentIndexChanged.connect(lambda i: self.set_mode(MODES[i]))
        tools.addWidget(self.mode_box)
        tools.addAction(self.model_action)
        tools.addSeparator()
        for action in self._viewer_actions():
            tools.addAction(action)
            tools.widgetForAction(action).setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        tools.addSeparator()
        tools.addAction(self.screenshot_action)
        tools.widgetForAction(self.screenshot_action).setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.cell_count = QLabel("")
        self.cell_count.setObjectName("StatusField")
        self.model_button = QToolButton()
        self.model_button.setObjectName("ModelButton")
        self.model_button.setAutoRaise(True)
        self.model_button.setIcon(icon("model"))
        self.model_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.model_button.setText("No model")
        self.model_button.clicked.connect(self.choose_model)
        self.progress.cancel_requested.connect(self.controller.cancel)
        self._progress_timer = QTimer(self, singleShot=True, interval=250)
        self._progress_timer.timeout.connect(self._show_progress)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.cell_count)
        status.addPermanentWidget(self.model_button)

    def _connect(self) -> None:
        c, s = self.controller, self.selection
        c.images_opened.connect(self._images_opened)
        c.images_analysed.connect(self._images_analysed)
        c.progress_changed.connect(self._progress_changed)
        c.run_finished.connect(lambda summary: self.statusBar().showMessage(summary, 15000))
        c.model_loading.connect(self._model_loading)
        c.model_ready.connect(self._model_ready)
        c.model_failed.connect(self._model_failed)
        c.gradcam_ready.connect(self.detail.show_gradcam)
        c.gradcam_failed.connect(self.detail.gradcam_failed)
        c.problem.connect(self.notifier.error)
        self._counts_later = Throttle(self._update_counts, 250, self)
        c.cells.rowsInserted.connect(self._counts_later)
        c.cells.modelReset.connect(self._counts_later)
        s.image_changed.connect(self.viewer.show_image)
        s.image_changed.connect(self.image_list.show_image)
        s.cell_changed.connect(self.viewer.select_cell)
        s.cell_changed.connect(self.table.show_cell)
        s.cell_changed.connect(self.gallery.show_cell)
        s.cell_changed.connect(self.detail.show_cell)
        self.table.cell_selected.connect(s.select_cell)
        self.gallery.cell_selected.connect(s.select_cell)
        self.viewer.cell_clicked.connect(s.select_cell)
        self.image_list.image_selected.connect(s.select_image)
        self.detail.explain_requested.connect(self._explain)

    # ----------------------------------------------------------------- start-up
    def start(self, model: str | None = None, paths: list[str] | None = None) -> None:
        """Start the worker, load the model, open ``paths`` (after the window is shown)."""
        self.controller.start()
        # While the worker imports TensorFlow: build the chart (pyqtgraph) before it is needed.
        QTimer.singleShot(300, lambda: self.detail.chart)
        remembered = self.settings.value("model", None) if model is None else None
        if remembered and os.path.isdir(str(remembered)):
            if not self.controller.use_model(str(remembered)):
                self.controller.use_model(None)
        else:
            self.controller.use_model(model)
        if paths:
            self.open_paths(paths)

    def _restore_layout(self) -> None:
        geometry = self.settings.value("geometry")
        state = self.settings.value("window_state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 940)
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def closeEvent(self, event) -> None:
        self.settings.set_value("geometry", self.saveGeometry())
        self.settings.set_value("window_state", self.saveState())
        self.settings.set_value("mode", self.controller.mode)
        self.settings.sync()
        # The worker finishes its step (a model load cannot be interrupted): out of sight.
        self.hide()
        self.controller.shutdown()
        super().closeEvent(event)

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths: list[str]) -> int:
        missing = [p for p in paths if not os.path.exists(p)]
        for path in missing:
            self.statusBar().showMessage(f"Not found: {path}", 10000)
        present = [p for p in paths if os.path.exists(p)]
        if not present:
            return 0
        self.settings.add_recent(present)
        return self.controller.open_paths(present)

    def open_images_dialog(self) -> None:
        start = str(self.settings.value("last_folder", str(Path.home())))
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", start, f"{IMAGE_FILTER};;All files (*)")
        if files:
            self.settings.set_value("last_folder", os.path.dirname(files[0]))
            self.open_paths(files)

    def open_folder_dialog(self) -> None:
        start = str(self.settings.value("last_folder", str(Path.home())))
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", start)
        if folder:
            self.settings.set_value("last_folder", folder)
            self.open_paths([folder])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_files()
        for path in recent:
            action = self.recent_menu.addAction(
                icon("open-folder" if os.path.isdir(path) else "open-images"), os.path.basename(path) or path
            )
            action.setToolTip(path)
            action.setStatusTip(path)
            action.setEnabled(os.path.exists(path))
            action.triggered.connect(lambda _checked, p=path: self.open_paths([p]))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self.settings.clear_recent)
        else:
            self.recent_menu.addAction("No recent files").setEnabled(False)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def close_all(self) -> None:
        self.selection.clear()
        self.controller.close_all()
        self.statusBar().showMessage("Closed all images", 5000)

    # ----------------------------------------------------------------- analysis
    def set_mode(self, mode: str) -> None:
        if mode == self.controller.mode:
            return
        self.controller.mode = mode
        self.mode_actions[mode].setChecked(True)
        self.mode_box.blockSignals(True)
        self.mode_box.setCurrentIndex(MODES.index(mode))
        self.mode_box.blockSignals(False)
        self.settings.set_value("mode", mode)
        self.statusBar().showMessage(
            f"New images are read as: {MODE_NAMES[mode].lower()}. Analysis › Re-analyse applies it to open images.",
            10000,
        )

    def reanalyse_all(self) -> None:
        self.selection.clear()
        self.controller.reanalyse_all()

    def choose_model(self) -> None:
        chooser = ModelChooser(self.controller.model_folder, self)
        if chooser.exec() != ModelChooser.DialogCode.Accepted or not chooser.chosen:
            return
        folder = chooser.chosen
        done = self.controller.store.cell_count or self.controller.progress.active
        reanalyse = False
        if done and self.controller.store.image_count:
            n = self.controller.store.image_count
            box = QMessageBox(QMessageBox.Icon.Question, "Re-analyse with the new model?", "", parent=self)
            box.setText(f"Re-analyse the {n:,} open image{'s' if n != 1 else ''} with {os.path.basename(folder)}?")
            box.setInformativeText(
                "Keeping the results leaves the cells classified by the current model; new images use the new one."
            )
            again = box.addButton("Re-analyse", QMessageBox.ButtonRole.AcceptRole)
            keep = box.addButton("Keep results", QMessageBox.ButtonRole.RejectRole)
            box.addButton(QMessageBox.StandardButton.Cancel)
            box.exec()
            if box.clickedButton() not in (again, keep):
                return
            reanalyse = box.clickedButton() is again
        self.switch_model(folder, reanalyse)

    def switch_model(self, folder: str, reanalyse: bool) -> None:
        if self.controller.use_model(folder):
            self.settings.set_value("model", folder)
        if reanalyse:
            self.reanalyse_all()

    def _images_opened(self, n: int) -> None:
        if n:
            self.statusBar().showMessage(f"Opened {n:,} image{'s' if n != 1 else ''}", 5000)
        else:
            self.statusBar().showMessage("No new image files to open", 5000)
        self._update_counts()

    def _images_analysed(self, paths: list[str]) -> None:
        store, selection = self.controller.store, self.selection
        if selection.path in paths:
            self.viewer.refresh()
            entry = store.image(selection.path)
            if selection.row < 0 and entry is not None and entry.cell_rows:
                selection.select_cell(entry.cell_rows[0])
        # The first cells of a session are shown at once: the reviewer sees the analysis working.
        if selection.row < 0 and not selection.path:
            first = next((e.cell_rows[0] for e in map(store.image, paths) if e is not None and e.cell_rows), None)
            if first is not None:
                selection.select_cell(first)

    def _progress_changed(self) -> None:
        # At most a few repaints a second: each result batch would otherwise repaint the bar.
        if self.controller.progress.active and self._progress_timer.isActive():
            return
        self._show_progress()
        if self.controller.progress.active:
            self._progress_timer.start()

    def _show_progress(self) -> None:
        p = self.controller.progress
        self.progress.setVisible(p.active)
        if p.active:
            waiting = ""
            if self.controller.model_state == "loading":
                waiting = "loading the model…"
            elif self.controller.model_state == "failed":
                waiting = "waiting for a usable model"
            self.progress.show_progress(p.done, p.total, p.rate(), p.eta(), waiting)
        self._update_actions()

    def _update_actions(self) -> None:
        active = self.controller.progress.active
        self.cancel_action.setEnabled(active)
        self.analyse_action.setEnabled(bool(self.controller.store.paths_with_status(CANCELLED)))
        has_images = self.controller.store.image_count > 0
        self.reanalyse_action.setEnabled(has_images)
        self.close_all_action.setEnabled(has_images)

    def _update_counts(self, *args) -> None:
        store = self.controller.store
        self.cell_count.setText(f"{store.image_count:,} images · {store.cell_count:,} cells")
        self.setWindowTitle(
            f"YAWBCC Desktop — {store.image_count:,} images, {store.cell_count:,} cells"
            if store.image_count
            else "YAWBCC Desktop"
        )
        self._update_actions()

    # ------------------------------------------------------------------- models
    def _model_loading(self, name: str) -> None:
        self.model_button.setText(f"Loading {name}…")
        self.statusBar().showMessage(f"Loading model {name}…")
        self._progress_changed()

    def _model_ready(self, card) -> None:
        self.model_button.setText(f"{card.name} · ready")
        self.model_button.setToolTip(describe(card))
        self.statusBar().showMessage(f"Model {card.name} ready", 8000)
        self._progress_changed()

    def _model_failed(self, which: str, message: str) -> None:
        self.model_button.setText("No usable model")
        self.model_button.setToolTip(message)
        self.statusBar().showMessage("Model not available: choose one with Analysis › Choose model…")
        self.notifier.model_problem(message, self.choose_model)
        self._progress_changed()

    def _explain(self, row: int, group) -> None:
        key, cached = self.controller.explain(row, group)
        self.detail.waiting_for(key)
        if cached is not None:
            self.detail.show_gradcam(cached)

    # ------------------------------------------------------------------- others
    def save_screenshot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "yawbcc-screenshot.png", "PNG image (*.png)")
        if path:
            if self.grab().save(path, "PNG"):
                self.statusBar().showMessage(f"Screenshot saved to {path}", 8000)
            else:
                self.notifier.error(
                    "Screenshot not saved", f"{path} could not be written: check the folder exists and is writable."
                )

    def about(self) -> None:
        from .. import __version__

        QMessageBox.about(
            self,
            "About YAWBCC Desktop",
            f"<b>YAWBCC Desktop {__version__}</b><p>Review of white blood cell images: segmentation, "
            "classification into 8 groups with calibrated probabilities, and Grad-CAM.</p>"
            "<p>For research and review support; every result needs a qualified reviewer's confirmation.</p>",
        )
