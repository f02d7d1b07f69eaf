"""Where a session is: a path (an SQLite file) or ``postgresql://host/db?session=NAME`` (a
session on the lab's server), and which store opens it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import ReviewSession


def is_server_url(location: str | os.PathLike[str]) -> bool:
    """True for a session on a PostgreSQL server (``postgresql://...``), False for a file path."""
    return str(location).startswith(("postgresql://", "postgres://"))


def session_url(server: str, name: str) -> str:
    """The URL of session ``name`` on ``server`` (``postgresql://host/db``, as the preferences keep it)."""
    return f"{server}{'&' if '?' in server else '?'}session={name}"


def server_sessions(server: str) -> list[str]:
    """The names of the review sessions on ``server``, newest first (``SessionUnreachable`` if it cannot be reached)."""
    from .postgres_store import list_sessions

    return list_sessions(server)


def store_for(location: str | os.PathLike[str]) -> type[ReviewSession]:
    """The store class of ``location``: the server's for a URL, else the file's."""
    # psycopg is imported only here, for a server URL: the installer needs no server.
    if is_server_url(location):
        from .postgres_store import PostgresSession

        return PostgresSession
    from .sqlite_store import SqliteSession

    return SqliteSession
