"""An agent's view of the daemon: who it is, one session per notebook it touches, and REST calls.

The tool layer never creates a notebook by accident: a session is only opened on a
notebook the daemon already has (``AsyncSession.connect`` would create a missing one).
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from typing import Any

from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.http import DaemonHTTP
from runtimed.client.session import AsyncSession
from runtimed.errors import NotFoundError, RuntimedError

MAX_SESSIONS = 32
"""Notebooks an agent keeps a live session on; the least recently used one is closed beyond that."""
DEFAULT_AGENT_NAME = "mcp-client"


def agent_actor(name: str | None) -> dict[str, Any]:
    """The actor of an agent: kind ``agent``, named after its client; the id is derived from the name,
    so an ``approved_always`` answer outlives one connection of the same agent."""
    name = (name or "").strip()[:256] or DEFAULT_AGENT_NAME
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:100] or "agent"
    return {"id": f"agent:{slug}", "kind": "agent", "name": name}


def missing_notebook(notebook_id: str) -> NotFoundError:
    return NotFoundError(f"no notebook with id {notebook_id!r}; call list_notebooks to see the notebooks, "
                         "or create_notebook / open_notebook to make one", code="notebook_not_found")


class AgentWorkspace:
    """The sessions and REST client of one agent (one actor) on one daemon."""

    def __init__(self, endpoint: DaemonEndpoint, actor: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.actor = actor
        self._http = DaemonHTTP(endpoint, timeout=60.0)
        self._sessions: OrderedDict[str, AsyncSession] = OrderedDict()
        self._lock = asyncio.Lock()

    async def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        """A REST call to the daemon (JSON answer); errors arrive as RuntimedError with the daemon's code."""
        response = await asyncio.to_thread(self._http.request, method.upper(), path, **kwargs)
        return response.json()

    async def rest_text(self, path: str, **kwargs: Any) -> str:
        response = await asyncio.to_thread(self._http.request, "GET", path, **kwargs)
        return response.text

    async def exists(self, notebook_id: str) -> bool:
        try:
            await self.rest("GET", f"/api/notebooks/{notebook_id}/peers")
        except NotFoundError:
            return False
        except RuntimedError as exc:
            if exc.code in ("invalid_notebook_id", "invalid_request"):
                return False
            raise
        return True

    async def session(self, notebook_id: str) -> AsyncSession:
        """A connected session on an existing notebook, attributed to this agent."""
        session = self._sessions.get(notebook_id)
        if session is not None and session.is_connected:
            self._sessions.move_to_end(notebook_id)
            return session
        async with self._lock:
            session = self._sessions.get(notebook_id)
            if session is not None:  # lost its connection: resume it, or start over if the notebook is gone
                try:
                    await session.connect()
                except RuntimedError:
                    await self.forget(notebook_id)
                    session = None
            if session is None:
                if not await self.exists(notebook_id):
                    raise missing_notebook(notebook_id)
                session = AsyncSession(notebook_id, actor=self.actor, endpoint=self.endpoint)
                self._sessions[notebook_id] = session
                try:
                    await session.connect()
                except BaseException:
                    await self.forget(notebook_id)
                    raise
            self._sessions.move_to_end(notebook_id)
            while len(self._sessions) > MAX_SESSIONS:
                _, oldest = self._sessions.popitem(last=False)
                await oldest.close()
            return session

    async def forget(self, notebook_id: str) -> None:
        session = self._sessions.pop(notebook_id, None)
        if session is not None:
            await session.close()

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), OrderedDict()
        for session in sessions:
            await session.close()
        self._http.close()


class Workspaces:
    """One workspace per (credential, agent name), for a server that many agents reach (the daemon's HTTP
    endpoint): each agent acts with the token it presented, so the daemon applies that token's rights."""

    def __init__(self, endpoint: DaemonEndpoint, limit: int = 64) -> None:
        self.endpoint = endpoint
        self.limit = limit
        self._by_key: OrderedDict[tuple[str, str], AgentWorkspace] = OrderedDict()

    async def get(self, agent_name: str | None, token: str | None = None) -> AgentWorkspace:
        actor = agent_actor(agent_name)
        endpoint = self.endpoint if token is None else DaemonEndpoint(self.endpoint.url, token)
        key = (endpoint.token, actor["name"])
        workspace = self._by_key.get(key)
        if workspace is None:
            workspace = AgentWorkspace(endpoint, actor)
            self._by_key[key] = workspace
            while len(self._by_key) > self.limit:
                _, oldest = self._by_key.popitem(last=False)
                await oldest.close()
        self._by_key.move_to_end(key)
        return workspace

    async def close(self) -> None:
        workspaces, self._by_key = list(self._by_key.values()), OrderedDict()
        for workspace in workspaces:
            await workspace.close()
