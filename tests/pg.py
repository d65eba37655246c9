"""A throwaway PostgreSQL 15 cluster for the tests that need one (``@pytest.mark.postgres``).

``pg_cluster`` (session-scoped) runs ``initdb`` and ``pg_ctl`` from Debian's ``postgresql-15`` in a fresh
temporary folder as the unprivileged ``postgres`` user when the tests run as root (PostgreSQL refuses to
run as root), listening on 127.0.0.1 on a free port with trust authentication, and stops it at the end
of the session. Missing binaries fail the test with the command that installs them: these tests must
never be skipped silently.

Each store (a contract-suite root, a group of daemons) gets a database of its own, named after a
key, created on first use (``database_url``). The cluster's URL is exported as ``RUNTIMED_TEST_PG_URL``
so that subprocesses (the contract suite's writers) reach the same cluster.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("RUNTIMED_PG_BIN", "/usr/lib/postgresql/15/bin"))
URL_ENV = "RUNTIMED_TEST_PG_URL"
START_TIMEOUT = 60


class PgCluster:
    """One PostgreSQL server in a temporary folder."""

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).exists():
                pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN / tool} is missing): install it with "
                            "`apt-get install postgresql-15` (scripts/test.sh does when run as root), or point "
                            "RUNTIMED_PG_BIN at the folder holding initdb and pg_ctl", pytrace=False)
        self.root = Path(tempfile.mkdtemp(prefix="runtimed-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *argv: str) -> None:
        command = [*(["runuser", "-u", "postgres", "--"] if self._as_postgres else []), *argv]
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stdout[-2000:]} "
                               f"{done.stderr[-2000:]}")

    def start(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        settings = {
            "listen_addresses": "'127.0.0.1'", "port": str(self.port), "unix_socket_directories": f"'{self.root}'",
            "max_connections": "300", "fsync": "off", "full_page_writes": "off", "synchronous_commit": "off",
            "shared_buffers": "64MB",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", str(START_TIMEOUT), "start")

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(key: str, base_url: str | None = None) -> str:
    """The URL of a database of its own for ``key`` on the test cluster (created when missing)."""
    import psycopg
    from psycopg import errors

    base_url = base_url or os.environ[URL_ENV]
    name = "t_" + hashlib.sha1(key.encode()).hexdigest()[:24]
    with psycopg.connect(base_url, autocommit=True) as conn:
        try:
            conn.execute(f'CREATE DATABASE "{name}"')
        except (errors.DuplicateDatabase, errors.UniqueViolation):
            pass  # made by an earlier call (another process, perhaps)
    return base_url.rsplit("/", 1)[0] + "/" + name


def open_test_store(root: str | Path, snapshot_every: int):  # type: ignore[no-untyped-def]
    """The contract suite's PostgreSQL store for ``root``: a database per root, the caches under ``root``."""
    from runtimed.store.postgres import PostgresEventStore

    return PostgresEventStore(database_url(str(root)), Path(root), snapshot_every=snapshot_every)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A running throwaway PostgreSQL 15 (its URL also in ``RUNTIMED_TEST_PG_URL``)."""
    cluster = PgCluster()
    try:
        cluster.start()
    except BaseException:
        shutil.rmtree(cluster.root, ignore_errors=True)
        raise
    previous = os.environ.get(URL_ENV)
    os.environ[URL_ENV] = cluster.url()
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop(URL_ENV, None)
        else:
            os.environ[URL_ENV] = previous
        cluster.stop()
