"""Typed views of the projection: the one place that reads its tables and turns rows into data.

Every query of the projection made by the daemon, the runtimes, the bindings, automation
and the CLI lives here, so the table layout is private to ``schema/`` and ``store/``.
A view is a function of a ``Reader`` (a connection to a projection: the server's store or
a client's replica); callers run it with ``NotebookLog.view(fn, ...)`` or
``Replica.view(fn, ...)``, never with a connection of their own.
"""

from __future__ import annotations

import sqlite3
from typing import Any, NamedTuple, TypedDict

import orjson

from runtimed.schema.events import ASSIGN_WHEN_IDLE
from runtimed.schema.materializer import loads

Reader = sqlite3.Connection
"""A connection to a projection database, used only for reading."""


class CellRow(TypedDict):
    id: str
    cell_type: str
    fractional_index: str
    source: str
    metadata: dict[str, Any]
    attachments: dict[str, Any] | None
    execution_count: int | None


class ExecutionRow(TypedDict):
    queue_id: str
    cell_id: str
    batch_id: str | None
    status: str
    session_id: str | None
    source: str | None
    cancel_requested: bool
    execution_count: int | None
    duration_ms: float | None
    error: dict[str, Any] | None
    requested_by: str
    requested_seq: int
    requested_at: str
    started_at: str | None
    completed_at: str | None


class SessionRow(TypedDict):
    session_id: str
    runtime_id: str
    actor_id: str
    kernel_name: str
    language: str
    status: str
    detail: str | None
    host: str
    started_at: str
    active: bool
    ended_reason: str | None
    assign_when_idle: bool
    """New requests are assigned to it while it has no work (``events.ASSIGN_WHEN_IDLE``)."""


class NotebookInfo(TypedDict, total=False):
    id: str
    title: str
    created_at: str
    updated_at: str
    head_seq: int
    cells: int
    runtime: SessionRow | None


class PendingInput(TypedDict):
    queue_id: str
    prompt: str
    password: bool


class InputState(TypedDict):
    value: str | None
    replied_seq: int | None


class WidgetRow(TypedDict):
    comm_id: str
    target_name: str
    session_id: str | None
    cell_id: str | None
    state: dict[str, Any]
    buffers: list[dict[str, Any]]
    live: bool
    updated_seq: int


# -- cells ---------------------------------------------------------------------------------------

CELL_COLUMNS = "id, cell_type, fractional_index, source, metadata, attachments, execution_count"


def _cell(row: tuple[Any, ...]) -> CellRow:
    cell_id, cell_type, index, source, metadata, attachments, execution_count = row
    return {
        "id": cell_id,
        "cell_type": cell_type,
        "fractional_index": index,
        "source": source,
        "metadata": loads(metadata),
        "attachments": loads(attachments),
        "execution_count": execution_count,
    }


def ordered_cells(conn: Reader) -> list[CellRow]:
    rows = conn.execute(f"SELECT {CELL_COLUMNS} FROM cells ORDER BY fractional_index, id").fetchall()
    return [_cell(r) for r in rows]


def cell(conn: Reader, cell_id: str) -> CellRow | None:
    row = conn.execute(f"SELECT {CELL_COLUMNS} FROM cells WHERE id = ?", (cell_id,)).fetchone()
    return None if row is None else _cell(row)


def cell_count(conn: Reader) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0])


def order_keys(conn: Reader, *, except_cell: str | None = None) -> list[tuple[str, str]]:
    """``(cell id, fractional index)`` in notebook order, optionally without one cell (to compute a move)."""
    rows = conn.execute("SELECT id, fractional_index FROM cells WHERE id IS NOT ? ORDER BY fractional_index, id",
                        (except_cell,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def cell_ystate(conn: Reader, cell_id: str) -> bytes | None:
    row = conn.execute("SELECT ystate FROM cells WHERE id = ?", (cell_id,)).fetchone()
    return None if row is None else row[0]


def clear_pending_cells(conn: Reader) -> set[str]:
    """Cells whose ``clear_output(wait=True)`` waits for their next output."""
    return {r[0] for r in conn.execute("SELECT id FROM cells WHERE clear_pending = 1")}


def executions_cleared(conn: Reader) -> dict[str, int]:
    """Cells whose count and last run were cleared ("Clear outputs"): the seq of that clear."""
    sql = "SELECT id, execution_cleared_seq FROM cells WHERE execution_cleared_seq IS NOT NULL"
    try:
        return {r[0]: r[1] for r in conn.execute(sql)}
    except sqlite3.OperationalError:  # a projection older than v6, read before its rebuild: nothing was cleared
        return {}


def cell_ystates(conn: Reader) -> dict[str, bytes]:
    """Each cell's Yjs state (for editors that join a notebook)."""
    return {r[0]: r[1] or b"" for r in conn.execute("SELECT id, ystate FROM cells")}


# -- outputs -------------------------------------------------------------------------------------

def _output(output_id: str, display_id: str | None, content: str) -> dict[str, Any]:
    item: dict[str, Any] = loads(content)
    item["output_id"] = output_id
    if display_id is not None:
        item["display_id"] = display_id
    return item


def outputs_by_cell(conn: Reader, cell_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    sql = "SELECT cell_id, id, display_id, content FROM outputs"
    params: tuple[Any, ...] = ()
    if cell_id is not None:
        sql += " WHERE cell_id = ?"
        params = (cell_id,)
    out: dict[str, list[dict[str, Any]]] = {}
    for cid, output_id, display_id, content in conn.execute(sql + " ORDER BY cell_id, position", params):
        out.setdefault(cid, []).append(_output(output_id, display_id, content))
    return out


def execution_outputs(conn: Reader, cell_id: str, queue_id: str) -> list[dict[str, Any]]:
    """The outputs one execution produced, in order (nbformat fields plus ``output_id``)."""
    rows = conn.execute("SELECT id, display_id, content FROM outputs WHERE cell_id = ? AND queue_id = ? "
                        "ORDER BY position", (cell_id, queue_id))
    return [_output(*r) for r in rows]


def located_output(conn: Reader, output_id: str) -> tuple[str, int, dict[str, Any]] | None:
    """``(cell id, index among the cell's outputs, output)`` of one output, or None (for event streams)."""
    row = conn.execute("SELECT cell_id, position, display_id, content FROM outputs WHERE id = ?", (output_id,)).fetchone()
    if row is None:
        return None
    cell_id, position, display_id, content = row
    index = conn.execute("SELECT COUNT(*) FROM outputs WHERE cell_id = ? AND position < ?", (cell_id, position)).fetchone()[0]
    return cell_id, int(index), _output(output_id, display_id, content)


# -- notebook ------------------------------------------------------------------------------------

def notebook_metadata(conn: Reader) -> dict[str, Any]:
    return {key: loads(value) for key, value in conn.execute("SELECT key, value FROM notebook_metadata ORDER BY key")}


def run_settings(conn: Reader) -> dict[str, Any]:
    """The notebook's ``runtimed`` metadata (cwd, execution_timeout, approvals, …); {} when unset."""
    row = conn.execute("SELECT value FROM notebook_metadata WHERE key = 'runtimed'").fetchone()
    value = loads(row[0]) if row else None
    return value if isinstance(value, dict) else {}


def ai_settings(conn: Reader, cell_id: str | None = None) -> dict[str, Any] | None:
    """The AI settings (``aiSettingsSet``) that apply to a cell: its own, else the notebook's; None when unset.

    ``{"provider", "model", "settings"}``; a cell's own settings override the notebook's key by key (an empty
    provider or model of a cell keeps the notebook's: that is how a cell goes back to the notebook's model)."""
    rows = {r[0]: r for r in conn.execute("SELECT scope, provider, model, settings FROM ai_settings "
                                          "WHERE scope IN ('', ?)", (cell_id or "",))}
    base, own = rows.get(""), rows.get(cell_id) if cell_id else None
    if base is None and own is None:
        return None
    merged: dict[str, Any] = {"provider": "", "model": "", "settings": {}}
    for row in (base, own):
        if row is not None:
            merged.update(provider=row[1] or merged["provider"], model=row[2] or merged["model"],
                          settings={**merged["settings"], **(loads(row[3]) or {})})
    return merged


def ai_settings_scopes(conn: Reader) -> dict[str, dict[str, Any]]:
    """Every ``aiSettingsSet`` as set (not merged): ``""`` for the notebook's, else by cell id (for export)."""
    return {r[0]: {"provider": r[1], "model": r[2], "settings": loads(r[3]) or {}}
            for r in conn.execute("SELECT scope, provider, model, settings FROM ai_settings ORDER BY scope")}


def pending_requests_by(conn: Reader, actor_id: str) -> list[tuple[str, str]]:
    """Pending requests made by one actor as ``(queue id, cell id)``, in queue order (an AI cell runs the
    cells its model asked for while it runs)."""
    rows = conn.execute("SELECT queue_id, cell_id FROM execution_queue WHERE status = 'pending' AND requested_by = ? "
                        "ORDER BY requested_seq", (actor_id,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def kernel_settings(conn: Reader) -> tuple[str, str | None]:
    """The kernel name (kernelspec, default python3) and working directory (``runtimed.cwd``) of a notebook."""
    kernelspec = notebook_metadata(conn).get("kernelspec")
    name = kernelspec.get("name") if isinstance(kernelspec, dict) else None
    cwd = run_settings(conn).get("cwd")
    return str(name or "python3"), cwd if isinstance(cwd, str) else None


def dependency_inputs(conn: Reader) -> tuple[dict[str, Any], str | None, str | None]:
    """What a notebook's dependency request is read from: its metadata, its first code cell's source, and the
    folder of the file it was opened from (``runtimed.notebook_dir``, where a ``pyproject.toml`` may be)."""
    row = conn.execute("SELECT source FROM cells WHERE cell_type = 'code' ORDER BY fractional_index, id LIMIT 1"
                       ).fetchone()
    folder = run_settings(conn).get("notebook_dir")
    return notebook_metadata(conn), row[0] if row else None, folder if isinstance(folder, str) else None


def notebook_info(conn: Reader) -> NotebookInfo | None:
    row = conn.execute("SELECT id, title, created_at, updated_at, head_seq FROM notebooks").fetchone()
    if row is None:
        return None
    return {"id": row[0], "title": row[1], "created_at": row[2], "updated_at": row[3], "head_seq": row[4]}


def notebook_summary(conn: Reader) -> NotebookInfo | None:
    """``notebook_info`` plus the cell count and the active runtime (for listings)."""
    info = notebook_info(conn)
    if info is not None:
        info["cells"] = cell_count(conn)
        info["runtime"] = active_session(conn)
    return info


# -- executions ----------------------------------------------------------------------------------

EXECUTION_COLUMNS = (
    "queue_id, cell_id, batch_id, status, session_id, source, cancel_requested, execution_count, "
    "duration_ms, error, requested_by, requested_seq, requested_at, started_at, completed_at"
)


def _execution(row: tuple[Any, ...]) -> ExecutionRow:
    (queue_id, cell_id, batch_id, status, session_id, source, cancel_requested, execution_count, duration_ms,
     error, requested_by, requested_seq, requested_at, started_at, completed_at) = row
    return {
        "queue_id": queue_id, "cell_id": cell_id, "batch_id": batch_id, "status": status,
        "session_id": session_id, "source": source, "cancel_requested": bool(cancel_requested),
        "execution_count": execution_count, "duration_ms": duration_ms, "error": loads(error),
        "requested_by": requested_by, "requested_seq": requested_seq, "requested_at": requested_at,
        "started_at": started_at, "completed_at": completed_at,
    }


def executions(conn: Reader, *, cell_id: str | None = None, queue_id: str | None = None,
               queue_ids: set[str] | None = None) -> list[ExecutionRow]:
    sql = f"SELECT {EXECUTION_COLUMNS} FROM execution_queue"
    clauses: list[str] = []
    params: list[Any] = []
    if cell_id is not None:
        clauses.append("cell_id = ?")
        params.append(cell_id)
    if queue_id is not None:
        clauses.append("queue_id = ?")
        params.append(queue_id)
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    rows = [_execution(r) for r in conn.execute(sql + " ORDER BY requested_seq", params)]
    if queue_ids is not None:
        rows = [r for r in rows if r["queue_id"] in queue_ids]
    return rows


def execution(conn: Reader, queue_id: str) -> ExecutionRow | None:
    row = conn.execute(f"SELECT {EXECUTION_COLUMNS} FROM execution_queue WHERE queue_id = ?", (queue_id,)).fetchone()
    return None if row is None else _execution(row)


def next_pending(conn: Reader) -> tuple[str, str] | None:
    """The oldest pending request as ``(queue id, cell id)``: what a runtime claims next."""
    row = conn.execute("SELECT queue_id, cell_id FROM execution_queue WHERE status = 'pending' "
                       "ORDER BY requested_seq LIMIT 1").fetchone()
    return None if row is None else (row[0], row[1])


class NextWork(NamedTuple):
    queue_id: str
    cell_id: str
    claimed: bool
    """Already assigned to the asking session (claimed ahead); else pending."""
    cancel_requested: bool


def next_work(conn: Reader, session_id: str) -> NextWork | None:
    """What a runtime session runs next: the oldest request that is pending or that it has claimed ahead."""
    row = conn.execute("SELECT queue_id, cell_id, status, cancel_requested FROM execution_queue "
                       "WHERE status = 'pending' OR (status = 'assigned' AND session_id = ?) "
                       "ORDER BY requested_seq LIMIT 1", (session_id,)).fetchone()
    return None if row is None else NextWork(row[0], row[1], row[2] == "assigned", bool(row[3]))


class QueuedBehind(NamedTuple):
    queue_id: str
    cell_id: str
    cell_type: str | None
    source: str
    batch_id: str | None
    claimed: bool
    cancel_requested: bool
    requester_kind: str | None


def queued_behind(conn: Reader, session_id: str, queue_id: str, limit: int) -> list[QueuedBehind]:
    """What a runtime session runs after ``queue_id``, in order (``next_work``'s order), at most ``limit``: the
    runtime sends the claimed ones of its batch to the kernel ahead."""
    rows = conn.execute(
        "SELECT q.queue_id, q.cell_id, c.cell_type, c.source, q.batch_id, q.status, q.cancel_requested, a.kind "
        "FROM execution_queue q LEFT JOIN cells c ON c.id = q.cell_id LEFT JOIN actors a ON a.id = q.requested_by "
        "WHERE (q.status = 'pending' OR (q.status = 'assigned' AND q.session_id = ?)) "
        "AND q.requested_seq > (SELECT requested_seq FROM execution_queue WHERE queue_id = ?) "
        "ORDER BY q.requested_seq LIMIT ?", (session_id, queue_id, limit)).fetchall()
    return [QueuedBehind(q, cell, cell_type, source or "", batch, status == "assigned", bool(cancel), kind)
            for q, cell, cell_type, source, batch, status, cancel, kind in rows]


def pending_queue_ids(conn: Reader, limit: int) -> list[str]:
    """The oldest pending requests' queue ids (what a runtime claims ahead), at most ``limit``."""
    rows = conn.execute("SELECT queue_id FROM execution_queue WHERE status = 'pending' ORDER BY requested_seq LIMIT ?",
                        (limit,)).fetchall()
    return [r[0] for r in rows]


def claimed_count(conn: Reader, session_id: str) -> int:
    """How many executions the session has claimed ahead (assigned to it, not started)."""
    return int(conn.execute("SELECT count(*) FROM execution_queue WHERE session_id = ? AND status = 'assigned'",
                            (session_id,)).fetchone()[0])


def claims_to_cancel(conn: Reader, session_id: str) -> list[str]:
    """Work the session claimed ahead and has not started, on which a cancel was asked (it completes it)."""
    rows = conn.execute("SELECT queue_id FROM execution_queue WHERE session_id = ? AND status = 'assigned' "
                        "AND cancel_requested = 1 ORDER BY requested_seq", (session_id,)).fetchall()
    return [r[0] for r in rows]


def pending_requests(conn: Reader) -> list[tuple[str, str]]:
    """Every pending request as ``(queue id, the cell's current source)``, in queue order."""
    rows = conn.execute("SELECT q.queue_id, c.source FROM execution_queue q JOIN cells c ON c.id = q.cell_id "
                        "WHERE q.status = 'pending' ORDER BY q.requested_seq").fetchall()
    return [(r[0], r[1]) for r in rows]


def has_unfinished_work(conn: Reader, *, pending_only: bool = False) -> bool:
    states = "('pending')" if pending_only else "('pending', 'assigned', 'running')"
    return conn.execute(f"SELECT 1 FROM execution_queue WHERE status IN {states} LIMIT 1").fetchone() is not None


def needs_runtime(conn: Reader) -> bool:
    """Work is pending and no runtime session is active: the daemon should start one."""
    return active_session(conn) is None and has_unfinished_work(conn, pending_only=True)


def count_finished(conn: Reader, queue_ids: set[str]) -> int:
    if not queue_ids:
        return 0
    row = conn.execute("SELECT count(*) FROM execution_queue WHERE status IN ('success', 'error', 'cancelled') "
                       "AND queue_id IN (SELECT value FROM json_each(?))", (orjson.dumps(list(queue_ids)).decode(),)).fetchone()
    return int(row[0])


def finished_total(conn: Reader) -> int:
    """How many executions of the notebook have finished (one index count).

    A finished execution never leaves its status, so along a log this count only grows, and each value
    of it is one set of finished executions: a waiter recounts its own (``count_finished``) only when
    this number changed (automation/run.py).
    """
    row = conn.execute("SELECT count(*) FROM execution_queue WHERE status IN ('success', 'error', 'cancelled')").fetchone()
    return int(row[0])


def session_work(conn: Reader, session_id: str) -> list[tuple[str, str]]:
    """``(queue id, status)`` of the work a runtime session owns (assigned or running), in queue order."""
    rows = conn.execute("SELECT queue_id, status FROM execution_queue WHERE session_id = ? "
                        "AND status IN ('assigned', 'running') ORDER BY requested_seq", (session_id,)).fetchall()
    return [(r[0], r[1]) for r in rows]


def status_history(conn: Reader, after_seq: int) -> list[str]:
    """Runtime statuses reported after a seq, in order (only in replicas that record events)."""
    rows = conn.execute("SELECT json_extract(args, '$.status') FROM events WHERE name = 'runtimeStatusChanged' "
                        "AND seq > ? ORDER BY seq", (after_seq,))
    return [r[0] for r in rows]


def event_names(conn: Reader, after_seq: int) -> list[str]:
    """Names of the events after a seq, in order (only in replicas that record events)."""
    return [r[0] for r in conn.execute("SELECT name FROM events WHERE seq > ? ORDER BY seq", (after_seq,))]


# -- runtimes and inputs -----------------------------------------------------------------

SESSION_COLUMNS = ("session_id, runtime_id, actor_id, kernel_name, language, status, detail, host, started_at, "
                   "active, ended_reason, capabilities")


def _session(row: tuple[Any, ...]) -> SessionRow:
    names = [n.strip() for n in SESSION_COLUMNS.split(",")]
    item = dict(zip(names, row, strict=True))
    item["active"] = bool(item["active"])
    item["assign_when_idle"] = bool(loads(item.pop("capabilities")).get(ASSIGN_WHEN_IDLE))
    return item  # type: ignore[return-value]


def active_session(conn: Reader) -> SessionRow | None:
    row = conn.execute(f"SELECT {SESSION_COLUMNS} FROM runtime_sessions WHERE active = 1").fetchone()
    return None if row is None else _session(row)


def runtime_session(conn: Reader, session_id: str) -> SessionRow | None:
    row = conn.execute(f"SELECT {SESSION_COLUMNS} FROM runtime_sessions WHERE session_id = ?", (session_id,)).fetchone()
    return None if row is None else _session(row)


def pending_inputs(conn: Reader) -> list[PendingInput]:
    cur = conn.execute("SELECT queue_id, prompt, password FROM inputs WHERE replied_seq IS NULL ORDER BY requested_seq")
    return [{"queue_id": q, "prompt": p, "password": bool(pw)} for q, p, pw in cur.fetchall()]


def input_state(conn: Reader, queue_id: str) -> InputState | None:
    row = conn.execute("SELECT value, replied_seq FROM inputs WHERE queue_id = ?", (queue_id,)).fetchone()
    return None if row is None else {"value": row[0], "replied_seq": row[1]}


# -- widgets -------------------------------------------------------------------------------------

WIDGET_COLUMNS = "comm_id, target_name, session_id, cell_id, state, buffers, live, updated_seq"


def _widget(row: tuple[Any, ...]) -> WidgetRow:
    return {"comm_id": row[0], "target_name": row[1], "session_id": row[2], "cell_id": row[3],
            "state": loads(row[4]), "buffers": loads(row[5]), "live": bool(row[6]), "updated_seq": row[7]}


def widgets(conn: Reader) -> list[WidgetRow]:
    """Every widget model of the notebook with its current state (live: its kernel still holds it)."""
    return [_widget(r) for r in conn.execute(f"SELECT {WIDGET_COLUMNS} FROM comms ORDER BY opened_seq")]


def widget(conn: Reader, comm_id: str) -> WidgetRow | None:
    row = conn.execute(f"SELECT {WIDGET_COLUMNS} FROM comms WHERE comm_id = ?", (comm_id,)).fetchone()
    return None if row is None else _widget(row)


def session_widgets(conn: Reader, session_id: str) -> list[str]:
    """The live widget models a runtime session's kernel holds."""
    return [r[0] for r in conn.execute("SELECT comm_id FROM comms WHERE session_id = ? AND live = 1", (session_id,))]


# -- the whole notebook --------------------------------------------------------------------------

def notebook_view(conn: Reader, *, ystate: bool = False) -> dict[str, Any]:
    """The whole notebook: info, metadata, ordered cells with their outputs and latest execution, and the queue."""
    info = notebook_info(conn) or {}
    outputs = outputs_by_cell(conn)
    latest: dict[str, ExecutionRow] = {}
    unfinished: list[ExecutionRow] = []
    for item in executions(conn):
        latest[item["cell_id"]] = item
        if item["status"] in ("pending", "assigned", "running"):
            unfinished.append(item)
    states = cell_ystates(conn) if ystate else {}
    waiting_clears = clear_pending_cells(conn)
    cleared = executions_cleared(conn)
    cells: list[dict[str, Any]] = []
    for c in ordered_cells(conn):
        entry: dict[str, Any] = dict(c)
        entry["outputs"] = outputs.get(c["id"], [])
        run = latest.get(c["id"])
        # a run requested before a "Clear outputs" is not shown (it had finished then; see the materializer)
        hidden = run is not None and run["requested_seq"] < cleared.get(c["id"], -1)
        entry["execution"] = None if hidden else run
        entry["clear_pending"] = c["id"] in waiting_clears
        if ystate:
            import base64

            entry["ystate"] = base64.b64encode(states.get(c["id"]) or b"").decode()
        cells.append(entry)
    return {
        **info,
        "metadata": notebook_metadata(conn),
        "cells": cells,
        "runtime": active_session(conn),
        "inputs": pending_inputs(conn),
        "queue": unfinished,  # every execution not yet finished (a cell's latest one is also in the cell)
    }


def page_view(conn: Reader, *, ystate: bool = False) -> dict[str, Any]:
    """The REST view a page opens with: the notebook view plus its widget models (their current state)."""
    return {**notebook_view(conn, ystate=ystate), "widgets": widgets(conn)}


# -- artifacts ---------------------------------------------------------------------------

def artifact_refs(conn: Reader) -> dict[str, int]:
    """Every artifact the log references at any seq (sha -> size): what time travel may still need."""
    from runtimed.schema.artifact_refs import event_refs

    found: dict[str, int] = {}
    rows = conn.execute("SELECT name, args FROM events WHERE name IN ('outputAdded', 'displayUpdated', "
                        "'streamTailSet', 'commOpened', 'commStateChanged', 'commCustomMessage', 'commUpdateRequested') "
                        "AND instr(args, '\"artifact\":') > 0")
    for name, args in rows:
        for ref in event_refs({"name": name, "args": loads(args)}):
            found[ref["artifact"]] = ref["size"]
    return found


def references_artifact(conn: Reader, sha: str) -> bool:
    """Whether the log references the artifact ``sha`` (at any seq)."""
    row = conn.execute("SELECT 1 FROM events WHERE name IN ('outputAdded', 'displayUpdated', 'streamTailSet', "
                       "'commOpened', 'commStateChanged', 'commCustomMessage', 'commUpdateRequested') "
                       "AND instr(args, ?) > 0 LIMIT 1", (f'"artifact":"{sha}"',)).fetchone()
    return row is not None
