"""The PostgreSQL store beyond the contract suite: configuration errors at start, stores of several
processes following one log (LISTEN/NOTIFY with a polling safety net), schema versions, and a daemon
whose notebooks outlive its home."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from conftest import DaemonProcess
from pg import PgCluster, _free_port, database_url

from runtimed.errors import RuntimedError
from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.schema.materializer import Envelope
from runtimed.store.postgres import PostgresEventStore

HUMAN = {"id": "alice", "kind": "human", "name": "Alice"}
DEADLINE = 30.0


def start_daemon(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtimed.server.main", "--home", str(home), "--port", "0", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_bad_store_url_is_a_clear_error_at_start(tmp_path):
    done = start_daemon(tmp_path / "home", "--store", "mysql://somewhere/db")
    assert done.returncode == 8, done.stderr
    assert "unknown store URL 'mysql://somewhere/db'" in done.stderr and "postgresql://" in done.stderr


def test_an_unreachable_postgres_is_a_clear_error_at_start(tmp_path):
    url = f"postgresql://runtimed:s3cret@127.0.0.1:{_free_port()}/notebooks"
    done = start_daemon(tmp_path / "home", "--store", url)
    assert done.returncode == 8, done.stderr
    assert "is unavailable" in done.stderr and "127.0.0.1" in done.stderr and "RUNTIMED_STORE_URL" in done.stderr
    assert "s3cret" not in done.stderr  # the password never reaches a message or the log
    assert "s3cret" not in (tmp_path / "home" / "daemon.log").read_text()


@pytest.fixture
def db_url(pg_cluster: PgCluster, tmp_path: Path) -> str:
    return database_url(str(tmp_path), pg_cluster.url())


def wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.postgres
def test_a_store_in_another_process_hears_every_commit_once_in_order(db_url, tmp_path):
    writer = PostgresEventStore(db_url, tmp_path / "a")
    reader = PostgresEventStore(db_url, tmp_path / "b")
    try:
        nb_a = writer.log("nb")
        nb_a.append([make_event("notebookCreated", title="T")], HUMAN)
        nb_b = reader.log("nb")  # opened: a copy of the log so far
        assert nb_b.head == 1
        heard: list[dict[str, Any]] = []
        lock = threading.Lock()

        def listener(envelopes: list[Envelope], encoded: list[bytes]) -> None:
            with lock:
                heard.extend(orjson.loads(b) for b in encoded)
            assert [orjson.loads(b) for b in encoded] == [e.to_wire() for e in envelopes]

        nb_b.subscribe(listener)

        def write(i: int) -> None:
            for j in range(20):
                nb_a.append([make_event("notebookMetadataSet", key=f"w{i}", value=j),
                             make_event("cellDeleted", cellId="nope")], HUMAN)  # rejected: no seq

        threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
        assert nb_a.head == 61
        wait_until(lambda: len(heard) >= 60, "the other store to hear 60 events")
        assert [e["seq"] for e in heard] == list(range(2, 62))
        assert heard == nb_a.read(1)
        assert nb_b.state_at().dump() == nb_a.state_at().dump()
        assert nb_b.view(views.notebook_info)["head_seq"] == 61  # type: ignore[index]
    finally:
        writer.close()
        reader.close()


@pytest.mark.postgres
def test_a_lost_notification_connection_only_delays(db_url, tmp_path):
    """The reader's LISTEN connection is killed by the server: it reconnects, and the log (polled) tells it
    what it missed."""
    writer = PostgresEventStore(db_url, tmp_path / "a")
    reader = PostgresEventStore(db_url, tmp_path / "b", poll_interval=0.2)
    try:
        writer.log("nb").append([make_event("notebookCreated", title="T")], HUMAN)
        nb_b = reader.log("nb")
        heard: list[int] = []
        nb_b.subscribe(lambda envelopes, encoded: heard.extend(e.seq for e in envelopes))
        with psycopg.connect(db_url, autocommit=True) as admin:
            killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                   "datname = current_database() AND query LIKE 'LISTEN%%'").fetchall()
            assert len(killed) == 2  # both stores' listeners
            for i in range(5):
                writer.log("nb").append([make_event("notebookMetadataSet", key="k", value=i)], HUMAN)
        wait_until(lambda: heard == [2, 3, 4, 5, 6], "the reader to catch up")
    finally:
        writer.close()
        reader.close()


@pytest.mark.postgres
def test_one_cache_folder_serves_one_process(db_url, tmp_path):
    store = PostgresEventStore(db_url, tmp_path / "cache")
    try:
        with pytest.raises(RuntimedError) as info:
            PostgresEventStore(db_url, tmp_path / "cache")
        assert "another process uses the PostgreSQL cache folder" in info.value.message
    finally:
        store.close()


@pytest.mark.postgres
def test_a_schema_newer_than_this_runtimed_is_refused(db_url, tmp_path):
    PostgresEventStore(db_url, tmp_path / "a").close()
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("UPDATE runtimed_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RuntimedError) as info:
        PostgresEventStore(db_url, tmp_path / "b")
    assert "schema version 99" in info.value.message and "upgrade runtimed" in info.value.message


@pytest.mark.postgres
def test_notebooks_outlive_the_daemon_and_its_home(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNTIMED_TOKEN", "shared-token-of-the-deployment")
    monkeypatch.delenv("RUNTIMED_URL", raising=False)
    first_home, second_home = tmp_path / "h1", tmp_path / "h2"
    first_home.mkdir()
    second_home.mkdir()
    first = DaemonProcess(first_home, "--store", db_url, "--no-runtimes")
    first.start()
    try:
        assert first.token == "shared-token-of-the-deployment"
        auth = {"Authorization": "Bearer shared-token-of-the-deployment"}
        created = httpx.post(f"{first.url}/api/notebooks", json={"id": "kept", "title": "Kept"},
                             headers=auth, timeout=30)
        assert created.status_code == 201, created.text
        pushed = httpx.post(f"{first.url}/api/notebooks/kept/events", headers=auth, timeout=30, json={
            "events": [make_event("cellCreated", cellId="c1", cellType="code", fractionalIndex="a0", source="x")]})
        assert "seq" in pushed.json()["results"][0], pushed.text
        events = httpx.get(f"{first.url}/api/notebooks/kept/events", headers=auth, timeout=30).json()["events"]
    finally:
        first.stop()
    second = DaemonProcess(second_home, "--store", db_url, "--no-runtimes")
    second.start()
    try:
        listed = httpx.get(f"{second.url}/api/notebooks", headers=auth, timeout=30).json()
        assert [n["id"] for n in listed] == ["kept"]
        again = httpx.get(f"{second.url}/api/notebooks/kept/events", headers=auth, timeout=30).json()["events"]
        assert again == events and [e["name"] for e in again][-1] == "cellCreated"
    finally:
        second.stop()


def runt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtimed.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.postgres
def test_runt_store_copy_moves_whole_logs_verified_by_checksum(db_url, tmp_path):
    from runtimed.cli.store_cmd import checksum
    from runtimed.store.sqlite import SQLiteEventStore

    source_home = tmp_path / "old-home"
    source = SQLiteEventStore(source_home, snapshot_every=4)
    bob = {"id": "bob", "kind": "human", "name": "Bob"}
    for n in range(3):
        nb_log = source.log(f"nb{n}")
        nb_log.append([make_event("notebookCreated", title=f"N{n}")], HUMAN)
        for i in range(5 + n):
            nb_log.append([make_event("cellCreated", cellId=f"c{i}", cellType="code", fractionalIndex=f"a{i}",
                                      source=f"x = {i}")], HUMAN if i % 2 else bob)
    source.close()

    done = runt("store", "copy", "--from", f"sqlite:{source_home}", "--to", db_url, "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["id"]: r for r in orjson.loads(done.stdout)}
    assert {k: (r["status"], r["events"]) for k, r in rows.items()} == {
        "nb0": ("copied", 6), "nb1": ("copied", 7), "nb2": ("copied", 8)}
    source = SQLiteEventStore(source_home)
    dest = PostgresEventStore(db_url, tmp_path / "cache")
    try:
        for n in range(3):
            src, copied = source.log(f"nb{n}"), dest.log(f"nb{n}")
            assert copied.read() == src.read()  # seq, id, actor and time kept
            assert rows[f"nb{n}"]["checksum"] == checksum(src) == checksum(copied)
            assert copied.state_at().dump() == src.state_at().dump()
        assert {i["id"] for i in dest.list_notebooks()} == {"nb0", "nb1", "nb2"}
        source.log("nb1").append([make_event("notebookMetadataSet", key="k", value=1)], bob)
        dest.log("nb2").append([make_event("notebookMetadataSet", key="diverged", value=1)], bob)
    finally:
        source.close()
        dest.close()

    again = runt("store", "copy", "--from", f"sqlite:{source_home}", "--to", db_url, "--json")
    assert again.returncode == 1  # nb2 differs in the destination: refused, and said so
    rows = {r["id"]: r for r in orjson.loads(again.stdout)}
    assert (rows["nb0"]["status"], rows["nb1"]["status"], rows["nb2"]["status"]) == ("up to date", "continued", "refused")
    assert rows["nb1"]["events"] == 1 and "different log" in rows["nb2"]["error"]
    assert "nb2" in again.stderr

    bad = runt("store", "copy", "--from", f"sqlite:{source_home}", "--to", "sqlite:/elsewhere")
    assert bad.returncode == 2 and "--to must be a postgresql:// URL" in bad.stderr
