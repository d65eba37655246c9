"""The SQLite event store: one WAL database per notebook holding its log and its projection.

An append validates each event against the catalog and the current state, assigns
the next gap-free seq, applies it to the projection and stores it, all in one
transaction; a process killed at any point leaves either the whole batch or none.

The same code serves the in-memory backend (``MemoryEventStore``): a shared-cache
in-memory database per notebook instead of a file, for tests and throwaway daemons.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import orjson

from runtimed.errors import EventRejected, NotFoundError, RuntimedError
from runtimed.schema import events as ev
from runtimed.schema import views
from runtimed.schema.limits import Limits, json_depth
from runtimed.schema.materializer import Envelope, Projection, dumps
from runtimed.schema.replica import Replica
from runtimed.schema.tables import (
    EVENTS_DDL,
    META_DDL,
    PROJECTION_DDL,
    PROJECTION_TABLES,
    PROJECTION_VERSION,
    create_tables,
    drop_projection,
    record_projection_version,
    stored_projection_version,
)
from runtimed.store.base import AppendResult, Listener, QueryLimits, QueryResult

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

SNAPSHOTS_DDL = "CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)"
EVENT_COLUMNS = "seq, id, name, v, args, actor, ts"
_SCHEMA_DIGEST = hashlib.sha256(
    f"{PROJECTION_VERSION}{EVENTS_DDL}{PROJECTION_DDL}{META_DDL}{SNAPSHOTS_DDL}".encode()).hexdigest()[:16]
"""Names the blank database new notebooks are copied from (``SQLiteEventStore._seed``)."""
REBUILD_BATCH = 5000

# What a read-only query may do: read tables, call functions, recurse, and a few harmless pragmas.
_QUERY_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, 33}  # 33: SQLITE_RECURSIVE
_QUERY_PRAGMAS_ON = {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
_QUERY_PRAGMAS_READ = {"user_version", "schema_version", "integrity_check", "quick_check", "page_count", "page_size",
                       "freelist_count", "table_list"}
_QUERY_PROGRESS_STEPS = 20_000


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(event_id: Any, exc: RuntimedError) -> AppendResult:
    return {"id": event_id if isinstance(event_id, str) else "", "error": exc.to_dict()}


def _encode_row(row: tuple[Any, ...]) -> bytes:
    """A stored event as JSON bytes, spliced from its stored JSON columns (upcast when of an older version)."""
    seq, event_id, name, v, args, actor, ts = row
    if not ev.is_current(name, v):
        v, upcast = ev.upcast(name, v, orjson.loads(args))
        args = dumps(upcast)
    head: bytes = orjson.dumps({"seq": seq, "id": event_id, "name": name, "v": v, "ts": ts})
    return head[:-1] + b',"args":' + str(args).encode() + b',"actor":' + str(actor).encode() + b"}"


def _decode_row(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, event_id, name, v, args, actor, ts = row
    parsed = orjson.loads(args)
    if not ev.is_current(name, v):
        v, parsed = ev.upcast(name, v, parsed)
    return {"seq": seq, "id": event_id, "name": name, "v": v, "args": parsed, "actor": orjson.loads(actor), "ts": ts}


def check_notebook_id(notebook_id: Any) -> str:
    if not ev.is_valid_id(notebook_id):
        raise RuntimedError(
            f"invalid notebook id {notebook_id!r}: use 1-128 characters of letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit",
            code="invalid_notebook_id",
        )
    return str(notebook_id)


def _query_authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
    if action in _QUERY_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg1 in _QUERY_PRAGMAS_ON or arg1 in _QUERY_PRAGMAS_READ and arg2 is None):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class SQLiteNotebookLog:
    """One notebook's log and projection in one SQLite database (a file, or shared-cache memory)."""

    blocking = False  # a local database: appends take well under a millisecond, fine on an event loop

    def __init__(self, path: Path | None, notebook_id: str, *, limits: Limits | None = None,
                 snapshot_every: int = 5000) -> None:
        self.path = path
        self.notebook_id = notebook_id
        self.limits = limits or Limits.from_env()
        self.snapshot_every = snapshot_every
        # A memory database lives as long as one connection to it is open: this one.
        self._uri = (f"file:{quote(str(path.resolve()))}" if path is not None
                     else f"file:runtimed-{uuid.uuid4().hex}?mode=memory&cache=shared")
        self._conn = sqlite3.connect(self._uri if path is None else str(path), isolation_level=None,
                                     check_same_thread=False, uri=path is None)
        if path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # Large outputs: checkpoint (a sync on the event loop) every 64 MiB of WAL rather than every 4 MiB,
            # and shrink the WAL file back to that size after a checkpoint rather than keeping its high mark.
            self._conn.execute("PRAGMA wal_autocheckpoint=16384")
            self._conn.execute("PRAGMA journal_size_limit=67108864")
        self._conn.execute("PRAGMA cache_size=-1024")
        # One connection serves every thread: a transaction (and the reads that must not see it half
        # done) holds this lock, so appends from several threads never interleave.
        self._lock = threading.RLock()
        version = stored_projection_version(self._conn)
        create_tables(self._conn)
        self._conn.execute(SNAPSHOTS_DDL)
        self.projection = Projection(self._conn, notebook_id, self.limits)
        self._head: int = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        if version < PROJECTION_VERSION:
            if self._head:
                self._rebuild(version)
            else:
                record_projection_version(self._conn)
        self._last_snapshot = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM snapshots").fetchone()[0]
        self._listeners: list[Listener] = []
        self._cached_snapshot: tuple[int, bytes] | None = None

    @property
    def head(self) -> int:
        return self._head

    # -- schema evolution ------------------------------------------------------------------------

    def _rebuild(self, found: int) -> None:
        """Rebuild the projection from the log (an older projection version was found)."""
        started = time.perf_counter()
        log.info("notebook %s: projection v%d is older than v%d; rebuilding it from %d events",
                 self.notebook_id, found, PROJECTION_VERSION, self._head)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            drop_projection(conn)
            create_tables(conn)
            conn.execute("DELETE FROM snapshots")  # serialized projections of the old layout
            self.projection.forget_cache()
            done = 0
            while done < self._head:
                rows = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (done, REBUILD_BATCH)).fetchall()
                if not rows:
                    break
                for row in rows:
                    self.projection.apply(Envelope.from_wire(_decode_row(row)), record=False)
                done = rows[-1][0]
                log.info("notebook %s: rebuilt %d of %d events", self.notebook_id, done, self._head)
            record_projection_version(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self.projection.forget_cache()
            raise
        log.info("notebook %s: projection rebuilt in %.2f s", self.notebook_id, time.perf_counter() - started)

    # -- writing ---------------------------------------------------------------------------------

    def append(self, events: Sequence[Any], actor: Any) -> list[AppendResult]:
        with self._lock:  # listeners are told inside the lock too, so they hear commits in seq order
            stored, results = self._append(events, actor)
            if stored:
                self._after_commit(stored)
        return results

    def _check_push(self, events: Sequence[Any], actor: Any) -> tuple[ev.Actor | None, list[AppendResult]]:
        """What refuses a push whole (too many events, a bad actor): the parsed actor, or None and the refusals."""
        if len(events) > self.limits.max_batch_events:
            exc = EventRejected(
                f"a push may hold at most {self.limits.max_batch_events} events; split it", code="batch_too_large"
            )
            return None, [_error(e.get("id") if isinstance(e, dict) else None, exc) for e in events]
        try:
            return ev.validate_actor(actor), []
        except EventRejected as exc:
            return None, [_error(e.get("id") if isinstance(e, dict) else None, exc) for e in events]

    def _append(self, events: Sequence[Any], actor: Any) -> tuple[list[Envelope], list[AppendResult]]:
        parsed_actor, refused = self._check_push(events, actor)
        if parsed_actor is None:
            return [], refused
        results: list[AppendResult] = []
        stored: list[Envelope] = []
        ts = utc_now()
        conn = self._conn
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
        if stored and self._head - self._last_snapshot >= self.snapshot_every:
            self._write_snapshot()
        return stored, results

    def _append_one(self, raw: Any, actor: ev.Actor, ts: str) -> tuple[AppendResult, Envelope | None]:
        if not isinstance(raw, dict):
            return _error(None, EventRejected("an event must be a JSON object {id, name, v, args}", code="invalid_event")), None
        event_id = raw.get("id")
        if not ev.is_valid_id(event_id):
            return _error(event_id, EventRejected(
                f"event id {event_id!r} is not valid: 1-128 characters of letters, digits, '.', '_', ':' or '-'",
                code="invalid_event_id",
            )), None
        assert isinstance(event_id, str)
        existing = self._conn.execute("SELECT seq FROM events WHERE id = ?", (event_id,)).fetchone()
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
            depth = json_depth(raw.get("args"), self.limits.max_json_depth)
            if depth > self.limits.max_json_depth:
                raise EventRejected(
                    f"{raw.get('name')}: args are nested more than {self.limits.max_json_depth} levels deep; "
                    "flatten the value (e.g. store it as a JSON string)", code="invalid_args")
            args = ev.validate_args(raw.get("name"), raw.get("v"), raw.get("args"))
            name = raw["name"]
            env = Envelope(seq=self._head + 1, id=event_id, name=name, v=ev.CATALOG[name].version, args=args,
                           actor=actor, ts=ts)
            self.projection.apply(env)
        except EventRejected as exc:
            return _error(event_id, exc), None
        except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
            return _error(event_id, EventRejected(f"{raw.get('name')}: {exc}", code="invalid_event")), None
        self._head = env.seq
        return {"id": event_id, "seq": env.seq}, env

    def _after_commit(self, stored: list[Envelope]) -> None:
        if self._listeners:
            encoded = self.read_encoded(stored[0].seq - 1, stored[-1].seq)
            for listener in list(self._listeners):
                try:
                    listener(stored, encoded)
                except Exception:  # a listener's bug must not break appends
                    log.exception("event listener failed")

    # -- reading ---------------------------------------------------------------------------------

    def _rows(self, since: int, until: int | None, limit: int | None) -> list[tuple[Any, ...]]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?"
        params: list[Any] = [since]
        if until is not None:
            sql += " AND seq <= ?"
            params.append(until)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def read(self, since: int = 0, until: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return [_decode_row(r) for r in self._rows(since, until, limit)]

    def read_encoded(self, since: int = 0, until: int | None = None, limit: int | None = None) -> list[bytes]:
        return [_encode_row(r) for r in self._rows(since, until, limit)]

    def view(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            return fn(self._conn, *args, **kwargs)

    def info(self) -> views.NotebookInfo | None:
        return self.view(views.notebook_summary)

    # -- snapshots and time travel ---------------------------------------------------------------

    def _projection_bytes(self) -> bytes:
        mem = sqlite3.connect(":memory:", uri=True)
        try:
            create_tables(mem)
            record_projection_version(mem)
            mem.execute("ATTACH DATABASE ? AS src", (self._uri,))
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
        self._conn.execute("INSERT OR REPLACE INTO snapshots (seq, data) VALUES (?, ?)", (self._head, data))
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
            row = self._conn.execute(
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

    def query(self, sql: str, params: Sequence[Any] = (), limits: QueryLimits | None = None) -> QueryResult:
        limits = limits or QueryLimits.from_env()
        if self.path is not None:
            ro = sqlite3.connect(f"{self._uri}?mode=ro", uri=True, check_same_thread=False)
        else:  # a private copy of the committed state: a shared-cache reader would either see a batch
            # half applied (read_uncommitted) or hold table locks that make appends fail
            ro = sqlite3.connect(":memory:", check_same_thread=False)
            with self._lock:
                ro.deserialize(self._conn.serialize())
        deadline = time.monotonic() + limits.timeout
        try:
            ro.execute("PRAGMA query_only = 1")
            ro.set_authorizer(_query_authorizer)
            ro.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, _QUERY_PROGRESS_STEPS)
            try:
                cur = ro.execute(sql, tuple(params))
                rows: list[tuple[Any, ...]] = []
                size = 0
                truncated = False
                while True:
                    chunk = cur.fetchmany(1000)
                    if not chunk:
                        break
                    for row in chunk:
                        size += sum(len(v) if isinstance(v, str | bytes) else 8 for v in row)
                        if len(rows) >= limits.max_rows or size > limits.max_bytes:
                            truncated = True
                            break
                        rows.append(row)
                    if truncated:
                        break
            except sqlite3.Error as exc:
                raise self._query_error(exc, limits) from None
            columns = [d[0] for d in cur.description or ()]
            return QueryResult(columns, rows, truncated)
        finally:
            ro.close()

    @staticmethod
    def _query_error(exc: sqlite3.Error, limits: QueryLimits) -> RuntimedError:
        message = str(exc)
        if "interrupted" in message:
            return RuntimedError(f"the query ran longer than {limits.timeout:g} s and was stopped; narrow it "
                                 "(or raise RUNTIMED_QUERY_TIMEOUT)", code="query_timeout")
        if "authoriz" in message or "readonly" in message or "read-only" in message or "query_only" in message:
            return RuntimedError(f"the query tried to write or to reach outside the notebook ({message}); "
                                 "runt query is read-only and sees only the notebook's tables", code="read_only")
        return RuntimedError(f"SQL error: {message}", code="sql_error")

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def close(self) -> None:
        with self._lock:
            self._listeners.clear()
            self._conn.close()


class _Leases:
    """Named leases with an expiry, in a small SQLite database (or in memory)."""

    def __init__(self, path: Path | None) -> None:
        target = str(path) if path is not None else ":memory:"
        self._conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=10)
        if path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # a commit waits for no disk sync (about 10 ms here, on the path of every run's first cell: the
            # runtime's claim): what a crash of the machine can lose is a lease taken just before, which
            # expires within its TTL anyway; the database itself stays consistent (SQLite's WAL guarantee)
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, holder TEXT NOT NULL, "
                           "expires_at REAL NOT NULL)")
        self._lock = threading.Lock()

    def acquire(self, key: str, holder: str, ttl: float) -> bool:
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT holder, expires_at FROM leases WHERE key = ?", (key,)).fetchone()
                if row is not None and row[0] != holder and row[1] > now:
                    self._conn.execute("COMMIT")
                    return False
                self._conn.execute("INSERT OR REPLACE INTO leases (key, holder, expires_at) VALUES (?, ?, ?)",
                                   (key, holder, now + ttl))
                self._conn.execute("COMMIT")
                return True
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def release(self, key: str, holder: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _has_events(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') writes to the disk (about 1 ms here)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SQLiteEventStore:
    """Notebook logs under ``root/notebooks/<id>.db``, opened on first use and kept open until ``close_log``."""

    def __init__(self, root: Path | str, *, snapshot_every: int = 5000, limits: Limits | None = None) -> None:
        self.root = Path(root)
        self.dir = self.root / "notebooks"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_every = snapshot_every
        self.limits = limits
        self._logs: dict[str, SQLiteNotebookLog] = {}
        self._infos: dict[str, views.NotebookInfo | None] = {}
        """``info()`` of the notebooks whose log is not open, as last read: nothing else writes to them."""
        self._lock = threading.Lock()  # two opens of one notebook would fork its head and its caches
        self._leases = _Leases(self.root / "leases.db")

    def _path(self, notebook_id: str) -> Path:
        return self.dir / f"{check_notebook_id(notebook_id)}.db"

    def _open(self, notebook_id: str) -> SQLiteNotebookLog:
        path = self._path(notebook_id)
        if not path.exists():
            self._seed(path)
        return SQLiteNotebookLog(path, notebook_id, snapshot_every=self.snapshot_every, limits=self.limits)

    def _seed(self, path: Path) -> None:
        """Start a new notebook's database as a copy of a blank one (tables made, WAL mode on, version recorded).

        Making them in a new file costs ~40 ms on this project's machines (switching to WAL syncs the file, and
        forty-odd statements); a copy, synced to disk with its name, costs a few. Every ``runt run`` creates a
        notebook. The blank is made once per schema (its name has the DDL's digest), and the copy is linked in
        under the final name, so it never replaces a database that appeared meanwhile.
        """
        blank = self.root / f"blank-{_SCHEMA_DIGEST}.db"
        if not blank.exists():
            made = self.root / f".blank-{uuid.uuid4().hex}.tmp"
            SQLiteNotebookLog(made, "blank").close()  # closing the only connection folds the WAL into the file
            _fsync(made)
            os.replace(made, blank)
        copy = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            shutil.copyfile(blank, copy)
            _fsync(copy)  # on disk before its name is: after a crash, no database without its schema pages
            os.link(copy, path)
            _fsync(path.parent)
        except FileExistsError:
            pass
        finally:
            copy.unlink(missing_ok=True)

    def _stored_ids(self) -> list[str]:
        return [p.stem for p in sorted(self.dir.glob("*.db")) if ev.is_valid_id(p.stem)]

    def _has_file(self, notebook_id: str) -> bool:
        return self._path(notebook_id).exists()

    def _remove(self, notebook_id: str) -> None:
        path = self._path(notebook_id)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def log(self, notebook_id: str) -> SQLiteNotebookLog:
        with self._lock:
            nb_log = self._logs.get(notebook_id)
            if nb_log is None:
                nb_log = self._open(notebook_id)
                self._logs[notebook_id] = nb_log
                self._infos.pop(notebook_id, None)  # the open log answers from now on
            return nb_log

    def exists(self, notebook_id: str) -> bool:
        nb_log = self._logs.get(notebook_id)
        if nb_log is not None:
            return nb_log.head > 0
        # a bare connection creates an empty database: only a log with events is a notebook
        return ev.is_valid_id(notebook_id) and self._has_file(notebook_id) and self._peek(notebook_id, _has_events)

    def require(self, notebook_id: str) -> SQLiteNotebookLog:
        check_notebook_id(notebook_id)
        if not self.exists(notebook_id):
            raise NotFoundError(f"no notebook with id {notebook_id!r}; list them with `runt notebooks`",
                                code="notebook_not_found")
        return self.log(notebook_id)

    def list_notebooks(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for notebook_id in self._stored_ids():
            info = self._info(notebook_id)
            if info is not None:
                out.append(dict(info))
        out.sort(key=lambda i: i["updated_at"], reverse=True)
        return out

    def _peek(self, notebook_id: str, read: Callable[[sqlite3.Connection], T]) -> T:
        """``read`` over the notebook's projection without keeping it open: a listing of every notebook (``runt
        notebooks``, the daemon's status) must not hold three files per notebook. A log that is not open is read
        through a read-only connection, closed after it (an older projection is opened properly: that rebuilds
        it)."""
        with self._lock:
            nb_log = self._logs.get(notebook_id)
        if nb_log is None:
            try:
                conn = sqlite3.connect(f"file:{quote(str(self._path(notebook_id).resolve()))}?mode=ro", uri=True)
                try:
                    if stored_projection_version(conn) == PROJECTION_VERSION:
                        return read(conn)
                finally:
                    conn.close()
            except sqlite3.Error:  # e.g. a WAL left by a crash that a read-only connection cannot recover
                log.debug("notebook %s: read-only peek failed; opening it", notebook_id, exc_info=True)
            nb_log = self.log(notebook_id)
        return nb_log.view(read)

    def _info(self, notebook_id: str) -> views.NotebookInfo | None:
        with self._lock:
            nb_log = self._logs.get(notebook_id)
            if nb_log is None and notebook_id in self._infos:
                return self._infos[notebook_id]
        if nb_log is not None:
            return nb_log.info()
        info = self._peek(notebook_id, views.notebook_summary)
        with self._lock:
            if notebook_id not in self._logs:
                self._infos[notebook_id] = info
        return info

    def close_log(self, notebook_id: str) -> None:
        with self._lock:
            nb_log = self._logs.pop(notebook_id, None)
            if nb_log is not None:
                self._infos[notebook_id] = nb_log.info()
        if nb_log is not None:
            nb_log.close()

    def delete(self, notebook_id: str) -> None:
        if not self.exists(notebook_id):
            raise NotFoundError(f"no notebook with id {notebook_id!r}", code="notebook_not_found")
        with self._lock:
            nb_log = self._logs.pop(notebook_id, None)
            self._infos.pop(notebook_id, None)
        if nb_log is not None:
            nb_log.close()
        self._remove(notebook_id)

    def acquire_lease(self, key: str, holder: str, ttl: float) -> bool:
        return self._leases.acquire(key, holder, ttl)

    def release_lease(self, key: str, holder: str) -> None:
        self._leases.release(key, holder)

    def migrate(self) -> list[str]:
        rebuilt = []
        for notebook_id in self._stored_ids():
            if notebook_id in self._logs:
                continue
            probe = sqlite3.connect(f"file:{quote(str(self._path(notebook_id).resolve()))}?mode=ro", uri=True)
            try:
                old = stored_projection_version(probe) < PROJECTION_VERSION
            except sqlite3.DatabaseError:
                log.warning("notebook file %s is not a readable database; left alone", self._path(notebook_id))
                continue
            finally:
                probe.close()
            if old:
                self.log(notebook_id)  # opening rebuilds it
                rebuilt.append(notebook_id)
        return rebuilt

    def close(self) -> None:
        with self._lock:
            for nb_log in self._logs.values():
                nb_log.close()
            self._logs.clear()
        self._leases.close()


class MemoryEventStore(SQLiteEventStore):
    """Every notebook in memory (gone with the process): the same logs, no files."""

    def __init__(self, *, snapshot_every: int = 5000, limits: Limits | None = None) -> None:
        self.snapshot_every = snapshot_every
        self.limits = limits
        self._logs = {}
        self._infos = {}
        self._lock = threading.Lock()
        self._leases = _Leases(None)

    def _open(self, notebook_id: str) -> SQLiteNotebookLog:
        return SQLiteNotebookLog(None, check_notebook_id(notebook_id), snapshot_every=self.snapshot_every,
                                 limits=self.limits)

    def _stored_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._logs)

    def _has_file(self, notebook_id: str) -> bool:
        return False

    def close_log(self, notebook_id: str) -> None:
        """Nothing to close: an in-memory log is the notebook itself."""

    def _remove(self, notebook_id: str) -> None:
        pass

    def migrate(self) -> list[str]:
        return []
