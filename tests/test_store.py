"""SQLite specifics of the event store (the contract every backend meets, crash safety included, is in
test_store_contract.py): time travel across restarts, paths with URI characters, the catalog, readers."""

from __future__ import annotations

import sqlite3

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


def test_a_new_notebook_database_is_a_copy_of_the_blank_one_and_the_same_as_one_made_from_scratch(tmp_path):
    """``SQLiteEventStore._seed``: same tables, indexes, projection version and WAL mode as creating them in place."""
    from runtimed.schema.tables import create_tables, record_projection_version

    store = SQLiteEventStore(tmp_path / "store")
    try:
        store.log("seeded").append([make_event("notebookCreated", title="T")], HUMAN)
        scratch = sqlite3.connect(tmp_path / "scratch.db")
        create_tables(scratch)
        scratch.execute("CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        record_projection_version(scratch)
        seeded = sqlite3.connect(tmp_path / "store" / "notebooks" / "seeded.db")

        def schema(conn):
            return sorted(conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))

        assert schema(seeded) == schema(scratch)
        assert seeded.execute("SELECT key, value FROM projection_meta").fetchall() == \
            scratch.execute("SELECT key, value FROM projection_meta").fetchall()
        assert seeded.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert [p.name for p in (tmp_path / "store").glob("blank-*.db")] != []
        assert not list((tmp_path / "store" / "notebooks").glob(".*.tmp"))
        # a seed never replaces a database that is already there
        store._seed(tmp_path / "store" / "notebooks" / "seeded.db")
        assert seeded.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        assert [n["id"] for n in store.list_notebooks()] == ["seeded"]
    finally:
        store.close()


def test_listing_notebooks_keeps_none_of_them_open(tmp_path):
    """Each open log holds three files: a listing (``runt notebooks``, the daemon's status) must not open every
    notebook for good, and a closed log opens again on its next use."""
    import os

    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    store = SQLiteEventStore(tmp_path / "home")
    for i in range(20):
        store.log(f"nb-{i}").append([make_event("notebookCreated", title=f"N{i}")], HUMAN)
    store.close()
    store = SQLiteEventStore(tmp_path / "home")
    try:
        before = open_files()
        assert len(store.list_notebooks()) == 20 and store.exists("nb-3") and not store.exists("nb-99")
        assert open_files() == before
        assert store.log("nb-3").head == 1 and open_files() > before
        store.close_log("nb-3")
        assert open_files() == before
        assert store.log("nb-3").info()["title"] == "N3"  # opened again
    finally:
        store.close()
