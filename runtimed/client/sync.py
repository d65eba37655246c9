"""The sync client: a local replica of one notebook kept current over the sync protocol.

It applies only server-acknowledged events (the log is the truth), keeps pushed
events until they are acknowledged, reconnects with backoff, resumes from the last
seq it saw, and re-pushes unacknowledged events (safe: pushes are idempotent by id).
Every other client (bindings, CLI, automation, runtime agents) is built on it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from runtimed.errors import AuthError, ConnectionLostError, EventRejected, RuntimedError
from runtimed.schema.materializer import Envelope
from runtimed.schema.replica import Replica
from runtimed.tasks import cancel_and_wait

log = logging.getLogger(__name__)

T = TypeVar("T")
FATAL_CLOSE_CODES = {1009: "message too large", 4400: "bad message", 4401: "unauthorized", 4403: "forbidden",
                     4404: "notebook deleted", 4413: "message too large"}
REPUSH_BATCH = 1000
"""Unacknowledged events are re-pushed in pushes of at most this many (the server caps a push's size)."""


class SyncClient:
    def __init__(
        self,
        url: str,
        token: str,
        notebook_id: str,
        actor: dict[str, Any],
        *,
        client: str = "python",
        reconnect: bool = True,
        max_message_bytes: int = 32 * 1024 * 1024,
        transport: Callable[[], contextlib.AbstractAsyncContextManager[Any]] | None = None,
        rediscover: Callable[[], Awaitable[tuple[str, str] | None]] | None = None,
        record_events: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.notebook_id = notebook_id
        self.actor = actor
        self.client = client
        self.reconnect = reconnect
        self.max_message_bytes = max_message_bytes
        self.transport = transport
        """Opens the connection; default a WebSocket to ``url`` (the daemon passes an in-process one)."""
        self.rediscover = rediscover
        """Called when the daemon cannot be reached: the ``(url, token)`` of the daemon to use now (the
        embedded default found or started again), or None to keep trying the same one."""
        self.record_events = record_events
        """Whether the replica keeps the events themselves (views of the ``events`` table: ``status_history``,
        ``artifact_refs``); a client that reads only the state passes False and applies each event faster."""
        self.replica = Replica(notebook_id, record_events=record_events)
        self.connection_id: str | None = None
        self.peers: dict[str, dict[str, Any]] = {}
        self._ws: ClientConnection | Any | None = None
        self._runner: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._fatal: RuntimedError | None = None
        self._unacked: OrderedDict[str, tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = OrderedDict()
        self._refs = itertools.count(1)
        self._change = asyncio.Event()
        self._event_listeners: list[Callable[[list[Envelope]], None]] = []
        self._presence_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.server_head = 0
        self._waiters = 0

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    @property
    def pending_pushes(self) -> int:
        """Events pushed and not acknowledged yet (re-sent after a reconnect)."""
        return len(self._unacked)

    @property
    def busy(self) -> bool:
        """A call is in progress: pushes wait for their acknowledgement, or someone waits for the replica."""
        return bool(self._unacked) or self._waiters > 0

    async def connect(self, timeout: float = 15.0) -> None:
        """Connect and catch up to the head the server announced."""
        if self._runner is None or self._runner.done():
            self._closing = False
            self._fatal = None
            self._runner = asyncio.create_task(self._run(), name=f"sync-{self.notebook_id}")
        try:
            await asyncio.wait_for(self._wait_connected(), timeout)
            await self.wait_for(lambda: self.replica.head >= self.server_head, timeout)
        except TimeoutError:
            raise ConnectionLostError(
                f"could not connect to {self.url} for notebook {self.notebook_id!r} within {timeout:.0f} s"
            ) from None

    def retarget(self, url: str, token: str) -> None:
        """Reconnect to another daemon of the same store (the embedded default restarted elsewhere): the
        replica and the unacknowledged pushes carry over, and the next connection resumes from the head."""
        self.url = url.rstrip("/")
        self.token = token

    async def _wait_connected(self) -> None:
        while not self._connected.is_set():
            if self._fatal is not None:
                raise self._fatal
            if self._runner is not None and self._runner.done():
                raise self._fatal or ConnectionLostError("the sync connection ended")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), 0.05)
        if self._fatal is not None:
            raise self._fatal

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        await cancel_and_wait(self._runner)
        self._connected.clear()
        for _, fut in self._unacked.values():
            if not fut.done():
                fut.set_exception(ConnectionLostError("the client was closed before the server acknowledged"))
        self._unacked.clear()

    async def _run(self) -> None:
        delay = 0.05
        unreachable = 0
        while not self._closing:
            try:
                await self._session()
                delay = 0.05
                unreachable = 0
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError) as exc:
                log.debug("sync connection to %s lost: %s", self.url, exc)
                if isinstance(exc, OSError) and not self._connected.is_set():
                    unreachable += 1
                    if unreachable >= 2:
                        await self._find_daemon()
                if isinstance(exc, ConnectionClosed):  # .code/.reason of websockets' own are deprecated
                    if exc.rcvd is not None:
                        self._on_close_code(exc.rcvd.code, exc.rcvd.reason)
                else:
                    code = getattr(exc, "code", None)
                    if isinstance(code, int):  # the in-process transport's close
                        self._on_close_code(code, getattr(exc, "reason", ""))
            except RuntimedError as exc:
                self._fatal = exc
            finally:
                self._connected.clear()
                self._ws = None
            if self._fatal is not None or self._closing or not self.reconnect:
                self._fail_unacked(self._fatal or ConnectionLostError(f"the connection to {self.url} is closed"))
                self._notify()
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _find_daemon(self) -> None:
        if self.rediscover is None:
            return
        try:
            found = await self.rediscover()
        except Exception as exc:  # keep retrying the old address; the caller's bound ends the wait
            log.debug("could not find a daemon for %s: %s", self.notebook_id, exc)
            return
        if found is not None:
            self.retarget(*found)

    def _fail_unacked(self, exc: RuntimedError) -> None:
        """Pushes that can no longer be acknowledged fail now rather than at their timeout."""
        for _, fut in self._unacked.values():
            if not fut.done():
                fut.set_exception(exc)
        self._unacked.clear()

    def _on_close_code(self, code: int, reason: str) -> None:
        if code in FATAL_CLOSE_CODES:
            cls = AuthError if code == 4401 else RuntimedError
            self._fatal = cls(f"the server closed the connection ({FATAL_CLOSE_CODES[code]}): {reason}")
        elif code == 4409:  # our replica is ahead of the server: start again from nothing
            self.replica.close()
            self.replica = Replica(self.notebook_id, record_events=self.record_events)

    def _open(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.transport is not None:
            return self.transport()
        uri = f"{'ws' + self.url[4:]}/api/notebooks/{self.notebook_id}/sync"
        return connect(uri, additional_headers={"Authorization": f"Bearer {self.token}"},
                       max_size=self.max_message_bytes, open_timeout=10, ping_interval=20,
                       ping_timeout=30, close_timeout=2, compression=None)

    async def _session(self) -> None:
        async with self._open() as ws:
            self._ws = ws
            await ws.send(orjson.dumps({"type": "hello", "since": self.replica.head, "actor": self.actor,
                                        "client": self.client, "snapshot": self.replica.head == 0}).decode())
            async for raw in ws:
                self._receive(orjson.loads(raw))

    def _receive(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "events":
            applied = self.replica.apply_wire(message["events"])
            self.server_head = max(self.server_head, message.get("head", 0))
            if applied:
                for listener in list(self._event_listeners):
                    listener(applied)
                self._notify()
        elif kind == "ack":
            for result in message["results"]:
                entry = self._unacked.pop(result.get("id", ""), None)
                if entry is not None and not entry[1].done():
                    entry[1].set_result(result)
        elif kind == "welcome":
            if isinstance(message.get("actor"), dict):
                self.actor = message["actor"]  # as the daemon records us (bound to our token's principal)
            self.server_head = message["head"]
            self.connection_id = message["connectionId"]
            self._connected.set()
            if self._unacked:  # re-push what the previous connection did not get acknowledged
                asyncio.ensure_future(self._repush([e for e, _ in self._unacked.values()]))
            self._notify()
        elif kind == "snapshot":
            self.replica.load_snapshot(base64.b64decode(message["data"]))
            self._notify()
        elif kind == "presence":
            if message.get("left"):
                self.peers.pop(message.get("connectionId", ""), None)
            else:
                self.peers[message.get("connectionId", "")] = message
            for notify in list(self._presence_listeners):
                notify(message)
            self._notify()  # wake wait_for() predicates on peers
        elif kind == "error":
            log.warning("server error on %s: %s", self.notebook_id, message.get("message"))

    def _notify(self) -> None:
        change, self._change = self._change, asyncio.Event()
        change.set()

    # -- pushing ---------------------------------------------------------------------------------

    async def _send_push(self, events: list[dict[str, Any]]) -> None:
        ws = self._ws
        if ws is None:
            return  # sent again after the next welcome
        with contextlib.suppress(ConnectionClosed, ConnectionError):
            await ws.send(orjson.dumps({"type": "push", "ref": next(self._refs), "events": events}).decode())

    async def _repush(self, events: list[dict[str, Any]]) -> None:
        for start in range(0, len(events), REPUSH_BATCH):
            await self._send_push(events[start : start + REPUSH_BATCH])

    async def push(self, events: Sequence[dict[str, Any]], timeout: float = 30.0) -> list[dict[str, Any]]:
        """Push events in order; return one result per event (``{id, seq}`` or ``{id, error}``)."""
        if self._fatal is not None:
            raise self._fatal
        loop = asyncio.get_running_loop()
        futures = []
        for event in events:
            fut = loop.create_future()
            self._unacked[event["id"]] = (event, fut)
            futures.append(fut)
        await self._send_push(list(events))
        try:
            # shielded: on a timeout the events stay queued and are re-sent (same ids) when the connection returns
            return list(await asyncio.wait_for(asyncio.shield(asyncio.gather(*futures)), timeout))
        except TimeoutError:
            ids = ", ".join(e["id"] for e in list(events)[:3]) + (" …" if len(events) > 3 else "")
            raise ConnectionLostError(
                f"the daemon at {self.url} did not acknowledge {len(events)} event(s) ({ids}) within {timeout:g} s; "
                "they stay queued and are re-sent with the same ids when the connection returns, so the daemon "
                "stores each once: do not repeat the call") from None

    async def commit(self, events: Sequence[dict[str, Any]], timeout: float = 30.0) -> list[int]:
        """Push, raise on the first rejection, and wait until the replica has applied the events."""
        results = await self.push(events, timeout)
        for result in results:
            if "error" in result:
                raise EventRejected(result["error"]["message"], code=result["error"]["code"])
        seqs = [r["seq"] for r in results]
        if seqs:
            last = max(seqs)
            try:
                await self.wait_for(lambda: self.replica.head >= last, timeout)
            except TimeoutError:
                raise ConnectionLostError(f"the daemon stored the events (up to seq {last}) but they did not arrive "
                                          f"back within {timeout:g} s; the connection is slow or lost") from None
        return seqs

    # -- observing -------------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], T], timeout: float | None = 30.0) -> T:
        """Wait until ``predicate()`` is truthy (re-checked after every change) and return its value."""
        async def waiting() -> T:
            self._waiters += 1
            try:
                return await watch()
            finally:
                self._waiters -= 1

        async def watch() -> T:
            while True:
                value = predicate()
                if value:
                    return value
                if self._fatal is not None:
                    raise self._fatal
                if self._runner is not None and self._runner.done() and not self._connected.is_set():
                    raise ConnectionLostError(f"the connection to {self.url} is closed")
                change = self._change
                await change.wait()

        return await asyncio.wait_for(waiting(), timeout)

    def on_events(self, listener: Callable[[list[Envelope]], None]) -> Callable[[], None]:
        self._event_listeners.append(listener)
        return lambda: self._event_listeners.remove(listener) if listener in self._event_listeners else None

    def on_presence(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self._presence_listeners.append(listener)
        return lambda: self._presence_listeners.remove(listener) if listener in self._presence_listeners else None

    async def send_presence(self, **fields: Any) -> None:
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed, ConnectionError):
                await self._ws.send(orjson.dumps({"type": "presence", **fields}).decode())
