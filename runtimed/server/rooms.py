"""Rooms: the live side of a notebook log: its connections, fan-out and presence.

Fan-out is pull-based. An append only wakes each connection's sender, which sends
what it has not sent yet, from a small cache of recent encoded events or from the
log. A slow reader therefore never makes the server buffer events for it: it lags,
and is disconnected with a reason if a single send blocks too long.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from runtimed.schema.materializer import Envelope
from runtimed.store.base import AppendResult
from runtimed.store.sqlite import SQLiteNotebookLog

log = logging.getLogger(__name__)

RECENT_EVENTS = 4096
RECENT_BYTES = 4 * 1024 * 1024
"""A room caches at most this many recent events and bytes (large outputs would otherwise pin gigabytes)."""
BATCH_EVENTS = 1000
BATCH_BYTES = 1024 * 1024
"""An ``events`` message holds at most this many events, and stops near this many bytes (one event at least)."""


class Peer:
    """One connection's outgoing side, as the room sees it."""

    def __init__(self, connection_id: str, actor: dict[str, Any], client: str, sent_seq: int) -> None:
        self.connection_id = connection_id
        self.actor = actor
        self.client = client
        self.sent_seq = sent_seq
        self.outbox: collections.deque[bytes] = collections.deque()
        self.wake = asyncio.Event()
        self.presence: dict[str, Any] | None = None
        self.closed = False

    def send_control(self, message: bytes) -> None:
        self.outbox.append(message)
        self.wake.set()

    def describe(self) -> dict[str, Any]:
        return {
            "connectionId": self.connection_id,
            "actor": self.actor,
            "client": self.client,
            "cellId": (self.presence or {}).get("cellId"),
        }


class Room:
    def __init__(self, notebook_id: str, nb_log: SQLiteNotebookLog) -> None:
        self.notebook_id = notebook_id
        self.log = nb_log
        self.peers: dict[str, Peer] = {}
        self._recent: collections.deque[tuple[int, bytes]] = collections.deque()
        self._recent_bytes = 0
        self._message_cache: tuple[int, int, bytes] | None = None
        self.append_hooks: list[Callable[[Room, Sequence[Envelope]], None]] = []
        self.peer_hooks: list[Callable[[str, Room, Peer], None]] = []
        self.closed: tuple[str, str] | None = None
        """Why the room was closed (code, message): its live connections are ended with that reason."""
        self._unsubscribe = nb_log.subscribe(self._on_append)

    @property
    def head(self) -> int:
        return self.log.head

    def push(self, events: Sequence[Any], actor: Any) -> list[AppendResult]:
        return self.log.append(events, actor)

    def _on_append(self, stored: Sequence[Envelope], encoded: Sequence[bytes]) -> None:
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

    def events_message(self, after: int) -> tuple[bytes, int] | None:
        """The next ``events`` message for a reader that has everything up to ``after``."""
        head = self.log.head
        if after >= head:
            return None
        cached = self._message_cache
        if cached is not None and cached[0] == after and cached[1] <= head:
            return cached[2], cached[1]
        budget = min(BATCH_BYTES, self.log.limits.max_message_bytes // 2)
        recent = self._recent
        if recent and recent[0][0] <= after + 1 and recent[-1][0] >= after + 1:
            start = after + 1 - recent[0][0]
            items = [recent[i][1] for i in range(start, min(len(recent), start + BATCH_EVENTS))]
        else:  # from the log, in chunks, so that large events are not all read at once
            items, size = [], 0
            while len(items) < BATCH_EVENTS and size <= budget:
                chunk = self.log.read_encoded(after + len(items), limit=min(200, BATCH_EVENTS - len(items)))
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

    def has_actor(self, actor_id: str) -> bool:
        return any(p.actor.get("id") == actor_id for p in self.peers.values())

    def join(self, peer: Peer) -> None:
        self.peers[peer.connection_id] = peer
        self._peer_event("join", peer)
        for other in self.peers.values():
            if other is not peer and other.presence is not None:
                peer.send_control(orjson.dumps(other.presence))

    def leave(self, peer: Peer) -> None:
        self.peers.pop(peer.connection_id, None)
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
                peer.send_control(data)

    def describe_peers(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.peers.values()]

    def close(self, reason: tuple[str, str] | None = None) -> None:
        """Stop following the log; with a ``reason`` (code, message), end every live connection with it."""
        self._unsubscribe()
        if reason is not None:
            self.closed = reason
            for peer in self.peers.values():
                peer.wake.set()
