"""REST for notebook environments: a notebook's dependencies, their approval, building; the daemon's environments.

``PUT /api/notebooks/{id}/dependencies`` sets ``metadata.runtimed.dependencies`` and, when the
caller is a person, approves that exact list (a person choosing dependencies approves them).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from runtimed.errors import RuntimedError
from runtimed.runtime.environments import EnvironmentStore
from runtimed.schema import views
from runtimed.schema.dependencies import resolve, validate_requirement
from runtimed.schema.events import make_event
from runtimed.server.access import ActorBody, bound_actor, needs, owner_only, principal
from runtimed.server.daemon import Daemon
from runtimed.server.environments import NotebookEnvironments
from runtimed.server.people import Principal


class Dependencies(BaseModel):
    dependencies: list[str] = Field(..., description="PEP 508 requirements, e.g. ['pandas>=2', 'tabulate']")
    requires_python: str | None = Field(None, description="a Python version ('3.12') or specifier ('>=3.11')")
    index_url: str | None = Field(None, description="a package index URL (no credentials)")
    actor: ActorBody | None = None


class ActorOnly(BaseModel):
    actor: ActorBody | None = None


class EnvGc(BaseModel):
    max_age_days: float = Field(30.0, ge=0, description="remove environments unused for longer than this")
    dry_run: bool = False


def environments_router(daemon: Daemon) -> APIRouter:
    router = APIRouter(tags=["environments"], dependencies=[Depends(principal)])

    def _envs() -> NotebookEnvironments:
        found = getattr(daemon.runtimes, "environments", None)
        if not isinstance(found, NotebookEnvironments):
            raise RuntimedError("this daemon runs no managed runtimes (--no-runtimes), so it builds no environments",
                                code="runtime_failed")
        return found

    def _store() -> EnvironmentStore:
        found = getattr(daemon.runtimes, "environments", None)
        return found.store if isinstance(found, NotebookEnvironments) else EnvironmentStore(daemon.home.envs_dir)

    def _service(notebook_id: str) -> Any:
        daemon.store.require(notebook_id)
        return daemon.service(notebook_id)

    @router.get("/api/notebooks/{notebook_id}/environment", dependencies=[needs("viewer", "read the environment of")])
    async def get_environment(notebook_id: str) -> dict[str, Any]:
        return await _envs().describe(_service(notebook_id))

    @router.put("/api/notebooks/{notebook_id}/dependencies")
    async def set_dependencies(notebook_id: str, body: Dependencies,
                               caller: Principal = needs("editor", "set the dependencies of")) -> dict[str, Any]:
        service = _service(notebook_id)
        deps = [validate_requirement(d) for d in body.dependencies]
        settings = dict(await service.view(views.run_settings))
        settings["dependencies"] = deps
        for key, value in (("requires_python", body.requires_python), ("index_url", body.index_url)):
            if value:
                settings[key] = value
            else:
                settings.pop(key, None)
        metadata = {**await service.view(views.notebook_metadata), "runtimed": settings}
        resolve(metadata)  # validates the Python version and index URL before anything is stored
        actor = bound_actor(caller, body.actor)
        result = (await service.append([make_event("notebookMetadataSet", key="runtimed", value=settings)], actor,
                                       principal=caller))[0]
        if "error" in result:
            raise RuntimedError(result["error"]["message"], code=result["error"]["code"])
        envs = _envs()
        request = await envs.request_of(service)
        if request is not None and actor.get("kind") == "human":
            await envs.approve(service, request, actor)
        return await envs.describe(service)

    @router.post("/api/notebooks/{notebook_id}/environment/approve")
    async def approve(notebook_id: str, body: ActorOnly,
                      caller: Principal = needs("editor", "approve the dependencies of")) -> dict[str, Any]:
        service = _service(notebook_id)
        envs = _envs()
        request = await envs.request_of(service)
        if request is None:
            raise RuntimedError(f"notebook {notebook_id!r} declares no dependencies", code="not_found")
        await envs.approve(service, request, bound_actor(caller, body.actor))
        return await envs.describe(service)

    @router.post("/api/notebooks/{notebook_id}/environment/sync", dependencies=[needs("editor", "build the environment of")])
    async def sync(notebook_id: str) -> dict[str, Any]:
        service = _service(notebook_id)
        kernel_name, _cwd = await service.view(views.kernel_settings)
        return await _envs().sync(service, kernel_name)

    @router.get("/api/environments", dependencies=[owner_only("list environments")])
    async def list_environments() -> dict[str, Any]:
        store = _store()
        items = await asyncio.to_thread(store.entries)
        in_use = set()
        found = getattr(daemon.runtimes, "environments", None)
        if isinstance(found, NotebookEnvironments):
            in_use = found.pool.environments_in_use()
        for item in items:
            item["pooled"] = item.get("hash") in in_use
        return {"root": str(store.root), "environments": items}

    @router.post("/api/environments/gc", dependencies=[owner_only("remove environments")])
    async def gc(body: EnvGc) -> dict[str, Any]:
        store = _store()
        found = getattr(daemon.runtimes, "environments", None)
        keep = found.pool.environments_in_use() if isinstance(found, NotebookEnvironments) else set()
        removed = await asyncio.to_thread(store.remove_unused, body.max_age_days, keep, body.dry_run)
        return {"removed": removed, "dry_run": body.dry_run}

    return router
