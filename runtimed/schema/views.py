"""Read the projection as plain data: the one place that turns rows into cells and outputs.

Used by REST responses, ipynb export, the Python bindings and the CLI alike.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from runtimed.schema.materializer import loads

CELL_COLUMNS = "id, cell_type, fractional_index, source, metadata, attachments, execution_count"


def _cell(row: tuple) -> dict[str, Any]:
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


def ordered_cells(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {CELL_COLUMNS} FROM cells ORDER BY fractional_index, id").fetchall()
    return [_cell(r) for r in rows]


def cell(conn: sqlite3.Connection, cell_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {CELL_COLUMNS} FROM cells WHERE id = ?", (cell_id,)).fetchone()
    return None if row is None else _cell(row)


def outputs_by_cell(conn: sqlite3.Connection, cell_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    sql = "SELECT cell_id, id, display_id, content FROM outputs"
    params: tuple = ()
    if cell_id is not None:
        sql += " WHERE cell_id = ?"
        params = (cell_id,)
    out: dict[str, list[dict[str, Any]]] = {}
    for cid, output_id, display_id, content in conn.execute(sql + " ORDER BY cell_id, position", params):
        item = loads(content)
        item["output_id"] = output_id
        if display_id is not None:
            item["display_id"] = display_id
        out.setdefault(cid, []).append(item)
    return out


def notebook_metadata(conn: sqlite3.Connection) -> dict[str, Any]:
    return {key: loads(value) for key, value in conn.execute("SELECT key, value FROM notebook_metadata ORDER BY key")}


def notebook_info(conn: sqlite3.Connection) -> dict[str, Any] | None:
    row = conn.execute("SELECT id, title, created_at, updated_at, head_seq FROM notebooks").fetchone()
    if row is None:
        return None
    return dict(zip(("id", "title", "created_at", "updated_at", "head_seq"), row, strict=True))


def executions(conn: sqlite3.Connection, *, cell_id: str | None = None, queue_id: str | None = None) -> list[dict[str, Any]]:
    sql = (
        "SELECT queue_id, cell_id, batch_id, status, session_id, source, cancel_requested, execution_count, "
        "duration_ms, error, requested_by, requested_seq, requested_at, started_at, completed_at FROM execution_queue"
    )
    clauses, params = [], []
    if cell_id is not None:
        clauses.append("cell_id = ?")
        params.append(cell_id)
    if queue_id is not None:
        clauses.append("queue_id = ?")
        params.append(queue_id)
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    cur = conn.execute(sql + " ORDER BY requested_seq", params)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for r in rows:
        r["error"] = loads(r["error"])
        r["cancel_requested"] = bool(r["cancel_requested"])
    return rows


def active_session(conn: sqlite3.Connection) -> dict[str, Any] | None:
    cur = conn.execute(
        "SELECT session_id, runtime_id, actor_id, kernel_name, language, status, detail, host, started_at "
        "FROM runtime_sessions WHERE active = 1"
    )
    row = cur.fetchone()
    return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))


def pending_inputs(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT queue_id, prompt, password FROM inputs WHERE replied_seq IS NULL ORDER BY requested_seq")
    return [{"queue_id": q, "prompt": p, "password": bool(pw)} for q, p, pw in cur.fetchall()]


def notebook_view(conn: sqlite3.Connection) -> dict[str, Any]:
    """The whole notebook: info, metadata, ordered cells with their outputs and latest execution."""
    info = notebook_info(conn) or {}
    outputs = outputs_by_cell(conn)
    latest: dict[str, dict[str, Any]] = {}
    for item in executions(conn):
        latest[item["cell_id"]] = item
    cells = ordered_cells(conn)
    for c in cells:
        c["outputs"] = outputs.get(c["id"], [])
        c["execution"] = latest.get(c["id"])
    return {
        **info,
        "metadata": notebook_metadata(conn),
        "cells": cells,
        "runtime": active_session(conn),
        "inputs": pending_inputs(conn),
    }
