"""Toolbar and window icons: SVG files in ``resources/icons`` (found in a frozen build too)."""

from __future__ import annotations

from functools import cache

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QStyle

from ..core.classifier import resource_root

# A standard icon for each, should a file be missing from a broken install.
_FALLBACK = {
    "open-images": QStyle.StandardPixmap.SP_DialogOpenButton,
    "open-folder": QStyle.StandardPixmap.SP_DirOpenIcon,
    "analyse": QStyle.StandardPixmap.SP_MediaPlay,
    "cancel": QStyle.StandardPixmap.SP_MediaStop,
    "model": QStyle.StandardPixmap.SP_ComputerIcon,
    "screenshot": QStyle.StandardPixmap.SP_DialogSaveButton,
}


@cache
def icon(name: str) -> QIcon:
    path = resource_root() / "icons" / f"{name}.svg"
    if path.is_file():
        return QIcon(str(path))
    fallback = _FALLBACK.get(name)
    return QApplication.style().standardIcon(fallback) if fallback is not None else QIcon()
