"""The bar over the image that says when the session holds images the model does not know.

One bar for the whole session, not a dialog: the reviewer keeps working, and the count
follows the analysis.  Closed, it stays closed until another session is open.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout

from ..palette import UNFAMILIAR_COLOUR

_STYLE = f"""
QFrame#UnfamiliarBanner {{ background: #FFF4E5; border: 1px solid #F3C98B; border-left: 4px solid {UNFAMILIAR_COLOUR};
    border-radius: 4px; }}
QFrame#UnfamiliarBanner QLabel {{ color: #5D4037; background: transparent; border: none; }}
QToolButton#BannerAction {{ background: #FFFFFF; border: 1px solid #E0B27A; border-radius: 4px; padding: 3px 10px;
    color: #6D3F00; font-weight: bold; }}
QToolButton#BannerAction:hover {{ background: #FFEBD0; }}
QToolButton#BannerClose {{ border: none; color: #8D6E63; font-size: 13pt; padding: 0 4px; }}
"""


class UnfamiliarBanner(QFrame):
    """ "N of M images look unfamiliar to model X …" with the actions a lab's first session needs
    (the cells to review first, adapting, retraining) and a close button."""

    def __init__(self, retrain: QAction, adapt: QAction | None = None, suggest: QAction | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("UnfamiliarBanner")
        self.setStyleSheet(_STYLE)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.icon = QLabel("?")
        self.icon.setStyleSheet(
            f"background:{UNFAMILIAR_COLOUR}; color:white; font-weight:bold; border-radius:10px; min-width:20px;"
            "max-width:20px; min-height:20px; max-height:20px;"
        )
        self.icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.retrain_button = _action_button(retrain)
        self.adapt_button = _action_button(adapt) if adapt is not None else None
        self.suggest_button = _action_button(suggest) if suggest is not None else None
        self.close_button = QToolButton()
        self.close_button.setObjectName("BannerClose")
        self.close_button.setText("✕")
        self.close_button.setToolTip("Hide this message for this session")
        self.close_button.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.setSpacing(10)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.text, 1)
        actions = QVBoxLayout()  # one above the other: the message keeps the width
        actions.setSpacing(4)
        for button in (self.suggest_button, self.adapt_button, self.retrain_button):
            if button is not None:
                actions.addWidget(button)
        layout.addLayout(actions)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.dismissed = False
        self.unfamiliar = 0
        self.hide()

    def show_counts(self, unfamiliar: int, analysed: int, model: str) -> None:
        """``unfamiliar`` of ``analysed`` images look unfamiliar to ``model``: shown unless dismissed."""
        self.unfamiliar = unfamiliar
        if unfamiliar:
            image = "image looks" if analysed == 1 else "images look"
            self.text.setText(
                f"<b>{unfamiliar:,} of {analysed:,} {image} unfamiliar to model {model}</b> (another stain, "
                "microscope or magnification than it was trained on): their cells all wait for review, "
                "whatever the confidence. Review first the cells that teach the model most (Review › Cells to "
                "review for adapting), then adapt the model to this lab in minutes (Review › Adapt model to this "
                "lab…), or retrain it."
            )
        self.setVisible(bool(unfamiliar) and not self.dismissed)

    def dismiss(self) -> None:
        self.dismissed = True
        self.hide()

    def reset(self) -> None:
        """Another session: the bar shows again when it has unfamiliar images."""
        self.dismissed = False
        self.show_counts(0, 0, "")


def _action_button(action: QAction) -> QToolButton:
    """A banner button bound to a window action: enabled with it, and triggers it."""
    button = QToolButton()
    button.setObjectName("BannerAction")
    button.setDefaultAction(action)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    return button
