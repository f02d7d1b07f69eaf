"""Choose a model bundle, seeing what its model card says before switching."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ...core.classifier import DEFAULT_MODEL, ModelBundleError, ModelCard, list_bundles, read_card

HEADERS = ("Model", "Backbone", "Input", "Test accuracy", "Macro F1", "Folder")


def describe(card: ModelCard) -> str:
    """What the model card says, in a few lines of rich text."""
    acc, f1 = card.metrics.get("accuracy"), card.metrics.get("macro_f1")
    lines = [
        f"<b>{card.name}</b>{' (default)' if card.name == DEFAULT_MODEL else ''}",
        f"Backbone {card.backbone}, input {card.input_size}×{card.input_size} px, "
        f"colour balance {'on' if card.balance else 'off'}, temperature {card.temperature:.3f}",
    ]
    if acc is not None:
        lines.append(f"Test accuracy {100 * acc:.2f} %" + (f", macro F1 {f1:.3f}" if f1 is not None else ""))
    else:
        lines.append("No test metrics in the model card")
    for key in ("trained", "training_minutes", "split_sha1"):
        if key in card.extra:
            lines.append(f"{key.replace('_', ' ').capitalize()}: {card.extra[key]}")
    return "<br>".join(lines)


class ModelChooser(QDialog):
    def __init__(self, current_folder: str = "", parent=None):
        super().__init__(parent)
        self.setWindowTitle("Choose a model")
        self.resize(760, 360)
        self.chosen: str | None = None
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemDoubleClicked.connect(lambda _item: self._accept())
        self.card_text = QLabel("")
        self.card_text.setObjectName("ModelCard")
        self.card_text.setWordWrap(True)
        self.card_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.use = buttons.addButton("Use this model", QDialogButtonBox.ButtonRole.AcceptRole)
        other = QPushButton("Other bundle folder…")
        buttons.addButton(other, QDialogButtonBox.ButtonRole.ActionRole)
        other.clicked.connect(self._pick_folder)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.card_text)
        layout.addWidget(buttons)
        self._folders: list[str] = []
        self._cards: list[ModelCard | ModelBundleError] = []
        self._fill(current_folder)

    def _fill(self, current_folder: str) -> None:
        bundles = list_bundles()
        self.table.setRowCount(len(bundles))
        current_row = 0
        for row, (folder, card) in enumerate(bundles):
            self._folders.append(str(folder))
            self._cards.append(card)
            if isinstance(card, ModelBundleError):
                values = (folder.name, "unusable", "", "", "", str(folder))
            else:
                acc, f1 = card.metrics.get("accuracy"), card.metrics.get("macro_f1")
                values = (
                    card.name + (" (default)" if card.name == DEFAULT_MODEL else ""),
                    card.backbone,
                    f"{card.input_size} px",
                    f"{100 * acc:.2f} %" if acc is not None else "–",
                    f"{f1:.3f}" if f1 is not None else "–",
                    str(folder),
                )
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                if isinstance(card, ModelBundleError):
                    item.setForeground(QColor("#9E9E9E"))
                    item.setToolTip(str(card))
                self.table.setItem(row, col, item)
            if current_folder and Path(folder) == Path(current_folder):
                current_row = row
        if bundles:
            self.table.selectRow(current_row)
        else:
            self.card_text.setText(
                "No model bundle was found. Reinstall YAWBCC Desktop to restore the bundled models, "
                "or pick a bundle folder (holding model.keras and model.json)."
            )
            self.use.setEnabled(False)

    def _selection_changed(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        card = self._cards[rows[0].row()]
        if isinstance(card, ModelBundleError):
            self.card_text.setText(f"<b>This bundle cannot be used.</b><br>{card}")
            self.use.setEnabled(False)
        else:
            self.card_text.setText(describe(card))
            self.use.setEnabled(True)

    def _accept(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows and not isinstance(self._cards[rows[0].row()], ModelBundleError):
            self.chosen = self._folders[rows[0].row()]
            self.accept()

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model bundle folder")
        if not folder:
            return
        try:
            read_card(folder)
        except ModelBundleError as exc:
            self.card_text.setText(f"<b>This folder cannot be used.</b><br>{exc}")
            return
        self.chosen = folder
        self.accept()
