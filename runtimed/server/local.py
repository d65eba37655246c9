"""An in-process transport for the sync protocol, used by daemon-managed runtimes.

The same server code (``SyncConnection``) and client code (``SyncClient``) speak the
same JSON messages; only the socket is replaced by a pair of in-memory queues, which
saves the WebSocket framing and loopback round trips on every claim and output.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.websockets import WebSocketState


class LocalConnectionClosed(ConnectionError):
    """The other end closed the in-process connection (``code`` as a WebSocket close code)."""

    def __init__(self, code: int = 1000, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason


class _Close:
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class _Pipe:
    def __init__(self) -> None:
        self.to_server: asyncio.Queue[str | None] = asyncio.Queue()
        self.to_client: asyncio.Queue[str | _Close] = asyncio.Queue()
        self.server_closed = False
        self.client_closed = False


class ServerEnd:
    """The subset of Starlette's WebSocket that ``SyncConnection`` uses."""

    def __init__(self, pipe: _Pipe) -> None:
        self._pipe = pipe

    @property
    def application_state(self) -> WebSocketState:
        return WebSocketState.DISCONNECTED if self._pipe.server_closed else WebSocketState.CONNECTED

    async def receive(self) -> dict[str, Any]:
        item = await self._pipe.to_server.get()
        if item is None:
            return {"type": "websocket.disconnect", "code": 1000}
        return {"type": "websocket.receive", "text": item}

    async def send_text(self, text: str) -> None:
        if self._pipe.server_closed or self._pipe.client_closed:
            raise RuntimeError("the local connection is closed")
        self._pipe.to_client.put_nowait(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self._pipe.server_closed:
            self._pipe.server_closed = True
            self._pipe.to_client.put_nowait(_Close(code, reason))


class ClientEnd:
    """The subset of a ``websockets`` client connection that ``SyncClient`` uses."""

    def __init__(self, pipe: _Pipe) -> None:
        self._pipe = pipe

    async def send(self, text: str) -> None:
        if self._pipe.client_closed or self._pipe.server_closed:
            raise LocalConnectionClosed(1006, "the local connection is closed")
        self._pipe.to_server.put_nowait(text)

    async def close(self) -> None:
        if not self._pipe.client_closed:
            self._pipe.client_closed = True
            self._pipe.to_server.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str]:
        while True:
            item = await self._pipe.to_client.get()
            if isinstance(item, _Close):
                raise LocalConnectionClosed(item.code, item.reason)
            yield item


@contextlib.asynccontextmanager
async def local_connection(daemon: Any, notebook_id: str) -> AsyncIterator[ClientEnd]:
    """Connect to a notebook of this daemon without a socket (trusted: no token check)."""
    from runtimed.server.sync import SyncConnection

    pipe = _Pipe()
    server = asyncio.create_task(SyncConnection(ServerEnd(pipe), daemon.service(notebook_id), daemon).run(),
                                 name=f"local-sync-{notebook_id}")
    client = ClientEnd(pipe)
    try:
        yield client
    finally:
        await client.close()
        try:
            await asyncio.wait_for(server, 5)
        except (TimeoutError, asyncio.CancelledError):
            server.cancel()
