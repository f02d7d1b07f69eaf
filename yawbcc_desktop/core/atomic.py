"""Atomic file writes: a temporary file beside the target, renamed over it only when complete.

A crash or a full disk mid-write leaves the previous file as it was, never half a file.
``AtomicFile`` is the one way this package writes a text file that way: ``atomic_write``
for a file written in one ``with`` block (the preferences, the session exports), and the
classify CSV, which streams rows image by image into ``<out>.partial`` and keeps them there
if the run is interrupted.  ``atomic_path`` does the same for a file another library writes
(the PDF report), and ``atomic_folder`` for a folder of files (the data set exports).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TextIO


class AtomicFile:
    """A text file written at ``partial`` and renamed over ``path`` by ``commit()``.

    ``partial``: the temporary file (default: a hidden, unique name beside ``path``; same
    folder, so the rename stays on one file system and is atomic).  ``keep_partial``:
    ``abort()`` leaves it on disk, so what was written before the failure stays readable;
    otherwise it is removed.  ``path`` is never touched until ``commit()``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        encoding: str = "utf-8",
        newline: str | None = None,
        partial: str | os.PathLike[str] | None = None,
        keep_partial: bool = False,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        unique = partial is None
        self.partial = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp") if partial is None else Path(partial)
        self.keep_partial = keep_partial
        self.file: TextIO = open(self.partial, "x" if unique else "w", encoding=encoding, newline=newline)

    def commit(self) -> None:
        """Make the contents durable and give them the final name."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.partial, self.path)
        except BaseException:
            self.abort()
            raise
        _fsync_folder(self.path.parent)

    def abort(self) -> None:
        """Stop without renaming; ``path`` stays as it was."""
        with contextlib.suppress(OSError):
            self.file.close()
        if not self.keep_partial:
            with contextlib.suppress(OSError):
                os.unlink(self.partial)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], encoding: str = "utf-8", newline: str | None = None) -> Iterator[TextIO]:
    """Open a text file for writing that replaces ``path`` when the ``with`` block ends cleanly.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    with AtomicFile(path, encoding, newline) as out:
        yield out.file


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a file name; renamed over
    ``path`` when the ``with`` block ends cleanly, removed on an exception."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield partial
        with open(partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    _fsync_folder(target.parent)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling folder to fill; it takes the name ``path`` when the ``with``
    block ends cleanly and is removed, with all it holds, on an exception.

    ``path`` must not exist or be an empty folder: a folder export never mixes its files
    with older ones (``FileExistsError`` otherwise, before anything is written).
    """
    target = Path(path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(errno.EEXIST, "it already exists and is not an empty folder: choose a new one", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    partial.mkdir()
    try:
        yield partial
        if target.exists():
            target.rmdir()  # empty (checked above): Windows cannot rename over a folder
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _fsync_folder(target.parent)


def write_failure(target: str | os.PathLike, exc: OSError) -> str:
    """One sentence for a user about a failed export to ``target``: what went wrong and
    that nothing was left behind (every export here is atomic)."""
    if exc.errno == errno.ENOSPC:
        why = "the disk is full"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "that folder is read-only or you may not write there"
    else:
        why = exc.strerror or str(exc)
    return f"{target}: could not write it ({why}); nothing was written, choose another place"


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open a folder for this.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
