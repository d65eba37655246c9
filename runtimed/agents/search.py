"""Reading across a notebook's past and across notebooks: filtered history, text search.

Both go through the daemon's REST API (the agent's replica may start from a snapshot and
has no other notebooks), and both are bounded in what they scan and return.
"""

from __future__ import annotations

from typing import Any

from runtimed.agents.render import output_text, summarize_args
from runtimed.agents.workspace import AgentWorkspace
from runtimed.schema import search as text_search
from runtimed.schema.materializer import loads

HISTORY_SCAN = 20_000
"""Events scanned by one history read."""
HISTORY_PAGE = 10_000
MAX_SEARCH_NOTEBOOKS = 200
SNIPPET_CHARS = 160


def event_matches(event: dict[str, Any], filters: dict[str, Any]) -> bool:
    actor = event.get("actor") or {}
    args = event.get("args") or {}
    checks = (
        ("actor_kind", actor.get("kind")),
        ("actor_name", actor.get("name")),
        ("event", event.get("name")),
        ("cell_id", args.get("cellId")),
    )
    return all(filters.get(key) in (None, value) for key, value in checks)


async def history(workspace: AgentWorkspace, notebook_id: str, head: int, since_seq: int | None, limit: int,
                  filters: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Matching events: the latest ``limit`` (no ``since_seq``), or the first ``limit`` after ``since_seq``.

    Returns the events and the seq the scan reached (to continue from).
    """
    forward = since_seq is not None
    start = since_seq if since_seq is not None else max(0, head - HISTORY_SCAN)
    end = min(head, start + HISTORY_SCAN)
    found: list[dict[str, Any]] = []
    cursor = start
    while cursor < end:
        body = await workspace.rest("GET", f"/api/notebooks/{notebook_id}/events",
                                    params={"since": cursor, "until": end, "limit": HISTORY_PAGE})
        events = body["events"]
        if not events:
            break
        for event in events:
            cursor = event["seq"]
            if event_matches(event, filters):
                found.append(event)
                if forward and len(found) >= limit:
                    return found, cursor
    return (found if forward else found[-limit:]), cursor


def history_line(event: dict[str, Any]) -> str:
    actor = event.get("actor") or {}
    who = f"{actor.get('name') or actor.get('id')} ({actor.get('kind')})"
    return f"#{event['seq']} {event.get('ts', '')} {event['name']} by {who}: {summarize_args(event.get('args') or {})}"


def _snippets(text: str, needle: str, limit: int = 3) -> list[str]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line.lower():
            at = line.lower().index(needle)
            start = max(0, at - SNIPPET_CHARS // 2)
            out.append(f"line {number}: {line[start:start + SNIPPET_CHARS].strip()}")
            if len(out) >= limit:
                break
    return out


async def search(workspace: AgentWorkspace, query: str, notebook_ids: list[str] | None,
                 limit: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Cells whose source or outputs contain ``query`` (case-insensitive), and the notebooks skipped.

    Notebooks whose approval policy is ``all`` are skipped: reading them needs a person's approval.
    """
    notebooks = await workspace.rest("GET", "/api/notebooks")
    targets = [n["id"] for n in notebooks if not notebook_ids or n["id"] in notebook_ids][:MAX_SEARCH_NOTEBOOKS]
    needle = query.lower()
    matches: list[dict[str, Any]] = []
    skipped: list[str] = []
    for notebook_id in targets:
        if len(matches) >= limit:
            break
        if (await workspace.rest("GET", f"/api/notebooks/{notebook_id}/approvals"))["policy"] == "all":
            skipped.append(notebook_id)
            continue
        for cell_id, cell_type, source in await _query(workspace, notebook_id, text_search.SOURCE_MATCHES,
                                                       text_search.source_patterns(query)):
            lines = _snippets(source, needle)
            if lines:
                matches.append({"notebook_id": notebook_id, "cell_id": cell_id, "cell_type": cell_type,
                                "where": "source", "snippets": lines})
        for cell_id, content in await _query(workspace, notebook_id, text_search.OUTPUT_MATCHES,
                                             text_search.output_patterns(query)):
            lines = _snippets(output_text(loads(content)), needle)
            if lines:
                matches.append({"notebook_id": notebook_id, "cell_id": cell_id, "where": "output", "snippets": lines})
    return matches[:limit], skipped


async def _query(workspace: AgentWorkspace, notebook_id: str, sql: str, params: list[Any]) -> list[list[Any]]:
    body = await workspace.rest("POST", f"/api/notebooks/{notebook_id}/query", json={"sql": sql, "params": params})
    return body["rows"]
