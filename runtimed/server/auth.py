"""Token auth for every endpoint but /health: Bearer header, ?token= (browsers), or the login cookie."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

COOKIE_NAME = "runtimed_token"


class Auth:
    def __init__(self, token: str) -> None:
        self.token = token

    def matches(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    def presented(self, conn: HTTPConnection) -> str | None:
        header = conn.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return conn.query_params.get("token") or conn.cookies.get(COOKIE_NAME)

    def request_ok(self, conn: HTTPConnection) -> bool:
        return self.matches(self.presented(conn))

    websocket_ok = request_ok
