"""SQLite specifics of the event store (the contract every backend meets, crash safety included, is in
test_store_contract.py): gap-free seqs, idempotency, time travel across restarts, read-only SQL."""

from __future__ import annotations

import sqlite3

import orjson
import pytest

from runtimed.errors import NotFoundError, RuntimedError
from runtimed.schema.crdt import SourceDoc, encode_update
from runtimed.schema.events import make_event
from runtimed.schema.ordering import key_between
from runtimed.schema.replica import Replica
from runtimed.store.sqlite import SQLiteEventStore

HUMAN = {"id": "alice", "kind": "human", "name": "Alice"}


@pytest.fixture
def store(tmp_path):
    s = SQLiteEventStore(tmp_path / "home", snapshot_every=3)
    yield s
    s.close()


@pytest.fixture
def log(store):
    nb = store.log("nb")
    nb.append([make_event("notebookCreated", title="T")], HUMAN)
    return nb


def cell(cid: str, index: str = "a0", source: str = "") -> dict:
    return make_event("cellCreated", cellId=cid, cellType="code", fractionalIndex=index, source=source)


def replay(log) -> Replica:
    replica = Replica(log.notebook_id, record_events=False)
    replica.apply_wire(log.read())
    return replica


def test_seqs_are_gap_free_across_rejections(log):
    results = log.append([cell("c1"), make_event("cellDeleted", cellId="nope"), cell("c2", "a1")], HUMAN)
    assert [r.get("seq") for r in results] == [2, None, 3]
    results = log.append([make_event("cellDeleted", cellId="nope")], HUMAN)
    assert "error" in results[0]
    assert log.append([cell("c3", "a2")], HUMAN)[0]["seq"] == 4
    assert [e["seq"] for e in log.read()] == [1, 2, 3, 4]
    assert log.head == 4


def test_repush_is_idempotent(log):
    event = cell("c1")
    first = log.append([event], HUMAN)[0]
    dump = log.state_at().dump()
    again = log.append([event], HUMAN)[0]
    assert again == first == {"id": event["id"], "seq": 2}
    # the id decides, even if a buggy client changed the content or the actor
    changed = {**event, "args": {**event["args"], "source": "other"}}
    assert log.append([changed], {"id": "bob", "kind": "human"})[0] == first
    # twice within one batch
    e2 = cell("c2", "a1")
    assert [r["seq"] for r in log.append([e2, e2], HUMAN)] == [3, 3]
    assert log.head == 3
    assert log.state_at(2).dump() == dump


def test_a_rejected_event_in_a_batch_does_not_affect_the_others(log):
    batch = [
        cell("c1", source="a"),
        make_event("cellMetadataSet", cellId="c1", key="k", value=1),
        make_event("cellCreated", cellId="c1", cellType="code", fractionalIndex="a1"),  # duplicate id
        make_event("cellMetadataSet", cellId="c1", key="k2", value=2),
    ]
    results = log.append(batch, HUMAN)
    assert results[2]["error"]["code"] == "cell_exists"
    assert [r.get("seq") for r in results] == [2, 3, None, 4]
    assert log.query("SELECT metadata FROM cells").rows == [('{"k":1,"k2":2}',)]
    assert replay(log).dump() == log.state_at().dump()


def test_read_since_until_limit(log):
    log.append([cell(f"c{i}", f"a{i}") for i in range(6)], HUMAN)
    assert [e["seq"] for e in log.read(2)] == [3, 4, 5, 6, 7]
    assert [e["seq"] for e in log.read(2, 4)] == [3, 4]
    assert [e["seq"] for e in log.read(0, None, 2)] == [1, 2]
    assert log.read(7) == []
    event = log.read(1, 2)[0]
    assert event["name"] == "cellCreated" and event["actor"] == HUMAN and event["ts"].endswith("Z")
    assert [orjson.loads(b) for b in log.read_encoded(2, 4)] == log.read(2, 4)


def test_subscription(log):
    seen = []

    def listener(envelopes, encoded):
        seen.append(([e.seq for e in envelopes], [orjson.loads(b)["seq"] for b in encoded]))

    def broken(envelopes, encoded):
        raise RuntimeError("listener bug")

    log.subscribe(broken)
    unsubscribe = log.subscribe(listener)
    log.append([cell("c1"), make_event("cellDeleted", cellId="zz"), cell("c2", "a1")], HUMAN)
    log.append([make_event("cellDeleted", cellId="zz")], HUMAN)  # nothing stored: no call
    assert seen == [([2, 3], [2, 3])]
    unsubscribe()
    log.append([cell("c3", "a2")], HUMAN)
    assert len(seen) == 1


def test_state_at_equals_the_state_that_was_live(store, log):
    live = {1: log.state_at().dump()}
    source = SourceDoc(client_id=50)
    log.append([cell("c1")], HUMAN)
    source.apply(log.query("SELECT ystate FROM cells").rows[0][0])
    live[log.head] = log.state_at().dump()
    steps = [
        lambda i: [
            make_event("cellSourceEdited", cellId="c1", update=encode_update(source.update_to(f"x = {i}")))
        ],
        lambda i: [make_event("cellMetadataSet", cellId="c1", key="n", value=i)],
        lambda i: [cell(f"d{i}", key_between("a0", None)), make_event("cellDeleted", cellId=f"d{i}")],
        lambda i: [make_event("notebookMetadataSet", key="n", value=i)],
    ]
    for i in range(40):
        results = log.append(steps[i % len(steps)](i), HUMAN)
        assert all("seq" in r for r in results)
        live[log.head] = log.state_at().dump()
    assert log.query("SELECT COUNT(*) FROM snapshots").rows[0][0] > 5  # snapshots are really used
    for seq, dump in live.items():
        assert log.state_at(seq).dump() == dump, seq
    assert log.state_at(0).dump() == Replica("nb").dump()
    with pytest.raises(RuntimedError) as info:
        log.state_at(-1)
    assert info.value.code == "invalid_seq"
    # and after a restart (no cached CRDT documents), appends continue identically
    store.close()
    reopened = SQLiteEventStore(store.root, snapshot_every=3).log("nb")
    assert reopened.head == max(live)
    assert reopened.state_at().dump() == live[max(live)]
    reopened.append(
        [make_event("cellSourceEdited", cellId="c1", update=encode_update(source.update_to("y")))], HUMAN
    )
    assert replay(reopened).dump() == reopened.state_at().dump()
    reopened.close()


def test_query_is_read_only(log):
    log.append([cell("c1", source="x = 1")], HUMAN)
    result = log.query("SELECT id, source FROM cells WHERE id = ?", ["c1"])
    assert result.columns == ["id", "source"] and result.rows == [("c1", "x = 1")]
    for sql in [
        "INSERT INTO cells (id) VALUES ('x')",
        "UPDATE cells SET source = 'hacked'",
        "DELETE FROM events",
        "DROP TABLE cells",
        "CREATE TABLE evil (x)",
        "PRAGMA user_version = 5",
    ]:
        with pytest.raises(RuntimedError) as info:
            log.query(sql)
        assert info.value.code == "read_only", sql
    with pytest.raises(RuntimedError) as info:
        log.query("SELECT * FROM no_such_table")
    assert info.value.code == "sql_error"
    assert log.query("SELECT source FROM cells").rows == [("x = 1",)]
    assert log.query("PRAGMA user_version").rows == [(0,)]


def test_query_works_under_a_path_with_uri_characters(tmp_path):
    store = SQLiteEventStore(tmp_path / "odd #dir% ?name")
    nb = store.log("nb")
    nb.append([make_event("notebookCreated", title="T")], HUMAN)
    assert nb.query("SELECT title FROM notebooks").rows == [("T",)]
    store.close()


def test_store_catalog(store):
    assert not store.exists("a")
    store.log("a").append([make_event("notebookCreated", title="A")], HUMAN)
    store.log("b").append([make_event("notebookCreated", title="B")], HUMAN)
    assert store.exists("a") and store.log("a") is store.log("a")
    assert sorted(i["title"] for i in store.list_notebooks()) == ["A", "B"]
    store.delete("a")
    assert not store.exists("a")
    with pytest.raises(NotFoundError):
        store.delete("a")
    with pytest.raises(NotFoundError):
        store.require("a")
    with pytest.raises(RuntimedError) as info:
        store.log("../escape")
    assert info.value.code == "invalid_notebook_id"


def test_a_second_connection_sees_only_committed_batches(tmp_path):
    store = SQLiteEventStore(tmp_path)
    log = store.log("nb")
    log.append([make_event("notebookCreated", title="T")], HUMAN)
    seen = []
    other = sqlite3.connect(log.path)

    def listener(envelopes, encoded):
        seen.append(other.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    log.subscribe(listener)
    log.append([cell("c1"), cell("c2", "a1"), cell("c3", "a2")], HUMAN)
    assert seen == [4]  # listeners run after the commit, when the whole batch is visible
    other.close()
    store.close()
