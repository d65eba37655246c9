"""Waiting (bounded, with progress) for executions an agent asked for, and what they produced so far.

An execution goes on in the daemon whatever the agent does; the agent gets what is done
when its bound runs out, with the execution id to pick the rest up later.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from runtimed.agents.render import NOTEBOOK_BUDGET, Paging, Part, TextPart, merge_text, output_parts
from runtimed.client.session import TERMINAL, AsyncSession
from runtimed.errors import NotFoundError
from runtimed.schema import views

Progress = Callable[[float, float | None, str], Awaitable[None]]
PROGRESS_EVERY = 2.0
FIRST_PROGRESS = 0.5


def resolve_ids(session: AsyncSession, execution_id: str) -> list[str]:
    """The queue ids behind an execution id (one execution) or a batch id (a run of all cells)."""
    replica = session.client.replica
    if replica.view(views.executions, queue_id=execution_id):
        return [execution_id]
    queue_ids = [e["queue_id"] for e in replica.view(views.executions) if e["batch_id"] == execution_id]
    if not queue_ids:
        raise NotFoundError(f"no execution {execution_id!r} in notebook {session.notebook_id!r}; execution ids "
                            "come from execute_cell and run_all_cells", code="execution_not_found")
    return queue_ids


def _items(session: AsyncSession, queue_ids: list[str]) -> list[dict[str, Any]]:
    replica = session.client.replica
    return [dict(replica.view(views.executions, queue_id=q)[0]) for q in queue_ids]


def _describe(items: list[dict[str, Any]]) -> str:
    done = sum(i["status"] in TERMINAL for i in items)
    running = next((i for i in items if i["status"] not in TERMINAL), None)
    where = f"; cell {running['cell_id']} is {running['status']}" if running else ""
    return f"{done}/{len(items)} executions done{where}"


async def wait(session: AsyncSession, queue_ids: list[str], timeout: float,
               progress: Progress | None) -> list[dict[str, Any]]:
    """Wait until every execution ended or ``timeout`` s passed; report progress meanwhile (first after
    ``FIRST_PROGRESS`` s, so a quick cell costs no notification)."""
    start = time.monotonic()
    deadline, report_at = start + timeout, start + FIRST_PROGRESS

    def finished() -> bool:
        return all(i["status"] in TERMINAL for i in _items(session, queue_ids))

    while True:
        now = time.monotonic()
        if finished() or now >= deadline:
            return _items(session, queue_ids)
        if progress is not None and now >= report_at:
            items = _items(session, queue_ids)
            await progress(sum(i["status"] in TERMINAL for i in items), len(items), _describe(items))
            report_at = now + PROGRESS_EVERY
        try:
            wake = min(report_at, deadline) if progress is not None else deadline
            await session.client.wait_for(finished, max(0.001, wake - now))
        except TimeoutError:
            continue


def _outputs(session: AsyncSession, item: dict[str, Any]) -> list[dict[str, Any]]:
    """The outputs this execution produced (so far), plus its error when it failed without an error output."""
    outputs = session.client.replica.view(views.execution_outputs, item["cell_id"], item["queue_id"])
    error = item.get("error")
    if item["status"] == "error" and error and not any(o.get("output_type") == "error" for o in outputs):
        outputs.append({"output_type": "error", "ename": error.get("ename"), "evalue": error.get("evalue"),
                        "traceback": error.get("traceback") or []})
    return outputs


def _summary(item: dict[str, Any]) -> dict[str, Any]:
    return {"execution_id": item["queue_id"], "cell_id": item["cell_id"], "status": item["status"],
            "execution_count": item["execution_count"], "done": item["status"] in TERMINAL}


def report(session: AsyncSession, items: list[dict[str, Any]], paging: Paging,
           handle: str | None = None) -> tuple[list[Part], dict[str, Any]]:
    """Content and structured data for executions: status, outputs so far, how to get the rest."""
    parts: list[Part] = []
    used = 0
    for item in items:
        count = f", execution_count {item['execution_count']}" if item["execution_count"] is not None else ""
        took = f", {item['duration_ms']} ms" if item.get("duration_ms") is not None else ""
        header = f"## execution {item['queue_id']} of cell {item['cell_id']}: {item['status']}{count}{took}"
        if used > NOTEBOOK_BUDGET:
            parts.append(TextPart(header + " (outputs not shown: answer size bound; use get_results)"))
            continue
        parts.append(TextPart(header))
        more = f"get_results(execution_id={item['queue_id']!r})"
        for output in _outputs(session, item):
            these = output_parts(output, paging, more)
            used += sum(len(p.text) for p in these if isinstance(p, TextPart))
            parts.extend(these)
    pending = [i for i in items if i["status"] not in TERMINAL]
    done = not pending
    handle = handle or (items[0]["queue_id"] if len(items) == 1 else None)
    if pending:
        parts.append(TextPart(
            f"[not finished: {_describe(items)}. It goes on in the daemon; call get_results with "
            f"execution_id={handle!r} (and a timeout to wait) for the rest, or interrupt_kernel to stop it]"))
    structured = {"execution_id": handle, "done": done, "executions": [_summary(i) for i in items]}
    return merge_text(parts), structured
