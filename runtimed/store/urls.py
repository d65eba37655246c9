"""Store URLs: which backend a daemon (or ``runt store copy``) opens.

``sqlite:`` is the home's SQLite store (the default), ``sqlite:PATH`` the SQLite store of another home
folder, ``memory:`` a store that lives as long as the process, and ``postgresql://USER@HOST/DB`` the
shared PostgreSQL store of a deployment of several daemons (each keeps its caches in its own home).
"""

from __future__ import annotations

from pathlib import Path

from runtimed.errors import RuntimedError
from runtimed.schema.limits import Limits
from runtimed.store.base import EventStore

DEFAULT_STORE_URL = "sqlite:"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def open_store(url: str, home: Path, *, limits: Limits | None = None) -> EventStore:
    """The store ``url`` names; ``home`` is the daemon's home (its SQLite store, or its PostgreSQL caches).
    A URL of no known kind, or a server that cannot be reached, raises a RuntimedError that says what to fix."""
    url = url.strip()
    if url == "sqlite:" or url.startswith("sqlite:"):
        from runtimed.store.sqlite import SQLiteEventStore

        path = url[len("sqlite:"):].removeprefix("//")
        return SQLiteEventStore(Path(path).expanduser() if path else home, limits=limits)
    if url == "memory:":
        from runtimed.store.sqlite import MemoryEventStore

        return MemoryEventStore(limits=limits)
    if is_postgres(url):
        from runtimed.store.postgres import PostgresEventStore

        return PostgresEventStore(url, home / "pgcache", limits=limits)
    raise RuntimedError(f"unknown store URL {url!r}: use sqlite: (the home's files), sqlite:PATH, memory:, or "
                        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE", code="store_error")
