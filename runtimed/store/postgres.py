"""The PostgreSQL event store: one log shared by every daemon of a deployment.

PostgreSQL holds the truth: each notebook's log (``events``, keyed ``(notebook_id, seq)``, unique
``(notebook_id, id)``), a row per notebook (head, incarnation, listing summary) and named leases.
Each daemon keeps, per open notebook, a local SQLite *cache* of that log with its projection,
maintained by the same materializer as the SQLite backend (this class extends
``SQLiteNotebookLog``), so views, snapshots, time travel and read-only queries are the SQLite
code run against a database that can never see another notebook.

An append, under a transaction-scoped advisory lock on the notebook (so writers on every daemon
take turns): pull the events other daemons committed, validate and apply the new ones to the
local cache in an open SQLite transaction, insert them into PostgreSQL with a ``NOTIFY``, commit
PostgreSQL, then commit SQLite; on any failure both roll back. The cache is therefore never ahead
of PostgreSQL (at worst behind, which the next pull repairs), and preconditions (CAS claims,
idempotency by id, gap-free seq) are checked against the log's true head.

Other daemons hear of commits through ``LISTEN runtimed_events`` in one thread per store, pull,
and tell their listeners. The log stays the source of truth: a missed notification only delays,
and a poll of the heads every few seconds catches up whatever was missed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import orjson

from runtimed.errors import NotFoundError, RuntimedError
from runtimed.schema import events as ev
from runtimed.schema import views
from runtimed.schema.limits import Limits
from runtimed.schema.materializer import Envelope
from runtimed.schema.tables import create_tables, drop_projection, record_projection_version
from runtimed.store.base import AppendResult, QueryLimits, QueryResult
from runtimed.store.sqlite import (
    EVENT_COLUMNS,
    SQLiteEventStore,
    SQLiteNotebookLog,
    _decode_row,
    check_notebook_id,
    utc_now,
)

try:  # an optional extra: `pip install runtimed[postgres]`
    import psycopg
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError:  # pragma: no cover - reported when a postgresql:// store is opened
    psycopg = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA_VERSION = 1
CHANNEL = "runtimed_events"
PULL_BATCH = 5000
SCHEMA_LOCK = 0x72756E74696D6564 >> 1  # "runtimed": one key for the schema's creation and migrations

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS runtimed_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS notebooks (
        notebook_id  TEXT PRIMARY KEY,
        incarnation  TEXT NOT NULL,
        head         BIGINT NOT NULL,
        updated_at   TEXT NOT NULL,
        info         TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS notebooks_updated ON notebooks (updated_at DESC)",
    """CREATE TABLE IF NOT EXISTS events (
        notebook_id  TEXT NOT NULL REFERENCES notebooks (notebook_id) ON DELETE CASCADE,
        seq          BIGINT NOT NULL,
        id           TEXT NOT NULL,
        name         TEXT NOT NULL,
        v            INTEGER NOT NULL,
        args         TEXT NOT NULL,
        actor        TEXT NOT NULL,
        ts           TEXT NOT NULL,
        PRIMARY KEY (notebook_id, seq),
        UNIQUE (notebook_id, id)
    )""",
    """CREATE TABLE IF NOT EXISTS leases (
        key         TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        expires_at  DOUBLE PRECISION NOT NULL
    )""",
]
"""Version 1 of the shared schema. A later version appends its statements to ``MIGRATIONS``."""

MIGRATIONS: dict[int, list[str]] = {1: SCHEMA}

ORIGIN_DDL = "CREATE TABLE IF NOT EXISTS pg_origin (incarnation TEXT NOT NULL)"
"""In each local cache: which incarnation of the notebook (a uuid given at its creation) it copies."""


class StoreUnavailable(RuntimedError):
    """The PostgreSQL server cannot be reached or used; the message says what to fix."""

    code = "store_error"


def lock_key(notebook_id: str) -> int:
    """The advisory-lock key of a notebook (a signed 64-bit hash; a collision only makes two notebooks take turns)."""
    return int.from_bytes(hashlib.blake2b(notebook_id.encode(), digest_size=8).digest(), "big", signed=True)


def describe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except Exception:
        return "the given URL"
    host = info.get("host") or "localhost"
    return f"postgresql://{info.get('user', '')}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"


@contextlib.contextmanager
def _unavailable(url: str) -> Iterator[None]:
    """Connection-level failures as a ``store_error`` that names the server (never the password)."""
    try:
        yield
    except (psycopg.OperationalError, PoolTimeout) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailable(f"the PostgreSQL store {describe_url(url)} is unavailable ({detail}); check that "
                               "the server runs and that the store URL (--store, RUNTIMED_STORE_URL) names it, "
                               "with the right user, password and database") from exc


class PostgresNotebookLog(SQLiteNotebookLog):
    """One notebook: its log in PostgreSQL, a local SQLite cache of the log and its projection."""

    blocking = True  # every call may wait on the network: the daemon runs them in worker threads

    def __init__(self, store: PostgresEventStore, path: Path, notebook_id: str, *, limits: Limits | None,
                 snapshot_every: int) -> None:
        self._store = store
        self._quiet = 0  # > 0 while this thread is inside an append or a pull: reads must not pull again
        super().__init__(path, notebook_id, limits=limits, snapshot_every=snapshot_every)
        self._conn.execute(ORIGIN_DDL)
        row = self._conn.execute("SELECT incarnation FROM pg_origin").fetchone()
        self._incarnation: str | None = row[0] if row else None
        self.catch_up()

    # -- following the shared log ----------------------------------------------------------------

    def catch_up(self, seen: int | None = None) -> None:
        """Copy the events other daemons committed into the cache, and tell the listeners. ``seen``: a head
        announced by a notification (nothing to do when the cache has it already)."""
        with self._lock:
            if self._quiet or self._conn is None or seen is not None and 0 < seen <= self._head:
                return
            with _unavailable(self._store.url), self._store.pool.connection() as pg:
                self._pull(pg)

    def _pull(self, pg: Any) -> None:
        """Bring the cache to PostgreSQL's head (caller holds the lock; inside or outside a transaction)."""
        row = pg.execute("SELECT incarnation, head FROM notebooks WHERE notebook_id = %s",
                         (self.notebook_id,)).fetchone()
        if row is None:
            incarnation, head = None, 0
        else:
            incarnation, head = str(row[0]), int(row[1])
        if self._head and (incarnation != self._incarnation or head < self._head):
            log.warning("notebook %s was deleted or replaced in the shared store; dropping the local copy",
                        self.notebook_id)
            self._reset_local()
        while head > self._head:
            rows = pg.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE notebook_id = %s AND seq > %s "
                              "ORDER BY seq LIMIT %s", (self.notebook_id, self._head, PULL_BATCH)).fetchall()
            if not rows:
                break
            assert incarnation is not None  # events exist, so does their notebook's row
            self._apply_pulled(rows, incarnation)
        self._maybe_snapshot()

    def _apply_pulled(self, rows: list[tuple[Any, ...]], incarnation: str) -> None:
        conn = self._conn
        envelopes: list[Envelope] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                if row[0] != self._head + 1:
                    raise RuntimedError(f"notebook {self.notebook_id}: the shared log has a gap at seq "
                                        f"{self._head + 1}", code="store_error")
                env = Envelope.from_wire(_decode_row(row))
                conn.execute(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                self.projection.apply(env, record=False)
                self._head = env.seq
                envelopes.append(env)
            self._set_incarnation(incarnation)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback_local()
            raise
        self._quiet += 1
        try:
            self._after_commit(envelopes)
        finally:
            self._quiet -= 1

    def _set_incarnation(self, incarnation: str) -> None:
        if incarnation != self._incarnation:
            self._conn.execute("DELETE FROM pg_origin")
            self._conn.execute("INSERT INTO pg_origin (incarnation) VALUES (?)", (incarnation,))
            self._incarnation = incarnation

    def _reset_local(self) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        for table in ("events", "snapshots", "pg_origin"):
            conn.execute(f"DELETE FROM {table}")
        drop_projection(conn)
        create_tables(conn)
        record_projection_version(conn)
        conn.execute("COMMIT")
        self.projection.forget_cache()
        self._head = self._last_snapshot = 0
        self._cached_snapshot = None
        self._incarnation = None

    def _rollback_local(self) -> None:
        """Undo an open SQLite transaction and reload what the cache holds."""
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self.projection.forget_cache()
        self._head = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        row = self._conn.execute("SELECT incarnation FROM pg_origin").fetchone()
        self._incarnation = row[0] if row else None

    def _maybe_snapshot(self) -> None:
        if self._head - self._last_snapshot >= self.snapshot_every:
            self._write_snapshot()

    # -- writing ---------------------------------------------------------------------------------

    def append(self, events: Sequence[Any], actor: Any) -> list[AppendResult]:
        with self._lock:
            self._quiet += 1  # the listeners' reads (read_encoded) come from the cache, already current
            try:
                return super().append(events, actor)
            finally:
                self._quiet -= 1

    def _append(self, events: Sequence[Any], actor: Any) -> tuple[list[Envelope], list[AppendResult]]:
        parsed_actor, refused = self._check_push(events, actor)
        if parsed_actor is None:
            return [], refused
        results: list[AppendResult] = []

        def apply() -> list[Envelope]:
            stored: list[Envelope] = []
            ts = utc_now()
            for raw in events:
                result, env = self._append_one(raw, parsed_actor, ts)
                results.append(result)
                if env is not None:
                    stored.append(env)
            return stored

        return self._write(apply), results

    def _write(self, apply: Callable[[], list[Envelope]]) -> list[Envelope]:
        """One write to the shared log: under the notebook's advisory lock, pull, ``apply`` new events to the cache
        in an open SQLite transaction, publish them to PostgreSQL and commit it, then commit the cache."""
        conn = self._conn
        with _unavailable(self._store.url), self._store.pool.connection() as pg:
            try:
                with pg.transaction():
                    pg.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(self.notebook_id),))
                    self._pull(pg)  # preconditions are checked against the true head
                    before = self._head
                    conn.execute("BEGIN IMMEDIATE")
                    stored = apply()
                    if stored:
                        self._publish(pg, before)
                conn.execute("COMMIT")  # after PostgreSQL's: the cache is never ahead of the log
            except BaseException:
                self._rollback_local()
                raise
        if stored:
            self._maybe_snapshot()
        return stored

    def import_events(self, events: Sequence[dict[str, Any]]) -> int:
        """Store events copied from another store's log as they are (seq, id, actor and time kept), replaying them
        through the materializer; they must continue this log exactly (``runt store copy``). The new head."""

        def apply() -> list[Envelope]:
            stored: list[Envelope] = []
            for event in events:
                if event["seq"] != self._head + 1:
                    raise RuntimedError(f"notebook {self.notebook_id}: a copied event has seq {event['seq']} but the "
                                        f"log's head is {self._head}", code="store_error")
                env = Envelope.from_wire(event)
                self.projection.apply(env)
                self._head = env.seq
                stored.append(env)
            return stored

        with self._lock:
            self._quiet += 1
            try:
                stored = self._write(apply)
                if stored:
                    self._after_commit(stored)
            finally:
                self._quiet -= 1
        return self._head

    def _publish(self, pg: Any, before: int) -> None:
        """Write the events applied to the cache since ``before`` to PostgreSQL, with the notebook's row and a
        notification (sent by PostgreSQL at commit)."""
        conn = self._conn
        if self._incarnation is None:
            self._set_incarnation(uuid.uuid4().hex)
        summary = views.notebook_summary(conn)
        assert summary is not None  # events were stored, so notebookCreated was among them or before
        pg.execute(
            "INSERT INTO notebooks (notebook_id, incarnation, head, updated_at, info) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (notebook_id) DO UPDATE SET head = EXCLUDED.head, updated_at = EXCLUDED.updated_at, "
            "info = EXCLUDED.info",
            (self.notebook_id, self._incarnation, self._head, summary["updated_at"], orjson.dumps(summary).decode()))
        rows = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq", (before,))
        with pg.cursor().copy(f"COPY events (notebook_id, {EVENT_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((self.notebook_id, *row))
        pg.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self.notebook_id}:{self._head}"))

    # -- reading: pull first, then the SQLite code reads the cache ---------------------------------

    def _rows(self, since: int, until: int | None, limit: int | None) -> list[tuple[Any, ...]]:
        self.catch_up()
        return super()._rows(since, until, limit)

    def view(self, fn: Callable[Concatenate[Any, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        self.catch_up()
        return super().view(fn, *args, **kwargs)

    def snapshot(self) -> tuple[int, bytes]:
        self.catch_up()
        return super().snapshot()

    def query(self, sql: str, params: Sequence[Any] = (), limits: QueryLimits | None = None) -> QueryResult:
        self.catch_up()
        return super().query(sql, params, limits)

    def close(self) -> None:
        with self._lock:
            super().close()
            self._conn = None  # type: ignore[assignment]


class _CacheLock:
    """One process per cache folder: two would each believe the cache is theirs to update."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] | None = open(folder / ".lock", "a+")  # noqa: SIM115 - held while the store is open
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._handle.close()
            self._handle = None
            raise RuntimedError(f"another process uses the PostgreSQL cache folder {folder}; give each daemon "
                                "its own home", code="already_running") from None

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class PostgresEventStore(SQLiteEventStore):
    """Every notebook of a deployment in one PostgreSQL database; ``cache_dir`` holds this process's caches."""

    def __init__(self, url: str, cache_dir: Path | str, *, snapshot_every: int = 5000, limits: Limits | None = None,
                 pool_size: int = 8, poll_interval: float = 2.0, connect_timeout: float = 10.0) -> None:
        if psycopg is None:
            raise StoreUnavailable("the PostgreSQL store needs psycopg: pip install 'runtimed[postgres]'")
        self.url = url
        self.snapshot_every = snapshot_every
        self.limits = limits
        self.poll_interval = poll_interval
        self._logs: dict[str, PostgresNotebookLog] = {}  # type: ignore[assignment]
        self._infos = {}  # unused: the listing reads the shared table
        self._lock = threading.Lock()
        self._closed = threading.Event()
        try:
            with _unavailable(url):
                conninfo = psycopg.conninfo.make_conninfo(url, connect_timeout=max(1, int(connect_timeout)))
        except psycopg.ProgrammingError as exc:
            raise StoreUnavailable(f"the store URL is not a valid PostgreSQL URL ({str(exc).strip()}); use "
                                   "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE") from None
        self._conninfo = conninfo
        with _unavailable(url), psycopg.connect(conninfo, autocommit=True) as conn:
            self.deployment = self._ensure_schema(conn)
        self.dir = Path(cache_dir) / self.deployment
        self._cache_lock = _CacheLock(self.dir)
        self.pool = ConnectionPool(conninfo, min_size=1, max_size=pool_size, timeout=connect_timeout,
                                   kwargs={"autocommit": True}, open=False, name="runtimed-store")
        with _unavailable(url):
            self.pool.open(wait=True, timeout=connect_timeout)
        self._listener = threading.Thread(target=self._listen, name="runtimed-pg-listen", daemon=True)
        self._listener.start()

    # -- schema ----------------------------------------------------------------------------------

    @staticmethod
    def _ensure_schema(conn: Any) -> str:
        """Create or migrate the shared schema (one daemon at a time); the deployment's id."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            exists = conn.execute("SELECT to_regclass('runtimed_meta')").fetchone()[0] is not None
            version = 0
            if exists:
                row = conn.execute("SELECT value FROM runtimed_meta WHERE key = 'schema_version'").fetchone()
                version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(f"the PostgreSQL store has schema version {version}, newer than this "
                                       f"runtimed's {SCHEMA_VERSION}: upgrade runtimed")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    conn.execute(statement)
                log.info("PostgreSQL store: schema at version %d", target)
            conn.execute("INSERT INTO runtimed_meta (key, value) VALUES ('schema_version', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))
            conn.execute("INSERT INTO runtimed_meta (key, value) VALUES ('deployment', %s) ON CONFLICT DO NOTHING",
                         (uuid.uuid4().hex,))
            return str(conn.execute("SELECT value FROM runtimed_meta WHERE key = 'deployment'").fetchone()[0])

    # -- notebooks -------------------------------------------------------------------------------

    def _open(self, notebook_id: str) -> PostgresNotebookLog:
        return PostgresNotebookLog(self, self._path(notebook_id), notebook_id, limits=self.limits,
                                   snapshot_every=self.snapshot_every)

    def log(self, notebook_id: str) -> PostgresNotebookLog:
        return super().log(notebook_id)  # type: ignore[return-value]

    def require(self, notebook_id: str) -> PostgresNotebookLog:
        return super().require(notebook_id)  # type: ignore[return-value]

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with _unavailable(self.url), self.pool.connection() as pg:
            return pg.execute(sql, params).fetchone()

    def _stored_ids(self) -> list[str]:
        with _unavailable(self.url), self.pool.connection() as pg:
            return [r[0] for r in pg.execute("SELECT notebook_id FROM notebooks ORDER BY notebook_id")]

    def exists(self, notebook_id: str) -> bool:
        return ev.is_valid_id(notebook_id) and self._one(
            "SELECT 1 FROM notebooks WHERE notebook_id = %s", (notebook_id,)) is not None

    def heads(self) -> dict[str, int]:
        """Every notebook's head, from the shared log (``runt store copy`` compares them)."""
        with _unavailable(self.url), self.pool.connection() as pg:
            return dict(pg.execute("SELECT notebook_id, head FROM notebooks").fetchall())

    def list_notebooks(self) -> list[dict[str, Any]]:
        """From the summaries each append keeps in the notebook's row: no log is opened."""
        with _unavailable(self.url), self.pool.connection() as pg:
            rows = pg.execute("SELECT info FROM notebooks ORDER BY updated_at DESC, notebook_id").fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def delete(self, notebook_id: str) -> None:
        check_notebook_id(notebook_id)
        with _unavailable(self.url), self.pool.connection() as pg, pg.transaction():
            pg.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(notebook_id),))
            gone = pg.execute("DELETE FROM notebooks WHERE notebook_id = %s RETURNING 1", (notebook_id,)).fetchone()
            if gone is None:
                raise NotFoundError(f"no notebook with id {notebook_id!r}", code="notebook_not_found")
            pg.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{notebook_id}:0"))
        self.close_log(notebook_id)
        self._remove(notebook_id)

    def close_log(self, notebook_id: str) -> None:
        """Close the notebook's cached log (other daemons write to it: nothing of it is kept)."""
        with self._lock:
            nb_log = self._logs.pop(notebook_id, None)
        if nb_log is not None:
            nb_log.close()

    def migrate(self) -> list[str]:
        """The shared schema is migrated when the store opens; each cache rebuilds its projection when opened."""
        return []

    # -- leases: PostgreSQL's clock decides expiry, so daemons on several machines agree ---------------

    def acquire_lease(self, key: str, holder: str, ttl: float) -> bool:
        row = self._one(
            "INSERT INTO leases AS l (key, holder, expires_at) "
            "VALUES (%s, %s, extract(epoch FROM clock_timestamp())::float8 + %s) "
            "ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at "
            "WHERE l.holder = EXCLUDED.holder OR l.expires_at <= extract(epoch FROM clock_timestamp())::float8 "
            "RETURNING 1", (key, holder, float(ttl)))
        return row is not None

    def release_lease(self, key: str, holder: str) -> None:
        self._one("DELETE FROM leases WHERE key = %s AND holder = %s RETURNING 1", (key, holder))

    # -- notifications ---------------------------------------------------------------------------

    def _listen(self) -> None:
        """Follow commits of every daemon: LISTEN, pull the notified notebooks, and poll the heads now and then."""
        backoff = 0.1
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.1
                    self._poll()  # whatever was committed while nobody listened
                    while not self._closed.is_set():
                        for notify in conn.notifies(timeout=self.poll_interval):
                            if self._closed.is_set():
                                return
                            self._notified(notify.payload)
                        self._poll()
            except Exception as exc:  # the server went away: keep trying, the log will tell what was missed
                if self._closed.is_set():
                    return
                log.warning("PostgreSQL notifications interrupted (%s); reconnecting", exc)
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _notified(self, payload: str) -> None:
        notebook_id, _, seq = payload.rpartition(":")
        nb_log = self._logs.get(notebook_id)
        if nb_log is None:
            return
        try:
            nb_log.catch_up(int(seq) if seq.isdigit() else None)
        except Exception:
            log.exception("cannot follow notebook %s", notebook_id)

    def _poll(self) -> None:
        """The safety net: pull every open notebook whose head moved without a notification."""
        with self._lock:
            open_logs = dict(self._logs)
        if not open_logs:
            return
        with self.pool.connection() as pg:
            heads: dict[str, int] = dict(pg.execute("SELECT notebook_id, head FROM notebooks WHERE notebook_id = ANY(%s)",
                                    (list(open_logs),)).fetchall())
        for notebook_id, nb_log in open_logs.items():
            head = heads.get(notebook_id, 0)
            if head != nb_log.head:
                try:
                    nb_log.catch_up()
                except Exception:
                    log.exception("cannot follow notebook %s", notebook_id)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(Exception), self.pool.connection(timeout=1) as pg:
            pg.execute("SELECT pg_notify(%s, '')", (CHANNEL,))  # wakes the listening thread at once
        self._listener.join(self.poll_interval + 5)
        with self._lock:
            for nb_log in self._logs.values():
                nb_log.close()
            self._logs.clear()
        self.pool.close()
        self._cache_lock.release()


def wait_for_head(nb_log: PostgresNotebookLog, head: int, timeout: float) -> bool:
    """Whether the cache reaches ``head`` within ``timeout`` seconds (pulling if notifications lag)."""
    deadline = time.monotonic() + timeout
    while nb_log.head < head:
        if time.monotonic() > deadline:
            return False
        nb_log.catch_up()
    return True
