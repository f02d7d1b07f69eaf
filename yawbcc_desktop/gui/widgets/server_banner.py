"""The bar over the image that says the review server cannot be reached, while it cannot.

Shown when the session's server goes (stopped, restarted, network down) and hidden when the
station has reconnected by itself: corrections made meanwhile are refused with a message,
never kept half-saved, so the reviewer knows to wait rather than work on.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy

_STYLE = """
QFrame#ServerBanner { background: #FDECEA; border: 1px solid #F5B7B1; border-left: 4px solid #C62828; border-radius: 4px; }
QFrame#ServerBanner QLabel { color: #7F1D1D; background: transparent; border: none; }
"""


class ServerBanner(QFrame):
    """ "The review server cannot be reached …" — visible only while it cannot."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("ServerBanner")
        self.setStyleSheet(_STYLE)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.text = QLabel(
            "<b>The review server cannot be reached.</b> Corrections cannot be saved until it is back; "
            "everything it confirmed is safe. Reconnecting…"
        )
        self.text.setWordWrap(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.text, 1)
        self.hide()

    def show_link(self, up: bool) -> None:
        """The server went (``up`` False: shown) or is back (hidden)."""
        self.setVisible(not up)
