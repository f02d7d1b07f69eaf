"""A reviewer's preferences: name, review threshold, reference ranges, last session, log level.

One small JSON file in the user's configuration folder, shared by the GUI and the
``yawbcc`` command.  ``YAWBCC_CONFIG_DIR`` overrides the folder (tests, portable installs).
A missing or unreadable file gives the defaults, never an error at start-up.
"""

from __future__ import annotations

import getpass
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .classes import REFERENCE_RANGES, WBC_GROUPS, ReferenceRange
from .logs import DEFAULT_LEVEL, LEVELS
from .vocabulary import SEGMENTERS

CONFIG_ENV = "YAWBCC_CONFIG_DIR"
FILE_NAME = "preferences.json"

# Cells whose calibrated confidence is below this go to the to-review queue.  Calibrated
# means a cell at confidence c is right about c of the time, so no cell is left to the
# machine with more than a 10 % chance of error; at the report's ~98 % accuracy most cells
# sit near 1, so the queue is a small share of the cells yet holds most of the mistakes.
# Lower lets more errors through, higher floods the queue with cells the model had right.
DEFAULT_REVIEW_THRESHOLD = 0.90
# A routine manual differential counts 100 white cells; fewer gives imprecise percentages.
DEFAULT_MIN_WBC = 100


@dataclass(frozen=True)
class AnalysisSettings:
    """How new images are analysed, as the preferences set it: the method that finds the
    cells (``vocabulary.SEGMENTERS``) and the lab's pixel size (µm; None: measured on each
    image).  One object travels from the preferences to each image's segmentation, child
    processes included, so a further setting is added here and nowhere along the way."""

    segmenter: str = "auto"
    lab_um_per_px: float | None = None


DEFAULT_ANALYSIS = AnalysisSettings()


def default_reviewer() -> str:
    """The operating-system login name, a reasonable first guess at who is reviewing."""
    try:
        return getpass.getuser()
    except Exception:  # no login name on some service accounts and containers
        return ""


@dataclass
class Preferences:
    """What a lab or reviewer sets once; ``problem`` says why the file was not used, if so."""

    reviewer: str = field(default_factory=default_reviewer)
    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    reference_ranges: dict[str, ReferenceRange] = field(default_factory=lambda: dict(REFERENCE_RANGES))
    min_wbc: int = DEFAULT_MIN_WBC
    last_session: str = ""
    segmenter: str = "auto"  # vocabulary.SEGMENTERS: how cells are found in new analyses
    lab_um_per_px: float | None = None  # the lab's pixel size (µm); None: measured on each image
    # Review stations: the lab's PostgreSQL server (postgresql://host/db, never a password:
    # libpq reads that from PGPASSFILE or a service file); '' keeps sessions in files.
    review_server: str = ""
    log_level: str = DEFAULT_LEVEL  # logs.LEVELS: how much the log file keeps
    lab_name: str = ""  # printed at the top of each report and sent to the LIS
    problem: str = ""

    @property
    def analysis(self) -> AnalysisSettings:
        return AnalysisSettings(self.segmenter, self.lab_um_per_px)

    def to_json(self) -> dict[str, Any]:
        return {
            "reviewer": self.reviewer,
            "review_threshold": self.review_threshold,
            "reference_ranges": {g: [r.low, r.high] for g, r in self.reference_ranges.items()},
            "min_wbc": self.min_wbc,
            "last_session": self.last_session,
            "segmenter": self.segmenter,
            "lab_um_per_px": self.lab_um_per_px,
            "review_server": self.review_server,
            "log_level": self.log_level,
            "lab_name": self.lab_name,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preferences:
        """Values that are missing or out of range fall back to their defaults, one by one."""
        prefs = cls()
        if isinstance(data.get("reviewer"), str):
            prefs.reviewer = data["reviewer"].strip()
        t = data.get("review_threshold")
        if isinstance(t, int | float) and 0.0 <= t <= 1.0:
            prefs.review_threshold = float(t)
        n = data.get("min_wbc")
        if isinstance(n, int) and n >= 0:
            prefs.min_wbc = n
        if isinstance(data.get("last_session"), str):
            prefs.last_session = data["last_session"]
        server = data.get("review_server")
        if isinstance(server, str) and server_problem(server) == "":
            prefs.review_server = server
        if isinstance(data.get("lab_name"), str):
            prefs.lab_name = data["lab_name"].strip()
        if data.get("segmenter") in SEGMENTERS:
            prefs.segmenter = data["segmenter"]
        if data.get("log_level") in LEVELS:
            prefs.log_level = data["log_level"]
        um = data.get("lab_um_per_px")
        if isinstance(um, int | float) and not isinstance(um, bool):
            from .scale import check_um_per_px  # here: core.scale loads OpenCV, which yawbcc --help need not

            try:
                prefs.lab_um_per_px = check_um_per_px(um)
            except ValueError:
                pass  # an impossible value: each image is measured, as by default
        ranges = data.get("reference_ranges")
        if isinstance(ranges, dict):
            for group, pair in ranges.items():
                if group in WBC_GROUPS and _valid_range(pair):
                    prefs.reference_ranges[group] = ReferenceRange(group, float(pair[0]), float(pair[1]))
        return prefs


def server_problem(server: str) -> str:
    """Why ``server`` cannot be the review stations' server ('' if it can: empty, or a
    ``postgresql://host/db`` URL without a password or a session name)."""
    from urllib.parse import urlsplit

    if not server:
        return ""
    if not server.startswith(("postgresql://", "postgres://")):
        return "The review server is a URL such as postgresql://host/database."
    parts = urlsplit(server)
    if parts.password is not None:
        return "The server URL must not hold a password: put it in the password file (PGPASSFILE, ~/.pgpass)."
    if "session=" in parts.query:
        return "The server URL names no session: each session is chosen when opened."
    return ""


def _valid_range(pair: object) -> bool:
    return (
        isinstance(pair, list | tuple)
        and len(pair) == 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in pair)
        and 0.0 <= pair[0] <= pair[1] <= 100.0
    )


def config_dir() -> Path:
    """Where the preferences live: ``$YAWBCC_CONFIG_DIR`` or the platform's config folder."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("yawbcc-desktop", appauthor=False))


def sessions_dir() -> Path:
    """Where new review sessions are saved until the reviewer saves one elsewhere."""
    if os.environ.get(CONFIG_ENV):
        return config_dir() / "sessions"
    import platformdirs

    return Path(platformdirs.user_data_dir("yawbcc-desktop", appauthor=False)) / "sessions"


def preferences_path() -> Path:
    return config_dir() / FILE_NAME


def load_preferences(path: str | os.PathLike[str] | None = None) -> Preferences:
    """The saved preferences, or the defaults (with ``problem`` set if the file was unreadable)."""
    path = Path(path) if path is not None else preferences_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Preferences()
    except OSError as exc:
        return Preferences(problem=f"could not read {path}: {exc.strerror}; using the defaults")
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        return Preferences(problem=f"{path} is damaged ({exc}); using the defaults until preferences are saved")
    return Preferences.from_json(data)


def save_preferences(prefs: Preferences, path: str | os.PathLike[str] | None = None) -> None:
    """Write atomically; a crash mid-save leaves the previous preferences intact."""
    path = Path(path) if path is not None else preferences_path()
    with atomic_write(path) as fh:
        json.dump(prefs.to_json(), fh, indent=2, ensure_ascii=False)
        fh.write("\n")
