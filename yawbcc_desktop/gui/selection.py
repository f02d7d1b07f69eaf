"""The cell (and image) the reviewer is looking at, shared by every view.

Views set it when the reviewer clicks and follow it when it changes; comparing with the
current value first is what stops the views from echoing each other.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from .cell_store import CellStore


class CellSelection(QObject):
    cell_changed = Signal(int)  # row id in the store; -1: no cell
    image_changed = Signal(str)  # path; "": none

    def __init__(self, store: CellStore, parent=None):
        super().__init__(parent)
        self._store = store
        self.row = -1
        self.path = ""

    def select_cell(self, row: int) -> None:
        if row == self.row or not 0 <= row < self._store.cell_count:
            return
        self.row = row
        path = self._store.cell(row).path
        if path != self.path:
            self.path = path
            self.image_changed.emit(path)
        self.cell_changed.emit(row)

    def select_image(self, path: str) -> None:
        """Show an image; its first cell becomes the selected cell, if it has one."""
        if path == self.path:
            return
        entry = self._store.image(path)
        if entry is not None and entry.cell_rows:
            self.select_cell(entry.cell_rows[0])
            return
        self.path = path
        self.image_changed.emit(path)
        if self.row != -1:
            self.row = -1
            self.cell_changed.emit(-1)

    def clear(self) -> None:
        self.row, self.path = -1, ""
        self.image_changed.emit("")
        self.cell_changed.emit(-1)
