"""Token auth for every endpoint but /health: Bearer header, ?token= (browsers), or the login cookie.

The cookie's name carries the daemon's port: browsers send a host's cookies to every port of
that host, so two daemons (or a daemon and any other local server) never share a sign-in.
"""

from __future__ import annotations

import hmac
from typing import Literal

from starlette.requests import HTTPConnection

COOKIE_PREFIX = "runtimed_token_"

Credential = Literal["bearer", "query", "cookie"]


def cookie_name(port: int) -> str:
    """The login cookie of the daemon listening on ``port``."""
    return f"{COOKIE_PREFIX}{port}"


class Auth:
    def __init__(self, token: str, port: int = 0) -> None:
        self.token = token
        self.cookie_name = cookie_name(port)

    def bind_port(self, port: int) -> None:
        """Name the login cookie after the port the daemon really listens on."""
        self.cookie_name = cookie_name(port)

    def matches(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    def credential(self, conn: HTTPConnection) -> tuple[str | None, Credential | None]:
        """The token presented and how: a Bearer header wins over ``?token=``, which wins over the cookie."""
        header = conn.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip(), "bearer"
        if conn.query_params.get("token"):
            return conn.query_params["token"], "query"
        if self.cookie_name in conn.cookies:
            return conn.cookies[self.cookie_name], "cookie"
        return None, None

    def presented(self, conn: HTTPConnection) -> str | None:
        return self.credential(conn)[0]

    def request_ok(self, conn: HTTPConnection) -> bool:
        return self.matches(self.presented(conn))

    websocket_ok = request_ok
