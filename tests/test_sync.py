"""The sync protocol (DESIGN 4) against a real daemon: SyncClient and raw WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import orjson
import pytest
from conftest import DaemonProcess, running_daemon
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from runtimed.client.sync import SyncClient
from runtimed.schema.events import make_event
from runtimed.schema.ordering import key_between
from runtimed.schema.replica import Replica
from runtimed.server.service import BATCH_EVENTS
from runtimed.server.sync import SNAPSHOT_THRESHOLD

pytestmark = pytest.mark.anyio

ALICE = {"id": "alice", "kind": "human", "name": "Alice"}
BOB = {"id": "bob", "kind": "human", "name": "Bob"}


# -- helpers ---------------------------------------------------------------------------------------


def created(title: str = "T") -> dict[str, Any]:
    return make_event("notebookCreated", title=title)


def new_cell(cell_id: str = "c1", after: str | None = None) -> dict[str, Any]:
    return make_event("cellCreated", cellId=cell_id, cellType="code", fractionalIndex=key_between(after, None),
                      source="x = 1")


def meta(cell_id: str, value: Any, key: str = "k") -> dict[str, Any]:
    return make_event("cellMetadataSet", cellId=cell_id, key=key, value=value)


def sync_url(daemon: DaemonProcess, notebook_id: str) -> str:
    return f"ws{daemon.url[4:]}/api/notebooks/{notebook_id}/sync"


def headers(daemon: DaemonProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {daemon.token}"}


@contextlib.asynccontextmanager
async def raw_ws(daemon: DaemonProcess, notebook_id: str, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    """A plain WebSocket on the sync endpoint, authorized, no protocol handling."""
    async with connect(sync_url(daemon, notebook_id), additional_headers=headers(daemon), max_size=None,
                       open_timeout=10, close_timeout=2, **kwargs) as ws:
        yield ws


def small_buffer_socket(daemon: DaemonProcess) -> socket.socket:
    """A connected socket with a small, fixed receive buffer (no autotuning to tens of MB)."""
    url = urlparse(daemon.url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect((url.hostname, url.port))
    sock.setblocking(False)
    return sock


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def expect(ws: ClientConnection, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next message of type ``kind``, skipping others."""
    async def find() -> dict[str, Any]:
        while True:
            message = orjson.loads(await ws.recv())
            if message["type"] == kind:
                return message

    return await asyncio.wait_for(find(), timeout)


async def hello(ws: ClientConnection, since: int = 0, actor: dict[str, Any] = ALICE, **extra: Any) -> dict[str, Any]:
    await send(ws, {"type": "hello", "since": since, "actor": actor, "client": "test", **extra})
    welcome = await recv(ws)
    assert welcome["type"] == "welcome", welcome
    return welcome


async def read_until_closed(ws: ClientConnection, timeout: float = 15.0) -> tuple[int | None, list[dict[str, Any]]]:
    """Read every message until the server closes; return the close code and what was received."""
    messages: list[dict[str, Any]] = []

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                messages.append(orjson.loads(await ws.recv()))

    await asyncio.wait_for(drain(), timeout)
    return ws.close_code, messages


async def read_events(ws: ClientConnection, until_seq: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Events from ``events`` messages until seq ``until_seq`` arrived."""
    got: list[dict[str, Any]] = []

    async def collect() -> None:
        while not got or got[-1]["seq"] < until_seq:
            message = orjson.loads(await ws.recv())
            if message["type"] == "events":
                got.extend(message["events"])

    await asyncio.wait_for(collect(), timeout)
    return got


def client(daemon: DaemonProcess, notebook_id: str, actor: dict[str, Any] = ALICE) -> SyncClient:
    return SyncClient(daemon.url, daemon.token, notebook_id, actor)


@contextlib.asynccontextmanager
async def clients(daemon: DaemonProcess, notebook_id: str, n: int = 1) -> AsyncIterator[list[SyncClient]]:
    made = [client(daemon, notebook_id, {"id": f"user{i}", "kind": "human", "name": f"U{i}"}) for i in range(n)]
    try:
        for c in made:
            await c.connect()
        yield made
    finally:
        for c in made:
            await c.close()


async def server_events(daemon: DaemonProcess, notebook_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=daemon.url, headers=headers(daemon), timeout=30) as http:
        while True:
            r = await http.get(f"/api/notebooks/{notebook_id}/events", params={"since": len(out)})
            r.raise_for_status()
            batch = r.json()["events"]
            if not batch:
                return out
            out.extend(batch)


async def server_state(daemon: DaemonProcess, notebook_id: str) -> dict[str, list[tuple]]:
    async with httpx.AsyncClient(base_url=daemon.url, headers=headers(daemon), timeout=30) as http:
        r = await http.get(f"/api/notebooks/{notebook_id}/snapshot")
        r.raise_for_status()
    replica = Replica.from_snapshot(notebook_id, r.content)
    try:
        return replica.dump()
    finally:
        replica.close()


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon without runtimes for the tests that neither restart it nor count its connections."""
    home = tmp_path_factory.mktemp("shared") / "home"
    home.mkdir()
    with running_daemon(home, "--no-runtimes") as proc:
        yield proc


@pytest.fixture
def nb(request: pytest.FixtureRequest) -> str:
    """A notebook id of this test's own."""
    return "nb-" + re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:100]


@pytest.fixture
def spawn(home: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start extra daemons for this test's home (stopped at the end)."""
    started: list[DaemonProcess] = []

    def start(*args: str) -> DaemonProcess:
        proc = DaemonProcess(home, "--no-runtimes", *args)
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.stop()


def restart(daemon: DaemonProcess, spawn: Callable[..., DaemonProcess], *, kill: bool = False) -> DaemonProcess:
    """Stop (or kill -9) a daemon and start a new one for the same home on the same port."""
    port = urlparse(daemon.url).port
    if kill:
        daemon.kill9()
    else:
        daemon.stop()
    return spawn("--port", str(port))


async def seed(c: SyncClient, n_meta: int, cell_id: str = "c1", batch: int = 500) -> None:
    """notebookCreated, one cell, then ``n_meta`` metadata events, pushed in batches."""
    await c.commit([created(), new_cell(cell_id)])
    for start in range(0, n_meta, batch):
        await c.commit([meta(cell_id, i) for i in range(start, min(n_meta, start + batch))])


# -- hello, welcome, catch-up ----------------------------------------------------------------------


async def test_catch_up_in_batches_gives_identical_replicas(shared_daemon: DaemonProcess, nb: str) -> None:
    async with clients(shared_daemon, nb) as (writer,):
        await seed(writer, 1500)
        head = writer.replica.head
        assert head == 1502

        async with raw_ws(shared_daemon, nb) as ws:
            welcome = await hello(ws)
            assert welcome["head"] == head and welcome["connectionId"]
            sizes, seqs = [], []
            while not seqs or seqs[-1] < head:
                message = await expect(ws, "events")
                assert message["head"] == head
                sizes.append(len(message["events"]))
                seqs.extend(e["seq"] for e in message["events"])
            assert sizes[0] == BATCH_EVENTS and len(sizes) == 2
            assert seqs == list(range(1, head + 1))  # gap-free, in order, no duplicates

        async with clients(shared_daemon, nb) as (reader,):
            assert reader.replica.head == head
            assert reader.replica.dump() == writer.replica.dump()
        assert writer.replica.dump() == await server_state(shared_daemon, nb)


async def test_hello_since_resumes_after_that_seq(shared_daemon: DaemonProcess, nb: str) -> None:
    async with clients(shared_daemon, nb) as (writer,):
        await seed(writer, 20)
        async with raw_ws(shared_daemon, nb) as ws:
            assert (await hello(ws, since=10))["head"] == 22
            events = await read_events(ws, 22)
            assert [e["seq"] for e in events] == list(range(11, 23))
        async with raw_ws(shared_daemon, nb) as ws:  # since == head: nothing to catch up
            await hello(ws, since=22)
            await send(ws, {"type": "ping"})
            assert (await recv(ws))["type"] == "pong"


async def test_hello_for_unknown_notebook_is_welcomed_at_head_zero(shared_daemon: DaemonProcess, nb: str) -> None:
    async with raw_ws(shared_daemon, "brand-new") as ws:
        assert (await hello(ws))["head"] == 0
        event = created("fresh")
        await send(ws, {"type": "push", "ref": "r1", "events": [event]})
        ack = await expect(ws, "ack")
        assert ack == {"type": "ack", "ref": "r1", "results": [{"id": event["id"], "seq": 1}]}
        [stored] = await read_events(ws, 1)
        assert stored["name"] == "notebookCreated" and stored["actor"] == ALICE and stored["ts"].endswith("Z")


# -- live fan-out, push/ack, idempotency -----------------------------------------------------------


async def test_live_fan_out_to_several_clients(shared_daemon: DaemonProcess, nb: str) -> None:
    async with clients(shared_daemon, nb, 5) as (writer, *readers):
        await writer.commit([created(), new_cell("c1")])
        async with raw_ws(shared_daemon, nb) as ws:
            await hello(ws, since=2)
            for i in range(20):
                await writer.push([meta("c1", i)])
            # push() returns on the ack, which may come before the writer's own replica has the event
            await writer.wait_for(lambda: writer.replica.head >= 22, 10)
            for r in readers:
                await r.wait_for(lambda r=r: r.replica.head >= 22, 10)
                assert r.replica.dump() == writer.replica.dump()
            live = await read_events(ws, 22)
            assert [e["seq"] for e in live] == list(range(3, 23))
            assert all(e["actor"]["id"] == "user0" for e in live)


async def test_push_acks_each_event_ok_or_rejected(shared_daemon: DaemonProcess, nb: str) -> None:
    async with raw_ws(shared_daemon, nb) as ws:
        await hello(ws)
        good1, good2 = created(), new_cell("c1")
        bad = meta("no-such-cell", 1)
        unknown = {"id": "e-unknown", "name": "noSuchEvent", "v": 1, "args": {}}
        await send(ws, {"type": "push", "ref": 7, "events": [good1, bad, good2, unknown]})
        ack = await expect(ws, "ack")
        assert ack["ref"] == 7
        r1, r2, r3, r4 = ack["results"]
        assert r1 == {"id": good1["id"], "seq": 1}
        assert r2["id"] == bad["id"] and r2["error"]["code"] == "cell_not_found" and r2["error"]["message"]
        assert r3 == {"id": good2["id"], "seq": 2}  # a rejection does not use up a seq
        assert r4["id"] == "e-unknown" and r4["error"]["code"] == "unknown_event"
        assert "seq" not in r2 and "seq" not in r4
    stored = await server_events(shared_daemon, nb)
    assert [e["id"] for e in stored] == [good1["id"], good2["id"]]


async def test_repush_same_id_returns_same_seq_without_duplicate(shared_daemon: DaemonProcess, nb: str) -> None:
    first, second = created(), new_cell("c1")
    async with raw_ws(shared_daemon, nb) as ws:
        await hello(ws)
        await send(ws, {"type": "push", "ref": 1, "events": [first, second]})
        assert [r["seq"] for r in (await expect(ws, "ack"))["results"]] == [1, 2]
        # again, in the same and a different batch shape, even with other args under the same id
        await send(ws, {"type": "push", "ref": 2, "events": [second, first, second]})
        assert [r["seq"] for r in (await expect(ws, "ack"))["results"]] == [2, 1, 2]
    async with raw_ws(shared_daemon, nb) as ws:  # and from another connection
        await hello(ws, actor=BOB)
        altered = {**second, "args": {**second["args"], "source": "other"}}
        await send(ws, {"type": "push", "ref": 3, "events": [altered]})
        assert (await expect(ws, "ack"))["results"] == [{"id": second["id"], "seq": 2}]
    stored = await server_events(shared_daemon, nb)
    assert [e["id"] for e in stored] == [first["id"], second["id"]]
    assert stored[1]["args"]["source"] == "x = 1"


async def test_sync_client_push_results_and_commit(shared_daemon: DaemonProcess, nb: str) -> None:
    async with clients(shared_daemon, nb) as (c,):
        seqs = await c.commit([created(), new_cell("c1")])
        assert seqs == [1, 2] and c.replica.head == 2
        results = await c.push([meta("c1", 1), meta("nope", 2)])
        assert results[0]["seq"] == 3 and results[1]["error"]["code"] == "cell_not_found"
        rows = c.replica.query("SELECT source FROM cells WHERE id = 'c1'")
        assert rows == [{"source": "x = 1"}]


# -- presence and liveness -------------------------------------------------------------------------


async def test_presence_relayed_to_others_and_left_on_disconnect(shared_daemon: DaemonProcess, nb: str) -> None:
    async with raw_ws(shared_daemon, nb) as b, raw_ws(shared_daemon, nb) as c:
        await hello(b, actor=BOB)
        await hello(c, actor={"id": "carol", "kind": "agent", "name": "Carol"})
        async with raw_ws(shared_daemon, nb) as a:
            a_id = (await hello(a))["connectionId"]
            await send(a, {"type": "presence", "cellId": "c1", "cursor": {"line": 1, "ch": 2}, "junk": "dropped"})
            for other in (b, c):
                p = await expect(other, "presence")
                assert p["connectionId"] == a_id and p["actor"] == ALICE
                assert p["cellId"] == "c1" and p["cursor"] == {"line": 1, "ch": 2} and "junk" not in p
            # a later joiner is told the current presence of the others
            async with raw_ws(shared_daemon, nb) as d:
                await hello(d, actor={"id": "dave", "kind": "human", "name": "Dave"})
                p = await expect(d, "presence")
                assert p["connectionId"] == a_id and p["cellId"] == "c1"
            async with httpx.AsyncClient(base_url=shared_daemon.url, headers=headers(shared_daemon)) as http:
                await http.post("/api/notebooks", json={"id": nb, "title": "T"})
                peers = (await http.get(f"/api/notebooks/{nb}/peers")).json()
            assert {p["actor"]["id"] for p in peers} == {"alice", "bob", "carol"}
            assert next(p for p in peers if p["connectionId"] == a_id)["cellId"] == "c1"
            # the sender does not get its own presence back
            await send(a, {"type": "ping"})
            before_pong = []
            while (m := await recv(a))["type"] != "pong":
                before_pong.append(m["type"])
            assert "presence" not in before_pong
        for other in (b, c):
            left = await expect(other, "presence")
            assert left["connectionId"] == a_id and left["left"] is True and left["actor"] == ALICE


async def test_sync_client_tracks_peers(shared_daemon: DaemonProcess, nb: str) -> None:
    async with clients(shared_daemon, nb, 2) as (a, b):
        seen: list[dict[str, Any]] = []
        b.on_presence(seen.append)
        await a.send_presence(cellId="c9")
        await b.wait_for(lambda: a.connection_id in b.peers, 10)
        assert b.peers[a.connection_id]["cellId"] == "c9"
        await a.close()
        await b.wait_for(lambda: any(m.get("left") for m in seen), 10)
        assert a.connection_id not in b.peers


async def test_ping_pong(shared_daemon: DaemonProcess, nb: str) -> None:
    async with raw_ws(shared_daemon, nb) as ws:
        await hello(ws)
        for _ in range(3):
            await send(ws, {"type": "ping"})
            assert await recv(ws) == {"type": "pong"}
        await send(ws, {"type": "pong"})  # an unsolicited pong is ignored
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}


# -- errors and close codes ------------------------------------------------------------------------

PROTOCOL_ERRORS = {
    "no hello first": (None, {"type": "ping"}, "hello_required"),
    "push before hello": (None, {"type": "push", "events": []}, "hello_required"),
    "bad JSON": (True, "{not json", "bad_message"),
    "bad JSON before hello": (None, "][", "bad_message"),
    "not an object": (True, "[1, 2]", "bad_message"),
    "type not a string": (True, {"type": 5}, "bad_message"),
    "unknown type": (True, {"type": "subscribe"}, "unknown_type"),
    "duplicate hello": (True, {"type": "hello", "since": 0, "actor": ALICE}, "duplicate_hello"),
    "push events not a list": (True, {"type": "push", "events": {"a": 1}}, "bad_push"),
    "negative since": (None, {"type": "hello", "since": -1, "actor": ALICE}, "bad_hello"),
    "since not an int": (None, {"type": "hello", "since": "3", "actor": ALICE}, "bad_hello"),
    "bad actor": (None, {"type": "hello", "since": 0, "actor": {"id": "x", "kind": "robot"}}, "bad_hello"),
    "no actor": (None, {"type": "hello", "since": 0}, "bad_hello"),
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
async def test_protocol_errors_close_with_4400(shared_daemon: DaemonProcess, nb: str, case: str) -> None:
    after_hello, message, code = PROTOCOL_ERRORS[case]
    async with raw_ws(shared_daemon, nb) as ws:
        if after_hello:
            await hello(ws)
        await ws.send(message if isinstance(message, str) else orjson.dumps(message).decode())
        close_code, received = await read_until_closed(ws)
    assert close_code == 4400
    errors = [m for m in received if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == code and errors[0]["message"]


@pytest.mark.parametrize("notebook_id", ["-starts-with-dash", "a" * 129, "has space", "semi;colon"])
async def test_invalid_notebook_id_closes_with_4400(shared_daemon: DaemonProcess, nb: str, notebook_id: str) -> None:
    async with raw_ws(shared_daemon, notebook_id.replace(" ", "%20")) as ws:
        close_code, received = await read_until_closed(ws)
    assert close_code == 4400
    assert received[0]["type"] == "error" and received[0]["code"] == "invalid_notebook_id"


async def test_since_ahead_of_head_closes_with_4409(shared_daemon: DaemonProcess, nb: str) -> None:
    async with clients(shared_daemon, nb) as (c,):
        await c.commit([created()])
    async with raw_ws(shared_daemon, nb) as ws:
        await send(ws, {"type": "hello", "since": 5, "actor": ALICE})
        close_code, received = await read_until_closed(ws)
    assert close_code == 4409
    assert received == [{"type": "error", "code": "since_ahead", "message": received[0]["message"]}]
    assert "head is 1" in received[0]["message"]


async def test_oversized_message_closes_with_4413(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIMED_LIMIT_MAX_MESSAGE_BYTES", str(64 * 1024))
    proc = DaemonProcess(home, "--no-runtimes")
    proc.start()
    try:
        async with raw_ws(proc, "nb1") as ws:
            await hello(ws)
            await send(ws, {"type": "push", "events": [meta("c1", "x" * 100_000)]})
            close_code, received = await read_until_closed(ws)
        assert close_code == 4413
        assert received[-1]["type"] == "error" and received[-1]["code"] == "message_too_large"
        assert "65536" in received[-1]["message"]
        async with raw_ws(proc, "nb1") as ws:  # the server is fine, and a message under the limit passes
            await hello(ws)
            await send(ws, {"type": "push", "ref": 1, "events": [created("x" * 900)]})
            assert (await expect(ws, "ack"))["results"][0]["seq"] == 1
    finally:
        proc.stop()


async def test_sync_client_treats_4413_as_fatal(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIMED_LIMIT_MAX_MESSAGE_BYTES", str(64 * 1024))
    proc = DaemonProcess(home, "--no-runtimes")
    proc.start()
    c = client(proc, "nb1")
    try:
        await c.connect()
        await c.commit([created()])
        with pytest.raises(Exception, match="too large"):
            await c.push([meta("c1", "y" * 200_000)], timeout=10)
        assert not c.is_connected
    finally:
        await c.close()
        proc.stop()


# -- reconnect, resume, snapshot, slow consumers ---------------------------------------------------


async def test_reconnect_and_resume_after_daemon_restart(bare_daemon: DaemonProcess, spawn: Callable[..., DaemonProcess]) -> None:
    async with clients(bare_daemon, "nb1", 2) as (a, b):
        await seed(a, 10)
        await b.wait_for(lambda: b.replica.head == 12, 10)
        new = restart(bare_daemon, spawn)
        assert new.url == bare_daemon.url
        # pushed while the daemon was away or coming back: kept, re-pushed after the reconnect
        pending = [meta("c1", f"offline-{i}", key=f"k{i}") for i in range(5)]
        results = await a.push(pending, timeout=30)
        assert [r["seq"] for r in results] == list(range(13, 18))
        await b.push([meta("c1", "from-b", key="b")], timeout=30)
        await a.wait_for(lambda: a.replica.head == 18, 15)
        await b.wait_for(lambda: b.replica.head == 18, 15)
        assert a.is_connected and b.is_connected
        assert a.replica.dump() == b.replica.dump() == await server_state(new, "nb1")
    assert len({e["id"] for e in await server_events(new, "nb1")}) == 18


async def test_unacknowledged_events_are_repushed_after_reconnect(
    bare_daemon: DaemonProcess, spawn: Callable[..., DaemonProcess]
) -> None:
    async with clients(bare_daemon, "nb1") as (a,):
        await seed(a, 3)
        port = urlparse(bare_daemon.url).port
        bare_daemon.stop()
        task = asyncio.create_task(a.push([meta("c1", i, key=f"late{i}") for i in range(3)], timeout=30))
        await asyncio.sleep(0.5)
        assert not task.done() and not a.is_connected
        new = spawn("--port", str(port))
        results = await task
        assert [r["seq"] for r in results] == [6, 7, 8]
        await a.wait_for(lambda: a.replica.head == 8, 10)
        assert a.replica.dump() == await server_state(new, "nb1")


async def test_many_unacknowledged_events_are_repushed_in_batches(
    bare_daemon: DaemonProcess, spawn: Callable[..., DaemonProcess]
) -> None:
    """More unacknowledged events than one push may hold (5000) all land, in order, after a reconnect."""
    async with clients(bare_daemon, "nb1") as (a,):
        await seed(a, 0)
        port = urlparse(bare_daemon.url).port
        bare_daemon.stop()
        batches = [[meta("c1", f"{b}-{i}", key=f"k{i % 50}") for i in range(1000)] for b in range(7)]
        tasks = [asyncio.create_task(a.push(batch, timeout=60)) for batch in batches]
        await asyncio.sleep(0.3)
        new = spawn("--port", str(port))
        results = [r for t in tasks for r in await t]
        assert all("seq" in r for r in results), [r for r in results if "error" in r][:3]
        assert [r["seq"] for r in results] == list(range(3, 7003))
        await a.wait_for(lambda: a.replica.head == 7002, 30)
        assert a.replica.dump() == await server_state(new, "nb1")


async def test_replica_ahead_of_server_resyncs_from_scratch(
    bare_daemon: DaemonProcess, spawn: Callable[..., DaemonProcess]
) -> None:
    async with clients(bare_daemon, "nb1") as (a,):
        await seed(a, 5)
        port = urlparse(bare_daemon.url).port
        bare_daemon.stop()
        for suffix in ("", "-wal", "-shm"):  # the notebook is lost and made again, shorter
            Path(f"{bare_daemon.home.path}/notebooks/nb1.db{suffix}").unlink(missing_ok=True)
        new = spawn("--port", str(port))
        async with clients(new, "nb1") as (other,):
            await other.commit([created("again")])
        await a.wait_for(lambda: a.replica.head == 1 and a.is_connected, 15)
        assert a.replica.dump() == await server_state(new, "nb1")


async def test_snapshot_for_a_long_log(shared_daemon: DaemonProcess, nb: str) -> None:
    n = SNAPSHOT_THRESHOLD + 100
    async with clients(shared_daemon, nb) as (writer,):
        await seed(writer, n)
        head = writer.replica.head
        async with raw_ws(shared_daemon, nb) as ws:
            assert (await hello(ws, snapshot=True))["head"] == head
            snap = await recv(ws)
            assert snap["type"] == "snapshot" and snap["seq"] == head
            replica = Replica.from_snapshot(nb, base64.b64decode(snap["data"]))
            assert replica.head == head
            assert replica.dump() == writer.replica.dump() == await server_state(shared_daemon, nb)
            # then live events continue after the snapshot's seq, and nothing before it is resent
            await writer.commit([meta("c1", "after")])
            [event] = (await expect(ws, "events"))["events"]
            assert event["seq"] == head + 1
            replica.apply_wire([event])
            assert replica.dump() == writer.replica.dump()
        async with raw_ws(shared_daemon, nb) as ws:  # no snapshot without asking, or when resuming
            await hello(ws, since=10, snapshot=True)
            assert (await recv(ws))["type"] == "events"
        async with clients(shared_daemon, nb) as (reader,):  # the SyncClient asks for one when empty
            assert reader.replica.head == head + 1
            assert reader.replica.dump() == writer.replica.dump()


async def test_short_log_gets_no_snapshot(shared_daemon: DaemonProcess, nb: str) -> None:
    async with clients(shared_daemon, nb) as (writer,):
        await seed(writer, 10)
    async with raw_ws(shared_daemon, nb) as ws:
        await hello(ws, snapshot=True)
        message = await recv(ws)
        assert message["type"] == "events" and len(message["events"]) == 12


async def test_slow_consumer_is_disconnected_with_4408_and_resumes(
    home: Path, spawn: Callable[..., DaemonProcess]
) -> None:
    daemon = spawn("--slow-consumer-timeout", "0.5")
    async with clients(daemon, "nb1") as (writer,):
        await writer.commit([created(), new_cell("c1")])
        async with raw_ws(daemon, "nb1", max_queue=1, sock=small_buffer_socket(daemon), compression=None) as slow:
            await hello(slow, since=2)
            await flood(daemon, "nb1")
            await asyncio.sleep(1.0)  # longer than the timeout, without reading
            close_code, received = await read_until_closed(slow, 30)
        assert close_code == 4408
        assert received[-1]["type"] == "error" and received[-1]["code"] == "slow_consumer"
        assert "0.5 s" in received[-1]["message"]
        seen = [e["seq"] for m in received if m["type"] == "events" for e in m["events"]]
        last = seen[-1] if seen else 2
        assert seen == list(range(3, last + 1)) and last < writer.replica.head
        head = writer.replica.head
        async with raw_ws(daemon, "nb1") as again:  # resume from the last seq it saw
            await hello(again, since=last)
            rest = await read_events(again, head, 30)
        assert [e["seq"] for e in rest] == list(range(last + 1, head + 1))
        assert (await daemon_status(daemon))["connections"] == 1


async def test_consumer_that_never_reads_is_dropped(home: Path, spawn: Callable[..., DaemonProcess]) -> None:
    daemon = spawn("--slow-consumer-timeout", "0.5")
    async with clients(daemon, "nb1", 2) as (writer, reader):
        await writer.commit([created(), new_cell("c1")])
        async with raw_ws(daemon, "nb1", max_queue=1, sock=small_buffer_socket(daemon), compression=None) as stuck:
            await hello(stuck, since=2)
            assert (await daemon_status(daemon))["connections"] == 3
            await flood(daemon, "nb1")
            # the server stops serving it (and holding memory for it) without its cooperation
            deadline = asyncio.get_running_loop().time() + 20
            while (await daemon_status(daemon))["connections"] != 2:
                assert asyncio.get_running_loop().time() < deadline, "the stuck reader was never dropped"
                await asyncio.sleep(0.2)
            # while the well-behaved reader kept up
            await reader.wait_for(lambda: reader.replica.head == writer.replica.head, 30)
            await writer.commit([meta("c1", "still fine")])
            await reader.wait_for(lambda: reader.replica.head == writer.replica.head, 10)


async def flood(daemon: DaemonProcess, notebook_id: str, n: int = 40, size: int = 256 * 1024) -> None:
    """Push ``n`` large events (~10 MB by default: more than the socket buffers hold), each acknowledged.

    Pushed uncompressed and random (incompressible), so that it is quick and really fills the buffers.
    """
    payload = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    async with raw_ws(daemon, notebook_id, compression=None) as ws:
        await hello(ws, actor=BOB)
        for i in range(n):
            await send(ws, {"type": "push", "ref": i, "events": [meta("c1", f"{i}{payload}")]})
            ack = await expect(ws, "ack", 30)
            assert "seq" in ack["results"][0], ack


async def daemon_status(daemon: DaemonProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=daemon.url, headers=headers(daemon)) as http:
        r = await http.get("/api/status")
        r.raise_for_status()
        return r.json()


async def test_large_events_are_caught_up_in_bounded_messages(shared_daemon: DaemonProcess, nb: str) -> None:
    """Catch-up batches are bounded in bytes as well as in events, so a client's message limit holds."""
    big = "x" * (1024 * 1024)
    async with clients(shared_daemon, nb) as (writer,):
        await writer.commit([created(), new_cell("c1")])
        for i in range(12):
            await writer.commit([meta("c1", f"{i}{big}")])
    async with raw_ws(shared_daemon, nb) as ws:
        await hello(ws)
        seqs, sizes = [], []
        while not seqs or seqs[-1] < 14:
            raw = await asyncio.wait_for(ws.recv(), 30)
            message = orjson.loads(raw)
            if message["type"] == "events":
                sizes.append(len(raw))
                seqs.extend(e["seq"] for e in message["events"])
        assert seqs == list(range(1, 15))
        assert max(sizes) < 2.5 * 1024 * 1024, sizes
    reader = SyncClient(shared_daemon.url, shared_daemon.token, nb, BOB, max_message_bytes=4 * 1024 * 1024)
    try:
        await reader.connect(timeout=60)
        assert reader.replica.head == 14
    finally:
        await reader.close()


async def test_snapshot_too_large_for_one_message_falls_back_to_events(
    monkeypatch: pytest.MonkeyPatch, spawn: Callable[..., DaemonProcess]
) -> None:
    monkeypatch.setenv("RUNTIMED_LIMIT_MAX_MESSAGE_BYTES", str(1024 * 1024))
    daemon = spawn()
    n = SNAPSHOT_THRESHOLD + 100
    async with clients(daemon, "nb1") as (writer,):
        await writer.commit([created()])
        key = None
        for start in range(0, n, 400):
            batch = []
            for i in range(start, min(n, start + 400)):
                key = key_between(key, None)
                batch.append(make_event("cellCreated", cellId=f"c{i}", cellType="code", fractionalIndex=key,
                                        source=f"# cell {i}\n" + "y = 1\n" * 60))
            await writer.commit(batch)
        head = writer.replica.head
        async with raw_ws(daemon, "nb1") as ws:
            await hello(ws, snapshot=True)
            seqs = []
            while not seqs or seqs[-1] < head:
                raw = await asyncio.wait_for(ws.recv(), 30)
                message = orjson.loads(raw)
                assert message["type"] == "events", message["type"]  # no snapshot: it would not fit
                assert len(raw) <= 1024 * 1024
                seqs.extend(e["seq"] for e in message["events"])
            assert seqs == list(range(1, head + 1))
        reader = SyncClient(daemon.url, daemon.token, "nb1", BOB, max_message_bytes=1024 * 1024)
        try:
            await reader.connect(timeout=60)
            assert reader.replica.dump() == writer.replica.dump()
        finally:
            await reader.close()
