"""The review window: assembles the widgets, menus and toolbar, and wires their signals.

Layout: images on the left, the whole image over the selected cell's detail in the centre,
the cells (gallery or table, one filter) and the differential count on the right.  Logic
lives in the controllers (``analysis.py``, ``review.py``) and the widgets; this file only
connects them.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QByteArray, QPoint, Qt, QTimer
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QMenu,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.logs import set_level as set_log_level
from ..core.vocabulary import CANCELLED, MODES
from . import actions
from .analysis import AnalysisController
from .dataset_dialogs import DatasetDialogs
from .help import HelpDialogs
from .icons import icon
from .messages import Notifier
from .model_dialogs import ModelDialogs
from .palette import display_name
from .report_dialogs import ReportDialogs
from .review import ReviewController
from .selection import CellSelection
from .session_dialogs import SessionDialogs
from .settings import AppSettings
from .throttle import Throttle
from .widgets.cell_detail import CellDetail
from .widgets.cell_filter_bar import CellFilterBar
from .widgets.cell_gallery import CellGallery
from .widgets.cell_table import CellTable
from .widgets.differential_panel import DifferentialPanel
from .widgets.image_list import ImageList
from .widgets.image_viewer import ImageViewer
from .widgets.server_banner import ServerBanner
from .widgets.status_fields import StatusFields
from .widgets.unfamiliar_banner import UnfamiliarBanner


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
        self.viewer = ImageViewer(controller.store, controller.loader, mask_of=controller.cell_mask)
        self.detail = CellDetail(controller.store, controller.loader)
        self.image_list = ImageList(controller.store, controller.images)
        self.filter_bar = CellFilterBar(controller.cell_filter)
        self.gallery = CellGallery(controller.cell_filter)
        self.table = CellTable(controller.cell_filter)

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

        self.dialogs = SessionDialogs(self, self.review, settings, self.notifier)
        panel = self.differential
        self.reports = ReportDialogs(
            self, self.review, settings, self.notifier, panel.scope.currentData, panel.notes.save_comments
        )
        self.datasets = DatasetDialogs(self, self.review, self.controller, settings, self.notifier)
        self.differential.notes.problem.connect(self.notifier.error)
        self.models = ModelDialogs(self)
        self.help = HelpDialogs(self)
        self._build_actions()
        # Over the image, when the model does not know the image.
        named = self.named_actions
        self.banner = UnfamiliarBanner(named["retrain"], named["adapt"], named["suggest_for_adapting"])
        central_layout.insertWidget(0, self.banner)
        self.server_banner = ServerBanner()  # while the review server of the session cannot be reached
        central_layout.insertWidget(0, self.server_banner)
        self._build_menus()
        self._build_toolbar()
        self.status_fields = fields = StatusFields(self, controller, self.notifier, self.models.choose, self.show_to_review)
        fields.progress_shown.connect(self._update_actions)
        self.progress, self.model_button, self.to_review_button = fields.progress, fields.model_button, fields.to_review_button
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

    def _build_actions(self) -> None:
        """The actions of ``actions.ACTIONS`` (``self.{name}_action``), and one a class and image type."""
        self.named_actions = actions.build_actions(self)
        self.label_actions = actions.label_actions(self, self.set_label)
        self.modes = actions.ModeChoice(self, self.controller.mode, self.set_mode)
        self.mode_actions, self.mode_box = self.modes.actions, self.modes.box
        self.addActions([*self.label_actions.values(), *actions.anywhere(self.named_actions)])  # whichever pane has the focus

    def _build_menus(self) -> None:
        def recent(menu: QMenu) -> None:
            self.recent_menu = menu.addMenu("Open &recent")
            self.recent_menu.aboutToShow.connect(lambda: self.dialogs.fill_recent_menu(self.recent_menu))

        docks = (self.images_dock, self.cells_dock, self.differential_dock)
        actions.build_menus(self, self.named_actions, {
            "recent": recent,
            "labels": lambda menu: menu.addActions(list(self.label_actions.values())),
            "modes": lambda menu: menu.addActions(list(self.mode_actions.values())),
            "docks": lambda menu: menu.addActions([d.toggleViewAction() for d in docks]),
        })  # fmt: skip

    def _cell_menu(self, pos: QPoint) -> None:
        menu = QMenu(self)
        n = len(self.selected_rows())
        menu.addSection(f"{n} cell{'s' if n != 1 else ''} selected")
        actions.fill_menu(menu, actions.CELL_MENU, self.named_actions, self.label_actions)
        menu.exec(pos)

    def _build_toolbar(self) -> None:
        actions.build_toolbar(self, self.named_actions, {"mode_box": self.modes.add_to_toolbar})

    def _connect(self) -> None:
        c, s = self.controller, self.selection
        c.images_opened.connect(self._images_opened)
        c.images_analysed.connect(self._images_analysed)
        c.run_finished.connect(lambda summary: self.statusBar().showMessage(summary, 15000))
        c.gradcam_ready.connect(self.detail.show_gradcam)
        c.gradcam_failed.connect(self.detail.gradcam_failed)
        c.problem.connect(self.notifier.error)
        c.session_loading.connect(self.gallery.show_loading)
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
        r.server_link.connect(self._server_link)
        self.detail.label_bar.label_requested.connect(self.set_label)
        self.detail.label_bar.confirm_requested.connect(self.confirm)
        self.differential.sign_off_requested.connect(self.sign_off)
        for view in (self.gallery, self.table, self.viewer):
            view.menu_requested.connect(self._cell_menu)
        self._differential_later = Throttle(self.differential.refresh, 400, self)
        c.cells.rowsInserted.connect(self._differential_later)
        c.cells.modelReset.connect(self._differential_later)
        r.others_changed.connect(self._differential_later)  # counts and sign-off another station changed
        r.others_changed.connect(self.differential.notes.show_others)  # the sample notes another station changed

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
            QTimer.singleShot(0, self.dialogs.offer_last_session)
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
        self.models.shutdown()  # a training process never outlives the window
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
        self.modes.show(mode)
        self.settings.set_value("mode", mode)
        self.statusBar().showMessage(
            f"New images are read as: {actions.MODE_NAMES[mode].lower()}. Analysis › Re-analyse applies it to open images.",
            10000,
        )

    def reanalyse_all(self) -> None:
        """Analyse every open image again, into a new session: the old one keeps its corrections."""
        self.selection.clear()
        old = self.review.reanalyse_all()
        if old is not None:
            self.statusBar().showMessage(f"Re-analysing in a new session; {old.name} keeps the earlier results", 15000)

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

    def _update_actions(self) -> None:
        active = self.controller.progress.active
        self.named_actions["cancel"].setEnabled(active)
        self.named_actions["analyse"].setEnabled(bool(self.controller.store.paths_with_status(CANCELLED)))
        has_images = self.controller.store.image_count > 0
        self.named_actions["reanalyse"].setEnabled(has_images)
        has_session = self.review.session is not None
        self.named_actions["close_all"].setEnabled(has_images or has_session)
        for action in actions.needing_session(self.named_actions):
            action.setEnabled(has_session)
        self.named_actions["undo"].setEnabled(self.review.can_undo)
        self.named_actions["redo"].setEnabled(self.review.can_redo)

    def _update_counts(self, *args) -> None:
        store = self.controller.store
        self.status_fields.show_counts(store)
        self.banner.show_counts(*store.unfamiliar_images())
        session = self.review.session
        name = f" — {session.name}" if session is not None else ""
        counts = f" — {store.image_count:,} images, {store.cell_count:,} cells" if store.image_count else ""
        self.setWindowTitle(f"YAWBCC Desktop{name}{counts}")
        self._update_actions()

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
        if not rows or not self.dialogs.reviewer_known():
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

    def _server_link(self, up: bool) -> None:
        self.server_banner.show_link(up)
        if up:
            self.statusBar().showMessage("Reconnected to the review server", 8000)

    def _session_changed(self) -> None:
        self.selection.clear()
        self.banner.reset()
        self.server_banner.show_link(True)
        self._update_counts()  # (the differential panel follows the session by itself)
        session = self.review.session
        if session is not None:
            self.statusBar().showMessage(f"Session {session.location}", 8000)

    def new_session(self) -> None:
        if self.review.new_session():
            self.statusBar().showMessage("New session: open images or folders to analyse them", 8000)

    def edit_preferences(self) -> None:
        from .widgets.preferences_dialog import PreferencesDialog

        session = self.review.session
        scales = [(image.um_per_px, image.scale_source) for image in session.images()] if session is not None else []
        dialog = PreferencesDialog(self.review.prefs, self, scales)
        if dialog.exec() == PreferencesDialog.DialogCode.Accepted:
            self.review.set_preferences(dialog.preferences())
            set_log_level(dialog.preferences().log_level)
            self._update_counts()
            self.differential.refresh()

    def sign_off_shown(self) -> bool:
        """Review › Sign off: the scope the differential panel shows."""
        return self.sign_off(self.differential.scope.currentData())

    def sign_off(self, folder: str | None = None) -> bool:
        """Sign off the count of the session (or one folder) under the reviewer's name."""
        if not self.dialogs.sign_off(folder):
            return False
        self.differential.refresh()
        return True
