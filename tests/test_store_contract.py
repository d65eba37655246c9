"""The store contract (``runtimed/store/base.py``): one suite that every ``EventStore`` backend must pass.

Each test takes the ``backend`` fixture, a factory of stores of one backend; tests that need data to
outlive the store object (reopen, ``kill -9``) take ``durable_backend`` instead, which runs only over
the backends whose ``Backend.durable`` is set. A new backend is one more entry in ``BACKENDS``.

Only the Protocols are used here (``log``, ``append``, ``read``, ``view``, ``query``, ...), never a
connection or a table of a particular backend, except where the contract itself is about SQL
(``query``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from pg import open_test_store

from runtimed.errors import NotFoundError, RuntimedError
from runtimed.schema import views
from runtimed.schema.crdt import SourceDoc, encode_update
from runtimed.schema.events import make_event
from runtimed.schema.ordering import key_between
from runtimed.schema.replica import Replica
from runtimed.store.base import EventStore, NotebookLog, QueryLimits
from runtimed.store.sqlite import MemoryEventStore, SQLiteEventStore

ROOT = Path(__file__).resolve().parents[1]
HUMAN = {"id": "alice", "kind": "human", "name": "Alice"}
RUNTIME = {"id": "runtime:rt1", "kind": "runtime", "name": "python3"}
T = TypeVar("T")
DEADLINE = 20.0  # seconds any wait for a condition may take before the test fails


@dataclass(frozen=True)
class Backend:
    """How to open one kind of store, and what it can do."""

    name: str
    open: Callable[[Path, int], EventStore]
    """``(root, snapshot_every)`` -> a store; for a durable backend the same root opens the same data."""
    durable: bool = False
    """Data outlives the store object and a process killed with SIGKILL."""
    child_open: str = ""
    """Python source defining ``open_store(root: str, snapshot_every: int)``, for a writer subprocess
    (durable backends only)."""
    fixture: str = ""
    """A fixture the backend needs (e.g. a running server), requested before the first store opens."""
    marks: tuple[pytest.MarkDecorator, ...] = ()


BACKENDS = [
    Backend("sqlite", lambda root, n: SQLiteEventStore(root, snapshot_every=n), durable=True,
            child_open="from runtimed.store.sqlite import SQLiteEventStore\n"
                       "def open_store(root, n): return SQLiteEventStore(root, snapshot_every=n)\n"),
    Backend("memory", lambda root, n: MemoryEventStore(snapshot_every=n)),
    Backend("postgres", open_test_store, durable=True, fixture="pg_cluster", marks=(pytest.mark.postgres,),
            child_open="from tests.pg import open_test_store\n"
                       "def open_store(root, n): return open_test_store(root, n)\n"),
]


def _params(backends: list[Backend]) -> list[Any]:
    return [pytest.param(b, id=b.name, marks=b.marks) for b in backends]


@dataclass
class StoreFactory:
    """Opens stores of one backend under one root and closes them all at the end of the test."""

    backend: Backend
    root: Path
    opened: list[EventStore] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        return self.backend.durable

    def __call__(self, *, snapshot_every: int = 3) -> EventStore:
        store = self.backend.open(self.root, snapshot_every)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


def _factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    if request.param.fixture:
        request.getfixturevalue(request.param.fixture)
    factory = StoreFactory(request.param, tmp_path / "store")
    yield factory
    factory.close_all()


@pytest.fixture(params=_params(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of stores, once per backend."""
    yield from _factory(request, tmp_path)


@pytest.fixture(params=_params([b for b in BACKENDS if b.durable]))
def durable_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of stores, once per durable backend (the same root reopens the same data)."""
    yield from _factory(request, tmp_path)


@pytest.fixture
def store(backend: StoreFactory) -> EventStore:
    return backend()


@pytest.fixture
def nb(store: EventStore) -> NotebookLog:
    """A created notebook (head 1)."""
    nb_log = store.log("nb")
    assert nb_log.append([make_event("notebookCreated", title="T")], HUMAN)[0]["seq"] == 1
    return nb_log


def cell(cid: str, index: str = "a0", source: str = "") -> dict[str, Any]:
    return make_event("cellCreated", cellId=cid, cellType="code", fractionalIndex=index, source=source)


def replay(nb_log: NotebookLog, until: int | None = None) -> Replica:
    """The notebook rebuilt from its log alone, by a fresh replica."""
    replica = Replica(nb_log.notebook_id, record_events=False)
    replica.apply_wire(nb_log.read(0, until))
    return replica


def seqs(results: list[Any]) -> list[int | None]:
    return [r.get("seq") for r in results]


def run_threads(n: int, target: Callable[[int], T]) -> list[T]:
    """Run ``target(i)`` in ``n`` threads released together; their results (in no particular order),
    or the first failure re-raised."""
    barrier = threading.Barrier(n)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            barrier.wait(DEADLINE)
            result = target(i)
        except BaseException as exc:  # surfaced below
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]
    return results


# -- seq ------------------------------------------------------------------------------------------


def test_seq_starts_at_1_with_notebook_created(store):
    nb_log = store.log("fresh")
    assert nb_log.head == 0 and nb_log.info() is None and nb_log.read() == []
    rejected = nb_log.append([cell("c1")], HUMAN)[0]
    assert rejected["error"]["code"] == "notebook_not_created"
    assert nb_log.head == 0 and not store.exists("fresh")
    assert nb_log.append([make_event("notebookCreated", title="Fresh")], HUMAN)[0]["seq"] == 1
    assert nb_log.append([cell("c1")], HUMAN)[0]["seq"] == 2
    assert [e["name"] for e in nb_log.read()] == ["notebookCreated", "cellCreated"]
    info = nb_log.info()
    assert info is not None and info["title"] == "Fresh" and info["head_seq"] == 2 and info["cells"] == 1


def test_seqs_are_gap_free_across_rejections_and_concurrent_writers(nb):
    results = nb.append([cell("c1"), make_event("cellDeleted", cellId="nope"), cell("c2", "a1")], HUMAN)
    assert seqs(results) == [2, None, 3]
    assert nb.append([make_event("cellDeleted", cellId="nope")], HUMAN)[0]["error"]["code"] == "cell_not_found"
    def writer(i: int) -> list[int]:
        stored: list[int] = []
        for j in range(15):
            batch = [make_event("cellMetadataSet", cellId="c1", key=f"w{i}", value=j),
                     make_event("cellDeleted", cellId=f"missing-{i}-{j}"),  # rejected: no seq consumed
                     make_event("notebookMetadataSet", key=f"w{i}", value=j)]
            got = nb.append(batch, HUMAN)
            assert got[1]["error"]["code"] == "cell_not_found"
            stored.extend(s for s in seqs(got) if s is not None)
        return stored

    stored = [s for batch in run_threads(4, writer) for s in batch]
    assert sorted(stored) == list(range(4, 4 + 4 * 15 * 2))
    assert nb.head == 3 + 4 * 15 * 2
    assert [e["seq"] for e in nb.read()] == list(range(1, nb.head + 1))
    assert replay(nb).dump() == nb.state_at().dump()


# -- idempotency ----------------------------------------------------------------------------------


def test_repush_is_idempotent(nb):
    event = cell("c1", source="x")
    first = nb.append([event], HUMAN)[0]
    assert first == {"id": event["id"], "seq": 2}
    before = (nb.head, nb.read(), nb.state_at().dump())
    heard: list[int] = []
    nb.subscribe(lambda envelopes, encoded: heard.extend(e.seq for e in envelopes))
    assert nb.append([event], HUMAN)[0] == first
    # the id decides, even if a buggy client changed the content or the actor
    changed = {**event, "args": {**event["args"], "source": "other"}}
    assert nb.append([changed], {"id": "bob", "kind": "human"})[0] == first
    assert (nb.head, nb.read(), nb.state_at().dump()) == before
    assert heard == []  # nothing was committed, so nobody is told
    # twice within one batch, and once more next to a new event
    e2, e3 = cell("c2", "a1"), cell("c3", "a2")
    assert seqs(nb.append([e2, e2], HUMAN)) == [3, 3]
    assert seqs(nb.append([event, e2, e3], HUMAN)) == [2, 3, 4]
    assert nb.head == 4 and heard == [3, 4]
    assert [e["id"] for e in nb.read()][1:] == [event["id"], e2["id"], e3["id"]]


# -- atomic batches -------------------------------------------------------------------------------


def test_a_rejected_event_in_a_batch_does_not_affect_the_others(nb):
    batch = [
        cell("c1", source="a"),
        make_event("cellMetadataSet", cellId="c1", key="k", value=1),
        make_event("cellCreated", cellId="c1", cellType="code", fractionalIndex="a1"),  # duplicate id
        make_event("cellMetadataSet", cellId="c1", key="k2", value=2),
    ]
    results = nb.append(batch, HUMAN)
    assert results[2]["error"]["code"] == "cell_exists" and results[2]["id"] == batch[2]["id"]
    assert seqs(results) == [2, 3, None, 4]
    assert nb.view(views.cell, "c1")["metadata"] == {"k": 1, "k2": 2}  # type: ignore[index]
    assert [e["id"] for e in nb.read(1)] == [batch[0]["id"], batch[1]["id"], batch[3]["id"]]
    assert replay(nb).dump() == nb.state_at().dump()


def test_a_batch_is_committed_whole(nb):
    """Listeners run after the commit and see the whole batch at once; a batch over the limit stores nothing."""
    seen: list[tuple[list[int], int, int]] = []
    nb.subscribe(lambda envelopes, encoded: seen.append(
        ([e.seq for e in envelopes], nb.head, nb.view(views.cell_count))))
    nb.append([cell("c1"), cell("c2", "a1"), cell("c3", "a2")], HUMAN)
    assert seen == [([2, 3, 4], 4, 3)]
    too_many = [cell(f"x{i}", key_between("a2", None)) for i in range(nb.limits.max_batch_events + 1)]
    results = nb.append(too_many, HUMAN)
    assert {r["error"]["code"] for r in results} == {"batch_too_large"} and len(results) == len(too_many)
    assert nb.head == 4 and len(seen) == 1


def test_a_bad_actor_rejects_the_whole_batch(nb):
    results = nb.append([cell("c1"), cell("c2", "a1")], {"id": "", "kind": "martian"})
    assert {r["error"]["code"] for r in results} == {"invalid_actor"}
    assert nb.head == 1


WRITER = """
import sys
from runtimed.schema.crdt import SourceDoc, encode_update
from runtimed.schema.events import make_event

actor = {"id": "writer", "kind": "human"}
store = open_store(sys.argv[1], 7)
log = store.log("crash")
if log.head == 0:
    log.append([make_event("notebookCreated", title="crash")], actor)
n = max((int(e["args"]["cellId"][1:]) for e in log.read() if e["name"] == "cellCreated"), default=0)
previous = None
while True:
    n += 1
    cid = f"c{n}"
    update = SourceDoc.seeded("start").update_to("start " + "x" * (n % 50))
    batch = [
        make_event("cellCreated", cellId=cid, cellType="code", fractionalIndex="a0", source="start"),
        make_event("cellSourceEdited", cellId=cid, update=encode_update(update)),
        make_event("outputAdded", outputId=f"o{n}", cellId=cid, outputType="stream", name="stdout",
                   text="y" * 2000),
        make_event("cellMetadataSet", cellId=cid, key="done", value=True),
    ]
    if n % 3 == 0 and previous is not None:
        batch.append(make_event("cellDeleted", cellId=previous))
    previous = cid
    results = log.append(batch, actor)
    assert all("seq" in r for r in results), results
    print(log.head, flush=True)
"""


def check_batches_whole(events: list[dict[str, Any]]) -> int:
    """The writer's log, batch by batch: each batch is complete (returns how many batches)."""
    assert events[0]["name"] == "notebookCreated"
    i, batches = 1, 0
    while i < len(events):
        cid = events[i]["args"]["cellId"]
        names = [(e["name"], e["args"].get("cellId")) for e in events[i:i + 4]]
        assert names == [("cellCreated", cid), ("cellSourceEdited", cid), ("outputAdded", cid),
                         ("cellMetadataSet", cid)], f"batch at seq {events[i]['seq']} is not whole: {names}"
        i += 4
        if i < len(events) and events[i]["name"] == "cellDeleted":
            i += 1
        batches += 1
    return batches


@pytest.mark.timeout(180)
def test_kill_9_leaves_every_batch_whole(durable_backend, tmp_path):
    """A writer appending batches in a loop is killed with SIGKILL at arbitrary moments (after it has
    committed a growing number of events); each reopened log is gap-free, every batch in it is whole,
    and its projection equals a replay of the log."""
    script = tmp_path / "writer.py"
    script.write_text(durable_backend.backend.child_open + textwrap.dedent(WRITER))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    head = 0
    for grow in (40, 400, 150, 7):
        proc = subprocess.Popen([sys.executable, str(script), str(durable_backend.root)],
                                stdout=subprocess.PIPE, env=env, cwd=ROOT)
        assert proc.stdout is not None
        try:
            target = head + grow
            while True:  # kill it once it has committed `grow` more events: mid-append, most likely
                line = proc.stdout.readline()
                assert line, f"the writer exited with {proc.wait()}"
                if int(line) >= target:
                    break
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        store = durable_backend()
        nb_log = store.log("crash")
        assert nb_log.head >= target
        head = nb_log.head
        events = nb_log.read()
        assert [e["seq"] for e in events] == list(range(1, head + 1))
        check_batches_whole(events)
        for c in nb_log.view(views.ordered_cells):
            assert c["source"].startswith("start ") and c["metadata"] == {"done": True}, c
            assert len(nb_log.view(views.outputs_by_cell, c["id"])[c["id"]]) == 1
        assert replay(nb_log).dump() == nb_log.state_at().dump()
        store.close()


def test_reopened_store_continues_the_log(durable_backend):
    store = durable_backend()
    nb_log = store.log("nb")
    nb_log.append([make_event("notebookCreated", title="T"), cell("c1", source="x")], HUMAN)
    source = SourceDoc(client_id=7)
    source.apply(nb_log.view(views.cell_ystate, "c1") or b"")
    edit = make_event("cellSourceEdited", cellId="c1", update=encode_update(source.update_to("x = 1")))
    nb_log.append([edit], HUMAN)
    state, events = nb_log.state_at().dump(), nb_log.read()
    store.close()
    reopened = durable_backend().log("nb")
    assert reopened.head == 3 and reopened.read() == events and reopened.state_at().dump() == state
    assert reopened.append([edit], HUMAN)[0]["seq"] == 3  # idempotency survives a restart
    more = make_event("cellSourceEdited", cellId="c1", update=encode_update(source.update_to("x = 12")))
    assert reopened.append([more], HUMAN)[0]["seq"] == 4
    assert reopened.view(views.cell, "c1")["source"] == "x = 12"  # type: ignore[index]
    assert replay(reopened).dump() == reopened.state_at().dump()


# -- compare-and-set claims -----------------------------------------------------------------------


def test_claims_are_compare_and_set_under_concurrency(nb):
    nb.append([cell("c1", source="1")], HUMAN)
    started = nb.append([make_event("runtimeSessionStarted", sessionId="s1", runtimeId="rt1",
                                    kernelName="python3")], RUNTIME)
    assert "seq" in started[0], started
    for round_ in range(5):
        queue_id = f"q{round_}"
        assert "seq" in nb.append([make_event("executionRequested", queueId=queue_id, cellId="c1")], HUMAN)[0]
        claim = make_event("executionAssigned", queueId=queue_id, sessionId="s1")
        # every thread claims with an event of its own (a new id): the same id would be a re-push
        outcomes = run_threads(8, lambda i, claim=claim: nb.append([{**claim, "id": f"{claim['id']}-{i}"}],
                                                                   RUNTIME)[0])
        won = [o for o in outcomes if "seq" in o]
        lost = [o for o in outcomes if "error" in o]
        assert len(won) == 1 and len(lost) == 7, outcomes
        assert {o["error"]["code"] for o in lost} == {"not_pending"}
        row = nb.view(views.execution, queue_id)
        assert row is not None and row["status"] == "assigned" and row["session_id"] == "s1"
        # finish it, so that the next round's request is the only pending one
        nb.append([make_event("executionStarted", queueId=queue_id, sessionId="s1", source="1"),
                   make_event("executionCompleted", queueId=queue_id, status="success")], RUNTIME)
    assert [e["seq"] for e in nb.read()] == list(range(1, nb.head + 1))


# -- time travel ----------------------------------------------------------------------------------


def test_state_at_equals_a_replay_of_the_prefix(backend):
    store = backend(snapshot_every=3)  # snapshots every few events: state_at starts from one of them
    nb_log = store.log("nb")
    nb_log.append([make_event("notebookCreated", title="T")], HUMAN)
    live = {1: nb_log.state_at().dump()}
    source = SourceDoc(client_id=50)
    nb_log.append([cell("c1")], HUMAN)
    source.apply(nb_log.view(views.cell_ystate, "c1") or b"")
    live[nb_log.head] = nb_log.state_at().dump()
    steps: list[Callable[[int], list[dict[str, Any]]]] = [
        lambda i: [make_event("cellSourceEdited", cellId="c1", update=encode_update(source.update_to(f"x = {i}")))],
        lambda i: [make_event("cellMetadataSet", cellId="c1", key="n", value=i)],
        lambda i: [cell(f"d{i}", key_between("a0", None)), make_event("cellDeleted", cellId=f"d{i}")],
        lambda i: [make_event("notebookMetadataSet", key="n", value=i)],
    ]
    for i in range(30):
        assert all("seq" in r for r in nb_log.append(steps[i % len(steps)](i), HUMAN))
        live[nb_log.head] = nb_log.state_at().dump()
    assert nb_log.head > 30
    for seq in [0, 1, 2, 3, 4, 5, 6, 7, 11, 17, 24, nb_log.head - 1, nb_log.head]:
        at = nb_log.state_at(seq)
        assert at.head == seq
        assert at.dump() == replay(nb_log, seq).dump(), seq
        if seq in live:
            assert at.dump() == live[seq], seq
    assert nb_log.state_at(0).dump() == Replica("nb").dump()
    assert nb_log.state_at(nb_log.head + 5).dump() == live[nb_log.head]  # past the head: the head
    with pytest.raises(RuntimedError) as info:
        nb_log.state_at(-1)
    assert info.value.code == "invalid_seq"


def test_snapshot_is_the_projection_at_the_head(nb):
    nb.append([cell("c1", source="s")], HUMAN)
    seq, data = nb.snapshot()
    assert seq == nb.head == 2
    assert Replica.from_snapshot("nb", data).dump() == replay(nb).dump()


# -- reading --------------------------------------------------------------------------------------


def test_read_ranges_and_limits(nb):
    nb.append([cell(f"c{i}", f"a{i}") for i in range(6)], HUMAN)
    assert [e["seq"] for e in nb.read()] == [1, 2, 3, 4, 5, 6, 7]
    assert [e["seq"] for e in nb.read(2)] == [3, 4, 5, 6, 7]
    assert [e["seq"] for e in nb.read(2, 4)] == [3, 4]
    assert [e["seq"] for e in nb.read(0, None, 2)] == [1, 2]
    assert [e["seq"] for e in nb.read(3, 7, 2)] == [4, 5]
    assert [e["seq"] for e in nb.read(5, 100)] == [6, 7]
    assert nb.read(7) == [] and nb.read(4, 4) == [] and nb.read(0, None, 0) == []
    event = nb.read(1, 2)[0]
    assert set(event) == {"seq", "id", "name", "v", "args", "actor", "ts"}
    assert event["name"] == "cellCreated" and event["v"] == 1 and event["actor"] == HUMAN
    assert event["args"] == {"cellId": "c0", "cellType": "code", "fractionalIndex": "a0", "source": ""}
    assert event["ts"].endswith("Z")
    for since, until, limit in [(0, None, None), (2, 4, None), (1, None, 3), (6, 7, 10)]:
        encoded = nb.read_encoded(since, until, limit)
        assert all(isinstance(b, bytes) for b in encoded)
        assert [orjson.loads(b) for b in encoded] == nb.read(since, until, limit)


def test_typed_views(nb):
    nb.append([cell("c1", "a0", "x = 1"), cell("c2", "a1"), make_event("cellMetadataSet", cellId="c2", key="k", value=[1]),
               make_event("executionRequested", queueId="q1", cellId="c1")], HUMAN)
    cells = nb.view(views.ordered_cells)
    assert [(c["id"], c["source"], c["metadata"]) for c in cells] == [("c1", "x = 1", {}), ("c2", "", {"k": [1]})]
    assert nb.view(views.cell, "c2") == cells[1]  # positional arguments
    assert nb.view(views.cell, "nope") is None
    rows = nb.view(views.executions, cell_id="c1")  # keyword arguments
    assert [(r["queue_id"], r["status"], r["requested_by"]) for r in rows] == [("q1", "pending", "alice")]
    assert nb.view(views.next_pending) == ("q1", "c1")
    assert nb.view(views.needs_runtime) is True
    whole = nb.view(views.notebook_view)
    assert whole["title"] == "T" and [c["id"] for c in whole["cells"]] == ["c1", "c2"]
    assert whole["cells"][0]["execution"]["queue_id"] == "q1"


# -- subscriptions --------------------------------------------------------------------------------


def test_subscribers_hear_every_commit_once_in_order(nb):
    heard: list[int] = []
    encoded_seqs: list[int] = []

    def listener(envelopes, encoded):
        heard.extend(e.seq for e in envelopes)
        encoded_seqs.extend(orjson.loads(b)["seq"] for b in encoded)
        assert [orjson.loads(b) for b in encoded] == [e.to_wire() for e in envelopes]

    def broken(envelopes, encoded):
        raise RuntimeError("a listener's bug")

    nb.subscribe(broken)  # must not stop the others, nor the append
    unsubscribe = nb.subscribe(listener)

    def writer(i: int) -> None:
        for j in range(10):
            nb.append([make_event("notebookMetadataSet", key=f"w{i}", value=j),
                       make_event("cellDeleted", cellId="nope")], HUMAN)

    run_threads(4, writer)
    assert heard == list(range(2, nb.head + 1)) == encoded_seqs
    unsubscribe()
    nb.append([cell("c1")], HUMAN)
    assert heard[-1] == nb.head - 1
    unsubscribe()  # twice is harmless


# -- read-only queries ----------------------------------------------------------------------------


WRITES = [
    "INSERT INTO cells (id) VALUES ('x')",
    "UPDATE cells SET source = 'hacked'",
    "DELETE FROM events",
    "DROP TABLE cells",
    "CREATE TABLE evil (x)",
    "CREATE TEMP TABLE evil (x)",
    "PRAGMA user_version = 5",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA query_only = 0",
    "REPLACE INTO notebook_metadata (key, value) VALUES ('k', '1')",
]


def test_query_is_read_only(nb, tmp_path):
    nb.append([cell("c1", source="x = 1")], HUMAN)
    before = (nb.head, nb.state_at().dump())
    result = nb.query("SELECT id, source FROM cells WHERE id = ?", ["c1"])
    assert result.columns == ["id", "source"] and result.rows == [("c1", "x = 1")] and not result.truncated
    attach = tmp_path / "attached.db"
    vacuum = tmp_path / "copy.db"
    for sql in [*WRITES, f"ATTACH DATABASE '{attach}' AS other", f"VACUUM INTO '{vacuum}'"]:
        with pytest.raises(RuntimedError) as info:
            nb.query(sql)
        assert info.value.code == "read_only", sql
    assert not attach.exists() and not vacuum.exists()
    with pytest.raises(RuntimedError) as info:
        nb.query("SELECT * FROM no_such_table")
    assert info.value.code == "sql_error"
    assert (nb.head, nb.state_at().dump()) == before
    assert nb.append([cell("c2", "a1")], HUMAN)[0]["seq"] == 3  # and the log still takes appends


def test_query_is_bounded_in_time_rows_and_bytes(nb):
    forever = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT COUNT(*) FROM r"
    with pytest.raises(RuntimedError) as info:
        nb.query(forever, limits=QueryLimits(timeout=0.5))
    assert info.value.code == "query_timeout"
    hundred = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100) SELECT i FROM r"
    full = nb.query(hundred)
    assert [r[0] for r in full.rows] == list(range(1, 101)) and not full.truncated
    few = nb.query(hundred, limits=QueryLimits(max_rows=5))
    assert few.rows == [(1,), (2,), (3,), (4,), (5,)] and few.truncated
    wide = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100) SELECT printf('%.1000c', 'x') FROM r"
    small = nb.query(wide, limits=QueryLimits(max_bytes=10_000))
    assert 0 < len(small.rows) < 100 and small.truncated
    assert sum(len(r[0]) for r in small.rows) <= 10_000
    # the log still takes appends after a query was stopped
    assert nb.append([cell("c1")], HUMAN)[0]["seq"] == 2


def test_a_query_never_sees_half_a_batch(nb):
    """Queries running while another thread appends batches of 10 see whole batches only."""
    done = threading.Event()
    queried = threading.Event()  # the writer waits for a query every 10 batches: they surely interleave
    seen: set[tuple[int, int]] = set()

    def writer() -> None:
        try:
            for i in range(50):
                if i % 10 == 0:
                    assert queried.wait(DEADLINE)
                    queried.clear()
                nb.append([make_event("notebookMetadataSet", key=f"k{i}-{j}", value=j) for j in range(10)], HUMAN)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not done.is_set():
            rows = nb.query("SELECT (SELECT COUNT(*) FROM notebook_metadata), (SELECT COUNT(*) FROM events)").rows
            seen.add(rows[0])
            queried.set()
    finally:
        thread.join(DEADLINE)
    assert nb.head == 501 and len(seen) >= 3  # queries 0, 2 and 4 that the writer waited for differ
    assert all(keys % 10 == 0 and events == keys + 1 for keys, events in seen), sorted(seen)


def test_query_sees_only_its_own_notebook(store):
    a, b = store.log("nb-a"), store.log("nb-b")
    a.append([make_event("notebookCreated", title="A"), cell("ca")], HUMAN)
    b.append([make_event("notebookCreated", title="B"), cell("cb1"), cell("cb2", "a1")], HUMAN)
    assert a.query("SELECT id, title FROM notebooks").rows == [("nb-a", "A")]
    assert a.query("SELECT id FROM cells").rows == [("ca",)]
    assert b.query("SELECT COUNT(*) FROM events").rows == [(3,)]
    assert a.query("SELECT COUNT(*) FROM events").rows == [(2,)]


# -- the notebook catalog -------------------------------------------------------------------------


def test_list_exists_require_delete(store):
    assert store.list_notebooks() == [] and not store.exists("a")
    with pytest.raises(NotFoundError) as info:
        store.require("a")
    assert info.value.code == "notebook_not_found"
    untouched = store.log("untouched")  # a log without events is no notebook
    assert untouched.head == 0 and not store.exists("untouched")
    store.log("a").append([make_event("notebookCreated", title="A")], HUMAN)
    store.log("b").append([make_event("notebookCreated", title="B")], HUMAN)
    store.log("a").append([cell("c1")], HUMAN)  # a is now the most recently updated
    assert store.exists("a") and store.exists("b")
    assert store.require("a") is store.log("a")
    listed = store.list_notebooks()
    assert [(i["id"], i["title"], i["head_seq"], i["cells"]) for i in listed] == [("a", "A", 2, 1), ("b", "B", 1, 0)]
    store.delete("a")
    assert not store.exists("a") and [i["id"] for i in store.list_notebooks()] == ["b"]
    with pytest.raises(NotFoundError):
        store.delete("a")
    with pytest.raises(NotFoundError):
        store.require("a")
    for bad in ("../escape", "", "a/b", ".hidden"):
        with pytest.raises(RuntimedError) as info:
            store.log(bad)
        assert info.value.code == "invalid_notebook_id", bad
    assert store.migrate() == []  # every projection is current


def test_a_deleted_notebook_can_be_created_again_from_scratch(store):
    old = store.log("again")
    old_created = make_event("notebookCreated", title="Old")
    old.append([old_created, cell("c1", source="old")], HUMAN)
    store.delete("again")
    new = store.log("again")
    assert new.head == 0 and new.read() == [] and new.info() is None
    assert new.view(views.ordered_cells) == []
    # the old event ids are forgotten too: a re-push of the old notebookCreated starts a new log
    assert new.append([old_created], HUMAN)[0]["seq"] == 1
    assert new.append([make_event("notebookMetadataSet", key="k", value=1)], HUMAN)[0]["seq"] == 2
    assert store.exists("again") and new.info()["title"] == "Old"  # type: ignore[index]
    assert new.view(views.cell, "c1") is None
    assert [e["seq"] for e in new.read()] == [1, 2]


# -- leases ---------------------------------------------------------------------------------------


def test_a_lease_is_exclusive_while_held_and_renewable_by_its_holder(store):
    assert store.acquire_lease("runtime:nb", "d1", 60)
    assert not store.acquire_lease("runtime:nb", "d2", 60)
    assert store.acquire_lease("runtime:nb", "d1", 60)  # renewed
    assert store.acquire_lease("other", "d2", 60)  # leases are independent
    store.release_lease("runtime:nb", "d2")  # not the holder: no effect
    assert not store.acquire_lease("runtime:nb", "d2", 60)
    store.release_lease("runtime:nb", "d1")
    assert store.acquire_lease("runtime:nb", "d2", 60)
    assert not store.acquire_lease("runtime:nb", "d1", 60)
    # a renewal sets the expiry: renewed with ttl 0, the lease has expired at once
    assert store.acquire_lease("runtime:nb", "d2", 0)
    assert store.acquire_lease("runtime:nb", "d1", 60)


def test_an_expired_lease_can_be_taken(store):
    assert store.acquire_lease("k", "d1", 0.2)
    deadline = time.monotonic() + DEADLINE
    while not store.acquire_lease("k", "d2", 60):
        assert time.monotonic() < deadline, "the lease never expired"
    assert not store.acquire_lease("k", "d1", 60)


def test_one_of_many_racing_holders_gets_a_lease(store):
    won = run_threads(8, lambda i: (f"d{i}", store.acquire_lease("contended", f"d{i}", 60)))
    winners = [holder for holder, got in won if got]
    assert len(winners) == 1
    assert store.acquire_lease("contended", winners[0], 60)
