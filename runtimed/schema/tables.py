"""The SQL projection of a notebook log (DESIGN 3.3), one database per notebook.

The server's store and every client's in-memory replica create exactly these tables,
and the materializer is the only code that writes them. JSON columns hold canonical
JSON text (sorted keys) so that replicas are byte-identical.
"""

from __future__ import annotations

import sqlite3
import threading

EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY,
    id      TEXT NOT NULL UNIQUE,
    name    TEXT NOT NULL,
    v       INTEGER NOT NULL,
    args    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    ts      TEXT NOT NULL
);
"""

PROJECTION_DDL = """
CREATE TABLE IF NOT EXISTS notebooks (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    head_seq    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notebook_metadata (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    id                  TEXT PRIMARY KEY,
    cell_type           TEXT NOT NULL,
    fractional_index    TEXT NOT NULL,
    source              TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    attachments         TEXT,
    execution_count     INTEGER,
    clear_pending       INTEGER NOT NULL DEFAULT 0,
    execution_cleared_seq INTEGER,
    created_seq         INTEGER NOT NULL,
    updated_seq         INTEGER NOT NULL,
    ystate              BLOB
);
CREATE INDEX IF NOT EXISTS cells_order ON cells (fractional_index, id);
CREATE TABLE IF NOT EXISTS outputs (
    id              TEXT PRIMARY KEY,
    cell_id         TEXT NOT NULL,
    queue_id        TEXT,
    position        INTEGER NOT NULL,
    output_type     TEXT NOT NULL,
    display_id      TEXT,
    content         TEXT NOT NULL,
    seq             INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outputs_cell ON outputs (cell_id, position);
CREATE INDEX IF NOT EXISTS outputs_display ON outputs (display_id) WHERE display_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS execution_queue (
    queue_id            TEXT PRIMARY KEY,
    cell_id             TEXT NOT NULL,
    batch_id            TEXT,
    status              TEXT NOT NULL,
    session_id          TEXT,
    source              TEXT,
    cancel_requested    INTEGER NOT NULL DEFAULT 0,
    execution_count     INTEGER,
    duration_ms         REAL,
    error               TEXT,
    requested_by        TEXT NOT NULL,
    requested_seq       INTEGER NOT NULL,
    requested_at        TEXT NOT NULL,
    started_at          TEXT,
    completed_at        TEXT
);
CREATE INDEX IF NOT EXISTS queue_status ON execution_queue (status, requested_seq);
CREATE TABLE IF NOT EXISTS inputs (
    queue_id        TEXT PRIMARY KEY,
    prompt          TEXT NOT NULL,
    password        INTEGER NOT NULL,
    value           TEXT,
    requested_seq   INTEGER NOT NULL,
    replied_seq     INTEGER
);
CREATE TABLE IF NOT EXISTS runtime_sessions (
    session_id      TEXT PRIMARY KEY,
    runtime_id      TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    kernel_name     TEXT NOT NULL,
    language        TEXT NOT NULL,
    capabilities    TEXT NOT NULL,
    host            TEXT NOT NULL,
    status          TEXT NOT NULL,
    detail          TEXT,
    active          INTEGER NOT NULL,
    ended_reason    TEXT,
    started_seq     INTEGER NOT NULL,
    started_at      TEXT NOT NULL,
    ended_at        TEXT
);
CREATE TABLE IF NOT EXISTS actors (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    display_name    TEXT,
    first_seq       INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL,
    event_count     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    approval_id     TEXT PRIMARY KEY,
    tool            TEXT NOT NULL,
    arguments       TEXT NOT NULL,
    cell_id         TEXT,
    decision        TEXT,
    requested_by    TEXT NOT NULL,
    requested_seq   INTEGER NOT NULL,
    resolved_by     TEXT,
    resolved_seq    INTEGER
);
CREATE TABLE IF NOT EXISTS comms (
    comm_id         TEXT PRIMARY KEY,
    target_name     TEXT NOT NULL,
    session_id      TEXT,
    cell_id         TEXT,
    state           TEXT NOT NULL,
    buffers         TEXT NOT NULL,
    live            INTEGER NOT NULL,
    opened_seq      INTEGER NOT NULL,
    updated_seq     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ai_settings (
    scope       TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    model       TEXT NOT NULL,
    settings    TEXT NOT NULL
);
"""

PROJECTION_VERSION = 6
"""The layout and rules of the projection. A store that finds an older one rebuilds it from the log before
serving; bump it whenever a table or a materializer rule changes what a replay produces.

1: the first wave (no version recorded). 2: the version is recorded in ``projection_meta``.
3: a cell that stops being code also drops its waiting ``clear_output(wait=True)``.
4: a ``cancelled`` completion in a run-all batch cancels the rest of the batch (like an ``error``).
5: widget models (``comms``: the comm events' current state of each model).
"""

META_DDL = """
CREATE TABLE IF NOT EXISTS projection_meta (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
"""

PROJECTION_TABLES = (
    "notebooks",
    "notebook_metadata",
    "cells",
    "outputs",
    "execution_queue",
    "inputs",
    "runtime_sessions",
    "actors",
    "approvals",
    "ai_settings",
    "comms",
)


def create_tables(conn: sqlite3.Connection) -> None:
    # Statement by statement: executescript would commit a surrounding transaction (a rebuild runs in one).
    for statement in (EVENTS_DDL + PROJECTION_DDL + META_DDL).split(";"):
        if statement.strip():
            conn.execute(statement)


_blank: sqlite3.Connection | None = None
_blank_lock = threading.Lock()


def new_memory_database() -> sqlite3.Connection:
    """A new in-memory database with every table made: a page copy of a blank one made once per process.

    Every replica (each client, runtime and run job, and each past state) starts from one; making the tables
    takes ~6 ms of CPU (forty-odd statements), the copy ~0.3 ms."""
    global _blank
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    with _blank_lock:
        if _blank is None:
            _blank = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            create_tables(_blank)
        _blank.backup(conn)
    return conn


def stored_projection_version(conn: sqlite3.Connection) -> int:
    """The projection version a database holds (1 for databases of the first wave, which did not record it)."""
    try:
        row = conn.execute("SELECT value FROM projection_meta WHERE key = 'version'").fetchone()
    except sqlite3.OperationalError:  # no such table
        return 1
    return int(row[0]) if row else 1


def record_projection_version(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT OR REPLACE INTO projection_meta (key, value) VALUES ('version', ?)", (str(PROJECTION_VERSION),))


def drop_projection(conn: sqlite3.Connection) -> None:
    """Remove the projection tables (the log stays), to rebuild them from the log."""
    for table in PROJECTION_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
