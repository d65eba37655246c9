"""The SQLite event store: one WAL database per notebook holding its log and its projection.

An append validates each event against the catalog and the current state, assigns
the next gap-free seq, applies it to the projection and stores it, all in one
transaction; a process killed at any point leaves either the whole batch or none.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from runtimed.errors import EventRejected, NotFoundError, RuntimedError
from runtimed.schema import events as ev
from runtimed.schema.limits import Limits
from runtimed.schema.materializer import Envelope, Projection
from runtimed.schema.replica import Replica
from runtimed.schema.tables import PROJECTION_TABLES, create_tables
from runtimed.schema.views import active_session, notebook_info
from runtimed.store.base import AppendResult, Listener

log = logging.getLogger(__name__)

SNAPSHOTS_DDL = "CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)"
EVENT_COLUMNS = "seq, id, name, v, args, actor, ts"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(event_id: Any, exc: RuntimedError) -> AppendResult:
    return {"id": event_id if isinstance(event_id, str) else "", "error": exc.to_dict()}


def _encode_row(row: tuple) -> bytes:
    """A stored event as JSON bytes, spliced from its stored JSON columns without re-encoding them."""
    seq, event_id, name, v, args, actor, ts = row
    head = orjson.dumps({"seq": seq, "id": event_id, "name": name, "v": v, "ts": ts})
    return head[:-1] + b',"args":' + args.encode() + b',"actor":' + actor.encode() + b"}"


def check_notebook_id(notebook_id: Any) -> str:
    if not ev.is_valid_id(notebook_id):
        raise RuntimedError(
            f"invalid notebook id {notebook_id!r}: use 1-128 characters of letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit",
            code="invalid_notebook_id",
        )
    return notebook_id


class SQLiteNotebookLog:
    def __init__(self, path: Path, notebook_id: str, *, limits: Limits | None = None, snapshot_every: int = 5000) -> None:
        self.path = path
        self.notebook_id = notebook_id
        self.limits = limits or Limits.from_env()
        self.snapshot_every = snapshot_every
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA cache_size=-1024")
        create_tables(self.conn)
        self.conn.execute(SNAPSHOTS_DDL)
        self.projection = Projection(self.conn, notebook_id, self.limits)
        self._head = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        self._last_snapshot = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM snapshots").fetchone()[0]
        self._listeners: list[Listener] = []
        self._cached_snapshot: tuple[int, bytes] | None = None
        # One connection serves every thread: a transaction (and the reads that must not see it half
        # done) holds this lock, so appends from several threads never interleave.
        self._lock = threading.RLock()

    @property
    def head(self) -> int:
        return self._head

    # -- writing ---------------------------------------------------------------------------------

    def append(self, events: Sequence[Any], actor: Any) -> list[AppendResult]:
        with self._lock:
            return self._append(events, actor)

    def _append(self, events: Sequence[Any], actor: Any) -> list[AppendResult]:
        if len(events) > self.limits.max_batch_events:
            exc = EventRejected(
                f"a push may hold at most {self.limits.max_batch_events} events; split it", code="batch_too_large"
            )
            return [_error(e.get("id") if isinstance(e, dict) else None, exc) for e in events]
        try:
            parsed_actor = ev.validate_actor(actor)
        except EventRejected as exc:
            return [_error(e.get("id") if isinstance(e, dict) else None, exc) for e in events]
        results: list[AppendResult] = []
        stored: list[Envelope] = []
        ts = utc_now()
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for raw in events:
                result, env = self._append_one(raw, parsed_actor, ts)
                results.append(result)
                if env is not None:
                    stored.append(env)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self.projection.forget_cache()
            self._head = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            raise
        if stored:
            self._after_commit(stored)
        return results

    def _append_one(self, raw: Any, actor: ev.Actor, ts: str) -> tuple[AppendResult, Envelope | None]:
        if not isinstance(raw, dict):
            return _error(None, EventRejected("an event must be a JSON object {id, name, v, args}", code="invalid_event")), None
        event_id = raw.get("id")
        if not ev.is_valid_id(event_id):
            return _error(event_id, EventRejected(
                f"event id {event_id!r} is not valid: 1-128 characters of letters, digits, '.', '_', ':' or '-'",
                code="invalid_event_id",
            )), None
        existing = self.conn.execute("SELECT seq FROM events WHERE id = ?", (event_id,)).fetchone()
        if existing is not None:
            return {"id": event_id, "seq": existing[0]}, None
        try:
            size = len(orjson.dumps(raw))
            if size > self.limits.max_event_bytes:
                raise EventRejected(
                    f"{raw.get('name')}: event is {size} bytes; the limit is {self.limits.max_event_bytes} "
                    "(store large outputs as artifacts)",
                    code="event_too_large",
                )
            args = ev.validate_args(raw.get("name"), raw.get("v"), raw.get("args"))
            env = Envelope(seq=self._head + 1, id=event_id, name=raw["name"], v=raw["v"], args=args, actor=actor, ts=ts)
            self.projection.apply(env)
        except EventRejected as exc:
            return _error(event_id, exc), None
        except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
            return _error(event_id, EventRejected(f"{raw.get('name')}: {exc}", code="invalid_event")), None
        self._head = env.seq
        return {"id": event_id, "seq": env.seq}, env

    def _after_commit(self, stored: list[Envelope]) -> None:
        if self._head - self._last_snapshot >= self.snapshot_every:
            self._write_snapshot()
        if self._listeners:
            encoded = self.read_encoded(stored[0].seq - 1, stored[-1].seq)
            for listener in list(self._listeners):
                try:
                    listener(stored, encoded)
                except Exception:  # a listener's bug must not break appends
                    log.exception("event listener failed")

    # -- reading ---------------------------------------------------------------------------------

    def _rows(self, since: int, until: int | None, limit: int | None) -> list[tuple]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?"
        params: list[Any] = [since]
        if until is not None:
            sql += " AND seq <= ?"
            params.append(until)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self.conn.execute(sql, params).fetchall()

    def read(self, since: int = 0, until: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._rows(since, until, limit)
        return [
            {"seq": s, "id": i, "name": n, "v": v, "args": orjson.loads(a), "actor": orjson.loads(ac), "ts": ts}
            for s, i, n, v, a, ac, ts in rows
        ]

    def read_encoded(self, since: int = 0, until: int | None = None, limit: int | None = None) -> list[bytes]:
        with self._lock:
            rows = self._rows(since, until, limit)
        return [_encode_row(r) for r in rows]

    # -- snapshots and time travel ---------------------------------------------------------------

    def _projection_bytes(self) -> bytes:
        mem = sqlite3.connect(":memory:")
        try:
            create_tables(mem)
            mem.execute("ATTACH DATABASE ? AS src", (str(self.path),))
            for table in PROJECTION_TABLES:
                mem.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table}")
            mem.commit()
            mem.execute("DETACH DATABASE src")
            return mem.serialize()
        finally:
            mem.close()

    def _write_snapshot(self) -> None:
        started = time.perf_counter()
        data = self._projection_bytes()
        self.conn.execute("INSERT OR REPLACE INTO snapshots (seq, data) VALUES (?, ?)", (self._head, data))
        self._last_snapshot = self._head
        self._cached_snapshot = (self._head, data)
        log.debug("snapshot of %s at %d (%d bytes) in %.1f ms", self.notebook_id, self._head, len(data),
                  (time.perf_counter() - started) * 1000)

    def snapshot(self) -> tuple[int, bytes]:
        with self._lock:
            cached = self._cached_snapshot
            if cached is None or cached[0] != self._head:
                cached = self._cached_snapshot = (self._head, self._projection_bytes())
            return cached

    def state_at(self, seq: int | None = None) -> Replica:
        if seq is None or seq >= self._head:
            head, data = self.snapshot()
            return Replica.from_snapshot(self.notebook_id, data, record_events=False)
        if seq < 0:
            raise RuntimedError(f"seq must be >= 0, got {seq}", code="invalid_seq")
        with self._lock:
            row = self.conn.execute(
                "SELECT seq, data FROM snapshots WHERE seq <= ? ORDER BY seq DESC LIMIT 1", (seq,)
            ).fetchone()
        replica = Replica(self.notebook_id, record_events=False)
        if row is not None:
            replica.load_snapshot(row[1])
        start = replica.head
        while start < seq:
            batch = self.read(start, seq, limit=5000)
            if not batch:
                break
            replica.apply_wire(batch)
            start = replica.head
        return replica

    # -- queries and subscriptions ---------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
        # Quote the path: '#', '?' or '%' in a home directory would otherwise change the URI's meaning.
        ro = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True)
        try:
            ro.execute("PRAGMA query_only = 1")
            try:
                cur = ro.execute(sql, tuple(params))
                rows = cur.fetchall()
            except sqlite3.Error as exc:
                message = str(exc)
                if "readonly" in message or "read-only" in message or "query_only" in message:
                    raise RuntimedError(
                        f"the query tried to write ({message}); runt query is read-only", code="read_only"
                    ) from None
                raise RuntimedError(f"SQL error: {message}", code="sql_error") from None
            return [d[0] for d in cur.description or ()], rows
        finally:
            ro.close()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def info(self) -> dict[str, Any] | None:
        with self._lock:
            info = notebook_info(self.conn)
            if info is not None:
                info["cells"] = self.conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
                info["runtime"] = active_session(self.conn)
            return info

    def close(self) -> None:
        with self._lock:
            self._listeners.clear()
            self.conn.close()


class SQLiteEventStore:
    """Notebook logs under ``root/notebooks/<id>.db``, opened on first use and kept open."""

    def __init__(self, root: Path | str, *, snapshot_every: int = 5000) -> None:
        self.root = Path(root)
        self.dir = self.root / "notebooks"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_every = snapshot_every
        self._logs: dict[str, SQLiteNotebookLog] = {}
        self._lock = threading.Lock()  # two opens of one notebook would fork its head and its caches

    def _path(self, notebook_id: str) -> Path:
        return self.dir / f"{check_notebook_id(notebook_id)}.db"

    def log(self, notebook_id: str) -> SQLiteNotebookLog:
        with self._lock:
            nb_log = self._logs.get(notebook_id)
            if nb_log is None:
                nb_log = SQLiteNotebookLog(self._path(notebook_id), notebook_id, snapshot_every=self.snapshot_every)
                self._logs[notebook_id] = nb_log
            return nb_log

    def exists(self, notebook_id: str) -> bool:
        if notebook_id in self._logs:
            return self._logs[notebook_id].head > 0
        # a bare connection creates an empty file: only a log with events is a notebook
        return ev.is_valid_id(notebook_id) and self._path(notebook_id).exists() and self.log(notebook_id).head > 0

    def require(self, notebook_id: str) -> SQLiteNotebookLog:
        if not self.exists(notebook_id):
            raise NotFoundError(f"no notebook with id {notebook_id!r}; list them with `runt notebooks`", code="notebook_not_found")
        return self.log(notebook_id)

    def list_notebooks(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.dir.glob("*.db")):
            notebook_id = path.stem
            info = self.log(notebook_id).info() if ev.is_valid_id(notebook_id) else None
            if info is not None:
                out.append(info)
        out.sort(key=lambda i: i["updated_at"], reverse=True)
        return out

    def delete(self, notebook_id: str) -> None:
        path = self._path(notebook_id)
        if not self.exists(notebook_id):
            raise NotFoundError(f"no notebook with id {notebook_id!r}", code="notebook_not_found")
        nb_log = self._logs.pop(notebook_id, None)
        if nb_log is not None:
            nb_log.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        for nb_log in self._logs.values():
            nb_log.close()
        self._logs.clear()
