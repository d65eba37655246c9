"""A throwaway PostgreSQL 15 cluster for the tests that need one (``@pytest.mark.postgres``).

``pg_cluster`` (session-scoped) starts a ``bench/pgcluster.py`` cluster (``initdb`` and ``pg_ctl`` from
Debian's ``postgresql-15`` in a fresh temporary folder, as the unprivileged ``postgres`` user when the
tests run as root, on 127.0.0.1 and a free port) and stops it at the end of the session. Missing
binaries fail the test with the command that installs them: these tests must never be skipped silently.

Each store (a contract-suite root, a group of daemons) gets a database of its own, named after a
key, created on first use (``database_url``). The cluster's URL is exported as ``RUNTIMED_TEST_PG_URL``
so that subprocesses (the contract suite's writers) reach the same cluster.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))  # appended: nothing of tests/ is shadowed

from pgcluster import PgCluster, PgMissing  # noqa: E402
from pgcluster import database_url as _database_url  # noqa: E402
from pgcluster import free_port as _free_port  # noqa: E402, F401 - used by test_postgres_store

URL_ENV = "RUNTIMED_TEST_PG_URL"
__all__ = ["PgCluster", "database_url", "open_test_store", "pg_cluster"]


def database_url(key: str, base_url: str | None = None) -> str:
    """The URL of a database of its own for ``key`` on the test cluster (created when missing)."""
    return _database_url(key, base_url or os.environ[URL_ENV])


def open_test_store(root: str | Path, snapshot_every: int):  # type: ignore[no-untyped-def]
    """The contract suite's PostgreSQL store for ``root``: a database per root, the caches under ``root``."""
    from runtimed.store.postgres import PostgresEventStore

    return PostgresEventStore(database_url(str(root)), Path(root), snapshot_every=snapshot_every)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A running throwaway PostgreSQL 15 (its URL also in ``RUNTIMED_TEST_PG_URL``)."""
    try:
        cluster = PgCluster()
    except PgMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    cluster.start()
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
