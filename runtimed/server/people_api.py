"""REST for people and share links: the daemon owner adds and removes principals; anyone asks who they are."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from runtimed.server.access import needs, owner_only, principal
from runtimed.server.daemon import Daemon
from runtimed.server.people import Principal


class PersonCreate(BaseModel):
    name: str = Field(description="letters, digits, '.', '_' or '-'")
    kind: str = Field("human", description="human, agent, runtime or automation")
    role: str | None = Field(None, description="role on every notebook: viewer, runner, editor or owner")
    notebooks: dict[str, str] = Field(default_factory=dict, description="notebook id -> role, for single notebooks")


def people_router(daemon: Daemon) -> APIRouter:
    router = APIRouter(tags=["people"])

    @router.get("/api/whoami")
    async def whoami(caller: Principal = Depends(principal)) -> dict[str, Any]:
        """Who this token belongs to and what it may do (the page and clients adapt their actor to it)."""
        return {**caller.describe(), "actor": caller.default_actor()}

    @router.get("/api/people", dependencies=[owner_only("list people")])
    async def list_people() -> list[dict[str, Any]]:
        return daemon.people.list()

    @router.post("/api/people", dependencies=[owner_only("add people")], status_code=201)
    async def add_person(body: PersonCreate) -> dict[str, Any]:
        person, token = daemon.people.add(body.name, kind=body.kind, role=body.role, notebooks=body.notebooks)
        return {**person.describe(), "token": token}

    @router.delete("/api/people/{name}", dependencies=[owner_only("remove people")])
    async def remove_person(name: str) -> dict[str, Any]:
        daemon.people.remove(name)
        return {"removed": name}

    @router.post("/api/notebooks/{notebook_id}/shares", status_code=201,
                 dependencies=[needs("owner", "share")])
    async def share(notebook_id: str, request: Request) -> dict[str, Any]:
        """A read-only link to one notebook; revoke it with ``DELETE /api/people/{name}``."""
        daemon.store.require(notebook_id)
        person, token = daemon.people.share(notebook_id)
        base = str(request.base_url).rstrip("/")
        return {"name": person.name, "notebook_id": notebook_id, "token": token,
                "url": f"{base}/?notebook={notebook_id}&token={token}"}

    return router
