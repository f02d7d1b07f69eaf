"""The list of opened images with their analysis status (Qt model/view)."""

from __future__ import annotations

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt

from ..core.vocabulary import FAILED, IMAGE_STATUSES
from .cell_store import CellStore, ImageEntry
from .image_loader import ImageLoader

EntryRole = Qt.ItemDataRole.UserRole + 1  # the ImageEntry
PathRole = Qt.ItemDataRole.UserRole + 2
StatusRole = Qt.ItemDataRole.UserRole + 3
ReasonRole = Qt.ItemDataRole.UserRole + 4
CellCountRole = Qt.ItemDataRole.UserRole + 5
ThumbnailRole = Qt.ItemDataRole.UserRole + 6  # QImage; None while it loads or if unreadable
UnfamiliarRole = Qt.ItemDataRole.UserRole + 7  # why the image is unfamiliar to its model ('' when it is not)

Index = QModelIndex | QPersistentModelIndex


def status_text(entry: ImageEntry) -> str:
    """The status line the image list shows under a file name."""
    if entry.status == FAILED:
        return f"failed: {entry.reason}" if entry.reason else "failed"
    if entry.cell_rows:
        n = len(entry.cell_rows)
        return f"{entry.status} · {n} cell{'s' if n != 1 else ''}"
    return entry.status


class ImageListModel(QAbstractListModel):
    """One row per opened image, in opening order, over a ``CellStore``."""

    def __init__(self, store: CellStore, loader: ImageLoader | None = None, parent=None):
        super().__init__(parent)
        self._store = store
        self._loader = loader
        self._rows = store.image_count
        if loader is not None:
            loader.thumbnails_ready.connect(self.image_changed)

    def images_added(self) -> None:
        """The store has more images than the views know of."""
        count = self._store.image_count
        if count > self._rows:
            self.beginInsertRows(QModelIndex(), self._rows, count - 1)
            self._rows = count
            self.endInsertRows()

    def image_changed(self, path: str) -> None:
        row = self._store.image_row(path)
        if 0 <= row < self._rows:
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def images_changed(self, paths: list[str]) -> None:
        # One signal per row: a view repaints its whole viewport for a multi-row range, but
        # only a row's own rect (or nothing, when it is scrolled out of view) for one row.
        for path in paths:
            self.image_changed(path)

    def statuses_changed(self) -> None:
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(self._rows - 1))

    def reset(self) -> None:
        self.beginResetModel()
        self._rows = self._store.image_count
        self.endResetModel()

    def entry_at(self, row: int) -> ImageEntry:
        return self._store.image_at(row)

    def thumbnail(self, entry: ImageEntry):
        """The image's thumbnail (QImage), or None while it loads or if it is unreadable."""
        if self._loader is None:
            return None
        found = self._loader.cached(entry.path)
        if found is None or (found.image is not None and len(found.cells) < len(entry.cell_rows)):
            found = self._loader.thumbnails(entry.path, self._store.regions_of(entry.path))
        return found.image if found is not None else None

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._rows

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < self._rows:
            return None
        entry = self._store.image_at(index.row())
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.file_name
        if role == Qt.ItemDataRole.ToolTipRole:
            scale = entry.familiarity.scale_text()
            scale = f", {scale}" if scale else ""
            size = f"\n{entry.width}x{entry.height} px, {entry.mode} mode{scale}" if entry.width else ""
            unfamiliar = entry.unfamiliar_text()
            if unfamiliar:
                unfamiliar = f"\n{unfamiliar}\n(another stain, microscope or magnification: its cells all wait for review)"
            return f"{entry.path}\n{status_text(entry)}{size}{unfamiliar}"
        if role == EntryRole:
            return entry
        if role == PathRole:
            return entry.path
        if role == StatusRole:
            return entry.status
        if role == ReasonRole:
            return entry.reason
        if role == CellCountRole:
            return len(entry.cell_rows)
        if role == ThumbnailRole:
            return self.thumbnail(entry)
        if role == UnfamiliarRole:
            return entry.unfamiliar_text()
        return None


class ImageStatusFilter(QSortFilterProxyModel):
    """Images with the chosen statuses (all by default)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.statuses: frozenset[str] = frozenset(IMAGE_STATUSES)
        self.setDynamicSortFilter(True)

    def set_statuses(self, statuses: frozenset[str]) -> None:
        self.beginFilterChange()
        self.statuses = frozenset(statuses)
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        return self.sourceModel().index(source_row, 0, source_parent).data(StatusRole) in self.statuses
