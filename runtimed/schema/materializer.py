"""The materializer: applies one event to a notebook's SQL projection, or rejects it.

One handler per catalog event, each checking its preconditions against the current
projection before writing. Handlers read only the event and the projection (no
clock, no randomness), so replicas that apply the same log are byte-identical. The
server's store and every client replica use this same class.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from runtimed.errors import EventRejected
from runtimed.schema import events as ev
from runtimed.schema.crdt import InvalidUpdate, SourceDoc, decode_update
from runtimed.schema.limits import DEFAULT_LIMITS, Limits

TERMINAL = frozenset({"success", "error", "cancelled"})
STOPS_BATCH = frozenset({"error", "cancelled"})
"""Completions that cancel the rest of their run-all batch (Jupyter's stop_on_error): an error, including
a KeyboardInterrupt from runtimeInterruptRequested, and a run cancelled while it ran (the runtime
interrupted it). Mirrored by the page's reducer.js."""


def dumps(value: Any) -> str:
    """Canonical JSON text for projection columns."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def loads(text: str | bytes | None) -> Any:
    return None if text is None else orjson.loads(text)


@dataclass(frozen=True)
class Envelope:
    """A validated event as stored: server-assigned seq and ts, parsed args and actor."""

    seq: int
    id: str
    name: str
    v: int
    args: ev.Args
    actor: ev.Actor
    ts: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.id,
            "name": self.name,
            "v": self.v,
            "args": self.args.wire(),
            "actor": self.actor.model_dump(),
            "ts": self.ts,
        }

    @classmethod
    def from_wire(cls, event: dict[str, Any]) -> Envelope:
        return cls(
            seq=event["seq"],
            id=event["id"],
            name=event["name"],
            v=ev.CATALOG[event["name"]].version if event["name"] in ev.CATALOG else event["v"],
            args=ev.validate_args(event["name"], event["v"], event["args"]),
            actor=ev.validate_actor(event["actor"]),
            ts=event["ts"],
        )


Handler = Callable[["Projection", Envelope, Any], None]
HANDLERS: dict[str, Handler] = {}


def on(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        assert name in ev.CATALOG, name
        HANDLERS[name] = fn
        return fn

    return register


def reject(code: str, message: str) -> EventRejected:
    return EventRejected(message, code=code)


class Projection:
    """A notebook's projection tables on one SQLite connection, kept by applying events in order."""

    def __init__(self, conn: sqlite3.Connection, notebook_id: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.conn = conn
        self.notebook_id = notebook_id
        self.limits = limits
        self._docs: dict[str, SourceDoc] = {}
        self._touched: set[str] = set()

    # -- applying --------------------------------------------------------------------------------

    def apply(self, env: Envelope, *, record: bool = True) -> None:
        """Apply one event atomically; on rejection nothing of it remains. ``record`` stores the event row."""
        handler = HANDLERS[env.name]
        conn = self.conn
        conn.execute("SAVEPOINT apply_event")
        self._touched.clear()
        try:
            if env.name != "notebookCreated":
                self._require_notebook()
            handler(self, env, env.args)
            self._note_actor(env)
            conn.execute("UPDATE notebooks SET head_seq = ?, updated_at = ?", (env.seq, env.ts))
            if record:
                conn.execute(
                    "INSERT INTO events (seq, id, name, v, args, actor, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (env.seq, env.id, env.name, env.v, dumps(env.args.wire()), dumps(env.actor.model_dump()), env.ts),
                )
        except BaseException:
            conn.execute("ROLLBACK TO apply_event")
            conn.execute("RELEASE apply_event")
            for cell_id in self._touched:
                self._docs.pop(cell_id, None)
            raise
        conn.execute("RELEASE apply_event")

    def forget_cache(self) -> None:
        """Drop cached CRDT documents (after the tables were replaced or a transaction rolled back)."""
        self._docs.clear()

    @property
    def head(self) -> int:
        row = self.conn.execute("SELECT head_seq FROM notebooks").fetchone()
        return row[0] if row else 0

    # -- lookups used by preconditions -----------------------------------------------------------

    def _one(self, sql: str, *params: Any) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
        return row

    def _value(self, sql: str, *params: Any) -> Any:
        """The first column of a query that always returns one row (COUNT, COALESCE(MAX…), a known cell)."""
        row = self._one(sql, *params)
        assert row is not None
        return row[0]

    def _require_notebook(self) -> None:
        if self._one("SELECT 1 FROM notebooks") is None:
            raise reject("notebook_not_created", "the notebook does not exist yet: its first event must be notebookCreated")

    def _require_cell(self, cell_id: str) -> tuple[Any, ...]:
        row = self._one("SELECT id, cell_type, metadata FROM cells WHERE id = ?", cell_id)
        if row is None:
            raise reject("cell_not_found", f"no cell with id {cell_id!r} in this notebook")
        return row

    def _require_queue(self, queue_id: str) -> tuple[Any, ...]:
        row = self._one(
            "SELECT queue_id, cell_id, status, session_id, batch_id FROM execution_queue WHERE queue_id = ?",
            queue_id,
        )
        if row is None:
            raise reject("execution_not_found", f"no execution request with queueId {queue_id!r}")
        return row

    def _active_session(self) -> tuple[Any, ...] | None:
        return self._one("SELECT session_id, actor_id FROM runtime_sessions WHERE active = 1")

    def _idle_assignable_session(self) -> str | None:
        """The active session a new request is assigned to at once, if any (``ASSIGN_WHEN_IDLE``).

        Only a session whose runtime declared the capability, and only while no execution is pending, claimed or
        running: then nothing can be ahead of the request in the queue, and its runtime starts it without a claim
        round trip. Work queued behind a running cell is left for the runtime to claim ahead (runtime/agent.py),
        and so are the requests an AI cell serves itself while it runs.
        """
        row = self._one("SELECT session_id, capabilities FROM runtime_sessions WHERE active = 1")
        if row is None or not loads(row[1]).get(ev.ASSIGN_WHEN_IDLE):
            return None
        if self._one("SELECT 1 FROM execution_queue WHERE status IN ('pending', 'assigned', 'running') LIMIT 1"):
            return None
        return str(row[0])

    def _require_active_session(self, session_id: str, actor: ev.Actor) -> None:
        row = self._one("SELECT active, actor_id FROM runtime_sessions WHERE session_id = ?", session_id)
        if row is None:
            raise reject("session_not_found", f"no runtime session {session_id!r}")
        if not row[0]:
            raise reject("session_inactive", f"runtime session {session_id!r} is no longer active (fenced)")
        if actor.kind != "system" and actor.id != row[1]:
            raise reject("not_session_owner", f"runtime session {session_id!r} belongs to actor {row[1]!r}, not {actor.id!r}")

    def _fence_runtime(self, actor: ev.Actor, what: str) -> None:
        """A runtime may touch outputs only while it owns the active session (events carry no session id)."""
        if actor.kind != "runtime":
            return
        active = self._active_session()
        if active is None or active[1] != actor.id:
            raise reject(
                "session_inactive",
                f"{what}: runtime {actor.id!r} has no active runtime session in this notebook (ended or displaced)",
            )

    def _require_running_by(self, queue_id: str, actor: ev.Actor) -> tuple[Any, ...]:
        """The execution must be running, and the actor must own its (active) session."""
        row = self._require_queue(queue_id)
        if row[2] != "running":
            raise reject("not_running", f"execution {queue_id!r} is {row[2]}, not running")
        self._require_active_session(row[3], actor)
        return row

    # -- cell source documents -------------------------------------------------------------------

    def source_doc(self, cell_id: str) -> SourceDoc:
        doc = self._docs.get(cell_id)
        if doc is None:
            row = self._one("SELECT ystate FROM cells WHERE id = ?", cell_id)
            doc = SourceDoc(row[0] if row else None)
            self._docs[cell_id] = doc
        return doc

    def _store_doc(self, cell_id: str, doc: SourceDoc, seq: int) -> None:
        source = doc.source
        if len(source) > self.limits.max_source_chars:
            raise reject("source_too_large", f"cell {cell_id!r} source would be {len(source)} characters; the limit is {self.limits.max_source_chars}")
        self.conn.execute(
            "UPDATE cells SET source = ?, ystate = ?, updated_seq = ? WHERE id = ?", (source, doc.state(), seq, cell_id)
        )

    # -- bookkeeping -----------------------------------------------------------------------------

    def _note_actor(self, env: Envelope) -> None:
        self.conn.execute(
            "INSERT INTO actors (id, kind, name, first_seq, last_seq, event_count) VALUES (?, ?, ?, ?, ?, 1) "
            "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name, "
            "last_seq = excluded.last_seq, event_count = event_count + 1",
            (env.actor.id, env.actor.kind, env.actor.name, env.seq, env.seq),
        )

    def _cancel_queue(self, where: str, params: tuple[Any, ...], ts: str, *, claimed: str = "flag") -> None:
        """Cancel pending work; flag running work for the runtime to interrupt.

        Work a runtime has claimed but not started (``assigned``: claimed ahead, runtime/agent.py) is flagged
        too (``claimed="flag"``): its runtime may be starting it right now without waiting for an answer, so
        only the runtime decides, and it completes the execution as ``cancelled`` (never started) or interrupts
        it. A run-all batch stopped by its own runtime's failed completion cancels claimed work outright
        (``claimed="cancel"``): that runtime waits for its completion to be applied before it starts more.
        """
        states = "('pending', 'assigned')" if claimed == "cancel" else "('pending')"
        self.conn.execute(
            f"UPDATE execution_queue SET status = 'cancelled', session_id = NULL, completed_at = ? "
            f"WHERE status IN {states} AND {where}",
            (ts, *params),
        )
        flagged = "('assigned', 'running')" if claimed == "flag" else "('running')"
        self.conn.execute(f"UPDATE execution_queue SET cancel_requested = 1 WHERE status IN {flagged} AND {where}",
                          params)

    def _release_claims(self, where: str, params: tuple[Any, ...], ts: str) -> None:
        """Claimed work whose runtime is gone goes back to the queue, unless a cancel was asked for it."""
        self.conn.execute(
            f"UPDATE execution_queue SET status = 'cancelled', session_id = NULL, completed_at = ? "
            f"WHERE status = 'assigned' AND cancel_requested = 1 AND {where}", (ts, *params))
        self.conn.execute(
            f"UPDATE execution_queue SET status = 'pending', session_id = NULL WHERE status = 'assigned' AND {where}",
            params)

    def _add_output(self, cell_id: str, output_id: str, queue_id: str | None, content: dict[str, Any], display_id: str | None, seq: int) -> None:
        if self._value("SELECT clear_pending FROM cells WHERE id = ?", cell_id):
            self.conn.execute("DELETE FROM outputs WHERE cell_id = ?", (cell_id,))
            self.conn.execute("UPDATE cells SET clear_pending = 0 WHERE id = ?", (cell_id,))
        position = self._value("SELECT COALESCE(MAX(position), -1) + 1 FROM outputs WHERE cell_id = ?", cell_id)
        self.conn.execute(
            "INSERT INTO outputs (id, cell_id, queue_id, position, output_type, display_id, content, seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (output_id, cell_id, queue_id, position, content["output_type"], display_id, dumps(content), seq),
        )


# --- notebook -------------------------------------------------------------------------------------


@on("notebookCreated")
def _notebook_created(p: Projection, env: Envelope, a: ev.NotebookCreated) -> None:
    if p._one("SELECT 1 FROM notebooks") is not None:
        raise reject("notebook_exists", f"notebook {p.notebook_id!r} already exists")
    p.conn.execute(
        "INSERT INTO notebooks (id, title, created_at, updated_at, head_seq) VALUES (?, ?, ?, ?, ?)",
        (p.notebook_id, a.title, env.ts, env.ts, env.seq),
    )
    for key in ("kernelspec", "language_info"):
        value = getattr(a, key)
        if value is not None:
            p.conn.execute("INSERT INTO notebook_metadata (key, value) VALUES (?, ?)", (key, dumps(value)))


@on("notebookMetadataSet")
def _notebook_metadata_set(p: Projection, env: Envelope, a: ev.NotebookMetadataSet) -> None:
    if a.value is None:
        p.conn.execute("DELETE FROM notebook_metadata WHERE key = ?", (a.key,))
    else:
        p.conn.execute(
            "INSERT INTO notebook_metadata (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (a.key, dumps(a.value)),
        )
    if a.key == "title" and isinstance(a.value, str):
        p.conn.execute("UPDATE notebooks SET title = ?", (a.value,))


# --- cells ----------------------------------------------------------------------------------------


@on("cellCreated")
def _cell_created(p: Projection, env: Envelope, a: ev.CellCreated) -> None:
    if p._one("SELECT 1 FROM cells WHERE id = ?", a.cell_id) is not None:
        raise reject("cell_exists", f"a cell with id {a.cell_id!r} already exists; choose a new id")
    if p._value("SELECT COUNT(*) FROM cells") >= p.limits.max_cells:
        raise reject("too_many_cells", f"the notebook already has {p.limits.max_cells} cells (the limit)")
    source = a.source or ""
    doc = SourceDoc.seeded(source)
    p.conn.execute(
        "INSERT INTO cells (id, cell_type, fractional_index, source, metadata, attachments, execution_count, "
        "created_seq, updated_seq) VALUES (?, ?, ?, '', ?, ?, ?, ?, ?)",
        (
            a.cell_id,
            a.cell_type,
            a.fractional_index,
            dumps(a.metadata or {}),
            None if a.attachments is None else dumps(a.attachments),
            a.execution_count,
            env.seq,
            env.seq,
        ),
    )
    p._touched.add(a.cell_id)
    p._docs[a.cell_id] = doc
    p._store_doc(a.cell_id, doc, env.seq)


@on("cellSourceEdited")
def _cell_source_edited(p: Projection, env: Envelope, a: ev.CellSourceEdited) -> None:
    p._require_cell(a.cell_id)
    update = decode_update(a.update)
    p._touched.add(a.cell_id)
    doc = p.source_doc(a.cell_id)
    try:
        doc.apply_edit(update)
    except InvalidUpdate as exc:
        raise reject("invalid_update", f"cellSourceEdited for {a.cell_id!r}: {exc}") from None
    p._store_doc(a.cell_id, doc, env.seq)


@on("cellTypeChanged")
def _cell_type_changed(p: Projection, env: Envelope, a: ev.CellTypeChanged) -> None:
    p._require_cell(a.cell_id)
    p.conn.execute("UPDATE cells SET cell_type = ?, updated_seq = ? WHERE id = ?", (a.cell_type, env.seq, a.cell_id))
    if a.cell_type not in ev.EXECUTABLE_CELL_TYPES:
        p.conn.execute("DELETE FROM outputs WHERE cell_id = ?", (a.cell_id,))
        p.conn.execute("UPDATE cells SET execution_count = NULL, clear_pending = 0 WHERE id = ?", (a.cell_id,))
        # Queued runs of a cell that is no longer code would execute its new text: cancel them.
        p._cancel_queue("cell_id = ?", (a.cell_id,), env.ts)


@on("cellMoved")
def _cell_moved(p: Projection, env: Envelope, a: ev.CellMoved) -> None:
    p._require_cell(a.cell_id)
    p.conn.execute("UPDATE cells SET fractional_index = ?, updated_seq = ? WHERE id = ?", (a.fractional_index, env.seq, a.cell_id))


@on("cellMetadataSet")
def _cell_metadata_set(p: Projection, env: Envelope, a: ev.CellMetadataSet) -> None:
    row = p._require_cell(a.cell_id)
    metadata = loads(row[2])
    if a.value is None:
        metadata.pop(a.key, None)
    else:
        metadata[a.key] = a.value
    p.conn.execute("UPDATE cells SET metadata = ?, updated_seq = ? WHERE id = ?", (dumps(metadata), env.seq, a.cell_id))


@on("cellAttachmentsSet")
def _cell_attachments_set(p: Projection, env: Envelope, a: ev.CellAttachmentsSet) -> None:
    p._require_cell(a.cell_id)
    p.conn.execute("UPDATE cells SET attachments = ?, updated_seq = ? WHERE id = ?", (dumps(a.attachments), env.seq, a.cell_id))


@on("cellDeleted")
def _cell_deleted(p: Projection, env: Envelope, a: ev.CellDeleted) -> None:
    p._require_cell(a.cell_id)
    p._touched.add(a.cell_id)
    p.conn.execute("DELETE FROM cells WHERE id = ?", (a.cell_id,))
    p.conn.execute("DELETE FROM outputs WHERE cell_id = ?", (a.cell_id,))
    p._cancel_queue("cell_id = ?", (a.cell_id,), env.ts)
    p._docs.pop(a.cell_id, None)


# --- execution ------------------------------------------------------------------------------------


@on("executionRequested")
def _execution_requested(p: Projection, env: Envelope, a: ev.ExecutionRequested) -> None:
    row = p._require_cell(a.cell_id)
    if row[1] not in ev.EXECUTABLE_CELL_TYPES:
        raise reject("not_executable", f"cell {a.cell_id!r} is a {row[1]} cell; only code, ai and sql cells execute")
    if p._one("SELECT 1 FROM execution_queue WHERE queue_id = ?", a.queue_id) is not None:
        raise reject("queue_id_exists", f"queueId {a.queue_id!r} is already used; choose a new id")
    session_id = p._idle_assignable_session()
    p.conn.execute(
        "INSERT INTO execution_queue (queue_id, cell_id, batch_id, status, session_id, requested_by, requested_seq, "
        "requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (a.queue_id, a.cell_id, a.batch_id, "pending" if session_id is None else "assigned", session_id,
         env.actor.id, env.seq, env.ts),
    )


@on("executionAssigned")
def _execution_assigned(p: Projection, env: Envelope, a: ev.ExecutionAssigned) -> None:
    row = p._require_queue(a.queue_id)
    p._require_active_session(a.session_id, env.actor)
    # Compare-and-set: only the first claim of a pending request wins.
    if row[2] != "pending":
        raise reject("not_pending", f"execution {a.queue_id!r} is {row[2]}; only pending requests can be assigned")
    p.conn.execute("UPDATE execution_queue SET status = 'assigned', session_id = ? WHERE queue_id = ?", (a.session_id, a.queue_id))


@on("executionStarted")
def _execution_started(p: Projection, env: Envelope, a: ev.ExecutionStarted) -> None:
    row = p._require_queue(a.queue_id)
    p._require_active_session(a.session_id, env.actor)
    if row[2] != "assigned" or row[3] != a.session_id:
        raise reject("not_assigned", f"execution {a.queue_id!r} is {row[2]} and not assigned to session {a.session_id!r}")
    p.conn.execute(
        "UPDATE execution_queue SET status = 'running', source = ?, started_at = ? WHERE queue_id = ?",
        (a.source, env.ts, a.queue_id),
    )
    p.conn.execute("DELETE FROM outputs WHERE cell_id = ?", (row[1],))
    p.conn.execute("UPDATE cells SET execution_count = NULL, clear_pending = 0 WHERE id = ?", (row[1],))


@on("executionCompleted")
def _execution_completed(p: Projection, env: Envelope, a: ev.ExecutionCompleted) -> None:
    row = p._require_queue(a.queue_id)
    queue_id, cell_id, status, session_id, batch_id = row
    if status in TERMINAL:
        raise reject("terminal_state", f"execution {queue_id!r} already ended as {status}; terminal states are final")
    if status == "pending":
        raise reject("not_started", f"execution {queue_id!r} is pending; cancel it with executionCancelRequested")
    p._require_active_session(session_id, env.actor)
    p.conn.execute(
        "UPDATE execution_queue SET status = ?, execution_count = ?, duration_ms = ?, error = ?, completed_at = ? "
        "WHERE queue_id = ?",
        (a.status, a.execution_count, a.duration_ms, None if a.error is None else dumps(a.error.wire()), env.ts, queue_id),
    )
    if a.execution_count is not None:
        p.conn.execute("UPDATE cells SET execution_count = ? WHERE id = ?", (a.execution_count, cell_id))
    p.conn.execute("DELETE FROM inputs WHERE queue_id = ? AND replied_seq IS NULL", (queue_id,))
    if a.status in STOPS_BATCH and batch_id is not None and status == "running":  # a claim never started stops nothing
        p._cancel_queue("batch_id = ? AND queue_id != ?", (batch_id, queue_id), env.ts, claimed="cancel")


@on("executionCancelRequested")
def _execution_cancel_requested(p: Projection, env: Envelope, a: ev.ExecutionCancelRequested) -> None:
    if a.queue_id is None:
        p._cancel_queue("1 = 1", (), env.ts)
        return
    row = p._require_queue(a.queue_id)
    if row[2] in TERMINAL:
        raise reject("terminal_state", f"execution {a.queue_id!r} already ended as {row[2]}; nothing to cancel")
    p._cancel_queue("queue_id = ?", (a.queue_id,), env.ts)


@on("executionRequeued")
def _execution_requeued(p: Projection, env: Envelope, a: ev.ExecutionRequeued) -> None:
    row = p._require_queue(a.queue_id)
    if row[2] != "assigned":
        raise reject("not_assigned", f"execution {a.queue_id!r} is {row[2]}; only assigned work can be requeued")
    p._release_claims("queue_id = ?", (a.queue_id,), env.ts)


# --- outputs --------------------------------------------------------------------------------------


@on("outputAdded")
def _output_added(p: Projection, env: Envelope, a: ev.OutputAdded) -> None:
    p._require_cell(a.cell_id)
    if p._one("SELECT 1 FROM outputs WHERE id = ?", a.output_id) is not None:
        raise reject("output_exists", f"an output with id {a.output_id!r} already exists")
    if a.queue_id is None:
        p._fence_runtime(env.actor, "outputAdded")
    else:
        row = p._require_running_by(a.queue_id, env.actor)
        if row[1] != a.cell_id:
            raise reject("wrong_cell", f"execution {a.queue_id!r} runs cell {row[1]!r}, not {a.cell_id!r}")
    content: dict[str, Any] = {"output_type": a.output_type}
    if a.output_type == "stream":
        content.update(name=a.name, text=a.text)
    elif a.output_type == "error":
        content.update(ename=a.ename, evalue=a.evalue, traceback=a.traceback)
    else:
        content.update(data=a.data, metadata=a.metadata or {})
        if a.output_type == "execute_result":
            content["execution_count"] = a.execution_count
    p._add_output(a.cell_id, a.output_id, a.queue_id, content, a.display_id, env.seq)


def _writable_stream(p: Projection, env: Envelope, output_id: str, event: str) -> dict[str, Any]:
    """The content of stream output ``output_id``, once its writer is checked (the runtime running it)."""
    row = p._one("SELECT content, queue_id, cell_id FROM outputs WHERE id = ?", output_id)
    if row is None:
        raise reject("output_not_found", f"no output with id {output_id!r}")
    content: dict[str, Any] = loads(row[0])
    if content["output_type"] != "stream":
        raise reject("not_a_stream", f"output {output_id!r} is {content['output_type']}, not a stream")
    if row[1] is not None:
        p._require_running_by(row[1], env.actor)
    else:
        p._fence_runtime(env.actor, event)
    return content


@on("streamTextChanged")
def _stream_text_changed(p: Projection, env: Envelope, a: ev.StreamTextChanged) -> None:
    content = _writable_stream(p, env, a.output_id, "streamTextChanged")
    text = content["text"]
    if a.offset > len(text):
        raise reject("bad_offset", f"offset {a.offset} is past the end of output {a.output_id!r} ({len(text)} characters)")
    content["text"] = text[: a.offset] + a.text
    p.conn.execute("UPDATE outputs SET content = ?, seq = ? WHERE id = ?", (dumps(content), env.seq, a.output_id))


@on("streamTailSet")
def _stream_tail_set(p: Projection, env: Envelope, a: ev.StreamTailSet) -> None:
    content = _writable_stream(p, env, a.output_id, "streamTailSet")
    content.update(text=a.text, omitted=a.omitted, omitted_bytes=a.omitted_bytes)
    if a.data:
        content["data"] = a.data
    p.conn.execute("UPDATE outputs SET content = ?, seq = ? WHERE id = ?", (dumps(content), env.seq, a.output_id))


@on("displayUpdated")
def _display_updated(p: Projection, env: Envelope, a: ev.DisplayUpdated) -> None:
    p._fence_runtime(env.actor, "displayUpdated")
    # As in Jupyter, an update for a display id that is not shown is a no-op.
    for output_id, content in p.conn.execute("SELECT id, content FROM outputs WHERE display_id = ?", (a.display_id,)).fetchall():
        updated = loads(content)
        updated["data"] = a.data
        updated["metadata"] = a.metadata
        p.conn.execute("UPDATE outputs SET content = ?, seq = ? WHERE id = ?", (dumps(updated), env.seq, output_id))


@on("outputsCleared")
def _outputs_cleared(p: Projection, env: Envelope, a: ev.OutputsCleared) -> None:
    p._require_cell(a.cell_id)
    p._fence_runtime(env.actor, "outputsCleared")
    if a.wait:
        p.conn.execute("UPDATE cells SET clear_pending = 1 WHERE id = ?", (a.cell_id,))
    else:
        p.conn.execute("DELETE FROM outputs WHERE cell_id = ?", (a.cell_id,))
        p.conn.execute("UPDATE cells SET clear_pending = 0 WHERE id = ?", (a.cell_id,))
    if a.execution:
        p.conn.execute("UPDATE cells SET execution_count = NULL WHERE id = ?", (a.cell_id,))
        # the last run's status goes too, unless a run is still to come (its result will show)
        if p._one("SELECT 1 FROM execution_queue WHERE cell_id = ? AND status IN ('pending', 'assigned', 'running')",
                  a.cell_id) is None:
            p.conn.execute("UPDATE cells SET execution_cleared_seq = ? WHERE id = ?", (env.seq, a.cell_id))


# --- runtimes -------------------------------------------------------------------------------------


@on("runtimeSessionStarted")
def _runtime_session_started(p: Projection, env: Envelope, a: ev.RuntimeSessionStarted) -> None:
    if p._one("SELECT 1 FROM runtime_sessions WHERE session_id = ?", a.session_id) is not None:
        raise reject("session_exists", f"runtime session {a.session_id!r} already exists")
    active = p._active_session()
    if active is not None:
        raise reject(
            "runtime_active",
            f"runtime session {active[0]!r} is active; end it first (runtimeSessionEnded with reason 'displaced')",
        )
    p.conn.execute(
        "INSERT INTO runtime_sessions (session_id, runtime_id, actor_id, kernel_name, language, capabilities, host, "
        "status, active, started_seq, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'starting', 1, ?, ?)",
        (a.session_id, a.runtime_id, env.actor.id, a.kernel_name, a.language, dumps(a.capabilities), a.host, env.seq, env.ts),
    )


@on("runtimeStatusChanged")
def _runtime_status_changed(p: Projection, env: Envelope, a: ev.RuntimeStatusChanged) -> None:
    p._require_active_session(a.session_id, env.actor)
    p.conn.execute("UPDATE runtime_sessions SET status = ?, detail = ? WHERE session_id = ?", (a.status, a.detail, a.session_id))


@on("runtimeSessionEnded")
def _runtime_session_ended(p: Projection, env: Envelope, a: ev.RuntimeSessionEnded) -> None:
    row = p._one("SELECT active FROM runtime_sessions WHERE session_id = ?", a.session_id)
    if row is None:
        raise reject("session_not_found", f"no runtime session {a.session_id!r}")
    if not row[0]:
        raise reject("session_inactive", f"runtime session {a.session_id!r} has already ended")
    p.conn.execute(
        "UPDATE runtime_sessions SET active = 0, status = 'dead', ended_reason = ?, ended_at = ? WHERE session_id = ?",
        (a.reason, env.ts, a.session_id),
    )
    # No execution may stay owned by an ended session: running work fails, assigned work goes back to the queue.
    error = {"ename": "RuntimeLost", "evalue": f"runtime {a.reason}: the runtime session ended while this cell ran", "traceback": []}
    for queue_id, batch_id in p.conn.execute(
        "SELECT queue_id, batch_id FROM execution_queue WHERE session_id = ? AND status = 'running'", (a.session_id,)
    ).fetchall():
        p.conn.execute(
            "UPDATE execution_queue SET status = 'error', error = ?, completed_at = ? WHERE queue_id = ?",
            (dumps(error), env.ts, queue_id),
        )
        p.conn.execute("DELETE FROM inputs WHERE queue_id = ? AND replied_seq IS NULL", (queue_id,))
        if batch_id is not None:  # an error stops its run-all batch, whatever caused it
            p._cancel_queue("batch_id = ? AND queue_id != ?", (batch_id, queue_id), env.ts, claimed="cancel")
    p._release_claims("session_id = ?", (a.session_id,), env.ts)
    p.conn.execute("UPDATE comms SET live = 0 WHERE session_id = ?", (a.session_id,))  # the widgets keep their state


def _require_some_runtime(p: Projection, what: str) -> None:
    if p._active_session() is None:
        raise reject("no_runtime", f"{what}: the notebook has no active runtime session")


@on("runtimeInterruptRequested")
def _runtime_interrupt_requested(p: Projection, env: Envelope, a: ev.RuntimeInterruptRequested) -> None:
    _require_some_runtime(p, "runtimeInterruptRequested")


@on("runtimeRestartRequested")
def _runtime_restart_requested(p: Projection, env: Envelope, a: ev.RuntimeRestartRequested) -> None:
    _require_some_runtime(p, "runtimeRestartRequested")


@on("inputRequested")
def _input_requested(p: Projection, env: Envelope, a: ev.InputRequested) -> None:
    p._require_running_by(a.queue_id, env.actor)
    p.conn.execute(
        "INSERT INTO inputs (queue_id, prompt, password, requested_seq) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (queue_id) DO UPDATE SET prompt = excluded.prompt, password = excluded.password, "
        "value = NULL, requested_seq = excluded.requested_seq, replied_seq = NULL",
        (a.queue_id, a.prompt, int(a.password), env.seq),
    )


@on("inputReplied")
def _input_replied(p: Projection, env: Envelope, a: ev.InputReplied) -> None:
    row = p._one("SELECT replied_seq FROM inputs WHERE queue_id = ?", a.queue_id)
    if row is None or row[0] is not None:
        raise reject("no_input_pending", f"execution {a.queue_id!r} is not waiting for input")
    p.conn.execute("UPDATE inputs SET value = ?, replied_seq = ? WHERE queue_id = ?", (a.value, env.seq, a.queue_id))


# --- widgets (comms) ------------------------------------------------------------------------------


def _merge_comm(p: Projection, comm_id: str, state: dict[str, Any], buffers: list[ev.CommBuffer], seq: int) -> None:
    """Merge a state delta into a model: the keys it sets replace theirs, buffers under those keys included."""
    row = p._one("SELECT state, buffers FROM comms WHERE comm_id = ?", comm_id)
    assert row is not None
    merged = {**loads(row[0]), **state}
    kept = [b for b in loads(row[1]) if b["path"] and b["path"][0] not in state]
    kept += [b.wire() for b in buffers]
    p.conn.execute("UPDATE comms SET state = ?, buffers = ?, updated_seq = ? WHERE comm_id = ?",
                   (dumps(merged), dumps(kept), seq, comm_id))


def _require_comm(p: Projection, comm_id: str) -> tuple[Any, ...]:
    row = p._one("SELECT comm_id, live, session_id FROM comms WHERE comm_id = ?", comm_id)
    if row is None:
        raise reject("comm_not_found", f"no widget model (comm) {comm_id!r} in this notebook")
    return row


@on("commOpened")
def _comm_opened(p: Projection, env: Envelope, a: ev.CommOpened) -> None:
    p._fence_runtime(env.actor, "commOpened")
    active = p._active_session()
    if active is None:
        raise reject("no_runtime", "commOpened: the notebook has no active runtime session")
    if a.cell_id is not None:
        p._require_cell(a.cell_id)
    p.conn.execute(
        "INSERT OR REPLACE INTO comms (comm_id, target_name, session_id, cell_id, state, buffers, live, opened_seq, "
        "updated_seq) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
        (a.comm_id, a.target_name, active[0], a.cell_id, dumps(a.state), dumps([b.wire() for b in a.buffers]),
         env.seq, env.seq),
    )


@on("commStateChanged")
def _comm_state_changed(p: Projection, env: Envelope, a: ev.CommStateChanged) -> None:
    p._fence_runtime(env.actor, "commStateChanged")
    _require_comm(p, a.comm_id)
    _merge_comm(p, a.comm_id, a.state, a.buffers, env.seq)


@on("commCustomMessage")
def _comm_custom_message(p: Projection, env: Envelope, a: ev.CommCustomMessage) -> None:
    p._fence_runtime(env.actor, "commCustomMessage")
    _require_comm(p, a.comm_id)


@on("commClosed")
def _comm_closed(p: Projection, env: Envelope, a: ev.CommClosed) -> None:
    p._fence_runtime(env.actor, "commClosed")
    _require_comm(p, a.comm_id)
    if a.keep:
        p.conn.execute("UPDATE comms SET live = 0, updated_seq = ? WHERE comm_id = ?", (env.seq, a.comm_id))
    else:
        p.conn.execute("DELETE FROM comms WHERE comm_id = ?", (a.comm_id,))


@on("commUpdateRequested")
def _comm_update_requested(p: Projection, env: Envelope, a: ev.CommUpdateRequested) -> None:
    row = _require_comm(p, a.comm_id)
    if not row[1]:
        raise reject("comm_not_live", f"widget {a.comm_id!r} is not connected to a live kernel (its runtime or kernel "
                                      "ended); it shows its last state")
    if a.state is not None:
        _merge_comm(p, a.comm_id, a.state, a.buffers, env.seq)


# --- collaboration, AI, approvals -----------------------------------------------------------------


@on("actorProfileSet")
def _actor_profile_set(p: Projection, env: Envelope, a: ev.ActorProfileSet) -> None:
    p.conn.execute(
        "INSERT INTO actors (id, kind, name, display_name, first_seq, last_seq, event_count) VALUES (?, ?, '', ?, ?, ?, 0) "
        "ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name",
        (a.actor_id, a.kind, a.display_name, env.seq, env.seq),
    )


@on("toolApprovalRequested")
def _tool_approval_requested(p: Projection, env: Envelope, a: ev.ToolApprovalRequested) -> None:
    if p._one("SELECT 1 FROM approvals WHERE approval_id = ?", a.approval_id) is not None:
        raise reject("approval_exists", f"approval {a.approval_id!r} already exists")
    if a.cell_id is not None:
        p._require_cell(a.cell_id)
    p.conn.execute(
        "INSERT INTO approvals (approval_id, tool, arguments, cell_id, requested_by, requested_seq) VALUES (?, ?, ?, ?, ?, ?)",
        (a.approval_id, a.tool, dumps(a.arguments), a.cell_id, env.actor.id, env.seq),
    )


@on("toolApprovalResolved")
def _tool_approval_resolved(p: Projection, env: Envelope, a: ev.ToolApprovalResolved) -> None:
    row = p._one("SELECT decision, requested_by FROM approvals WHERE approval_id = ?", a.approval_id)
    if row is None:
        raise reject("approval_not_found", f"no approval {a.approval_id!r}")
    if row[0] is not None:
        raise reject("approval_resolved", f"approval {a.approval_id!r} was already resolved ({row[0]})")
    # a person decides; the requester may only withdraw its own request (a denial, e.g. on timeout)
    withdrawal = a.decision == "denied" and env.actor.id == row[1]
    if not withdrawal and env.actor.id == row[1]:
        raise reject("approval_self", f"approval {a.approval_id!r}: the requester cannot approve its own request")
    if not withdrawal and env.actor.kind != "human":
        raise reject("approval_self", f"approval {a.approval_id!r}: only a person (actor kind 'human') can resolve "
                                      f"it, not a {env.actor.kind} actor")
    p.conn.execute(
        "UPDATE approvals SET decision = ?, resolved_by = ?, resolved_seq = ? WHERE approval_id = ?",
        (a.decision, env.actor.id, env.seq, a.approval_id),
    )


@on("aiSettingsSet")
def _ai_settings_set(p: Projection, env: Envelope, a: ev.AiSettingsSet) -> None:
    if a.cell_id is not None:
        p._require_cell(a.cell_id)
    p.conn.execute(
        "INSERT INTO ai_settings (scope, provider, model, settings) VALUES (?, ?, ?, ?) ON CONFLICT (scope) DO UPDATE "
        "SET provider = excluded.provider, model = excluded.model, settings = excluded.settings",
        (a.cell_id or "", a.provider, a.model, dumps(a.settings)),
    )


missing = set(ev.CATALOG) - set(HANDLERS)
assert not missing, f"events without a materializer handler: {missing}"
