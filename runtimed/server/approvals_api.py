"""REST for approvals of agents' tool calls: list a notebook's requests, resolve one.

Resolving appends ``toolApprovalResolved`` as the calling person (``REST API`` unless the body
names an actor); the materializer refuses anyone but a person, and a second resolution.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from runtimed.errors import AuthError, NotFoundError, RuntimedError
from runtimed.schema import approvals
from runtimed.schema.events import make_event
from runtimed.schema.views import notebook_metadata
from runtimed.server.daemon import Daemon
from runtimed.store.sqlite import check_notebook_id

REST_ACTOR = {"id": "rest", "kind": "human", "name": "REST API"}


class ResolveActor(BaseModel):
    id: str
    kind: str = "human"
    name: str = ""


class Resolve(BaseModel):
    decision: Literal["approved", "approved_always", "denied"] = Field(
        ..., description="approved (this call), approved_always (this tool for this agent on this notebook), denied")
    actor: ResolveActor | None = None


def approvals_router(daemon: Daemon) -> APIRouter:
    def require_token(request: Request) -> None:
        if not daemon.auth.request_ok(request):
            raise AuthError("missing or wrong token: send 'Authorization: Bearer <token>' "
                            "(the token is in $RUNTIMED_HOME/token)")

    router = APIRouter(tags=["approvals"], dependencies=[Depends(require_token)])

    def _log(notebook_id: str) -> Any:
        check_notebook_id(notebook_id)
        nb_log = daemon.store.require(notebook_id)
        if nb_log.head == 0:
            raise NotFoundError(f"no notebook with id {notebook_id!r}; list them with `runt notebooks`",
                                code="notebook_not_found")
        return nb_log

    @router.get("/api/notebooks/{notebook_id}/approvals")
    def list_approvals(notebook_id: str, all: bool = Query(False, description="include resolved requests")
                       ) -> dict[str, Any]:
        nb_log = _log(notebook_id)
        return {"policy": approvals.policy(notebook_metadata(nb_log.conn)),
                "approvals": approvals.list_approvals(nb_log.conn, pending_only=not all)}

    @router.post("/api/notebooks/{notebook_id}/approvals/{approval_id}")
    def resolve(notebook_id: str, approval_id: str, body: Resolve) -> dict[str, Any]:
        nb_log = _log(notebook_id)
        if approvals.get_approval(nb_log.conn, approval_id) is None:
            raise NotFoundError(f"no approval {approval_id!r} in notebook {notebook_id!r}; list them with "
                                f"`runt approvals {notebook_id}`", code="approval_not_found")
        actor = body.actor.model_dump() if body.actor is not None else REST_ACTOR
        event = make_event("toolApprovalResolved", approval_id=approval_id, decision=body.decision)
        result = daemon.room(notebook_id).push([event], actor)[0]
        if "error" in result:
            raise RuntimedError(result["error"]["message"], code=result["error"]["code"])
        return {"approval": approvals.get_approval(nb_log.conn, approval_id), "seq": result.get("seq")}

    return router
