"""Waiting for a person to approve an agent's tool call, as events in the notebook's log.

The agent appends ``toolApprovalRequested`` and waits (bounded, reporting progress) for a
``toolApprovalResolved`` that a person writes from the web page, REST, ``runt approve`` or
a ``Session``. The materializer refuses a resolution by the agent itself except a denial:
that is how a request that timed out is withdrawn, so it never stays pending.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from runtimed.client.session import AsyncSession
from runtimed.errors import RuntimedError
from runtimed.schema import approvals, views
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id

Progress = Callable[[float, float | None, str], Awaitable[None]]
PROGRESS_EVERY = 2.0
"""Seconds between two progress notifications while an agent waits."""
MAX_ARGUMENT_CHARS = 200_000
"""Characters of one argument stored in the request (the rest is cut; the tool call keeps it whole)."""


class ApprovalRefused(RuntimedError):
    """A person denied the call, or nobody answered in time: the tool did nothing."""


def _bounded(arguments: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        if isinstance(value, str) and len(value) > MAX_ARGUMENT_CHARS:
            value = value[:MAX_ARGUMENT_CHARS] + f"… [{len(value) - MAX_ARGUMENT_CHARS:,} more characters]"
        out[key] = value
    return out


def needed(session: AsyncSession, tool: str, level: approvals.Level) -> bool:
    """Whether this call needs a person's approval: the notebook's policy, unless the notebook pre-approves the
    tool (``runtimed.approve_tools``) or a person already answered ``approved_always`` for it to this agent."""
    replica = session.client.replica
    metadata = replica.view(views.notebook_metadata)
    if not approvals.needs_approval(approvals.policy(metadata), level) or tool in approvals.preapproved(metadata):
        return False
    return not replica.view(approvals.always_allowed, tool, session.actor["id"])


async def request(session: AsyncSession, tool: str, arguments: dict[str, Any], *, cell_id: str | None = None,
                  preview: str | None = None, progress: Progress | None = None) -> str:
    """Ask for a person's approval and return its id once given.

    Raises:
        ApprovalRefused: a person denied it (``approval_denied``) or nobody answered within the
            notebook's ``runtimed.approval_timeout`` (``approval_timeout``; the request is withdrawn).
    """
    metadata = session.client.replica.view(views.notebook_metadata)
    policy = approvals.policy(metadata)
    approval_id = new_id("ap-")
    stored = _bounded(arguments)
    if preview is not None:
        stored["preview"] = _bounded({"p": preview})["p"]
    await session.client.commit([make_event("toolApprovalRequested", approval_id=approval_id, tool=tool,
                                            arguments=stored, cell_id=cell_id)])
    wait = approvals.timeout(metadata)
    decision = await _wait(session, approval_id, wait, tool, progress)
    if decision is None:
        decision = await _withdraw(session, approval_id)
    if decision in ("approved", "approved_always"):
        return approval_id
    if _status(session, approval_id) == "withdrawn":
        raise ApprovalRefused(
            f"{tool} needs a person's approval (notebook policy {policy!r}) and nobody answered within {wait:g} s "
            f"(approval {approval_id}, now withdrawn); nothing ran. Ask the user to watch for your request (the "
            f"notebook page, or `runt approvals {session.notebook_id}`), then call {tool} again.",
            code="approval_timeout")
    who = (_approval(session, approval_id) or {}).get("resolved_by") or {}
    raise ApprovalRefused(f"{who.get('name') or 'a person'} denied {tool} (approval {approval_id}); nothing ran. "
                          "Do not retry the same call without asking the user.", code="approval_denied")


def _approval(session: AsyncSession, approval_id: str) -> dict[str, Any] | None:
    return session.client.replica.view(approvals.get_approval, approval_id)


def _decision(session: AsyncSession, approval_id: str) -> str | None:
    return (_approval(session, approval_id) or {}).get("decision")


def _status(session: AsyncSession, approval_id: str) -> str | None:
    return (_approval(session, approval_id) or {}).get("status")


async def _wait(session: AsyncSession, approval_id: str, wait: float, tool: str,
                progress: Progress | None) -> str | None:
    deadline = time.monotonic() + wait
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _decision(session, approval_id)
        if progress is not None:
            await progress(wait - remaining, wait, f"waiting for a person to approve {tool} "
                                                   f"(approval {approval_id}, {remaining:.0f} s left)")
        try:
            return await session.client.wait_for(lambda: _decision(session, approval_id),
                                                 min(PROGRESS_EVERY, remaining))
        except TimeoutError:
            continue


async def _withdraw(session: AsyncSession, approval_id: str) -> str:
    """Deny our own request so it does not stay pending, and return the final decision: a person's
    answer that arrived first stands (our withdrawal is then rejected as ``approval_resolved``)."""
    try:
        await session.client.commit([make_event("toolApprovalResolved", approval_id=approval_id, decision="denied")])
    except RuntimedError as exc:
        if exc.code != "approval_resolved":
            raise
    decision = await session.client.wait_for(lambda: _decision(session, approval_id), 30.0)
    assert decision is not None  # wait_for returns once it is there
    return decision
