"""A deadline and a size bound for reading a request's headers (slowloris), at uvicorn's protocol level.

uvicorn closes idle kept-alive connections but waits forever for a request whose headers never
finish, and by then no ASGI middleware runs yet: so the bound lives in the HTTP protocol class.
It relies on what both uvicorn HTTP protocols (httptools and h11) share: ``self.cycle`` is
replaced once a request's headers are parsed, and a WebSocket upgrade swaps the transport's protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

DEFAULT_HEADER_TIMEOUT = 10.0
MAX_HEADER_BYTES = 64 * 1024
"""Bytes a request may send before its headers are complete (the request line included)."""


def _reply(status: str, message: str) -> bytes:
    body = message.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def header_timeout_protocol(base: type[asyncio.Protocol], timeout: float,
                            max_header_bytes: int = MAX_HEADER_BYTES) -> type[asyncio.Protocol]:
    """``base`` (a uvicorn HTTP protocol class) that closes a connection whose request headers take
    longer than ``timeout`` seconds, or more than ``max_header_bytes``, to arrive."""

    class HeaderTimeoutProtocol(base):  # type: ignore[valid-type, misc]
        _deadline: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            if self._deadline is None and (cycle is None or cycle.response_complete):
                self._arm()  # the next request on a kept-alive connection begins
            if self._deadline is not None:
                self._header_bytes += len(data)
            super().data_received(data)
            if self._deadline is None:
                return
            if self.cycle is not cycle or self.transport.get_protocol() is not self:
                self._disarm()  # its headers are complete (or it became a WebSocket)
            elif self._header_bytes > max_header_bytes:
                self._refuse("431 Request Header Fields Too Large",
                             f"request headers larger than {max_header_bytes} bytes")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_bytes = 0
            self._deadline = asyncio.get_running_loop().call_later(timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            self._refuse("408 Request Timeout", f"the request's headers did not arrive within {timeout:g} s")

        def _refuse(self, status: str, message: str) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self.transport.write(_reply(status, message))
                self.transport.close()

    HeaderTimeoutProtocol.__name__ = f"HeaderTimeout{base.__name__}"
    return HeaderTimeoutProtocol
