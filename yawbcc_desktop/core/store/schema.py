"""The session file's format: its tables, its version, and what each version added.

Bump ``SCHEMA_VERSION`` with the columns it adds in ``ADDED_COLUMNS`` (the tables in
``ADDED_TABLES``); an older session is brought up to date when opened for writing (each
store's ``_migrate``) and an older file read through temporary views and tables when opened
read-only (``read_older``).  Format 3 added the sample notes; 4, a version per cell and the
station of each review action (several review stations).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

SCHEMA_VERSION = 4  # PRAGMA user_version; bump with the columns it adds in ADDED_COLUMNS
APPLICATION_ID = 0x59574243  # PRAGMA application_id, "YWBC": tells our files from other SQLite files
SESSION_SUFFIX = ".yawbcc"  # suggested file name ending for file dialogs

_SQLITE_MAGIC = b"SQLite format 3\x00"
# Every table, parents first: the order a copy fills them in (``transfer``).  A table added
# here is created, checked, copied and exported by both stores.
TABLE_ORDER = ("session_info", "image", "cell", "review_action", "correction", "sign_off", "sample_note")
APPEND_ONLY = ("review_action", "correction", "sign_off", "sample_note")  # the audit trail

SCHEMA = """
CREATE TABLE session_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE image (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,          -- absolute
    folder TEXT NOT NULL,               -- the path's parent: the unit of a per-folder count
    status TEXT NOT NULL,               -- analysed / no cell found / failed
    error TEXT NOT NULL DEFAULT '',
    mode TEXT NOT NULL DEFAULT '',      -- cell / smear
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    analysed_at TEXT NOT NULL,
    -- format 2: what the analysis measured on the whole image (core/scale.py, core/familiarity.py)
    um_per_px REAL,                     -- estimated pixel size; NULL: not measured
    scale_source TEXT NOT NULL DEFAULT '',  -- red cells / white cell / default / set by the lab
    unfamiliar_score REAL,              -- median of its cells' scores; NULL: no familiarity model
    unfamiliar INTEGER NOT NULL DEFAULT 0,  -- 1: score above the model's threshold
    unfamiliar_threshold REAL           -- that threshold; NULL: no familiarity model
);
CREATE INDEX image_folder ON image(folder);
CREATE TABLE cell (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES image(id),
    cell_index INTEGER NOT NULL,        -- CellRecord.cell_id, the classify CSV's cell_id
    kind TEXT NOT NULL,
    x INTEGER NOT NULL, y INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    mask BLOB,                          -- zlib(packbits(mask)), shape (height, width)
    model TEXT NOT NULL DEFAULT '',
    predicted TEXT,                     -- NULL: not classified
    confidence REAL,
    probs BLOB,                         -- float32 little-endian, class_order of session_info
    -- The latest correction, copied here in the same transaction for fast queries.
    label TEXT,                         -- NULL: not reviewed, the prediction stands
    reviewer TEXT NOT NULL DEFAULT '',
    reviewed_at TEXT NOT NULL DEFAULT '',
    -- format 2
    diameter_um REAL,                   -- the segmented outline's equivalent diameter
    unfamiliar_score REAL,              -- NULL: no familiarity model
    flags TEXT NOT NULL DEFAULT '',     -- review_rules.analysis_flags, joined by '; ' ('' none)
    -- format 4: bumped by each change of label, so a station correcting what it saw is told
    -- when another station changed the cell meanwhile
    version INTEGER NOT NULL DEFAULT 0,
    UNIQUE (image_id, cell_index)
);
CREATE INDEX cell_confidence ON cell(confidence);
CREATE TABLE review_action (            -- one reviewer action: what one undo step reverts
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('set', 'confirm', 'undo', 'redo')),
    reverts INTEGER REFERENCES review_action(id),
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL,
    station TEXT NOT NULL DEFAULT ''    -- format 4: the workstation (host name) it was made on
);
CREATE TABLE correction (               -- the audit trail: one row per cell per action
    id INTEGER PRIMARY KEY,
    action_id INTEGER NOT NULL REFERENCES review_action(id),
    cell_id INTEGER NOT NULL REFERENCES cell(id),
    predicted TEXT,                     -- the model's label, so each row reads on its own
    previous TEXT,                      -- label before (NULL: not reviewed)
    label TEXT,                         -- label after (NULL: back to not reviewed, by an undo)
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX correction_cell ON correction(cell_id);
CREATE TABLE sign_off (
    id INTEGER PRIMARY KEY,
    folder TEXT NOT NULL,               -- '' for the whole session
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL,
    threshold REAL NOT NULL,
    last_correction INTEGER NOT NULL,   -- max(correction.id) then: a later one in scope voids it
    last_cell INTEGER NOT NULL,         -- max(cell.id) in scope then: a new cell voids it
    counts TEXT NOT NULL                -- JSON {final label: cells}, what was signed
);
"""
# Tables each format added: created in an older file by the migration, and as empty
# temporary tables when it is opened read-only.
ADDED_TABLES: dict[int, dict[str, str]] = {
    3: {
        "sample_note": """
CREATE TABLE {prefix}sample_note (      -- the sample identifier and morphology comments: the latest row is current
    id INTEGER PRIMARY KEY,
    folder TEXT NOT NULL,               -- '' for the whole session
    field TEXT NOT NULL CHECK (field IN ('sample_id', 'comments')),
    value TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL
);
""",
    },
}
SCHEMA += "".join(sql.format(prefix="") for tables in ADDED_TABLES.values() for sql in tables.values())
# The tables every session has had since format 1: opening checks a session has them all.
TABLES = set(TABLE_ORDER) - {name for tables in ADDED_TABLES.values() for name in tables}
# Columns each format added to an older file's tables: (table, column, declaration, their
# value in an older file).  Opened for writing, an older file gets them by ALTER TABLE;
# opened read-only, by temporary views (``read_older``).  The CREATE TABLEs above hold them
# too, and a test checks that a migrated file has the same columns as a new one.
ADDED_COLUMNS: dict[int, list[tuple[str, str, str, str]]] = {
    2: [
        ("image", "um_per_px", "REAL", "NULL"),
        ("image", "scale_source", "TEXT NOT NULL DEFAULT ''", "''"),
        ("image", "unfamiliar_score", "REAL", "NULL"),
        ("image", "unfamiliar", "INTEGER NOT NULL DEFAULT 0", "0"),
        ("image", "unfamiliar_threshold", "REAL", "NULL"),
        ("cell", "diameter_um", "REAL", "NULL"),
        ("cell", "unfamiliar_score", "REAL", "NULL"),
        ("cell", "flags", "TEXT NOT NULL DEFAULT ''", "''"),
    ],
    3: [],  # a table only (ADDED_TABLES)
    4: [
        ("cell", "version", "INTEGER NOT NULL DEFAULT 0", "0"),
        ("review_action", "station", "TEXT NOT NULL DEFAULT ''", "''"),
    ],
}
assert max(ADDED_COLUMNS) == SCHEMA_VERSION


def columns_since(version: int) -> list[tuple[str, str, str, str]]:
    """The columns a file of format ``version`` lacks."""
    return [col for v in sorted(ADDED_COLUMNS) if v > version for col in ADDED_COLUMNS[v]]


TABLES_SQL = SCHEMA  # both stores' tables; each adds its own guard of the audit trail


def missing_tables(present: Iterable[str], prefix: str = "") -> dict[str, str]:
    """The CREATE TABLE statement of each table a session of an older format lacks (those
    not in ``present``), by name; ``prefix`` before the name (``temp.``)."""
    have = set(present)
    return {
        name: sql.format(prefix=prefix) for tables in ADDED_TABLES.values() for name, sql in tables.items() if name not in have
    }


def table_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The columns a table of an SQLite file has."""
    return {r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")}


def audit_triggers(tables: Iterable[str]) -> list[str]:
    """History is never rewritten: undo appends rows, and SQLite itself refuses the rest."""
    return [
        f"CREATE TRIGGER {t}_no_{op.lower()} BEFORE {op} ON {t} "
        f"BEGIN SELECT RAISE(ABORT, '{t} rows are an audit trail and cannot be changed'); END;\n"
        for t in tables
        for op in ("UPDATE", "DELETE")
    ]


SCHEMA += "".join(audit_triggers(APPEND_ONLY))


def read_older(conn: sqlite3.Connection) -> None:
    """Let a read-only connection to an older file read it as this format: a temporary view
    per changed table, of the same name (SQLite looks in ``temp`` first), adds the columns
    the file lacks at their older-file values.  The file itself is not touched."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if not 1 <= version < SCHEMA_VERSION:
        return  # this format; or not a session, which _check_schema refuses
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for sql in missing_tables(tables, prefix="temp.").values():
        conn.execute(sql)
    missing = columns_since(version)
    for table in dict.fromkeys(t for t, *_ in missing):
        if table in tables:
            # What the file lacks, not what its number says: a file of an unmerged branch's
            # numbering may have some of them already.
            have = table_columns(conn, table)
            extra = ", ".join(f"{value} AS {column}" for t, column, _, value in missing if t == table and column not in have)
            if extra:
                conn.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {extra} FROM main.{table}")
