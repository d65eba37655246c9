"""The event store interface. SQLite implements it today; a PostgreSQL store can later, unchanged callers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypedDict

from runtimed.schema.materializer import Envelope
from runtimed.schema.replica import Replica


class AppendResult(TypedDict, total=False):
    id: str
    seq: int
    error: dict[str, str]


Listener = Callable[[Sequence[Envelope], Sequence[bytes]], None]
"""Called after a commit with the new envelopes and their encoded JSON (same order)."""


class NotebookLog(Protocol):
    notebook_id: str

    @property
    def head(self) -> int: ...

    def append(self, events: Sequence[Any], actor: Any) -> list[AppendResult]:
        """Validate and append in order, in one transaction; one result per event (seq or error)."""

    def read(self, since: int = 0, until: int | None = None, limit: int | None = None) -> list[dict[str, Any]]: ...

    def read_encoded(self, since: int = 0, until: int | None = None, limit: int | None = None) -> list[bytes]:
        """Stored events as JSON bytes (for fan-out without re-encoding)."""

    def state_at(self, seq: int | None = None) -> Replica:
        """The notebook as it was after event ``seq`` (None: now), as an in-memory replica."""

    def snapshot(self) -> tuple[int, bytes]:
        """The projection at the head as a serialized SQLite database, with its seq."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
        """Read-only SQL over the projection (writes are refused)."""

    def subscribe(self, listener: Listener) -> Callable[[], None]: ...

    def close(self) -> None: ...


class EventStore(Protocol):
    def log(self, notebook_id: str) -> NotebookLog:
        """The log of a notebook (empty until its notebookCreated is appended)."""

    def exists(self, notebook_id: str) -> bool: ...

    def list_notebooks(self) -> list[dict[str, Any]]: ...

    def delete(self, notebook_id: str) -> None: ...

    def close(self) -> None: ...
