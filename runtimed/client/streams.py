"""Live event streams over a session's replica: ``stream_execute`` and ``subscribe``.

Every event the sync client applies is turned into zero or more :class:`ExecutionEvent`
values (the published package's shape) and queued for the consumer. The queue is bounded:
a consumer that stops reading loses the oldest events, never the process's memory, and
is told so by an ``error`` event.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from runtimed.client.models import EVENT_TYPES, ArtifactFetch, ExecutionEvent, Output
from runtimed.client.sync import SyncClient
from runtimed.errors import RuntimedError
from runtimed.schema import views
from runtimed.schema.materializer import Envelope
from runtimed.schema.replica import Replica

T = TypeVar("T")
MAX_BUFFERED = 10_000
"""Events kept for a subscriber that does not read; older ones are dropped first."""

_CELL_EVENTS = {"cellCreated": "cell_created", "cellSourceEdited": "cell_changed", "cellTypeChanged": "cell_changed",
                "cellMoved": "cell_changed", "cellMetadataSet": "metadata_changed", "cellDeleted": "cell_deleted",
                "outputsCleared": "outputs_cleared"}


def check_event_types(event_types: Iterable[str] | None) -> frozenset[str] | None:
    """The filter as a set; an unknown type is an error that lists the known ones."""
    if event_types is None:
        return None
    wanted = frozenset(event_types)
    unknown = sorted(wanted - set(EVENT_TYPES))
    if unknown:
        raise RuntimedError(f"unknown event type(s) {', '.join(map(repr, unknown))}; use any of {', '.join(EVENT_TYPES)}",
                            code="invalid_request")
    return wanted


def to_events(replica: Replica, env: Envelope, fetch: ArtifactFetch | None = None) -> list[ExecutionEvent]:
    """What one applied log event means to a subscriber (read right after it was applied); ``fetch`` resolves
    artifacts (a spilled stream's text) when an output's value is read."""
    args: Any = env.args
    name, seq = env.name, env.seq
    base: dict[str, Any] = {"seq": seq, "name": name}
    if name in _CELL_EVENTS:
        return [ExecutionEvent(_CELL_EVENTS[name], cell_id=args.cell_id, **base)]
    if name == "notebookMetadataSet":
        return [ExecutionEvent("metadata_changed", **base)]
    if name == "runtimeStatusChanged":
        return [ExecutionEvent("kernel_status", status=args.status, **base)]
    if name in ("executionRequested", "executionStarted", "executionCompleted"):
        item = replica.view(views.execution, args.queue_id)
        cell_id = item["cell_id"] if item else getattr(args, "cell_id", None)
        if name == "executionRequested":
            return [ExecutionEvent("execution_queued", cell_id=cell_id, queue_id=args.queue_id, status="pending", **base)]
        if name == "executionStarted":
            return [ExecutionEvent("execution_started", cell_id=cell_id, queue_id=args.queue_id, status="running",
                                   execution_count=item["execution_count"] if item else None, **base)]
        error = args.error
        message = f"{error.ename}: {error.evalue}" if error is not None else None
        if args.status == "cancelled" and message is None:
            message = "cancelled before it finished"
        kind = "done" if args.status == "success" else "error"
        return [ExecutionEvent(kind, cell_id=cell_id, queue_id=args.queue_id, status=args.status,
                               execution_count=args.execution_count, error_message=message, **base)]
    if name in ("outputAdded", "streamTextChanged", "streamTailSet"):
        found = replica.view(views.located_output, args.output_id)
        if found is None:  # already cleared again in the same batch
            return []
        cell_id, index, data = found
        return [ExecutionEvent("output", cell_id=cell_id, queue_id=getattr(args, "queue_id", None),
                               output=Output.from_dict(data, fetch), output_index=index, **base)]
    return []


class EventSubscription:
    """An async iterator of :class:`ExecutionEvent` (``async for event in subscription``).

    Filtered by cell ids and event types; ``close()`` (or leaving ``async with``) stops it.
    ``until`` ends the iteration after the first event it accepts (``stream_execute`` ends at
    its execution's ``done``/``error``).
    """

    def __init__(self, connect: Callable[[], Awaitable[SyncClient]], *, cell_ids: Iterable[str] | None = None,
                 event_types: Iterable[str] | None = None, accept: Callable[[ExecutionEvent], bool] | None = None,
                 until: Callable[[ExecutionEvent], bool] | None = None, timeout: float | None = None,
                 fetch: ArtifactFetch | None = None) -> None:
        self._connect = connect
        self._fetch = fetch
        self._client: SyncClient | None = None
        self._cells = frozenset(cell_ids) if cell_ids is not None else None
        self._types = check_event_types(event_types)
        self._accept = accept
        self._until = until
        self._timeout = timeout
        self._buffer: collections.deque[ExecutionEvent] = collections.deque()
        self._dropped = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._finished = False
        self._unsubscribe: Callable[[], None] = lambda: None

    async def attach(self) -> None:
        """Start receiving (connecting the session if needed); the first ``__anext__`` does it too."""
        if self._client is None and not self._closed:
            self._client = await self._connect()
            self._unsubscribe = self._client.on_events(self._on_events)

    def _wanted(self, event: ExecutionEvent) -> bool:
        if self._cells is not None and event.cell_id not in self._cells:
            return False
        if self._types is not None and event.event_type not in self._types:
            return False
        return self._accept is None or self._accept(event)

    def feed(self, events: Iterable[ExecutionEvent]) -> None:
        """Queue events (also used to replay what happened before the subscription)."""
        for event in events:
            if self._finished or not self._wanted(event):
                continue
            if len(self._buffer) >= MAX_BUFFERED:
                self._buffer.popleft()
                self._dropped += 1
            self._buffer.append(event)
            if self._until is not None and self._until(event):
                self._finished = True
                self._unsubscribe()
        self._wake.set()

    def _on_events(self, envelopes: list[Envelope]) -> None:
        assert self._client is not None
        replica = self._client.replica
        self.feed(e for env in envelopes for e in to_events(replica, env, self._fetch))

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> ExecutionEvent:
        await self.attach()
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            return ExecutionEvent("error", error_message=f"{dropped} event(s) were dropped: the subscriber fell more "
                                  f"than {MAX_BUFFERED} events behind")
        while not self._buffer:
            if self._closed or self._finished:
                raise StopAsyncIteration
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._timeout)
            except TimeoutError:
                self.close_now()
                raise TimeoutError(f"no event within {self._timeout:g} s") from None
        return self._buffer.popleft()

    def close_now(self) -> None:
        self._closed = True
        self._unsubscribe()
        self._wake.set()

    async def close(self) -> None:
        """Stop receiving events (those already queued are dropped)."""
        self.close_now()
        self._buffer.clear()

    async def __aenter__(self) -> EventSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class BlockingIterator(Iterator[T]):
    """A plain iterator over an async one that lives on the blocking sessions' loop."""

    def __init__(self, source: Any, run: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self._source = source
        self._run = run

    def __iter__(self) -> BlockingIterator[T]:
        return self

    def __next__(self) -> T:
        async def step() -> tuple[bool, Any]:
            try:
                return True, await self._source.__anext__()
            except StopAsyncIteration:
                return False, None

        more, value = self._run(step())
        if not more:
            raise StopIteration
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the subscription."""
        self._run(self._source.close())

    def __enter__(self) -> BlockingIterator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
