"""The reclassification bar: one button per label with its number key, as the reviewer types.

Keys 1-8 follow the class order of the model (``GROUPS``); 0 marks "not a cell".  The
buttons and the window's shortcuts come from the same ``LABEL_KEYS``, so the key shown is
the key that works.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

from ...core.classes import ARTEFACT, GROUPS
from ..palette import LABEL_COLOURS, SHORT_NAMES, display_name

LABEL_KEYS: dict[str, str] = {**{g: str(i + 1) for i, g in enumerate(GROUPS)}, ARTEFACT: "0"}


class LabelBar(QWidget):
    label_requested = Signal(str)  # a key of LABEL_KEYS
    confirm_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("LabelBar")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        caption = QLabel("Class:")
        caption.setObjectName("Caption")
        layout.addWidget(caption)
        self.buttons: dict[str, QToolButton] = {}
        for label, key in LABEL_KEYS.items():
            button = QToolButton()
            button.setObjectName("LabelButton")
            button.setText(f"{key} {SHORT_NAMES[label]}")
            # The class colour as a bar under the text: narrower than an icon, as telling.
            button.setStyleSheet(f"QToolButton {{ border-bottom: 3px solid {LABEL_COLOURS[label]}; padding: 1px 3px; }}")
            button.setCheckable(True)
            button.setToolTip(f"{display_name(label)} (key {key})")
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the cell views
            button.clicked.connect(lambda _checked, lab=label: self.label_requested.emit(lab))
            layout.addWidget(button)
            self.buttons[label] = button
        self.confirm = QToolButton()
        self.confirm.setObjectName("ConfirmButton")
        self.confirm.setText("✓ Confirm (Enter)")
        self.confirm.setToolTip("Mark the selected cells reviewed with the class they show (Enter)")
        self.confirm.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.confirm.clicked.connect(self.confirm_requested)
        layout.addSpacing(6)
        layout.addWidget(self.confirm)
        layout.addStretch(1)
        self.show_label(None)

    def show_label(self, label: str | None, reviewed: bool = False) -> None:
        """Check the button of the label the cell has now (None: no cell selected; '': never
        classified, so there is no class to confirm, only one to give)."""
        for lab, button in self.buttons.items():
            button.setChecked(lab == label)
            button.setEnabled(label is not None)
        self.confirm.setEnabled(bool(label) and not reviewed)
