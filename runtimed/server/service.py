"""The notebook service: the live side of one notebook, owned by the daemon's event loop.

Every append to a notebook goes through ``NotebookService.append`` (async, on the loop),
whoever asks: a WebSocket peer, a REST call, the liveness watcher, the runtime supervisor.
After each commit the service, on the loop, wakes its connections (fan-out) and runs its
append hooks (runtime triggers). A store that reports commits from another thread (a
backend with its own notifications) is handed over to the loop, never run beside it.

Fan-out is pull-based. An append only wakes each connection's sender, which sends what
it has not sent yet, from a small cache of recent encoded events or from the log. A slow
reader therefore never makes the server buffer events for it: it lags, and is
disconnected with a reason if a single send blocks too long. Control messages (acks,
presence) are queued per connection but bounded: presence is coalesced to the latest
message of each other peer, and a connection whose control backlog passes its limit is
closed as a slow consumer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson

from runtimed.errors import RuntimedError
from runtimed.schema.materializer import Envelope
from runtimed.schema.replica import Replica
from runtimed.schema.views import Reader
from runtimed.server.people import Principal, forbidden
from runtimed.store.base import AppendResult, NotebookLog

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

RECENT_EVENTS = 4096
RECENT_BYTES = 4 * 1024 * 1024
"""A service caches at most this many recent events and bytes (large outputs would otherwise pin gigabytes)."""
BATCH_EVENTS = 1000
BATCH_BYTES = 1024 * 1024
"""An ``events`` message holds at most this many events, and stops near this many bytes (one event at least)."""

AppendHook = Callable[["NotebookService", Sequence[Envelope]], None]
AppendCheck = Callable[["NotebookService", Sequence[Any]], Awaitable[dict[int, dict[str, Any]]]]
"""A server-side precondition the materializer cannot see (e.g. that a referenced artifact is stored): the
results of the events it refuses, by index."""
PeerHook = Callable[[str, "NotebookService", "Peer"], None]


class Peer:
    """One connection's outgoing side, as the service sees it."""

    def __init__(self, connection_id: str, actor: dict[str, Any], client: str, sent_seq: int, *,
                 max_outbox_bytes: int) -> None:
        self.connection_id = connection_id
        self.actor = actor
        self.client = client
        self.sent_seq = sent_seq
        self.outbox: collections.deque[bytes] = collections.deque()
        self.outbox_bytes = 0
        self.max_outbox_bytes = max_outbox_bytes
        self.presence_out: dict[str, bytes] = {}
        """The latest presence of each other peer not yet sent (a flood of presence coalesces here)."""
        self.overflowed = False
        self.wake = asyncio.Event()
        self.presence: dict[str, Any] | None = None
        self.closed = False

    def send_control(self, message: bytes) -> None:
        self.outbox.append(message)
        self.outbox_bytes += len(message)
        if self.outbox_bytes > self.max_outbox_bytes:
            self.overflowed = True
        self.wake.set()

    def send_presence(self, sender_id: str, message: bytes) -> None:
        self.presence_out[sender_id] = message
        self.wake.set()

    def take_control(self) -> list[bytes]:
        """Everything queued for sending now: control messages first, then coalesced presence."""
        items = list(self.outbox)
        self.outbox.clear()
        self.outbox_bytes = 0
        if self.presence_out:
            items.extend(self.presence_out.values())
            self.presence_out.clear()
        return items

    def describe(self) -> dict[str, Any]:
        return {
            "connectionId": self.connection_id,
            "actor": self.actor,
            "client": self.client,
            "cellId": (self.presence or {}).get("cellId"),
        }


class NotebookService:
    """One notebook's appends, fan-out and presence, on the event loop that created it."""

    def __init__(self, notebook_id: str, nb_log: NotebookLog) -> None:
        self.notebook_id = notebook_id
        self.log = nb_log
        self.max_outbox_bytes = nb_log.limits.max_outbox_bytes
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._handed_over = self._handed_delivered = 0
        """Commits handed to the loop from other threads, and how many of them it delivered: a commit reported on
        the loop while some are still queued (a store that pulls another daemon's events during a read made on the
        loop) queues behind them, so peers and hooks always get events in seq order."""
        self.peers: dict[str, Peer] = {}
        self._recent: collections.deque[tuple[int, bytes]] = collections.deque()
        self._recent_bytes = 0
        self._message_cache: tuple[int, int, bytes] | None = None
        self.append_hooks: list[AppendHook] = []
        self.append_checks: list[AppendCheck] = []
        self.peer_hooks: list[PeerHook] = []
        self.closed: tuple[str, str] | None = None
        """Why the service was closed (code, message): its live connections are ended with that reason."""
        self.last_used = time.monotonic()
        """When the service was last handed out, called or connected to (``server/idle_notebooks.py``)."""
        self._calls = 0  # store calls under way in worker threads
        self._unsubscribe = nb_log.subscribe(self._on_commit)

    @property
    def in_use(self) -> bool:
        """Someone is connected, or a store call is under way."""
        return bool(self.peers) or self._calls > 0

    @property
    def head(self) -> int:
        return self.log.head

    # -- the store, from the loop ----------------------------------------------------------------

    def _check_loop(self) -> None:
        if threading.get_ident() != self._loop_thread:
            raise RuntimedError("NotebookService is used from a thread other than its event loop's",
                                code="wrong_thread")

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call: inline for a local store, in a worker thread for one that waits on I/O."""
        self._check_loop()
        self.last_used = time.monotonic()
        if self.log.blocking:
            self._calls += 1
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            finally:
                self._calls -= 1
                self.last_used = time.monotonic()
        return fn(*args, **kwargs)

    async def append(self, events: Sequence[Any], actor: Any, *, principal: Principal | None = None
                     ) -> list[AppendResult]:
        """Validate and append in one transaction; fan-out and hooks run on the loop after the commit.

        With a ``principal``, its actor is bound to it and each event it may not push (its role on this
        notebook) is refused with ``forbidden``; the others go ahead, as with any rejected event."""
        if self.closed is not None:
            raise RuntimedError(self.closed[1], code=self.closed[0])
        refused: dict[int, Any] = {}
        for check in self.append_checks:
            refused.update(await check(self, events))
        if (principal is None or principal.is_owner) and not refused:
            return await self._call(self.log.append, events, actor)
        if principal is not None and not principal.is_owner:
            actor = principal.bind_actor(actor)
        allowed = []
        for index, event in enumerate(events):
            name = event.get("name") if isinstance(event, dict) else None
            if index in refused:
                continue
            if principal is not None and isinstance(name, str) and not principal.event_allowed(self.notebook_id, name):
                refused[index] = {"id": str(event.get("id") or ""), "error": forbidden(
                    principal, f"push {name} to notebook {self.notebook_id!r}").to_dict()}
            else:
                allowed.append(event)
        stored = iter(await self._call(self.log.append, allowed, actor) if allowed else [])
        return [refused[i] if i in refused else next(stored) for i in range(len(events))]

    async def view(self, fn: Callable[Concatenate[Reader, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._call(self.log.view, fn, *args, **kwargs)

    async def state_at(self, seq: int | None) -> Replica:
        return await self._call(self.log.state_at, seq)

    async def snapshot(self) -> tuple[int, bytes]:
        return await self._call(self.log.snapshot)

    async def read_encoded(self, since: int = 0, until: int | None = None, limit: int | None = None) -> list[bytes]:
        return await self._call(self.log.read_encoded, since, until, limit)

    def _on_commit(self, stored: Sequence[Envelope], encoded: Sequence[bytes]) -> None:
        # the store reports commits one at a time, in seq order (under its lock): the counters need no lock
        if threading.get_ident() == self._loop_thread and self._handed_over == self._handed_delivered:
            self._deliver(stored, encoded)
        else:  # a commit reported from another thread, or behind one: hand it to the loop, in order
            self._handed_over += 1
            self.loop.call_soon_threadsafe(self._deliver_handed, list(stored), list(encoded))

    def _deliver_handed(self, stored: Sequence[Envelope], encoded: Sequence[bytes]) -> None:
        self._handed_delivered += 1
        self._deliver(stored, encoded)

    def _deliver(self, stored: Sequence[Envelope], encoded: Sequence[bytes]) -> None:
        recent = self._recent
        for env, data in zip(stored, encoded, strict=True):
            recent.append((env.seq, data))
            self._recent_bytes += len(data)
        while recent and (len(recent) > RECENT_EVENTS or self._recent_bytes > RECENT_BYTES):
            self._recent_bytes -= len(recent.popleft()[1])
        for peer in self.peers.values():
            peer.wake.set()
        for hook in list(self.append_hooks):
            try:
                hook(self, stored)
            except Exception:
                log.exception("append hook failed")

    async def events_message(self, after: int) -> tuple[bytes, int] | None:
        """The next ``events`` message for a reader that has everything up to ``after``."""
        head = self.log.head
        if after >= head:
            return None
        cached = self._message_cache
        if cached is not None and cached[0] == after and cached[1] <= head:
            return cached[2], cached[1]
        budget = min(BATCH_BYTES, self.log.limits.max_message_bytes // 2)
        recent = self._recent
        items: list[bytes]
        if recent and recent[0][0] <= after + 1 and recent[-1][0] >= after + 1:
            start = after + 1 - recent[0][0]
            items = [recent[i][1] for i in range(start, min(len(recent), start + BATCH_EVENTS))]
        else:  # from the log, in chunks, so that large events are not all read at once
            items, size = [], 0
            while len(items) < BATCH_EVENTS and size <= budget:
                chunk = await self.read_encoded(after + len(items), limit=min(200, BATCH_EVENTS - len(items)))
                if not chunk:
                    break
                items.extend(chunk)
                size += sum(len(item) for item in chunk)
        size = 0
        for n, item in enumerate(items):
            size += len(item) + 1
            if size > budget and n > 0:
                del items[n:]
                break
        if not items:
            return None
        last = after + len(items)
        message = b'{"type":"events","head":%d,"events":[' % head + b",".join(items) + b"]}"
        self._message_cache = (after, last, message)
        return message, last

    # -- peers and presence ----------------------------------------------------------------------

    def _peer_event(self, what: str, peer: Peer) -> None:
        for hook in list(self.peer_hooks):
            try:
                hook(what, self, peer)
            except Exception:
                log.exception("peer hook failed")

    def new_peer(self, connection_id: str, actor: dict[str, Any], client: str, sent_seq: int) -> Peer:
        return Peer(connection_id, actor, client, sent_seq, max_outbox_bytes=self.max_outbox_bytes)

    def has_actor(self, actor_id: str) -> bool:
        return any(p.actor.get("id") == actor_id for p in self.peers.values())

    def join(self, peer: Peer) -> None:
        self.peers[peer.connection_id] = peer
        self.last_used = time.monotonic()
        self._peer_event("join", peer)
        for other in self.peers.values():
            if other is not peer and other.presence is not None:
                peer.send_presence(other.connection_id, orjson.dumps(other.presence))

    def leave(self, peer: Peer) -> None:
        self.peers.pop(peer.connection_id, None)
        self.last_used = time.monotonic()
        if not self.peers:  # nobody reads: the caches of encoded events would only pin memory
            self._recent.clear()
            self._recent_bytes = 0
            self._message_cache = None
        self._peer_event("leave", peer)
        if peer.presence is not None:
            self.broadcast_presence(peer, {"type": "presence", "connectionId": peer.connection_id,
                                           "actor": peer.actor, "left": True}, remember=False)

    def broadcast_presence(self, sender: Peer, message: dict[str, Any], *, remember: bool = True) -> None:
        if remember:
            sender.presence = message
        data = orjson.dumps(message)
        for peer in self.peers.values():
            if peer is not sender:
                peer.send_presence(sender.connection_id, data)

    def describe_peers(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.peers.values()]

    def close(self, reason: tuple[str, str] | None = None) -> None:
        """Stop following the log; with a ``reason`` (code, message), end every live connection with it."""
        self._unsubscribe()
        if reason is not None:
            self.closed = reason
            for peer in self.peers.values():
                peer.wake.set()
