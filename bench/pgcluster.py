"""A throwaway PostgreSQL 15 cluster in a temporary folder, for the tests and the benchmarks.

``initdb`` and ``pg_ctl`` from Debian's ``postgresql-15`` run as the unprivileged ``postgres`` user when
the caller is root (PostgreSQL refuses to run as root); the server listens on 127.0.0.1 on a free port
with trust authentication and durability off (it is thrown away). ``tests/pg.py`` wraps it in a pytest
fixture; ``bench/bench_multi_daemon.py`` starts one of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path(os.environ.get("RUNTIMED_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_TIMEOUT = 60


class PgMissing(RuntimeError):
    """PostgreSQL 15 is not installed where expected."""


class PgCluster:
    """One PostgreSQL server in a temporary folder."""

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).exists():
                raise PgMissing(f"PostgreSQL 15 is not installed ({PG_BIN / tool} is missing): install it with "
                                "`apt-get install postgresql-15` (scripts/test.sh does when run as root), or point "
                                "RUNTIMED_PG_BIN at the folder holding initdb and pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="runtimed-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *argv: str) -> None:
        command = [*(["runuser", "-u", "postgres", "--"] if self._as_postgres else []), *argv]
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stdout[-2000:]} "
                               f"{done.stderr[-2000:]}")

    def start(self, max_connections: int = 300) -> None:
        """Create and start the cluster; the folder is removed again when the start fails."""
        try:
            self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-sync", "--no-instructions")
            settings = {
                "listen_addresses": "'127.0.0.1'", "port": str(self.port), "unix_socket_directories": f"'{self.root}'",
                "max_connections": str(max_connections), "fsync": "off", "full_page_writes": "off",
                "synchronous_commit": "off", "shared_buffers": "64MB",
            }
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                      "-t", str(START_TIMEOUT), "start")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(key: str, base_url: str) -> str:
    """The URL of a database of its own for ``key`` on the cluster at ``base_url`` (created when missing)."""
    import psycopg
    from psycopg import errors

    name = "t_" + hashlib.sha1(key.encode()).hexdigest()[:24]
    with psycopg.connect(base_url, autocommit=True) as conn:
        try:
            conn.execute(f'CREATE DATABASE "{name}"')
        except (errors.DuplicateDatabase, errors.UniqueViolation):
            pass  # made by an earlier call (another process, perhaps)
    return base_url.rsplit("/", 1)[0] + "/" + name
