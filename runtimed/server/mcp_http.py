"""The daemon's MCP endpoint: streamable HTTP at ``{daemon_url}/mcp``, behind the daemon's Bearer token.

Its tool handlers reach the daemon as an ordinary client (a session on the daemon's own URL
and token), so an agent over HTTP is exactly the peer it would be over ``runt mcp``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from runtimed.client.discovery import DaemonEndpoint
from runtimed.server.daemon import Daemon

MCP_PATH = "/mcp"


class _TokenGate:
    """Passes a request on only with a token of the daemon in ``Authorization: Bearer …`` (the MCP tools act
    with that token, so the header is required: no cookie, no ``?token=``)."""

    def __init__(self, daemon: Daemon, handler: Any) -> None:
        self.daemon = daemon
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = Headers(scope=scope).get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        if not self.daemon.auth.matches(token):
            response = JSONResponse(
                {"error": {"code": "unauthorized", "message": "missing or wrong token: send 'Authorization: Bearer "
                                                              "<token>' (the token is in $RUNTIMED_HOME/token)"}},
                status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.handler(scope, receive, send)


def mount_mcp(app: FastAPI, daemon: Daemon) -> None:
    """Serve MCP at ``/mcp`` and run its session manager within the app's lifespan."""
    from runtimed.agents.mcp_server import http_handler

    endpoint = DaemonEndpoint(daemon.url, daemon.auth.token)
    handler, manager, workspaces = http_handler(endpoint)
    app.router.routes.append(Route(MCP_PATH, endpoint=_TokenGate(daemon, handler), include_in_schema=False))
    outer = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with outer(app_) as state, manager.run():
            try:
                yield state
            finally:
                await workspaces.close()

    app.router.lifespan_context = lifespan
