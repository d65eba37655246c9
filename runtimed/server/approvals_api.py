"""REST for approvals of agents' tool calls: list a notebook's requests, resolve one.

Resolving appends ``toolApprovalResolved`` as the calling person (``REST API`` unless the body
names an actor); the materializer refuses anyone but a person, and a second resolution.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from runtimed.errors import NotFoundError, RuntimedError
from runtimed.schema import approvals
from runtimed.schema.events import make_event
from runtimed.schema.views import notebook_metadata
from runtimed.server.access import ActorBody, bound_actor, needs, principal
from runtimed.server.daemon import Daemon
from runtimed.server.people import Principal


class Resolve(BaseModel):
    decision: Literal["approved", "approved_always", "denied"] = Field(
        ..., description="approved (this call), approved_always (this tool for this agent on this notebook), denied")
    actor: ActorBody | None = None


def approvals_router(daemon: Daemon) -> APIRouter:
    router = APIRouter(tags=["approvals"], dependencies=[Depends(principal)])

    def _service(notebook_id: str) -> Any:
        daemon.store.require(notebook_id)  # an unknown or invalid id: a clear 404 / 400
        return daemon.service(notebook_id)

    @router.get("/api/notebooks/{notebook_id}/approvals", dependencies=[needs("viewer", "read the approvals of")])
    async def list_approvals(notebook_id: str, all: bool = Query(False, description="include resolved requests")
                             ) -> dict[str, Any]:
        service = _service(notebook_id)
        metadata = await service.view(notebook_metadata)
        return {"policy": approvals.policy(metadata),
                "approvals": await service.view(approvals.list_approvals, pending_only=not all)}

    @router.post("/api/notebooks/{notebook_id}/approvals/{approval_id}")
    async def resolve(notebook_id: str, approval_id: str, body: Resolve,
                      caller: Principal = needs("editor", "resolve approvals on")) -> dict[str, Any]:
        service = _service(notebook_id)
        if await service.view(approvals.get_approval, approval_id) is None:
            raise NotFoundError(f"no approval {approval_id!r} in notebook {notebook_id!r}; list them with "
                                f"`runt approvals {notebook_id}`", code="approval_not_found")
        actor = bound_actor(caller, body.actor)
        event = make_event("toolApprovalResolved", approval_id=approval_id, decision=body.decision)
        result = (await service.append([event], actor, principal=caller))[0]
        if "error" in result:
            raise RuntimedError(result["error"]["message"], code=result["error"]["code"])
        return {"approval": await service.view(approvals.get_approval, approval_id), "seq": result.get("seq")}

    return router
