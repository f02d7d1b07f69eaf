"""A run's log: every command that writes a folder keeps ``train.log`` there beside its output."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


class RunLog:
    """Prints and appends to ``<folder>/train.log``."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "train.log"

    def __call__(self, msg: str) -> None:
        line = f"{datetime.now().strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
