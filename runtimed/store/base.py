"""The store contract: everything the daemon needs from an event-store backend, and nothing more.

A backend keeps, per notebook, an append-only log of events and the projection that the
shared materializer builds from it. The daemon talks to a backend only through these
Protocols (``tests/test_store_contract.py`` runs the same suite against every backend), so
the table layout stays a private matter of ``runtimed/store/`` and ``runtimed/schema/``.

Reads of the projection go through *views*: functions of ``schema/views.py`` that take a
read-only connection and return typed rows. ``NotebookLog.view(fn, ...)`` runs one under the
log's lock, so a view never sees half an append.

Calls are synchronous and thread-safe. ``NotebookLog.blocking`` says whether a call may wait
on I/O long enough that an event loop should run it in a worker thread (a network database)
rather than inline (a local SQLite file, where an append takes well under a millisecond).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypedDict, TypeVar

from runtimed.schema.limits import Limits
from runtimed.schema.materializer import Envelope
from runtimed.schema.replica import Replica
from runtimed.schema.views import NotebookInfo, Reader

P = ParamSpec("P")
T = TypeVar("T")


class AppendResult(TypedDict, total=False):
    id: str
    seq: int
    error: dict[str, str]


Listener = Callable[[Sequence[Envelope], Sequence[bytes]], None]
"""Called after a commit with the new envelopes and their encoded JSON (same order), in the thread that
committed; a listener that must run elsewhere (an event loop) hands the call over itself."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False


@dataclass(frozen=True)
class QueryLimits:
    """Bounds of one read-only query: wall time, rows returned, and bytes returned."""

    timeout: float = 10.0
    max_rows: int = 100_000
    max_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_env(cls) -> QueryLimits:
        import os

        def number(name: str, default: float) -> float:
            raw = os.environ.get(name, "")
            try:
                return float(raw) if raw else default
            except ValueError:
                return default

        return cls(timeout=number("RUNTIMED_QUERY_TIMEOUT", cls.timeout),
                   max_rows=int(number("RUNTIMED_QUERY_MAX_ROWS", cls.max_rows)),
                   max_bytes=int(number("RUNTIMED_QUERY_MAX_BYTES", cls.max_bytes)))


class NotebookLog(Protocol):
    """One notebook's log and projection."""

    notebook_id: str
    limits: Limits
    blocking: bool

    @property
    def head(self) -> int:
        """The seq of the last stored event (0: the notebook does not exist yet)."""

    def append(self, events: Sequence[Any], actor: Any) -> list[AppendResult]:
        """Validate (catalog, then preconditions against the current state) and append in order, in one
        transaction; one result per event, a seq or an error. A stored id answers with its stored seq."""

    def read(self, since: int = 0, until: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Stored events with ``since < seq <= until``, upcast to the catalog's current versions."""

    def read_encoded(self, since: int = 0, until: int | None = None, limit: int | None = None) -> list[bytes]:
        """The same events as JSON bytes (for fan-out without re-encoding)."""

    def view(self, fn: Callable[Concatenate[Reader, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a projection view (a function of ``schema/views.py``) against the current state."""

    def state_at(self, seq: int | None = None) -> Replica:
        """The notebook as it was after event ``seq`` (None: now), as an in-memory replica."""

    def snapshot(self) -> tuple[int, bytes]:
        """The projection at the head as a serialized SQLite database, with its seq."""

    def query(self, sql: str, params: Sequence[Any] = (), limits: QueryLimits | None = None) -> QueryResult:
        """Read-only SQL over the projection, bounded in time, rows and bytes; writes and side effects
        (ATTACH, VACUUM INTO, PRAGMA writes) are refused."""

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Be told of every commit; returns the function that unsubscribes."""

    def info(self) -> NotebookInfo | None:
        """Title, times, head, cell count and active runtime; None while the notebook does not exist."""

    def close(self) -> None: ...


class EventStore(Protocol):
    """All the notebooks of one deployment."""

    def log(self, notebook_id: str) -> NotebookLog:
        """The log of a notebook (empty until its notebookCreated is appended)."""

    def exists(self, notebook_id: str) -> bool: ...

    def require(self, notebook_id: str) -> NotebookLog:
        """The log of an existing notebook, or NotFoundError."""

    def list_notebooks(self) -> list[dict[str, Any]]:
        """``info()`` of every notebook, most recently updated first (opening no log it keeps open)."""

    def close_log(self, notebook_id: str) -> None:
        """Close the notebook's log if it is open (the next ``log()`` opens it again); its user must be gone."""

    def delete(self, notebook_id: str) -> None:
        """Remove a notebook with its whole log (NotFoundError if there is none)."""

    def acquire_lease(self, key: str, holder: str, ttl: float) -> bool:
        """Take or renew a named lease for ``ttl`` seconds; False while another holder has it. Leases
        decide which daemon does something once (e.g. start a notebook's managed runtime)."""

    def release_lease(self, key: str, holder: str) -> None: ...

    def migrate(self) -> list[str]:
        """Bring every stored projection to the current version (rebuilding from the log); the ids of the
        notebooks that were rebuilt. Run before serving."""

    def close(self) -> None: ...
