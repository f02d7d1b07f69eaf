"""Choose a model bundle, seeing what its model card says before switching; remove a model
the lab added (adapted or retrained, in the user's models folder), never a bundled one."""

from __future__ import annotations

import shutil
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
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ...core.card_text import adaptation_text
from ...core.classifier import DEFAULT_MODEL, ModelBundleError, ModelCard, list_bundles, read_card, user_models_dir

HEADERS = ("Model", "Backbone", "Input", "Test accuracy", "Macro F1", "Adapted", "Folder")


def adapted_column(card: ModelCard) -> str:
    """``from lite0-accurate, 2025-05-02`` for an adapted model, else empty."""
    if not card.extra.get("adapted_from"):
        return ""
    date = str((card.extra.get("adaptation") or {}).get("date", ""))[:10]
    return f"from {card.extra['adapted_from']}" + (f", {date}" if date else "")


def describe(card: ModelCard) -> str:
    """What the model card says, in a few lines of rich text."""
    acc, f1 = card.metrics.get("accuracy"), card.metrics.get("macro_f1")
    adapted = bool(card.extra.get("adapted_from"))
    lines = [
        f"<b>{card.name}</b>{' (default)' if card.name == DEFAULT_MODEL else ''}",
        f"Backbone {card.backbone}, input {card.input_size}×{card.input_size} px, "
        f"colour balance {'on' if card.balance else 'off'}, temperature {card.temperature:.3f}",
    ]
    if acc is not None:
        whose = "The base model's test accuracy" if adapted else "Test accuracy"
        lines.append(f"{whose} {100 * acc:.2f} %" + (f", macro F1 {f1:.3f}" if f1 is not None else ""))
    else:
        lines.append("No test metrics in the model card")
    for key in ("trained", "training_minutes", "split_sha1"):
        if key in card.extra:
            lines.append(f"{key.replace('_', ' ').capitalize()}: {card.extra[key]}")
    if card.extra.get("adapted_from"):
        how = card.extra.get("adaptation") or {}
        line = f"Adapted {adaptation_text(card.extra)}"
        before, after = how.get("accuracy_before"), how.get("accuracy_after_cross_validated")
        if before is not None and after is not None:
            line += f": accuracy on the lab's cells {100 * before:.1f} % → {100 * after:.1f} % (cross-validated)"
        lines.append(line)
    return "<br>".join(lines)


def removable(folder: str | Path) -> bool:
    """Only models the lab added (the user's models folder) can be removed, never bundled ones."""
    return Path(folder).parent.resolve() == user_models_dir().resolve()


class ModelChooser(QDialog):
    def __init__(self, current_folder: str = "", parent=None):
        super().__init__(parent)
        self.current_folder = current_folder
        self.setWindowTitle("Choose a model")
        self.resize(900, 380)
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
        self.remove = QPushButton("Remove…")
        self.remove.setToolTip("Delete a model the lab added (adapted or retrained); bundled models cannot be removed")
        buttons.addButton(self.remove, QDialogButtonBox.ButtonRole.ActionRole)
        self.remove.clicked.connect(self.remove_selected)
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
        # A folder whose name starts with a dot is an adaptation being written (.NAME.partial).
        bundles = [(f, c) for f, c in list_bundles() if not f.name.startswith(".")]
        self._folders, self._cards = [], []
        self.table.setRowCount(len(bundles))
        current_row = 0
        for row, (folder, card) in enumerate(bundles):
            self._folders.append(str(folder))
            self._cards.append(card)
            if isinstance(card, ModelBundleError):
                values = (folder.name, "unusable", "", "", "", "", str(folder))
            else:
                acc, f1 = card.metrics.get("accuracy"), card.metrics.get("macro_f1")
                base = " (base)" if card.extra.get("adapted_from") else ""  # an adapted card keeps its base's test figures
                values = (
                    card.name + (" (default)" if card.name == DEFAULT_MODEL else ""),
                    card.backbone,
                    f"{card.input_size} px",
                    f"{100 * acc:.2f} %{base}" if acc is not None else "–",
                    f"{f1:.3f}{base}" if f1 is not None else "–",
                    adapted_column(card),
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
            self.table.clearSelection()
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
        folder = self._folders[rows[0].row()]
        in_use = bool(self.current_folder) and Path(folder) == Path(self.current_folder)
        self.remove.setEnabled(removable(folder) and not in_use)
        self.remove.setToolTip(
            "This model is in use: choose another one first"
            if in_use and removable(folder)
            else "Delete this model from the user's models folder"
            if removable(folder)
            else "Bundled models cannot be removed; only models the lab added (adapted or retrained)"
        )
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

    def selected_folder(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self._folders[rows[0].row()] if rows else None

    def remove_selected(self) -> bool:
        """Delete the selected model after a confirmation; only from the user's models folder."""
        folder = self.selected_folder()
        if folder is None or not removable(folder) or (self.current_folder and Path(folder) == Path(self.current_folder)):
            return False
        if not self._confirm_removal(folder):
            return False
        # Renamed first, so the model is gone at once and a failed delete leaves no half bundle.
        doomed = Path(folder).with_name(f".{Path(folder).name}.removing")
        try:
            Path(folder).rename(doomed)
        except OSError as exc:
            QMessageBox.warning(self, "Model not removed", f"{folder} could not be removed: {exc.strerror or exc}")
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        self._fill(self.current_folder)
        return True

    def _confirm_removal(self, folder: str) -> bool:
        box = QMessageBox(QMessageBox.Icon.Warning, "Remove model?", "", parent=self)
        box.setText(f"Remove model {Path(folder).name}?")
        box.setInformativeText(
            f"Its folder {folder} is deleted. Sessions keep the results it gave (they name the model), "
            "but it can no longer analyse images."
        )
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is remove

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
