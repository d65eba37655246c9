"""Token auth for every endpoint but /health: Bearer header, ?token= (browsers), or the login cookie.

A token names a principal (``server/people.py``): the owner (the home's token) or a user, agent,
runtime or share link the owner added.

The cookie's name carries the daemon's port: browsers send a host's cookies to every port of
that host, so two daemons (or a daemon and any other local server) never share a sign-in.
"""

from __future__ import annotations

import hmac
from typing import Literal

from starlette.requests import HTTPConnection

from runtimed.server.people import People, Principal

COOKIE_PREFIX = "runtimed_token_"

Credential = Literal["bearer", "query", "cookie"]


def cookie_name(port: int) -> str:
    """The login cookie of the daemon listening on ``port``."""
    return f"{COOKIE_PREFIX}{port}"


class Auth:
    def __init__(self, token: str, port: int = 0, people: People | None = None) -> None:
        self.token = token
        self.cookie_name = cookie_name(port)
        self.people = people

    def bind_port(self, port: int) -> None:
        """Name the login cookie after the port the daemon really listens on."""
        self.cookie_name = cookie_name(port)

    def principal_of(self, candidate: str | None) -> Principal | None:
        """Who a token belongs to (None: nobody)."""
        if self.people is not None:
            return self.people.authenticate(candidate)
        if candidate and hmac.compare_digest(candidate.encode(), self.token.encode()):
            return Principal("owner", "human", "owner", is_owner=True)
        return None

    def matches(self, candidate: str | None) -> bool:
        return self.principal_of(candidate) is not None

    def principal(self, conn: HTTPConnection) -> Principal | None:
        return self.principal_of(self.presented(conn))

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
