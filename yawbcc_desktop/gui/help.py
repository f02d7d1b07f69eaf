"""The Help menu: the user guide (the Markdown pages of ``docs/``, offline), the keyboard
shortcuts (from the one action table), the log folder, and About."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QImage, QTextDocument
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QMainWindow,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ..core.logs import log_dir, log_path
from . import actions
from .about import about_html

GUIDE, CONTENTS = "user-guide.md", "index.md"
# Markdown pages open as Markdown; anything else in docs/ (pictures) as what it is.
MARKDOWN = QTextDocument.ResourceType.MarkdownResource


def docs_root() -> Path:
    """The folder of the guide's pages: ``docs/`` of the checkout, or of the build (``sys._MEIPASS``)."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "docs"
    return Path(__file__).resolve().parents[2] / "docs"


def heading_anchor(text: str) -> str:
    """The anchor GitHub gives a heading (lower case, punctuation dropped, spaces to hyphens),
    so that ``page.md#a-heading`` links work on GitHub and in the window alike."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


class GuideBrowser(QTextBrowser):
    """The pages of ``docs/`` with their links; screenshots shrunk to the page's width."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenExternalLinks(True)  # http(s) links go to the system's browser
        self.setSearchPaths([str(docs_root())])

    def open_page(self, name: str) -> bool:
        """Show ``docs/<name>``; False when the page is not there (a build without docs)."""
        page = docs_root() / name
        if not page.is_file():
            self.setMarkdown(f"# The guide is missing\n\n`{page}` was not found: reinstall YAWBCC Desktop.")
            return False
        self.setSource(QUrl.fromLocalFile(str(page)), MARKDOWN)
        return True

    def doSetSource(self, name: QUrl, kind: QTextDocument.ResourceType = QTextDocument.ResourceType.UnknownResource) -> None:
        super().doSetSource(name, kind)
        if name.hasFragment():
            self.scroll_to_heading(name.fragment())

    def scroll_to_heading(self, anchor: str) -> bool:
        """Scroll to the heading whose GitHub anchor is ``anchor`` (Qt's Markdown reader names
        no heading, so ``page.md#a-heading`` would otherwise open at the top)."""
        seen: dict[str, int] = {}
        block = self.document().begin()
        while block.isValid():
            if block.blockFormat().headingLevel() and block.text().strip():
                base = heading_anchor(block.text())
                n = seen.get(base, 0)
                seen[base] = n + 1
                if (base if n == 0 else f"{base}-{n}") == anchor:
                    top = self.document().documentLayout().blockBoundingRect(block).top()
                    self.verticalScrollBar().setValue(int(top))
                    return True
            block = block.next()
        return False

    def loadResource(self, kind: int, url: QUrl) -> object:
        data = super().loadResource(kind, url)
        if kind == QTextDocument.ResourceType.ImageResource and isinstance(data, QByteArray | bytes):
            image = QImage.fromData(data)
            width = max(self.viewport().width() - 40, 400)
            if not image.isNull() and image.width() > width:
                return image.scaledToWidth(width, mode=Qt.TransformationMode.SmoothTransformation)
            return image
        return data


class GuideDialog(QDialog):
    """Help › User guide: back, forward and contents over the guide's pages."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("YAWBCC Desktop — User guide")
        self.browser = GuideBrowser(self)
        back, forward, contents = QPushButton("◀ Back"), QPushButton("Forward ▶"), QPushButton("Contents")
        back.clicked.connect(self.browser.backward)
        forward.clicked.connect(self.browser.forward)
        contents.clicked.connect(lambda: self.browser.open_page(CONTENTS))
        self.browser.backwardAvailable.connect(back.setEnabled)
        self.browser.forwardAvailable.connect(forward.setEnabled)
        back.setEnabled(False)
        forward.setEnabled(False)
        bar = QHBoxLayout()
        for button in (back, forward, contents):
            bar.addWidget(button)
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.browser, 1)
        self.resize(980, 760)


def _with_close_button(dialog: QDialog, content: QWidget, size: tuple[int, int]) -> None:
    """Lay ``dialog`` out as ``content`` over a Close button."""
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)
    layout = QVBoxLayout(dialog)
    layout.addWidget(content)
    layout.addWidget(buttons)
    dialog.resize(*size)


class ShortcutsDialog(QDialog):
    """Help › Keyboard shortcuts: every action's keys, read from ``actions.ACTIONS``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = actions.shortcut_rows()
        self.table = QTableWidget(len(rows), 3, self)
        self.table.setHorizontalHeaderLabels(["Menu", "Action", "Keys"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        _with_close_button(self, self.table, (640, 640))


class AboutDialog(QDialog):
    """Help › About: the version, the model in use with its card, licences and citations."""

    def __init__(self, card, folder: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("About YAWBCC Desktop")
        self.text = QTextBrowser(self)
        self.text.setOpenExternalLinks(True)
        self.text.setHtml(about_html(card, folder))
        _with_close_button(self, self.text, (720, 640))


class HelpDialogs:
    """The Help menu's handlers (``help.*`` in the action table); each dialog is made once."""

    def __init__(self, window: QMainWindow):
        self.window = window
        self.guide: GuideDialog | None = None
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.about_dialog: AboutDialog | None = None

    def user_guide(self, page: str = GUIDE) -> GuideDialog:
        if self.guide is None:
            self.guide = GuideDialog(self.window)
        self.guide.browser.open_page(page)
        self.guide.show()
        self.guide.raise_()
        return self.guide

    def shortcuts(self) -> ShortcutsDialog:
        if self.shortcuts_dialog is None:
            self.shortcuts_dialog = ShortcutsDialog(self.window)
        self.shortcuts_dialog.show()
        return self.shortcuts_dialog

    def about(self) -> AboutDialog:
        controller = getattr(self.window, "controller", None)
        card = controller.model_card if controller is not None else None
        folder = controller.model_folder if controller is not None else ""
        self.about_dialog = AboutDialog(card, folder, self.window)  # made again: the model may have changed
        self.about_dialog.show()
        return self.about_dialog

    def open_log_folder(self) -> Path:
        """Show the log folder in the system's file manager (made if it is not there yet)."""
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
        status = getattr(self.window, "statusBar", None)
        if status is not None:
            status().showMessage(f"Log: {log_path()}", 10000)
        return folder


def shortcuts_markdown() -> str:
    """The keyboard shortcuts as a Markdown table (the user guide's, kept in step by a test)."""
    lines = ["| menu | action | keys |", "|---|---|---|"]
    lines += [f"| {menu} | {action} | {keys} |" for menu, action, keys in actions.shortcut_rows()]
    return "\n".join(lines)


def probe_guide() -> int:
    """``yawbcc-desktop --guide-probe`` (the installer's smoke check): open the guide and its
    contents page as Help › User guide does, print their first lines; 0 when both loaded."""
    dialog = GuideDialog()
    loaded = dialog.browser.open_page(GUIDE)
    first = dialog.browser.toPlainText().splitlines()[0] if loaded else ""
    dialog.browser.open_page(CONTENTS)
    contents = dialog.browser.toPlainText().splitlines()[0] if dialog.browser.toPlainText() else ""
    print(f"guide: {docs_root() / GUIDE}: {first!r}; contents: {contents!r}", flush=True)
    return 0 if loaded and first and contents else 2


if __name__ == "__main__":
    # python -m yawbcc_desktop.gui.help --shortcuts: the table for docs/user-guide.md.
    from PySide6.QtWidgets import QApplication

    _app = QApplication(sys.argv[:1])
    if sys.argv[1:] == ["--shortcuts"]:
        print(shortcuts_markdown())
