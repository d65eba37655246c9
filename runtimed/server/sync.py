"""The sync protocol endpoint (DESIGN 4): hello/welcome, catch-up, live events, push/ack, presence.

Each connection runs a receive loop (hello, push, presence, ping) and one sender task
that owns every write to the socket: control messages first, then events the peer
has not seen yet. Protocol violations get an ``error`` message and a 44xx close.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from runtimed.errors import EventRejected, RuntimedError
from runtimed.schema import events as ev
from runtimed.schema.ids import new_id
from runtimed.server.people import Principal
from runtimed.server.service import NotebookService, Peer
from runtimed.store.sqlite import check_notebook_id
from runtimed.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CLOSE_BAD_MESSAGE = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_CONFLICT = 4409
CLOSE_GONE = 4404
CLOSE_SLOW_CONSUMER = 4408
CLOSE_TOO_LARGE = 4413
CLOSE_GOING_AWAY = 4503

HELLO_TIMEOUT = 10.0
SNAPSHOT_THRESHOLD = 2000
"""A new replica (since=0) that asks for a snapshot gets one when the log is longer than this."""


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, close_code: int = CLOSE_BAD_MESSAGE) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


async def close_with_error(ws: WebSocket, code: str, message: str, close_code: int, timeout: float = 5.0) -> None:
    """Send an ``error`` and close; bounded in time, since a peer that does not read blocks every send."""
    async def send_and_close() -> None:
        await ws.send_text(orjson.dumps({"type": "error", "code": code, "message": message}).decode())
        await ws.close(code=close_code, reason=message[:120])

    with contextlib.suppress(Exception):
        if ws.application_state == WebSocketState.CONNECTED:
            await asyncio.wait_for(send_and_close(), timeout)


def _parse(raw: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    if raw.get("type") == "websocket.disconnect":
        raise WebSocketDisconnect(raw.get("code", 1000))
    data = raw.get("text")
    if data is None:
        data = raw.get("bytes")
    if data is None:
        raise ProtocolError("bad_message", "empty message")
    # UTF-8 takes at most 4 bytes a character: only a long text needs encoding to be measured
    size = len(data) if not isinstance(data, str) else len(data) if len(data) * 4 <= max_bytes else len(data.encode())
    if size > max_bytes:
        raise ProtocolError("message_too_large", f"message of {size} bytes exceeds the limit of {max_bytes}",
                            CLOSE_TOO_LARGE)
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_message", f"message is not valid JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("bad_message", "a message must be a JSON object with a string 'type'")
    return message


class SyncConnection:
    def __init__(self, ws: Any, service: NotebookService, daemon: Any, principal: Principal | None = None) -> None:
        self.ws = ws
        self.service = service
        self.principal = principal
        """Who is connected (None: the daemon itself, over the in-process transport)."""
        self.daemon = daemon
        self.peer: Peer | None = None
        self.send_timeout = daemon.settings.slow_consumer_timeout
        self.max_bytes = daemon.limits.max_message_bytes

    async def run(self) -> None:
        sender: asyncio.Task | None = None
        try:
            hello = _parse(await asyncio.wait_for(self.ws.receive(), HELLO_TIMEOUT), self.max_bytes)
            self.peer = await self._welcome(hello)
            sender = asyncio.create_task(self._send_loop(), name=f"sync-send-{self.peer.connection_id}")
            self.service.join(self.peer)
            while True:
                # Also stop when the sender ends (error sent, slow consumer, socket gone): a peer that
                # does not read may never send anything again either.
                receiving = asyncio.ensure_future(self.ws.receive())
                try:
                    await asyncio.wait((receiving, sender), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopped = not receiving.done()
                    if stopped:
                        receiving.cancel()
                if stopped:
                    break
                await self._handle(_parse(receiving.result(), self.max_bytes))
        except TimeoutError:
            await close_with_error(self.ws, "hello_timeout", f"send hello within {HELLO_TIMEOUT:.0f} s", CLOSE_BAD_MESSAGE)
        except ProtocolError as exc:
            log.info("closing a connection to %s (%d %s): %s", self.service.notebook_id, exc.close_code, exc.code,
                     exc.message)
            await close_with_error(self.ws, exc.code, exc.message, exc.close_code)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if self.peer is not None:
                self.peer.closed = True
                self.service.leave(self.peer)
            if sender is not None:
                await cancel_and_wait(sender)

    async def _welcome(self, hello: dict[str, Any]) -> Peer:
        if hello["type"] != "hello":
            raise ProtocolError("hello_required", f"the first message must be 'hello', got {hello['type']!r}")
        since = hello.get("since", 0)
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            raise ProtocolError("bad_hello", "hello.since must be a non-negative integer (0 = from the start)")
        claimed = hello.get("actor")
        if self.principal is not None:
            if self.principal.role_on(self.service.notebook_id) is None:
                raise ProtocolError("forbidden", f"{self.principal.name} has no role on notebook "
                                    f"{self.service.notebook_id!r}; ask its owner", CLOSE_FORBIDDEN)
            claimed = self.principal.bind_actor(claimed)
        try:
            actor = ev.validate_actor(claimed)
        except EventRejected as exc:
            raise ProtocolError("bad_hello", f"hello.actor: {exc.message}") from None
        head = self.service.head
        if since > head:
            raise ProtocolError(
                "since_ahead",
                f"client has seen seq {since} but this notebook's head is {head}; discard the replica and resync from 0",
                CLOSE_CONFLICT,
            )
        peer = self.service.new_peer(new_id("c"), actor.model_dump(), str(hello.get("client", ""))[:100], since)
        peer.send_control(orjson.dumps({"type": "welcome", "head": head, "connectionId": peer.connection_id,
                                        "actor": peer.actor}))
        if since == 0 and hello.get("snapshot") and head > SNAPSHOT_THRESHOLD:
            seq, data = await self.service.snapshot()
            encoded = base64.b64encode(data)
            if len(encoded) + 100 <= self.max_bytes:  # else too big for one message: catch up with events
                peer.send_control(b'{"type":"snapshot","seq":%d,"data":"%s"}' % (seq, encoded))
                peer.sent_seq = seq
        return peer

    async def _handle(self, message: dict[str, Any]) -> None:
        peer = self.peer
        assert peer is not None
        self._check_open()
        self._check_outbox(peer)  # a peer that pushes but does not read is cut here, not grown without end
        kind = message["type"]
        if kind == "push":
            events = message.get("events")
            if not isinstance(events, list):
                raise ProtocolError("bad_push", "push.events must be a list of events")
            results = await self.service.append(events, peer.actor, principal=self.principal)
            peer.send_control(orjson.dumps({"type": "ack", "ref": message.get("ref"), "results": results}))
        elif kind == "presence":
            relay: dict[str, Any] = {k: message[k] for k in ("cellId", "cursor", "selection") if k in message}
            relay.update(type="presence", actor=peer.actor, connectionId=peer.connection_id)
            self.service.broadcast_presence(peer, relay)
        elif kind == "ping":
            peer.send_control(b'{"type":"pong"}')
        elif kind == "pong":
            pass
        elif kind == "hello":
            raise ProtocolError("duplicate_hello", "hello may be sent only once per connection")
        else:
            raise ProtocolError("unknown_type", f"unknown message type {kind!r}; expected push, presence, ping or pong")

    def _check_open(self) -> None:
        if self.service.closed is not None:  # e.g. the notebook was deleted: its log is gone
            raise ProtocolError(*self.service.closed, CLOSE_GONE)

    @staticmethod
    def _check_outbox(peer: Peer) -> None:
        if peer.overflowed:
            raise ProtocolError(
                "outbox_overflow",
                f"disconnected: more than {peer.max_outbox_bytes} bytes of replies waited for this connection; "
                "read messages as they come, and reconnect with since=<last seq>",
                CLOSE_SLOW_CONSUMER,
            )

    async def _send(self, data: bytes) -> None:
        try:
            await asyncio.wait_for(self.ws.send_text(data.decode()), self.send_timeout)
        except TimeoutError:
            raise ProtocolError(
                "slow_consumer",
                f"disconnected: a send blocked for more than {self.send_timeout:g} s; reconnect with since=<last seq>",
                CLOSE_SLOW_CONSUMER,
            ) from None

    async def _send_loop(self) -> None:
        peer = self.peer
        assert peer is not None
        try:
            while True:
                await peer.wake.wait()
                peer.wake.clear()
                self._check_open()
                while peer.outbox or peer.presence_out or peer.sent_seq < self.service.head:
                    self._check_outbox(peer)
                    for message in peer.take_control():
                        await self._send(message)
                    self._check_open()
                    batch = await self.service.events_message(peer.sent_seq)
                    if batch is not None:
                        data, last = batch
                        await self._send(data)
                        peer.sent_seq = last
        except ProtocolError as exc:
            await close_with_error(self.ws, exc.code, exc.message, exc.close_code)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass


async def sync_endpoint(ws: WebSocket, notebook_id: str, daemon: Any) -> None:
    await ws.accept()
    principal = daemon.auth.principal(ws)
    if principal is None:
        await close_with_error(ws, "unauthorized", "missing or wrong token: send 'Authorization: Bearer <token>' "
                               "or ?token=<token> (the token is in $RUNTIMED_HOME/token)", CLOSE_UNAUTHORIZED)
        return
    try:
        check_notebook_id(notebook_id)
    except RuntimedError as exc:
        await close_with_error(ws, exc.code, exc.message, CLOSE_BAD_MESSAGE)
        return
    await SyncConnection(ws, daemon.service(notebook_id), daemon, principal).run()
