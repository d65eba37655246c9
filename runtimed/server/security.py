"""The daemon's front door: an ASGI middleware that runs before FastAPI sees a request.

Each request, in this order, before any byte of its body is read:

1. ``Host`` must name the daemon (DNS rebinding): on a loopback bind only ``127.0.0.1:PORT``,
   ``localhost:PORT``, ``[::1]:PORT`` and the hosts of ``RUNTIMED_ALLOWED_ORIGINS``.
2. A WebSocket handshake or a state-changing request (anything but GET/HEAD/OPTIONS) with an
   ``Origin`` must come from the daemon's own origin (or an allowed one): a page on another
   port of 127.0.0.1 cannot drive the daemon with the user's cookie.
3. The token (Bearer header, ``?token=``, or the daemon's cookie) is checked, 401 otherwise;
   a cookie alone is not enough to change state without a matching ``Origin`` (CSRF: browsers
   always send one with a POST, a DELETE or a WebSocket; tools use the Bearer header).
4. The body is bounded: a ``Content-Length`` above the limit is a 413 at once, a chunked body
   is counted as it arrives.

Every response gets ``nosniff``, ``Referrer-Policy: no-referrer`` and framing denied; the app page
and the output frame get their Content-Security-Policy here too (docs/security.md).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtimed.errors import ErrorCode, RuntimedError
from runtimed.server.auth import Auth

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ARTIFACT_UPLOAD_PREFIX = "/api/artifacts/"
DEFAULT_MAX_ARTIFACT_BYTES = 2 * 1024**3
"""One artifact upload (``RUNTIMED_MAX_ARTIFACT_BYTES``): streamed to a file, so it may exceed the body limit."""
PUBLIC_PATHS = frozenset({"/", "/health"})
"""Open without a token: the health probe, and the page (which signs in with ``?token=`` itself)."""
STATIC_PREFIX = "/static/"
FRAME_PATH = "/static/frame.html"
"""The document that sandboxed outputs render in (an opaque origin: it gets its own, open, policy)."""

UNAUTHORIZED_MESSAGE = ("missing or wrong token: send 'Authorization: Bearer <token>' "
                        "(the token is in $RUNTIMED_HOME/token)")

_SAFE_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")


def page_csp(host: str | None) -> str:
    """The app page's policy: only its own scripts; outputs live in the sandboxed frame document."""
    ws = f" ws://{host} wss://{host}" if host and _SAFE_HOST.match(host) else ""
    return ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src * data: blob:; "
            f"font-src 'self' data:; connect-src 'self'{ws}; frame-src 'self'; child-src 'self'; "
            "form-action 'none'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'")


FRAME_CSP = ("sandbox allow-scripts; default-src * data: blob: 'unsafe-inline' 'unsafe-eval'; "
             "form-action 'none'; base-uri 'none'")
"""Outputs' HTML and JavaScript run in an opaque origin (``sandbox``, also when opened directly)."""


def is_loopback(host: str) -> bool:
    """A host name or address that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_origins(raw: str | Iterable[str] | None) -> frozenset[str]:
    """``scheme://host[:port]`` entries (comma-separated); anything else is a clear error."""
    items = [s.strip() for s in (raw.split(",") if isinstance(raw, str) else raw or [])]
    out = set()
    for item in filter(None, items):
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
                or parts.query or parts.fragment:
            raise RuntimedError(f"allowed origin {item!r} is not of the form scheme://host[:port] "
                                "(e.g. https://notebooks.example.com)", code="invalid_request")
        out.add(f"{parts.scheme}://{parts.netloc.lower()}")
    return frozenset(out)


@dataclass(frozen=True)
class SecurityPolicy:
    """Which hosts and origins may talk to this daemon, and how large a request body may be."""

    port: int
    loopback: bool
    max_body_bytes: int
    scheme: str = "http"
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
    """The body limit of an artifact upload (``PUT /api/artifacts/{sha256}``, which streams to disk)."""
    extra_origins: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def for_daemon(cls, daemon: Any, *, scheme: str = "http", allowed_origins: str | None = None,
                   max_body_bytes: int | None = None) -> SecurityPolicy:
        """Defaults from the daemon's settings and the ``RUNTIMED_ALLOWED_ORIGINS`` /
        ``RUNTIMED_MAX_BODY_BYTES`` environment (the body limit: one sync message's)."""
        if allowed_origins is None:
            allowed_origins = os.environ.get("RUNTIMED_ALLOWED_ORIGINS", "")
        if max_body_bytes is None:
            raw = os.environ.get("RUNTIMED_MAX_BODY_BYTES")
            max_body_bytes = int(raw) if raw else daemon.limits.max_message_bytes
        raw_artifact = os.environ.get("RUNTIMED_MAX_ARTIFACT_BYTES", "").strip()
        max_artifact_bytes = int(raw_artifact) if raw_artifact else DEFAULT_MAX_ARTIFACT_BYTES
        return cls(port=daemon.settings.port, loopback=is_loopback(daemon.settings.host),
                   max_body_bytes=max_body_bytes, scheme=scheme, extra_origins=parse_origins(allowed_origins),
                   max_artifact_bytes=max_artifact_bytes)

    def body_limit(self, method: str, path: str) -> tuple[int, str]:
        """The body limit of a request, and the setting that raises it."""
        if method == "PUT" and path.startswith(ARTIFACT_UPLOAD_PREFIX):
            return self.max_artifact_bytes, "RUNTIMED_MAX_ARTIFACT_BYTES"
        return self.max_body_bytes, "--max-body-bytes / RUNTIMED_MAX_BODY_BYTES"

    @property
    def loopback_hosts(self) -> frozenset[str]:
        return frozenset(f"{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]"))

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return self.loopback_hosts | {urlsplit(o).netloc for o in self.extra_origins}

    @property
    def own_origins(self) -> frozenset[str]:
        return frozenset(f"{self.scheme}://{h}" for h in self.loopback_hosts) | self.extra_origins

    def host_ok(self, host: str | None) -> bool:
        """On a loopback bind, only the daemon's own names (a rebound DNS name is refused)."""
        if not self.loopback:
            return True
        return host is not None and host.lower() in self.allowed_hosts

    def origin_ok(self, origin: str, host: str | None) -> bool:
        origin = origin.lower()
        if origin in self.own_origins:
            return True
        # Bound beyond loopback, the daemon's own origin is the name the browser used for it.
        return not self.loopback and host is not None and origin == f"{self.scheme}://{host.lower()}"


def _error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


async def _deny(scope: Scope, send: Send, code: str, message: str,
                extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer with the registered status and an error body, before the app (or the body) is touched."""
    status = ErrorCode.lookup(code).http_status
    body = _error_body(code, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    if scope["type"] == "websocket":
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 4000 + status, "reason": message[:120]})
        return
    # connection: close, so that an unread body (maybe huge) is never drained into memory.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _response_headers(path: str, host: str | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
    if path == FRAME_PATH:
        headers += [(b"content-security-policy", FRAME_CSP.encode()), (b"x-frame-options", b"SAMEORIGIN")]
    else:
        headers.append((b"x-frame-options", b"DENY"))
        if path == "/":
            headers.append((b"content-security-policy", page_csp(host).encode()))
    return headers


class SecurityMiddleware:
    """Host, Origin, token and body-size checks in front of the app (see the module docstring)."""

    def __init__(self, app: ASGIApp, auth: Auth, policy: SecurityPolicy) -> None:
        self.app = app
        self.auth = auth
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        host = conn.headers.get("host")
        if not self.policy.host_ok(host):
            names = ", ".join(sorted(self.policy.allowed_hosts))
            await _deny(scope, send, "invalid_host",
                        f"unexpected Host header {host!r}: this daemon answers only to {names} (a guard against "
                        "DNS rebinding); open it by one of these names, or list yours in RUNTIMED_ALLOWED_ORIGINS")
            return
        websocket = scope["type"] == "websocket"
        changes_state = websocket or scope.get("method", "GET") not in SAFE_METHODS
        origin = conn.headers.get("origin")
        if changes_state and origin is not None and not self.policy.origin_ok(origin, host):
            own = sorted(self.policy.own_origins)[0]
            await _deny(scope, send, "cross_origin",
                        f"requests from origin {origin!r} may not change this daemon's notebooks: only its own page "
                        f"(e.g. {own}) may; list trusted origins in RUNTIMED_ALLOWED_ORIGINS")
            return
        public = scope["path"] in PUBLIC_PATHS or scope["path"].startswith(STATIC_PREFIX)
        if not public or websocket:
            token, how = self.auth.credential(conn)
            principal = self.auth.principal_of(token)
            scope.setdefault("state", {})["principal"] = principal
            if not websocket and principal is None:  # the sync endpoint answers its own 4401
                await _deny(scope, send, "unauthorized", UNAUTHORIZED_MESSAGE, [(b"www-authenticate", b"Bearer")])
                return
            if how == "cookie" and changes_state and origin is None and principal is not None:
                await _deny(scope, send, "cross_origin",
                            "the browser's sign-in cookie changes nothing without the page's Origin header; "
                            "scripts and tools send 'Authorization: Bearer <token>' instead")
                return
        if websocket:
            await self.app(scope, receive, send)
            return
        bounded = await self._bounded(scope, receive, send, conn.headers)
        if bounded is not None:  # the bounded receive: a chunked body was read here and is replayed
            await self.app(scope, bounded, self._with_headers(send, scope["path"], host))

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> Receive | None:
        """The request's ``receive``, within the body limit; None once a 413 was sent."""
        limit, setting = self.policy.body_limit(scope.get("method", "GET"), scope["path"])
        length = headers.get("content-length")
        if length is not None:
            size = int(length) if length.isdigit() else 0  # the HTTP parser refuses a malformed length
            if size > limit:
                await _deny(scope, send, "payload_too_large", self._too_large(f"{size} bytes", limit, setting))
                return None
            return receive
        limit, setting = self.policy.max_body_bytes, "--max-body-bytes / RUNTIMED_MAX_BODY_BYTES"  # chunked: buffered
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            return receive
        chunks: list[bytes] = []
        total = 0
        while True:  # a chunked body has no length up front: read it here, up to the limit
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await _deny(scope, send, "payload_too_large", self._too_large(f"more than {limit} bytes", limit,
                                                                              setting))
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        return replayed

    def _too_large(self, size: str, limit: int, setting: str) -> str:
        return (f"the request body is {size}; the limit is {limit} bytes: send less at once "
                f"(large outputs belong in artifacts), or raise it with {setting}")

    def _with_headers(self, send: Send, path: str, host: str | None) -> Send:
        extra = _response_headers(path, host)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in extra if h[0] not in present)]}
            await send(message)

        return sending
