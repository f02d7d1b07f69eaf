"""A real PostgreSQL server for tests and benchmarks: ``initdb`` into a temporary folder,
``pg_ctl start`` listening on a Unix socket in that folder (and, if asked, on a loopback
port), stopped and removed at the end.  Run as root (CI), the server runs as ``nobody``:
PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

DATABASE = "yawbcc"
USER = "yawbcc"


def server_bin() -> Path | None:
    """The folder of ``pg_ctl``/``initdb`` (Debian keeps them out of PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PostgresServer:
    """One throw-away server; ``url(name)`` is a session's URL on it."""

    def __init__(self, port: int | None = None, durable: bool = False, password: str | None = None):
        binaries = server_bin()
        if binaries is None:
            raise FileNotFoundError("PostgreSQL's server programs (pg_ctl, initdb) are not installed")
        self.bin = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="yawbcc-pg-"))
        self.data = self.folder / "data"
        self.port = port
        # Tests need no crash safety from the server's disk; the benchmark keeps it (durable).
        self.durable = durable
        self.password = password  # None: every local connection trusted; else scram-sha-256 with it
        self._as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        if self._as_user:
            os.chown(self.folder, _nobody(), -1)

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as_user, *args], capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}")

    def start(self) -> PostgresServer:
        if not self.data.exists():
            auth = ["-A", "trust"]
            if self.password is not None:
                secret = self.folder / "initdb-password"
                secret.write_text(self.password)
                if self._as_user:
                    os.chown(secret, _nobody(), -1)
                auth = ["-A", "scram-sha-256", f"--pwfile={secret}"]
            self._run(str(self.bin / "initdb"), "-D", str(self.data), *auth, "-U", USER, "--no-sync", "-E", "UTF8")
        self._pg_ctl("start")
        if not self._has_database():
            import psycopg

            with psycopg.connect(self.conninfo("postgres"), autocommit=True, password=self.password) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
        return self

    def _has_database(self) -> bool:
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), password=self.password) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is not None

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-k {self.folder} -c listen_addresses='{'127.0.0.1' if self.port else ''}' -c max_connections=200"
        if self.port:
            options += f" -p {self.port}"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = str(self.folder / "server.log")
        self._run(str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-o", options, "-l", log, "-w", "-t", "60", *extra)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode)

    def restart(self) -> None:
        """Stop (every connection is cut) and start again: what a server update does."""
        self._pg_ctl("restart", "-m", "fast")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def conninfo(self, database: str = DATABASE) -> str:
        host = f"127.0.0.1 port={self.port}" if self.port else f"{self.folder} port={self.port or 5432}"
        return f"host={host} dbname={database} user={USER}"

    def url(self, session: str) -> str:
        """The URL a station opens the session ``session`` by."""
        if self.port:
            return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}?session={session}"
        return f"postgresql://{USER}@/{DATABASE}?host={quote(str(self.folder), safe='')}&session={session}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nobody() -> int:
    import pwd

    return pwd.getpwnam("nobody").pw_uid
