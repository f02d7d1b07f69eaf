"""The log a lab can send: Python's ``logging`` into one rotating file per user.

The window and the ``yawbcc`` command both call ``start_logging`` once at start-up; every
module then logs through its own ``logging.getLogger(__name__)``.  The file lives in the
platform's log folder (platformdirs ``user_log_dir``), never the install folder;
``YAWBCC_LOG_DIR`` moves it (tests, portable installs).  A folder that cannot be written
leaves the program running without a log file, never stops it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

LOG_DIR_ENV = "YAWBCC_LOG_DIR"
LOG_FILE = "yawbcc.log"
# The levels a lab can pick in Preferences, from most to least detail.
LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_LEVEL = "INFO"
# About 1 MB a file and three older ones: a few weeks of a busy lab at INFO, small enough to mail.
MAX_BYTES = 1_000_000
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)-7s %(process)d %(name)s: %(message)s"

_handler: logging.Handler | None = None


def log_dir() -> Path:
    """Where the log files are: ``$YAWBCC_LOG_DIR`` or the platform's user log folder."""
    override = os.environ.get(LOG_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_log_dir("yawbcc-desktop", appauthor=False))


def log_path() -> Path:
    """The current log file (older ones end in ``.1``, ``.2``, ...)."""
    return log_dir() / LOG_FILE


def valid_level(level: object) -> str:
    """``level`` if it is one of ``LEVELS`` (any case), else the default."""
    name = str(level).upper()
    return name if name in LEVELS else DEFAULT_LEVEL


def start_logging(program: str, level: str = DEFAULT_LEVEL) -> Path | None:
    """Send the root logger to the rotating log file at ``level``; returns the file, or None
    when the folder cannot be written.  A second call only sets the level (and re-opens the
    file if ``YAWBCC_LOG_DIR`` moved it, as tests do)."""
    global _handler
    root = logging.getLogger()
    path = log_path()
    if _handler is not None and getattr(_handler, "baseFilename", "") != str(path):
        stop_logging()
    if _handler is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
        except OSError as exc:
            if sys.stderr is not None:
                print(f"{program}: no log file ({path}: {exc.strerror})", file=sys.stderr)
            return None
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
        _handler = handler
        set_level(level)
        logging.getLogger("yawbcc").info("%s started: %s (Python %s)", program, " ".join(sys.argv), sys.version.split()[0])
    else:
        set_level(level)
    return path


def set_level(level: str) -> None:
    """How much the log keeps from now on (one of ``LEVELS``)."""
    value = getattr(logging, valid_level(level))
    logging.getLogger().setLevel(value)
    if _handler is not None:
        _handler.setLevel(value)


def stop_logging() -> None:
    """Close the log file (tests; the interpreter closes it at exit otherwise)."""
    global _handler
    if _handler is not None:
        logging.getLogger().removeHandler(_handler)
        _handler.close()
        _handler = None
