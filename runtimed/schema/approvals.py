"""Approvals of agents' tool calls, read from the projection: the notebook's policy and the requests.

One place for the rules every peer reads the same way: the agent that asks, the daemon's
REST API, ``Session`` and the CLI that answer. The materializer enforces who may resolve
a request (a person, never the requester; the requester may only withdraw it).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

from runtimed.schema.materializer import loads

POLICIES = ("off", "execute", "edits", "all")
"""``runtimed.approvals`` values, each requiring approval for more than the one before."""
DEFAULT_POLICY = "execute"
DECISIONS = ("approved", "approved_always", "denied")
DEFAULT_TIMEOUT = 60.0
"""Seconds an agent waits for a person's decision (``runtimed.approval_timeout`` overrides it)."""
MAX_TIMEOUT = 3600.0

Level = Literal["read", "edit", "execute"]
"""What a tool call does to a notebook: reads it, changes it, or runs code in its kernel."""

_REQUIRED_FROM: dict[Level, int] = {"execute": 1, "edit": 2, "read": 3}


def _settings(metadata: dict[str, Any]) -> dict[str, Any]:
    value = metadata.get("runtimed")
    return value if isinstance(value, dict) else {}


def policy(metadata: dict[str, Any]) -> str:
    """The notebook's policy; an unknown value counts as ``all`` (a typo must not open the door)."""
    value = _settings(metadata).get("approvals", DEFAULT_POLICY)
    return value if value in POLICIES else "all"


def needs_approval(policy_name: str, level: Level) -> bool:
    """Whether a call of this level needs a person's approval under ``policy_name``."""
    rank = POLICIES.index(policy_name) if policy_name in POLICIES else len(POLICIES) - 1
    return rank >= _REQUIRED_FROM[level]


def preapproved(metadata: dict[str, Any]) -> frozenset[str]:
    """Tools that need no approval in this notebook whatever the policy (``runtimed.approve_tools``, a list of
    tool names: ``runt run --approve TOOL,...`` sets it on the run's notebook, as an audited event)."""
    value = _settings(metadata).get("approve_tools")
    return frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list) else frozenset()


def timeout(metadata: dict[str, Any]) -> float:
    """How long an agent waits for a decision (``runtimed.approval_timeout``, bounded)."""
    value = _settings(metadata).get("approval_timeout", DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return DEFAULT_TIMEOUT
    return min(float(value), MAX_TIMEOUT)


def always_allowed(conn: sqlite3.Connection, tool: str, actor_id: str) -> bool:
    """Whether a person answered ``approved_always`` to this actor for this tool."""
    row = conn.execute(
        "SELECT 1 FROM approvals WHERE tool = ? AND requested_by = ? AND decision = 'approved_always' LIMIT 1",
        (tool, actor_id),
    ).fetchone()
    return row is not None


def status(decision: str | None, requested_by: str, resolved_by: str | None) -> str:
    """``pending``, a decision, or ``withdrawn`` (the requester denied its own request, e.g. on timeout)."""
    if decision is None:
        return "pending"
    if decision == "denied" and resolved_by == requested_by:
        return "withdrawn"
    return decision


def list_approvals(conn: sqlite3.Connection, *, pending_only: bool = True,
                   approval_id: str | None = None) -> list[dict[str, Any]]:
    """Approval requests, oldest first, with who asked and who answered (names from the actors table)."""
    sql = (
        "SELECT a.approval_id, a.tool, a.arguments, a.cell_id, a.decision, a.requested_by, r.kind, r.name, "
        "a.requested_seq, a.resolved_by, s.kind, s.name, a.resolved_seq FROM approvals a "
        "LEFT JOIN actors r ON r.id = a.requested_by LEFT JOIN actors s ON s.id = a.resolved_by"
    )
    clauses, params = [], []
    if pending_only:
        clauses.append("a.decision IS NULL")
    if approval_id is not None:
        clauses.append("a.approval_id = ?")
        params.append(approval_id)
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    out = []
    for row in conn.execute(sql + " ORDER BY a.requested_seq", params):
        (approval_id, tool, arguments, cell_id, decision, requested_by, r_kind, r_name, requested_seq,
         resolved_by, s_kind, s_name, resolved_seq) = row
        out.append({
            "approval_id": approval_id, "tool": tool, "arguments": loads(arguments), "cell_id": cell_id,
            "status": status(decision, requested_by, resolved_by), "decision": decision,
            "requested_by": {"id": requested_by, "kind": r_kind, "name": r_name}, "requested_seq": requested_seq,
            "resolved_by": None if resolved_by is None else {"id": resolved_by, "kind": s_kind, "name": s_name},
            "resolved_seq": resolved_seq,
        })
    return out


def get_approval(conn: sqlite3.Connection, approval_id: str) -> dict[str, Any] | None:
    found = list_approvals(conn, pending_only=False, approval_id=approval_id)
    return found[0] if found else None
