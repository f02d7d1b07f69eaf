"""Every action of the window in one table: text, keys, icon, tip, where it shows, what it calls.

The menus, the toolbar, the keys that work whichever pane has the focus and the actions
that need an open session are all read from ``ACTIONS``; the window only says what each
handler name means (a method of the window, or a dotted path such as ``viewer.zoom_in``).
A few entries are filled from elsewhere (``Part``): the recent files, the class of each
key in ``LABEL_KEYS``, the image types, the docks and the image-type box of the toolbar.

Menu entries keep the order of the table; a ``SEPARATOR`` row separates them.  On the
toolbar, entries go in the order of their ``toolbar`` number, and a separator goes
between numbers of different tens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QIcon, QKeySequence
from PySide6.QtWidgets import QComboBox, QLabel, QMainWindow, QMenu, QToolBar, QToolButton

from ..core.vocabulary import MODES
from .icons import icon
from .palette import class_icon, display_name
from .widgets.label_bar import LABEL_KEYS

K = QKeySequence.StandardKey
MODE_NAMES = {"auto": "Auto (per image)", "cell": "Single-cell images", "smear": "Smear fields"}


@dataclass(frozen=True)
class Action:
    name: str  # the window's attribute is ``{name}_action``
    text: str
    handler: str  # attribute path on the window, called with ``args``
    shortcut: tuple = ()  # key sequences or standard keys; the first is the one shown
    icon: str = ""
    tip: str = ""  # status tip; the tooltip adds the first key
    menu: str = ""  # "&File", or "&Review/Set &class" for a submenu
    toolbar: int = 0  # position on the toolbar; 0: not on it
    icon_only: bool = False  # on the toolbar
    args: tuple = ()
    checkable: bool = False
    checked: bool = False
    anywhere: bool = False  # its keys work whichever pane has the focus
    needs_session: bool = False  # enabled only while a session is open


@dataclass(frozen=True)
class Part:
    """An entry filled by the window: ``recent``, ``labels``, ``modes``, ``docks``, ``mode_box``."""

    name: str
    menu: str = ""
    toolbar: int = 0


@dataclass(frozen=True)
class Separator:
    menu: str


SEPARATOR = Separator

FILE, REVIEW, ANALYSIS, VIEW, HELP = "&File", "&Review", "&Analysis", "&View", "&Help"

ACTIONS: tuple[Action | Part | Separator, ...] = (
    # -- File
    Action("open_images", "Open &images…", "dialogs.open_images", (K.Open,), "open-images", "Open image files",
           menu=FILE, toolbar=10),
    Action("open_folder", "Open &folder…", "dialogs.open_folder", ("Ctrl+Shift+O",), "open-folder",
           "Open every image in a folder and its subfolders", menu=FILE, toolbar=11),
    Part("recent", menu=FILE),
    SEPARATOR(FILE),
    Action("new_session", "&New session", "new_session", (K.New,), tip="Start an empty review session", menu=FILE),
    Action("open_session", "Open &session…", "dialogs.open_session", ("Ctrl+Alt+O",),
           tip="Reopen a saved review session", menu=FILE),
    Action("save_session", "Save session &as…", "dialogs.save_session_as", (K.SaveAs,),
           tip="Copy the session to a file of your choice", menu=FILE, needs_session=True),
    Action("close_all", "&Close session", "close_all", ("Ctrl+Shift+W",), tip="Close the session and its images",
           menu=FILE),
    SEPARATOR(FILE),
    Action("export_cells", "Export &cells CSV…", "dialogs.export_cells", ("Ctrl+E",),
           tip="Every cell with its prediction and final label", menu=FILE, needs_session=True),
    Action("export_differential", "Export &differential CSV…", "dialogs.export_differential", ("Ctrl+Shift+E",),
           tip="Counts and flags", menu=FILE, needs_session=True),
    Action("export_report", "Export &report (PDF)…", "reports.export_pdf", ("Ctrl+Shift+P",),
           tip="The sample's report: differential, flags, comments, sign-off, cells", menu=FILE, needs_session=True),
    Action("print_report", "&Print report…", "reports.print_report", (K.Print,), menu=FILE, needs_session=True),
    Action("export_lis", "Export to &LIS…", "reports.export_lis",
           tip="The differential as a FHIR R4 bundle or an HL7 v2.5 message", menu=FILE, needs_session=True),
    Action("export_coco", "Export annotations (C&OCO)…", "datasets.export_coco",
           tip="The session's labelled cells with their boxes, masks and review, for annotation tools (CVAT, FiftyOne) "
           "and training", menu=FILE, needs_session=True),
    Action("export_crops", "Export reviewed cells for &training…", "datasets.export_crops",
           tip="The reviewed cells as the model sees them, one folder per class", menu=FILE, needs_session=True),
    Action("screenshot", "Save &screenshot…", "dialogs.save_screenshot", ("F12",), "screenshot",
           "Save a picture of the window", menu=FILE, toolbar=50, icon_only=True),
    SEPARATOR(FILE),
    Action("preferences", "&Preferences…", "edit_preferences", (K.Preferences,), menu=FILE),
    SEPARATOR(FILE),
    Action("quit", "&Quit", "close", (K.Quit,), menu=FILE),
    # -- Review
    Part("labels", menu=f"{REVIEW}/Set &class"),
    Action("confirm", "&Confirm", "confirm", ("Return", "Enter"),
           tip="Mark the selected cells reviewed with the class they show", menu=REVIEW, anywhere=True),
    SEPARATOR(REVIEW),
    Action("undo", "&Undo correction", "undo", (K.Undo,), "undo", "Undo the last correction", menu=REVIEW,
           anywhere=True),
    Action("redo", "&Redo correction", "redo", (K.Redo,), "redo", "Redo the correction undone", menu=REVIEW,
           anywhere=True),
    SEPARATOR(REVIEW),
    Action("next", "&Next cell", "step", ("Down", "Right"), menu=REVIEW, args=(1,), anywhere=True),
    Action("previous", "&Previous cell", "step", ("Up", "Left"), menu=REVIEW, args=(-1,), anywhere=True),
    Action("select_all", "Select all &shown cells", "select_all_shown", (K.SelectAll,), menu=REVIEW, anywhere=True),
    Action("to_review", "Show the &to-review queue", "show_to_review", ("Ctrl+T",),
           tip="Only the unreviewed cells that wait for review", menu=REVIEW, anywhere=True),
    SEPARATOR(REVIEW),
    Action("sign_off", "Si&gn off…", "sign_off_shown", menu=REVIEW),
    Action("suggest_for_adapting", "Cells to review for a&dapting", "models.suggest_for_adapting",
           tip="Show the unreviewed cells whose labels would teach the model most about this lab: review them first",
           menu=REVIEW, needs_session=True),
    Action("adapt", "&Adapt model to this lab…", "models.adapt",
           tip="Refit the model's last layer on the reviewed cells of this session (a minute or two)",
           menu=REVIEW, needs_session=True),
    Action("retrain", "Re&train with corrections…", "models.retrain",
           tip="Train a new model on the base data plus the reviewed cells", menu=REVIEW, needs_session=True),
    # -- Analysis
    Action("analyse", "&Analyse remaining", "controller.analyse_remaining", ("F5",), "analyse",
           "Analyse the images a cancel left", menu=ANALYSIS, toolbar=20),
    Action("reanalyse", "&Re-analyse all images", "reanalyse_all", ("Ctrl+Shift+R",), menu=ANALYSIS),
    Action("cancel", "&Cancel analysis", "controller.cancel", ("Esc",), "cancel", "Cancel the analysis",
           menu=ANALYSIS, toolbar=21),
    SEPARATOR(ANALYSIS),
    Part("modes", menu=f"{ANALYSIS}/Image &type"),
    Part("mode_box", toolbar=30),
    Action("model", "Choose &model…", "models.choose", ("Ctrl+M",), "model",
           "Choose the model that classifies the cells", menu=ANALYSIS, toolbar=31),
    # -- View
    Action("zoom_in", "Zoom &in", "viewer.zoom_in", (K.ZoomIn,), "zoom-in", "Zoom in", menu=VIEW, toolbar=40,
           icon_only=True),
    Action("zoom_out", "Zoom &out", "viewer.zoom_out", (K.ZoomOut,), "zoom-out", "Zoom out", menu=VIEW, toolbar=41,
           icon_only=True),
    Action("fit", "&Fit image", "viewer.fit", ("Ctrl+0",), "zoom-fit", "Fit the image to the view", menu=VIEW,
           toolbar=42, icon_only=True),
    Action("actual", "&Actual pixels", "viewer.zoom_actual", ("Ctrl+1",), "zoom-actual",
           "One image pixel per screen pixel", menu=VIEW, toolbar=43, icon_only=True),
    Action("labels", "Class &labels on boxes", "viewer.set_labels_visible", ("Ctrl+L",), "labels",
           "Show class and confidence above each box", menu=VIEW, toolbar=44, icon_only=True, checkable=True,
           checked=True),
    SEPARATOR(VIEW),
    Part("docks", menu=VIEW),
    # -- Help
    Action("user_guide", "&User guide", "help.user_guide", (K.HelpContents,), tip="The user guide, offline",
           menu=HELP),
    Action("shortcuts", "&Keyboard shortcuts", "help.shortcuts", tip="Every action's keys", menu=HELP),
    Action("log_folder", "Open &log folder", "help.open_log_folder",
           tip="The folder of the log file to send with a problem report", menu=HELP),
    SEPARATOR(HELP),
    Action("about", "&About YAWBCC Desktop", "help.about", menu=HELP),
)  # fmt: skip

# The context menu of every cell view.
CELL_MENU: tuple[str, ...] = ("labels", "confirm", "-", "undo")


def key_text(keys: Iterable) -> str:
    """The keys of an action as this platform writes them (a standard key it lacks is left out)."""
    texts = [QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText) for k in keys]
    return ", ".join(dict.fromkeys(t for t in texts if t))


def shortcut_rows() -> list[tuple[str, str, str]]:
    """(menu, action, keys) for every action with keys, in the table's order; the class keys
    of ``LABEL_KEYS`` sit where the table puts them (Review › Set class)."""
    rows = []
    for spec in ACTIONS:
        where = spec.menu.replace("&", "").replace("/", " › ") if not isinstance(spec, Separator) else ""
        if isinstance(spec, Part) and spec.name == "labels":
            rows += [(where, display_name(label), key_text([key])) for label, key in LABEL_KEYS.items()]
        elif isinstance(spec, Action) and key_text(spec.shortcut):
            rows.append((where or "Window", spec.text.replace("&", ""), key_text(spec.shortcut)))
    return rows


def _resolve(owner, path: str) -> Callable:
    return attrgetter(path)(owner)


def make_action(owner, spec: Action) -> QAction:
    """The ``QAction`` of ``spec``, triggering ``spec.handler`` on ``owner``."""
    action = QAction(icon(spec.icon) if spec.icon else QIcon(), spec.text, owner)
    keys = [QKeySequence(k) for k in spec.shortcut]
    if len(keys) == 1:
        action.setShortcut(keys[0])  # a standard key this platform lacks stays no key
    elif keys:
        action.setShortcuts(keys)
    if spec.tip:
        action.setStatusTip(spec.tip)
        action.setToolTip(f"{spec.tip} ({keys[0].toString()})" if keys else spec.tip)
    handler = _resolve(owner, spec.handler)
    if spec.checkable:
        action.setCheckable(True)
        action.setChecked(spec.checked)
        action.triggered.connect(lambda checked=False, h=handler: h(checked))
    else:
        action.triggered.connect(lambda _checked=False, h=handler, a=spec.args: h(*a))
    return action


def label_actions(owner, handler: Callable[[str], object]) -> dict[str, QAction]:
    """One action a class, with the key of ``LABEL_KEYS`` that the label bar shows."""
    actions = {}
    for label, key in LABEL_KEYS.items():
        action = QAction(class_icon(label), display_name(label), owner)
        action.setShortcut(QKeySequence(key))
        tip = f"Set the selected cells to {display_name(label).lower()}"
        action.setStatusTip(tip)
        action.setToolTip(f"{tip} ({key})")
        action.triggered.connect(lambda _checked=False, lab=label: handler(lab))
        actions[label] = action
    return actions


def build_actions(owner) -> dict[str, QAction]:
    """Every action of the table, by name; each set on ``owner`` as ``{name}_action``."""
    actions = {}
    for spec in ACTIONS:
        if isinstance(spec, Action):
            actions[spec.name] = make_action(owner, spec)
            setattr(owner, f"{spec.name}_action", actions[spec.name])
    return actions


def anywhere(actions: dict[str, QAction]) -> list[QAction]:
    """The actions whose keys work whichever pane has the focus."""
    return [actions[s.name] for s in ACTIONS if isinstance(s, Action) and s.anywhere]


def needing_session(actions: dict[str, QAction]) -> list[QAction]:
    return [actions[s.name] for s in ACTIONS if isinstance(s, Action) and s.needs_session]


def build_menus(window: QMainWindow, actions: dict[str, QAction], parts: dict[str, Callable[[QMenu], None]]) -> None:
    """The menu bar, in the order of ``ACTIONS``; ``parts`` fill the ``Part`` entries."""
    bar = window.menuBar()
    menus: dict[str, QMenu] = {}

    def menu(path: str) -> QMenu:
        if path not in menus:
            parent, _, title = path.rpartition("/")
            menus[path] = menu(parent).addMenu(title) if parent else bar.addMenu(title)
        return menus[path]

    for spec in ACTIONS:
        if not spec.menu:
            continue
        if isinstance(spec, Separator):
            menu(spec.menu).addSeparator()
        elif isinstance(spec, Part):
            parts[spec.name](menu(spec.menu))
        else:
            menu(spec.menu).addAction(actions[spec.name])


def build_toolbar(window: QMainWindow, actions: dict[str, QAction], parts: dict[str, Callable[[QToolBar], None]]) -> QToolBar:
    """The toolbar: the table's entries with a ``toolbar`` position, in its order."""
    tools = window.addToolBar("Main")
    tools.setObjectName("MainToolbar")
    tools.setMovable(False)
    tools.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    placed = sorted((s for s in ACTIONS if not isinstance(s, Separator) and s.toolbar), key=lambda s: s.toolbar)
    for i, spec in enumerate(placed):
        if i and spec.toolbar // 10 != placed[i - 1].toolbar // 10:
            tools.addSeparator()
        if isinstance(spec, Part):
            parts[spec.name](tools)
            continue
        tools.addAction(actions[spec.name])
        if spec.icon_only:
            button = tools.widgetForAction(actions[spec.name])
            if isinstance(button, QToolButton):
                button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
    return tools


def fill_menu(menu: QMenu, names: Iterable[str], actions: dict[str, QAction], labels: dict[str, QAction]) -> None:
    """A short menu from names: ``labels`` for every class, ``-`` for a separator."""
    for name in names:
        if name == "-":
            menu.addSeparator()
        elif name == "labels":
            menu.addActions(list(labels.values()))
        else:
            menu.addAction(actions[name])


class ModeChoice:
    """How new images are read: one checkable action a mode (Analysis › Image type) and the
    toolbar's box, kept in step; ``chosen(mode)`` is called when the reviewer picks one."""

    def __init__(self, owner, mode: str, chosen: Callable[[str], object]):
        self.group = QActionGroup(owner)
        self.actions: dict[str, QAction] = {}
        for m in MODES:
            action = QAction(MODE_NAMES[m], owner, checkable=True)
            action.setChecked(m == mode)
            action.triggered.connect(lambda _checked, m=m: chosen(m))
            self.group.addAction(action)
            self.actions[m] = action
        self.box = QComboBox()
        self.box.setToolTip("How new images are read: single-cell crops, whole smear fields, or decided per image")
        for m in MODES:
            self.box.addItem(MODE_NAMES[m], m)
        self.box.setCurrentIndex(MODES.index(mode))
        self.box.currentIndexChanged.connect(lambda i: chosen(MODES[i]))

    def add_to_toolbar(self, tools: QToolBar) -> None:
        tools.addWidget(QLabel(" Images: "))
        tools.addWidget(self.box)

    def show(self, mode: str) -> None:
        self.actions[mode].setChecked(True)
        self.box.blockSignals(True)
        self.box.setCurrentIndex(MODES.index(mode))
        self.box.blockSignals(False)
