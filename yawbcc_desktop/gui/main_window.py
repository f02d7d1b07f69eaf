"""The review window: assembles the widgets, menus and toolbar, and wires their signals.

Layout: images on the left, the whole image over the selected cell's detail in the centre,
the cells (gallery or table, one filter) and the differential count on the right.  Logic
lives in the controllers (``analysis.py``, ``review.py``) and the widgets; this file only
connects them.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QPoint, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.imageio import IMAGE_SUFFIXES
from ..core.store import SESSION_SUFFIX, ReviewSession, SessionError, SignOffRefused
from ..core.vocabulary import CANCELLED, MODES
from .analysis import AnalysisController
from .icons import icon
from .messages import Notifier
from .palette import class_icon, display_name
from .review import ReviewController
from .selection import CellSelection
from .settings import AppSettings
from .throttle import Throttle
from .widgets.analysis_progress import AnalysisProgress
from .widgets.cell_detail import CellDetail
from .widgets.cell_filter_bar import CellFilterBar
from .widgets.cell_gallery import CellGallery
from .widgets.cell_table import CellTable
from .widgets.differential_panel import DifferentialPanel
from .widgets.image_list import ImageList
from .widgets.image_viewer import ImageViewer
from .widgets.label_bar import LABEL_KEYS
from .widgets.model_chooser import ModelChooser, describe
from .widgets.unfamiliar_banner import UnfamiliarBanner

MODE_NAMES = {"auto": "Auto (per image)", "cell": "Single-cell images", "smear": "Smear fields"}
IMAGE_FILTER = "Images ({})".format(" ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)))
SESSION_FILTER = f"Review sessions (*{SESSION_SUFFIX});;All files (*)"


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
        self.attended = attended
        self.review = ReviewController(controller, settings.remember, settings.folder, self)

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
        central = QWidget()
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(0, 0, 0, 0)
        central_layout.setSpacing(0)
        central_layout.addWidget(centre, 1)
        self.setCentralWidget(central)

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
        self.differential = DifferentialPanel(self.review)
        self.images_dock = self._dock("Images", self.image_list, Qt.DockWidgetArea.LeftDockWidgetArea, 270)
        self.cells_dock = self._dock("Cells", cells_panel, Qt.DockWidgetArea.RightDockWidgetArea, 500)
        self.differential_dock = self._dock("Differential", self.differential, Qt.DockWidgetArea.RightDockWidgetArea, 500)
        self.splitDockWidget(self.cells_dock, self.differential_dock, Qt.Orientation.Vertical)
        self.resizeDocks([self.cells_dock, self.differential_dock], [520, 420], Qt.Orientation.Vertical)

        self._build_actions()
        self.banner = UnfamiliarBanner(self.retrain_action, self.adapt_action)  # over the image, when the model does not know
        central_layout.insertWidget(0, self.banner)
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
        self.close_all_action = self._action(
            "&Close session", self.close_all, "Ctrl+Shift+W", tip="Close the session and its images"
        )
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

        # -- sessions and review
        self.new_session_action = self._action("&New session", self.new_session, K.New, tip="Start an empty review session")
        self.open_session_action = self._action(
            "Open &session…", self.open_session_dialog, "Ctrl+Alt+O", tip="Reopen a saved review session"
        )
        self.save_session_action = self._action(
            "Save session &as…", self.save_session_dialog, K.SaveAs, tip="Copy the session to a file of your choice"
        )
        self.export_cells_action = self._action(
            "Export &cells CSV…", self.export_cells_dialog, "Ctrl+E", tip="Every cell with its prediction and final label"
        )
        self.export_differential_action = self._action(
            "Export &differential CSV…", self.export_differential_dialog, "Ctrl+Shift+E", tip="Counts and flags"
        )
        self.preferences_action = self._action("&Preferences…", self.edit_preferences, K.Preferences)
        self.label_actions: dict[str, QAction] = {}
        for label, key in LABEL_KEYS.items():
            action = self._action(
                display_name(label), lambda _checked=False, lab=label: self.set_label(lab), key,
                tip=f"Set the selected cells to {display_name(label).lower()}",
            )  # fmt: skip
            action.setIcon(class_icon(label))
            self.label_actions[label] = action
            self.addAction(action)  # keys work whichever pane has the focus
        self.confirm_action = self._action(
            "&Confirm", self.confirm, "Return", tip="Mark the selected cells reviewed with the class they show"
        )
        self.confirm_action.setShortcuts([QKeySequence("Return"), QKeySequence("Enter")])
        self.next_action = self._action("&Next cell", lambda: self.step(1), "Down")
        self.next_action.setShortcuts([QKeySequence("Down"), QKeySequence("Right")])
        self.previous_action = self._action("&Previous cell", lambda: self.step(-1), "Up")
        self.previous_action.setShortcuts([QKeySequence("Up"), QKeySequence("Left")])
        self.undo_action = self._action("&Undo correction", self.undo, K.Undo, "undo", "Undo the last correction")
        self.redo_action = self._action("&Redo correction", self.redo, K.Redo, "redo", "Redo the correction undone")
        self.select_all_action = self._action("Select all &shown cells", self.select_all_shown, K.SelectAll)
        self.to_review_action = self._action(
            "Show the &to-review queue", self.show_to_review, "Ctrl+T", tip="Only the unreviewed cells that wait for review"
        )
        self.sign_off_action = self._action("Si&gn off…", lambda: self.sign_off(self.differential.scope.currentData()))
        self.retrain_action = self._action(
            "Re&train with corrections…", self.retrain, tip="Train a new model on the base data plus the reviewed cells"
        )
        self.adapt_action = self._action(
            "&Adapt model to this lab…",
            self.adapt_model,
            tip="Refit the model's last layer on the reviewed cells of this session (a minute or two)",
        )
        self._retrain_dialog = None
        self._adapt_dialog = None
        for action in (self.confirm_action, self.next_action, self.previous_action, self.undo_action, self.redo_action,
                       self.select_all_action, self.to_review_action):  # fmt: skip
            self.addAction(action)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.open_images_action)
        file_menu.addAction(self.open_folder_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(self.new_session_action)
        file_menu.addAction(self.open_session_action)
        file_menu.addAction(self.save_session_action)
        file_menu.addAction(self.close_all_action)
        file_menu.addSeparator()
        file_menu.addAction(self.export_cells_action)
        file_menu.addAction(self.export_differential_action)
        file_menu.addAction(self.screenshot_action)
        file_menu.addSeparator()
        file_menu.addAction(self.preferences_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        review = bar.addMenu("&Review")
        self._fill_review_menu(review)
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
        view.addAction(self.differential_dock.toggleViewAction())
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.about_action)

    def _fill_review_menu(self, menu: QMenu) -> None:
        """The review actions: the Review menu and every cell view's context menu."""
        classes = menu.addMenu("Set &class")
        for action in self.label_actions.values():
            classes.addAction(action)
        menu.addAction(self.confirm_action)
        menu.addSeparator()
        menu.addAction(self.undo_action)
        menu.addAction(self.redo_action)
        menu.addSeparator()
        menu.addAction(self.next_action)
        menu.addAction(self.previous_action)
        menu.addAction(self.select_all_action)
        menu.addAction(self.to_review_action)
        if menu.title():  # the menu bar's: the session-wide actions too
            menu.addSeparator()
            menu.addAction(self.sign_off_action)
            menu.addAction(self.adapt_action)
            menu.addAction(self.retrain_action)

    def _cell_menu(self, pos: QPoint) -> None:
        menu = QMenu(self)
        n = len(self.selected_rows())
        menu.addSection(f"{n} cell{'s' if n != 1 else ''} selected")
        for action in self.label_actions.values():
            menu.addAction(action)
        menu.addAction(self.confirm_action)
        menu.addSeparator()
        menu.addAction(self.undo_action)
        menu.exec(pos)

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
        self.to_review_button = QToolButton()
        self.to_review_button.setObjectName("ToReviewButton")
        self.to_review_button.setAutoRaise(True)
        self.to_review_button.setToolTip(
            "Unreviewed cells below the review threshold, of an image unfamiliar to the model, or whose size "
            "contradicts their class; click to show only them (Ctrl+T)"
        )
        self.to_review_button.clicked.connect(self.show_to_review)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.to_review_button)
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
        # -- review
        r = self.review
        r.problem.connect(self.notifier.error)
        r.labels_changed.connect(self._labels_changed)
        r.history_changed.connect(self._update_actions)
        r.session_changed.connect(self._session_changed)
        self.detail.label_bar.label_requested.connect(self.set_label)
        self.detail.label_bar.confirm_requested.connect(self.confirm)
        self.differential.sign_off_requested.connect(self.sign_off)
        for view in (self.gallery, self.table, self.viewer):
            view.menu_requested.connect(self._cell_menu)
        self._differential_later = Throttle(self.differential.refresh, 400, self)
        c.cells.rowsInserted.connect(self._differential_later)
        c.cells.modelReset.connect(self._differential_later)

    # ----------------------------------------------------------------- start-up
    def start(self, model: str | None = None, paths: list[str] | None = None, session: str | None = None) -> None:
        """Start the worker, load the model, open the session and ``paths`` (after the window is shown).

        Without ``session`` or ``paths`` an attended window offers to reopen the last session.
        """
        self.controller.start()
        if session:
            if os.path.exists(session):
                self.review.open_session(session)
            else:
                self.review.new_session(session)
        elif not paths and self.attended:
            QTimer.singleShot(0, self._offer_last_session)
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
        for dialog in (self._retrain_dialog, self._adapt_dialog):
            if dialog is not None and dialog.job is not None and dialog.job.running:
                dialog.job.shutdown()  # a training process never outlives the window
        self.controller.shutdown()
        self.review.close()  # after the worker: it commits results to the session
        super().closeEvent(event)

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths: list[str]) -> int:
        missing = [p for p in paths if not os.path.exists(p)]
        for path in missing:
            self.statusBar().showMessage(f"Not found: {path}", 10000)
        present = [p for p in paths if os.path.exists(p)]
        if not present:
            return 0
        if not self.review.ensure_session():
            return 0  # the reason is shown: nothing is analysed that could not be saved
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
        """Close the session (it stays on disk, complete) and every image."""
        self.selection.clear()
        self.review.close_session()
        self.statusBar().showMessage("Closed the session; File › Open session reopens it", 5000)

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
        """Analyse every open image again, into a new session: the old one keeps its corrections."""
        self.selection.clear()
        session = self.review.session
        if session is None or not session.images():
            self.controller.reanalyse_all()
            return
        paths = self.controller.store.paths()
        old = session.path
        if self.review.new_session():
            self.controller.open_paths(paths)
            self.statusBar().showMessage(f"Re-analysing in a new session; {old.name} keeps the earlier results", 15000)

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
        has_session = self.review.session is not None
        self.close_all_action.setEnabled(has_images or has_session)
        for action in (
            self.save_session_action, self.export_cells_action, self.export_differential_action, self.retrain_action,
            self.adapt_action,
        ):  # fmt: skip
            action.setEnabled(has_session)
        self.undo_action.setEnabled(self.review.can_undo)
        self.redo_action.setEnabled(self.review.can_redo)

    def _update_counts(self, *args) -> None:
        store = self.controller.store
        self.cell_count.setText(f"{store.image_count:,} images · {store.cell_count:,} cells")
        waiting = store.to_review_count()
        self.to_review_button.setText(f"To review: {waiting:,}" if store.cell_count else "")
        self.to_review_button.setStyleSheet("color:#B26A00; font-weight:bold" if waiting else "color:#2E7D32")
        self.banner.show_counts(*store.unfamiliar_images())
        session = self.review.session
        name = f" — {session.path.stem}" if session is not None else ""
        counts = f" — {store.image_count:,} images, {store.cell_count:,} cells" if store.image_count else ""
        self.setWindowTitle(f"YAWBCC Desktop{name}{counts}")
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

    # ------------------------------------------------------------------- review
    def selected_rows(self) -> list[int]:
        """The cells a correction applies to: those selected in the cell view on show."""
        rows = [r for r in self._view().selected_rows() if r is not None]
        if not rows and self.selection.row >= 0:
            rows = [self.selection.row]
        return rows

    def _reviewer_known(self) -> bool:
        """Corrections carry a name: ask for it once if the preferences have none."""
        if self.review.reviewer:
            return True
        if not self.attended:
            return False
        name, ok = QInputDialog.getText(self, "Reviewer", "Your name or initials, recorded with each correction:")
        if ok and name.strip():
            prefs = self.review.prefs
            prefs.reviewer = name.strip()
            self.review.set_preferences(prefs)
            return True
        return False

    def set_label(self, label: str) -> int:
        """Give the selected cells ``label``."""
        return self._review_selected(lambda rows: self.review.set_label(rows, label), f"{display_name(label)}:")

    def confirm(self) -> int:
        """Mark the selected cells reviewed with the class they show."""
        return self._review_selected(self.review.confirm, "Confirmed")

    def _review_selected(self, act, verb: str) -> int:
        # One cell at a time: move on to the next, as reviewers expect.  Found before the
        # change, which may move the cell out of the filtered view.
        rows = self.selected_rows()
        if not rows or not self._reviewer_known():
            return 0
        following = self._view().neighbour(rows[-1], 1) if len(rows) == 1 else -1
        n = act(rows)
        if n:
            self.statusBar().showMessage(f"{verb} {n} cell{'s' if n != 1 else ''} (Ctrl+Z undoes)", 5000)
        if len(rows) == 1 and following >= 0:
            self.selection.select_cell(following)
        return n

    def undo(self) -> None:
        if self.review.undo():
            self.statusBar().showMessage("Correction undone", 5000)

    def redo(self) -> None:
        if self.review.redo():
            self.statusBar().showMessage("Correction redone", 5000)

    def _view(self):
        return self.gallery if self.cell_tabs.currentWidget() is self.gallery else self.table

    def step(self, by: int) -> None:
        """Arrow keys: the next or previous cell in the order the cell view shows them."""
        row = self._view().neighbour(self.selection.row, by)
        if row >= 0:
            self.selection.select_cell(row)

    def select_all_shown(self) -> None:
        if self.cell_tabs.currentWidget() is self.gallery:
            self.gallery.select_all()
        else:
            self.table.selectAll()

    def show_to_review(self) -> None:
        self.filter_bar.show_to_review()
        first = self._view().neighbour(-1, 1)
        if first >= 0:
            self.selection.select_cell(first)

    def _labels_changed(self, rows: list[int]) -> None:
        self.viewer.relabel(rows)
        current = self.selection.row
        if current in rows:
            self.detail.show_review_state()
            # The tile may have moved to another class section: select it there.
            self.gallery.show_cell(current, force=True)
            self.table.show_cell(current, force=True)
        self._counts_later()
        self._differential_later()

    def _session_changed(self) -> None:
        self.selection.clear()
        self.banner.reset()
        self.differential.fill_scopes()
        self._update_counts()
        session = self.review.session
        if session is not None:
            self.statusBar().showMessage(f"Session {session.path}", 8000)

    def _offer_last_session(self) -> None:
        """At start: reopen the last session if the reviewer wants it (it is never opened unasked)."""
        last = self.review.prefs.last_session
        if not last or self.review.session is not None or not os.path.isfile(last):
            return
        try:
            with ReviewSession.open(last, readonly=True) as peek:
                s = peek.summary(self.review.prefs.review_threshold)
        except SessionError as exc:
            self.statusBar().showMessage(f"Last session not reopened: {exc}", 15000)
            return
        summary = f"{s.images:,} images, {s.cells:,} cells, {s.corrected:,} corrected, {s.to_review:,} still to review."
        if self.ask_reopen(last, summary):
            self.review.open_session(last)

    def ask_reopen(self, path: str, summary: str) -> bool:
        box = QMessageBox(QMessageBox.Icon.Question, "Reopen the last session?", "", parent=self)
        box.setText(f"Reopen your last session, {os.path.basename(path)}?")
        box.setInformativeText(summary)
        box.setDetailedText(path)
        reopen = box.addButton("Reopen", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("New session", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        return box.clickedButton() is reopen

    def new_session(self) -> None:
        if self.review.new_session():
            self.statusBar().showMessage("New session: open images or folders to analyse them", 8000)

    def open_session_dialog(self) -> None:
        start = str(self.review.sessions_folder())
        path, _ = QFileDialog.getOpenFileName(self, "Open a review session", start, SESSION_FILTER)
        if path:
            self.review.open_session(path)

    def save_session_dialog(self) -> None:
        session = self.review.session
        start = str(Path(str(self.settings.value("last_folder", str(Path.home())))) / session.path.name)
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the session as", start, SESSION_FILTER, options=QFileDialog.Option.DontConfirmOverwrite
        )
        if path:
            if not path.endswith(SESSION_SUFFIX):
                path += SESSION_SUFFIX
            if self.review.save_session_as(path):
                self.statusBar().showMessage(f"Session saved as {path}; corrections now go there", 10000)

    def _export(self, title: str, suffix: str, write) -> None:
        session = self.review.session
        start = str(Path(str(self.settings.value("last_folder", str(Path.home())))) / f"{session.path.stem}_{suffix}.csv")
        path, _ = QFileDialog.getSaveFileName(self, title, start, "CSV (*.csv)")
        if not path:
            return
        try:
            n = write(path)
        except (OSError, SessionError) as exc:
            self.notifier.error("Export failed", f"{path} could not be written: {exc}")
            return
        self.statusBar().showMessage(f"Exported {n:,} rows to {path}", 10000)

    def export_cells_dialog(self) -> None:
        from ..core.review_export import export_cells

        self._export("Export cells", "cells", lambda path: export_cells(self.review.session, path))

    def export_differential_dialog(self) -> None:
        from ..core.review_export import export_differential

        p = self.review.prefs
        self._export(
            "Export differential",
            "differential",
            lambda path: len(export_differential(self.review.session, path, p.review_threshold, p.reference_ranges, p.min_wbc)),
        )

    def edit_preferences(self) -> None:
        from .widgets.preferences_dialog import PreferencesDialog

        dialog = PreferencesDialog(self.review.prefs, self)
        if dialog.exec() == PreferencesDialog.DialogCode.Accepted:
            self.review.set_preferences(dialog.preferences())
            self._update_counts()
            self.differential.refresh()

    def sign_off(self, folder: str | None = None) -> bool:
        """Sign off the count of the session (or one folder) under the reviewer's name."""
        if self.review.session is None or not self._reviewer_known():
            return False
        diff = self.review.differential(folder=folder)
        if self.attended:
            scope = f"folder {folder}" if folder else "the whole session"
            answer = QMessageBox.question(
                self,
                "Sign off",
                f"Sign off the differential of {scope} ({diff.wbc:,} white cells) as {self.review.reviewer}?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            done = self.review.sign_off(folder)
        except SignOffRefused as exc:
            self.notifier.error("Not signed off", str(exc))
            return False
        except SessionError as exc:
            self.notifier.error("Not signed off", str(exc))
            return False
        self.differential.refresh()
        self.statusBar().showMessage(f"Signed off by {done.reviewer}", 10000)
        return True

    def retrain(self) -> None:
        """Train a model on the base data plus this session's reviewed cells (a separate process)."""
        from .widgets.retrain_dialog import RetrainDialog

        if self.review.session is None:
            return
        if self._retrain_dialog is None or not self._retrain_dialog.isVisible():
            dialog = RetrainDialog(
                self.review.session, self, settings=self.settings, current_model=self.controller.model_folder or None
            )
            dialog.bundle_added.connect(self._bundle_added)
            self._retrain_dialog = dialog
        self._retrain_dialog.show()
        self._retrain_dialog.raise_()

    def adapt_model(self) -> None:
        """Adapt the current model to this lab from the session's reviewed cells (a separate process)."""
        from .widgets.adapt_dialog import AdaptDialog

        if self.review.session is None:
            return
        if self._adapt_dialog is None or not self._adapt_dialog.isVisible():
            dialog = AdaptDialog(self.review.session, self, current_model=self.controller.model_folder or None)
            dialog.model_adapted.connect(self._model_adapted)
            self._adapt_dialog = dialog
        elif self._adapt_dialog.job is None:
            self._adapt_dialog.refresh()  # the reviewer may have reviewed more cells meanwhile
        self._adapt_dialog.show()
        self._adapt_dialog.raise_()

    def _model_adapted(self, folder: str) -> None:
        """The adapted model classifies new images; what is analysed keeps its results (as Choose model's Keep)."""
        self.switch_model(folder, reanalyse=False)
        self.statusBar().showMessage(
            f"Adapted model {os.path.basename(folder)} is now used for new images; analysed cells keep their results",
            15000,
        )

    def _bundle_added(self, folder: str) -> None:
        self.statusBar().showMessage(
            f"New model {os.path.basename(folder)} installed: choose it with Analysis › Choose model…", 15000
        )

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
