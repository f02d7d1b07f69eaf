"""Settings and the recent-files list, kept in the user's config folder (platformdirs),
never in the install folder.  ``YAWBCC_CONFIG_DIR`` moves them (tests, portable installs)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from ..core.preferences import config_dir

MAX_RECENT = 10


class AppSettings:
    """Window layout, last mode and model, recent files.  ``remember=False`` (screenshots)
    reads nothing and writes nothing, so a scripted run leaves no trace."""

    def __init__(self, folder: Path | None = None, remember: bool = True):
        self.remember = remember
        # A folder given explicitly (tests, portable installs) holds preferences and sessions too.
        self.folder = Path(folder) if folder is not None and remember else None
        self._qs: QSettings | None = None
        if remember:
            folder = folder if folder is not None else config_dir()
            self._qs = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)

    def value(self, key: str, default=None):
        if self._qs is None:
            return default
        found = self._qs.value(key, default)
        return default if found is None else found

    def set_value(self, key: str, value) -> None:
        if self._qs is not None:
            self._qs.setValue(key, value)

    def recent_files(self) -> list[str]:
        """Recently opened files and folders, newest first."""
        if self._qs is None:
            return []
        found = self._qs.value("recent", [], type=list)
        return [str(p) for p in found][:MAX_RECENT] if isinstance(found, list) else []

    def add_recent(self, paths: list[str]) -> None:
        if self._qs is None:
            return
        recent = self.recent_files()
        for path in reversed([str(Path(p).resolve()) for p in paths]):
            if path in recent:
                recent.remove(path)
            recent.insert(0, path)
        self._qs.setValue("recent", recent[:MAX_RECENT])

    def clear_recent(self) -> None:
        if self._qs is not None:
            self._qs.setValue("recent", [])

    def sync(self) -> None:
        if self._qs is not None:
            self._qs.sync()
