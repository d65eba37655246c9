"""Who may call which REST route: FastAPI dependencies over the principals of ``server/people.py``.

The security middleware has already matched the token to a principal (or answered 401); a route
declares the role it needs on its notebook with ``needs("viewer", …)``, or ``owner_only`` for the
daemon itself. Actors given in request bodies are bound to the principal like sync pushes are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request
from pydantic import BaseModel

from runtimed.errors import AuthError
from runtimed.server.people import Principal, Role, forbidden

REST_ACTOR = {"id": "rest", "kind": "human", "name": "REST API"}
"""The actor of an owner's REST call that names none."""


class ActorBody(BaseModel):
    """An actor named in a request body (bound to the caller unless the caller is the owner)."""

    id: str
    kind: str = "human"
    name: str = ""


def principal(request: Request) -> Principal:
    """The caller (set by the security middleware; checked again here for routes mounted without it)."""
    found = request.scope.get("state", {}).get("principal")
    if found is None:
        found = request.app.state.daemon.auth.principal(request)
    if found is None:
        raise AuthError("missing or wrong token: send 'Authorization: Bearer <token>' "
                        "(the token is in $RUNTIMED_HOME/token)")
    return found


def needs(role: Role, what: str) -> Any:
    """A dependency: the caller has at least ``role`` on the route's ``{notebook_id}``."""
    def check(notebook_id: str, caller: Principal = Depends(principal)) -> Principal:
        if not caller.may(notebook_id, role):
            raise forbidden(caller, f"{what} notebook {notebook_id!r} (needs {role})")
        return caller

    return Depends(check)


def needs_everywhere(role: Role, what: str) -> Any:
    """A dependency: the caller has at least ``role`` on every notebook (e.g. to create one)."""
    def check(caller: Principal = Depends(principal)) -> Principal:
        if not caller.may_everywhere(role):
            raise forbidden(caller, what)
        return caller

    return Depends(check)


def owner_only(what: str) -> Any:
    def check(caller: Principal = Depends(principal)) -> Principal:
        if not caller.is_owner:
            raise forbidden(caller, f"{what} (only the daemon's owner may)")
        return caller

    return Depends(check)


def bound_actor(caller: Principal, actor: ActorBody | dict[str, Any] | None) -> dict[str, Any]:
    """The actor a REST call's events are recorded with."""
    given = actor.model_dump() if isinstance(actor, ActorBody) else actor
    if caller.is_owner:
        return given if given is not None else REST_ACTOR
    bound: dict[str, Any] = caller.bind_actor(given)
    return bound


AnyPrincipal = Callable[[Request], Principal]
