"""The daemon under malformed input (hypothesis) and under kill -9 (durability of acknowledged events)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import orjson
import pytest
from conftest import DaemonProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from runtimed.client.sync import SyncClient
from runtimed.schema.crdt import SourceDoc, encode_update
from runtimed.schema.events import CATALOG, make_event
from runtimed.schema.ordering import key_between
from runtimed.schema.replica import Replica

ALICE = {"id": "alice", "kind": "human", "name": "Alice"}
FUZZ_NB = "fuzz"
CELLS = ["c1", "c2", "c3", "c4", "c5"]
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- a daemon for the fuzz tests -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    home.mkdir()
    proc = DaemonProcess(home, "--no-runtimes")
    proc.start()
    with http(proc) as api:
        api.post("/api/notebooks", json={"id": FUZZ_NB, "title": "fuzz"}).raise_for_status()
        keys = [key_between(None, None)]
        for _ in CELLS[1:]:
            keys.append(key_between(keys[-1], None))
        events = [make_event("cellCreated", cellId=c, cellType="code", fractionalIndex=k, source=f"# {c}")
                  for c, k in zip(CELLS[:3], keys, strict=False)]
        results = api.post(f"/api/notebooks/{FUZZ_NB}/events", json={"events": events}).json()["results"]
        assert all("seq" in r for r in results), results
    yield proc
    try:
        assert_consistent(proc, FUZZ_NB)
    finally:
        proc.stop()
        with contextlib.suppress(KeyError):
            _clients.pop(proc.url).close()
    assert "Traceback" not in proc.stderr(), proc.stderr()


_clients: dict[str, httpx.Client] = {}


@contextlib.contextmanager
def http(proc: DaemonProcess) -> Iterator[httpx.Client]:
    """A REST client of this daemon, kept open across examples (making one costs tens of ms)."""
    client = _clients.get(proc.url)
    if client is None:
        client = _clients[proc.url] = httpx.Client(base_url=proc.url, timeout=30,
                                                   headers={"Authorization": f"Bearer {proc.token}"})
    yield client


def replayed_and_snapshot(proc: DaemonProcess, notebook_id: str) -> tuple[Replica, Replica, int]:
    """A fresh replay of the notebook's log (GET /events) and the store's projection (GET /snapshot)."""
    with http(proc) as api:
        snapshot = api.get(f"/api/notebooks/{notebook_id}/snapshot")
        snapshot.raise_for_status()
        replay = Replica(notebook_id)
        head = None
        while True:
            body = api.get(f"/api/notebooks/{notebook_id}/events", params={"since": replay.head}).json()
            head = body["head"]
            if not body["events"]:
                break
            replay.apply_wire(body["events"])
    return replay, Replica.from_snapshot(notebook_id, snapshot.content), head


def assert_consistent(proc: DaemonProcess, notebook_id: str) -> None:
    """The store's projection equals a replay of its own log, and the log is gap-free."""
    replay, snap, head = replayed_and_snapshot(proc, notebook_id)
    try:
        assert replay.head == snap.head == head
        assert replay.dump() == snap.dump()
    finally:
        replay.close()
        snap.close()


def assert_alive(proc: DaemonProcess) -> None:
    """/health answers, and a well-behaved client can still push and read its own event back."""
    with http(proc) as api:
        assert api.get("/health").status_code == 200

    async def valid_client() -> None:
        client = SyncClient(proc.url, proc.token, "canary", ALICE)
        try:
            await client.connect(timeout=10)
            if client.replica.head == 0:
                await client.commit([make_event("notebookCreated", title="canary")], timeout=10)
            seqs = await client.commit([make_event("notebookMetadataSet", key="ping", value=client.replica.head)],
                                       timeout=10)
            assert client.replica.head == seqs[0]
        finally:
            await client.close()

    asyncio.run(valid_client())


# -- strategies ------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)
# What a careless client may also write: NaN, Infinity, integers beyond 64 bits (strict JSON parsers refuse them)
dirty_scalars = st.one_of(json_scalars, st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True))
dirty_values = st.recursive(dirty_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)
plain_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)  # sendable as a text frame

ids = st.one_of(
    st.sampled_from(["e1", "e2", "e3", "dup", "c1", "x" * 128]),  # collisions exercise idempotency
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:\-]{0,20}\Z"),
    st.sampled_from(["", "x" * 129, "-dash", "has space", "new\nline", "trailing\n", None, 5, [], {}]),
)
cell_ids = st.one_of(st.sampled_from(CELLS), ids)
order_keys = st.one_of(st.sampled_from(["a0", "a1", "Zz", "a0V", "b00", "a"]), st.text(max_size=8))
yjs_updates = st.one_of(
    st.text(max_size=40).map(lambda s: encode_update(SourceDoc().update_to(s) or b"\x00\x00")),
    st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=20),
)
ARG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "cellId": cell_ids, "cellType": st.sampled_from(["code", "markdown", "raw", "ai", "sql", "bogus"]),
    "fractionalIndex": order_keys, "source": st.text(max_size=50), "update": yjs_updates,
    "key": st.text(max_size=12), "value": json_values, "metadata": json_values, "attachments": json_values,
    "queueId": ids, "sessionId": ids, "batchId": ids, "runtimeId": ids, "outputId": ids, "approvalId": ids,
    "status": st.sampled_from(["success", "error", "cancelled", "idle", "busy", "pending"]),
    "outputType": st.sampled_from(["stream", "display_data", "execute_result", "error"]),
    "name": st.sampled_from(["stdout", "stderr", "x"]), "text": st.text(max_size=30),
    "data": json_values, "title": json_values, "offset": st.integers(-5, 100), "reason": st.text(max_size=10),
    "kernelName": st.text(max_size=10), "executionCount": st.integers(-3, 10), "durationMs": json_scalars,
    "wait": json_scalars, "displayId": st.text(max_size=10), "prompt": st.text(max_size=10),
    "password": json_scalars, "actorId": ids, "kind": st.text(max_size=8), "displayName": st.text(max_size=8),
}


def wire_fields(name: str) -> tuple[list[str], list[str]]:
    """The wire names of an event's required and optional args."""
    required, optional = [], []
    for field_name, info in CATALOG[name].args.model_fields.items():
        (required if info.is_required() else optional).append(info.alias or field_name)
    return required, optional


@st.composite
def well_formed_events(draw: st.DrawFn) -> dict[str, Any]:
    """A catalog event with a fresh id and the right fields: valid or refused by a precondition, mostly."""
    name = draw(st.sampled_from(sorted(CATALOG)))
    required, optional = wire_fields(name)
    fields = required + [f for f in optional if draw(st.booleans())]
    args = {f: draw(ARG_VALUES.get(f, json_values)) for f in fields}
    return {"id": draw(st.from_regex(r"\Aev[A-Za-z0-9]{6,12}\Z")), "name": name, "v": 1, "args": args}


@st.composite
def event_dicts(draw: st.DrawFn) -> Any:
    """Catalog-shaped events with plausible, often wrong, arguments; sometimes anything at all."""
    roll = draw(st.integers(0, 9))
    if roll == 0:
        return draw(json_values)
    if roll <= 5:
        return draw(well_formed_events())
    name = draw(st.one_of(st.sampled_from(sorted(CATALOG)), st.text(max_size=12)))
    fields = draw(st.lists(st.sampled_from(sorted(ARG_VALUES)), max_size=6, unique=True))
    args: Any = {f: draw(ARG_VALUES[f]) for f in fields}
    if draw(st.integers(0, 19)) == 0:
        args = draw(json_values)
    event: dict[str, Any] = {"id": draw(ids), "name": name, "v": draw(st.sampled_from([1, 1, 1, 2, 0, "1", None])),
                             "args": args}
    if draw(st.booleans()):
        event["seq"] = draw(st.integers(-1, 10**6))  # clients do not choose seqs: must be ignored
    if draw(st.integers(0, 9)) == 0:
        event["actor"] = {"id": "mallory", "kind": "system"}  # nor actors
    return event


def as_text(value: Any) -> str:
    """JSON text as a careless client would write it (NaN, Infinity and huge integers included)."""
    return json.dumps(value)


messages = st.one_of(
    plain_text,
    st.binary(max_size=60),
    dirty_values.map(as_text),
    st.sampled_from(['{"type": "push", "events": [', '{"type": "ping"}' * 2, "null", '""', "{}", '{"type": null}',
                     '{"type": "push", "events": [{"id": "e1", "name": "cellDeleted", "v": 1, "args": {"cellId": NaN}}]}',
                     '{"type": "hello", "since": 1e400}', '[' * 2000 + ']' * 2000]),
    st.fixed_dictionaries({"type": st.sampled_from(["push", "presence", "ping", "pong", "hello", "events", "ack"])},
                          optional={"ref": dirty_values,
                                    "events": st.one_of(dirty_values, st.lists(event_dicts(), max_size=5)),
                                    "since": dirty_values, "actor": dirty_values, "cellId": dirty_values,
                                    "cursor": dirty_values, "selection": dirty_values}).map(as_text),
    st.lists(event_dicts(), min_size=1, max_size=8).map(lambda evs: as_text({"type": "push", "ref": 1, "events": evs})),
)


async def exchange(
    proc: DaemonProcess, notebook_id: str, hello: Any, outgoing: list[Any], since: int | None = None
) -> list[dict[str, Any]]:
    """Send a hello (or not) and the messages, then read until the server closes or answers a final ping.

    With ``since``, go on reading until the events of every acknowledged seq above it arrived (the server
    sends control messages such as acks and pongs before events).
    """
    received: list[dict[str, Any]] = []
    url = f"ws{proc.url[4:]}/api/notebooks/{notebook_id}/sync"
    async with connect(url, additional_headers={"Authorization": f"Bearer {proc.token}"}, max_size=None,
                       close_timeout=2) as ws:
        with contextlib.suppress(ConnectionClosed):
            if hello is not None:
                await ws.send(hello)
            for message in outgoing:
                await ws.send(message)
            await ws.send('{"type": "ping"}')
            async with asyncio.timeout(15):
                while True:
                    message = orjson.loads(await ws.recv())
                    received.append(message)
                    if message["type"] == "pong":
                        break
                if since is not None:
                    acked = [r["seq"] for m in received if m["type"] == "ack" for r in m["results"] if "seq" in r]
                    last = max([since, *acked])
                    seen = max([since] + [e["seq"] for m in received if m["type"] == "events" for e in m["events"]])
                    while seen < last:
                        message = orjson.loads(await ws.recv())
                        received.append(message)
                        if message["type"] == "events":
                            seen = message["events"][-1]["seq"]
    return received


def head_of(proc: DaemonProcess, notebook_id: str) -> int:
    with http(proc) as api:
        return api.get(f"/api/notebooks/{notebook_id}/events", params={"since": 10**9}).json()["head"]


# -- fuzz ------------------------------------------------------------------------------------------


@HYPOTHESIS
@given(hello=st.one_of(st.none(), st.just("valid"), messages), outgoing=st.lists(messages, max_size=6))
def test_random_messages_never_crash_or_corrupt(fuzz_daemon: DaemonProcess, hello: Any, outgoing: list[Any]) -> None:
    if hello == "valid":
        since = head_of(fuzz_daemon, FUZZ_NB)
        hello = json.dumps({"type": "hello", "since": since, "actor": ALICE, "client": "fuzz"})
    received = asyncio.run(exchange(fuzz_daemon, FUZZ_NB, hello, outgoing))
    for message in received:
        assert isinstance(message.get("type"), str)
        if message["type"] == "error":
            assert isinstance(message["code"], str) and message["message"]
        if message["type"] == "ack":
            for result in message["results"]:
                assert ("seq" in result) != ("error" in result), result
    with http(fuzz_daemon) as api:
        assert api.get("/health").status_code == 200


@HYPOTHESIS
@given(batches=st.lists(st.lists(event_dicts(), min_size=1, max_size=10), min_size=1, max_size=3))
def test_random_events_are_acked_one_by_one_and_keep_the_log_consistent(
    fuzz_daemon: DaemonProcess, batches: list[list[Any]]
) -> None:
    before = head_of(fuzz_daemon, FUZZ_NB)
    hello = json.dumps({"type": "hello", "since": before, "actor": ALICE})
    outgoing = [json.dumps({"type": "push", "ref": i, "events": batch}) for i, batch in enumerate(batches)]
    received = asyncio.run(exchange(fuzz_daemon, FUZZ_NB, hello, outgoing, since=before))
    errors = [m for m in received if m["type"] == "error"]
    acks = [m for m in received if m["type"] == "ack"]
    assert not errors, errors
    assert [a["ref"] for a in acks] == list(range(len(batches)))
    seqs = []
    for ack, batch in zip(acks, batches, strict=True):
        assert len(ack["results"]) == len(batch)
        for result, event in zip(ack["results"], batch, strict=True):
            assert ("seq" in result) != ("error" in result), result
            if "error" in result:
                assert result["error"]["code"] and result["error"]["message"]
            elif isinstance(event, dict) and result["seq"] > before:
                seqs.append(result["seq"])
    new = sorted(set(seqs))
    assert new == list(range(before + 1, before + 1 + len(new)))  # gap-free, nothing else appended
    assert head_of(fuzz_daemon, FUZZ_NB) == before + len(new)
    live = [e for m in received if m["type"] == "events" for e in m["events"]]
    assert [e["seq"] for e in live] == new
    assert all(e["actor"] == ALICE for e in live)  # the connection's actor, whatever the event claimed
    if random.random() < 0.2:
        assert_consistent(fuzz_daemon, FUZZ_NB)


def test_after_fuzzing_the_daemon_is_alive_and_consistent(fuzz_daemon: DaemonProcess) -> None:
    assert_alive(fuzz_daemon)
    assert_consistent(fuzz_daemon, FUZZ_NB)
    assert_consistent(fuzz_daemon, "canary")


@pytest.mark.parametrize("path", ["/api/notebooks/%00/sync", "/api/notebooks/..%2f..%2fetc/sync",
                                  "/api/notebooks/" + "a" * 5000 + "/sync", "/api/notebooks/fuzz/sync?token=%ff"])
def test_hostile_paths_are_refused(fuzz_daemon: DaemonProcess, path: str) -> None:
    async def run() -> tuple[int | None, list[str]]:
        url = f"ws{fuzz_daemon.url[4:]}{path}"
        types = []
        async with connect(url, additional_headers={"Authorization": f"Bearer {fuzz_daemon.token}"},
                           close_timeout=2) as ws:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "hello", "since": 0, "actor": ALICE}))
                await ws.send('{"type": "ping"}')
                async with asyncio.timeout(10):
                    while types[-1:] != ["pong"]:
                        types.append(orjson.loads(await ws.recv())["type"])
            return ws.close_code, types

    try:
        code, types = asyncio.run(run())
        assert code == 4400 or (code is None and "welcome" in types and "fuzz" in path), (code, types)
    except InvalidStatus as exc:  # refused before the upgrade is fine too
        assert exc.response.status_code < 500
    assert_alive(fuzz_daemon)
    assert not list((fuzz_daemon.home.path / "notebooks").glob("*/**"))  # no file outside the notebooks folder


# -- durability under kill -9 ----------------------------------------------------------------------


async def writer_loop(client: SyncClient, name: str, stop: asyncio.Event, acked: dict[str, int]) -> None:
    """Push small batches (a cell, then metadata on it) until told to stop; record every acknowledged id."""
    rng = random.Random(name)
    n = 0
    cell_key = None
    while not stop.is_set():
        batch = []
        for _ in range(rng.randint(1, 20)):
            n += 1
            if n % 25 == 1:
                cell_key = key_between(cell_key, None)
                cell_id = f"{name}-cell{n}"
                batch.append(make_event("cellCreated", cellId=cell_id, cellType="code", fractionalIndex=cell_key))
            else:
                batch.append(make_event("cellMetadataSet", cellId=cell_id, key=f"k{n % 7}", value=n))
        results = await client.push(batch, timeout=90)
        for result in results:
            assert "seq" in result, result
            acked[result["id"]] = result["seq"]
        await asyncio.sleep(rng.random() * 0.01)


@pytest.mark.anyio
async def test_acknowledged_events_survive_kill_9(home: Path) -> None:
    first = DaemonProcess(home, "--no-runtimes")
    first.start()
    port = urlparse(first.url).port
    procs = [first]
    clients = [SyncClient(first.url, first.token, "durable", {"id": f"w{i}", "kind": "human", "name": f"W{i}"})
               for i in range(4)]
    acked: dict[str, int] = {}
    stop = asyncio.Event()
    try:
        for client in clients:
            await client.connect()
        await clients[0].commit([make_event("notebookCreated", title="durable")])
        loops = [asyncio.create_task(writer_loop(c, f"w{i}", stop, acked)) for i, c in enumerate(clients)]
        for _ in range(2):  # two crashes, each in the middle of the writers' pushes
            await asyncio.sleep(1.0)
            count = len(acked)
            procs[-1].kill9()
            await asyncio.sleep(0.3)
            assert not any(loop.done() for loop in loops), [loop.exception() for loop in loops if loop.done()]
            proc = DaemonProcess(home, "--no-runtimes", "--port", str(port))
            procs.append(proc)
            await asyncio.to_thread(proc.start)
            deadline = asyncio.get_running_loop().time() + 30
            while len(acked) < count + 50:  # the writers are back and acknowledged again
                assert asyncio.get_running_loop().time() < deadline, "writers did not resume"
                await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops), 60)
        daemon = procs[-1]

        events = []
        async with httpx.AsyncClient(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"}) as api:
            while True:
                body = (await api.get("/api/notebooks/durable/events", params={"since": len(events)})).json()
                if not body["events"]:
                    break
                events.extend(body["events"])
            snapshot = (await api.get("/api/notebooks/durable/snapshot")).content
        ids = [e["id"] for e in events]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert len(ids) == len(set(ids)), "an event was stored twice"
        by_id = {e["id"]: e["seq"] for e in events}
        missing = [i for i in acked if i not in by_id]
        assert not missing, f"{len(missing)} acknowledged events were lost"
        assert all(by_id[i] == seq for i, seq in acked.items()), "an acknowledged event changed its seq"
        assert len(acked) > 300

        head = len(events)
        for client in clients:
            await client.wait_for(lambda c=client: c.replica.head == head, 30)
        dumps = [client.replica.dump() for client in clients]
        assert all(d == dumps[0] for d in dumps[1:])
        server = Replica.from_snapshot("durable", snapshot)
        replay = Replica("durable")
        replay.apply_wire(events)
        assert server.dump() == replay.dump() == dumps[0]
    finally:
        stop.set()
        for client in clients:
            await client.close()
        for proc in procs:
            proc.stop()
