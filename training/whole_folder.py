"""A bundle folder written whole or not at all (adaptations write into ``.NAME.partial`` and
rename it at the end)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from .corrections import CorrectionsError


def partial_folder(dest: str | Path, name: str) -> Path:
    """Where a bundle is written before it is renamed to ``dest/name``."""
    return Path(dest) / f".{name}.partial"


def write_whole(dest: str | Path, name: str, fill: Callable[[Path], None]) -> Path:
    """``dest/name``, written whole or not at all: ``fill(folder)`` writes the bundle into
    ``.NAME.partial`` (a stale one from a killed run is replaced first), which is renamed at
    the end; on any error or interruption the partial folder is removed."""
    out = Path(dest) / name
    if out.exists():
        raise CorrectionsError(f"{out} exists already; choose another name")
    tmp = partial_folder(dest, name)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
