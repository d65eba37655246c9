"""Many daemons, one notebook: real ``runtimed`` processes with different homes sharing one PostgreSQL
store (``--store postgresql://...``) and one token (``RUNTIMED_TOKEN``), clients on each of them.

Events committed through one daemon reach the clients of the others through LISTEN/NOTIFY and the
shared log; concurrent writers on every daemon converge to byte-identical replicas; execution claims
are exactly-once and the managed runtime of a notebook is started by exactly one daemon (a lease in the
database).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DaemonProcess
from pg import PgCluster, database_url

from runtimed.client.sync import SyncClient
from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.schema.ordering import key_between
from runtimed.schema.replica import Replica

pytestmark = [pytest.mark.postgres, pytest.mark.anyio, pytest.mark.timeout(300)]

DEADLINE = 60.0  # seconds any wait for a condition may take before the test fails


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Deployment:
    """Daemons of one deployment: one PostgreSQL database, one token, a home each."""

    def __init__(self, store_url: str, root: Path) -> None:
        self.store_url = store_url
        self.root = root
        self.daemons: list[DaemonProcess] = []

    def start(self, n: int, *args: str) -> list[DaemonProcess]:
        started = []
        for _ in range(n):
            home = self.root / f"home{len(self.daemons)}"
            home.mkdir()
            proc = DaemonProcess(home, "--store", self.store_url, *args)
            self.daemons.append(proc)
            proc.start()
            started.append(proc)
        return started

    def stop(self) -> None:
        for proc in self.daemons:
            proc.stop()


@pytest.fixture
def deployment(pg_cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    monkeypatch.setenv("RUNTIMED_TOKEN", secrets.token_urlsafe(24))  # the daemons share it, and so do the clients
    monkeypatch.delenv("RUNTIMED_URL", raising=False)
    monkeypatch.delenv("RUNTIMED_STORE_URL", raising=False)
    dep = Deployment(database_url(str(tmp_path), pg_cluster.url()), tmp_path)
    yield dep
    dep.stop()


def client(daemon: DaemonProcess, notebook_id: str, name: str) -> SyncClient:
    return SyncClient(daemon.url, daemon.token, notebook_id, {"id": name, "kind": "human", "name": name})


def meta(cell_id: str, value: Any, key: str = "k") -> dict[str, Any]:
    return make_event("cellMetadataSet", cellId=cell_id, key=key, value=value)


async def caught_up(clients: list[SyncClient], head: int) -> None:
    await asyncio.gather(*(c.wait_for(lambda c=c: c.replica.head >= head or None, timeout=DEADLINE)
                           for c in clients))


def rest_events(daemon: DaemonProcess, notebook_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        reply = httpx.get(f"{daemon.url}/api/notebooks/{notebook_id}/events", params={"since": len(events)},
                          headers={"Authorization": f"Bearer {daemon.token}"}, timeout=30)
        reply.raise_for_status()
        batch = reply.json()["events"]
        if not batch:
            return events
        events.extend(batch)


def rest_snapshot(daemon: DaemonProcess, notebook_id: str) -> Replica:
    """The projection the daemon serves (its local cache of the shared log), as a replica."""
    reply = httpx.get(f"{daemon.url}/api/notebooks/{notebook_id}/snapshot",
                      headers={"Authorization": f"Bearer {daemon.token}"}, timeout=30)
    reply.raise_for_status()
    return Replica.from_snapshot(notebook_id, reply.content)


async def test_clients_on_two_daemons_see_each_others_events_in_order(deployment: Deployment) -> None:
    a, b = deployment.start(2, "--no-runtimes")
    ca, cb = client(a, "nb", "alice"), client(b, "nb", "bob")
    heard: dict[str, list[int]] = {"a": [], "b": []}
    ca.on_events(lambda envs: heard["a"].extend(e.seq for e in envs))
    cb.on_events(lambda envs: heard["b"].extend(e.seq for e in envs))
    await ca.connect()
    await cb.connect()
    try:
        await ca.commit([make_event("notebookCreated", title="Shared"),
                         make_event("cellCreated", cellId="c1", cellType="code", fractionalIndex="a0", source="")])
        await caught_up([cb], 2)
        # ping-pong: each write is made on one daemon only after the other daemon's client saw the previous one
        for i in range(12):
            writer, reader = (ca, cb) if i % 2 == 0 else (cb, ca)
            seq = (await writer.commit([meta("c1", i)]))[0]
            await caught_up([reader], seq)
            cell = reader.replica.view(views.cell, "c1")
            assert cell is not None and cell["metadata"] == {"k": i}
        assert heard["a"] == heard["b"] == list(range(1, 15))
        assert ca.replica.dump() == cb.replica.dump()
    finally:
        await ca.close()
        await cb.close()


async def test_concurrent_pushes_on_three_daemons_converge_byte_identically(deployment: Deployment) -> None:
    daemons = deployment.start(3, "--no-runtimes")
    clients = [client(d, "nb", f"user{i}-{j}") for i, d in enumerate(daemons) for j in range(2)]
    for c in clients:
        await c.connect()
    try:
        await clients[0].commit([make_event("notebookCreated", title="Busy")])
        await caught_up(clients, 1)
        rounds = 15

        async def write(n: int, c: SyncClient) -> list[int]:
            seqs: list[int] = []
            index: str | None = None
            for r in range(rounds):
                index = key_between(index, None)
                cell_id = f"c{n}-{r}"
                seqs += await c.commit([
                    make_event("cellCreated", cellId=cell_id, cellType="code", fractionalIndex=index, source=cell_id),
                    meta(cell_id, r),
                    make_event("notebookMetadataSet", key=f"writer{n}", value=r),
                ])
            return seqs

        written = await asyncio.gather(*(write(n, c) for n, c in enumerate(clients)))
        head = 1 + 3 * rounds * len(clients)
        assert sorted(s for seqs in written for s in seqs) == list(range(2, head + 1))
        for seqs in written:  # each client's batches are whole: three consecutive seqs each
            assert all(seqs[k + 1] == seqs[k] + 1 and seqs[k + 2] == seqs[k] + 2 for k in range(0, len(seqs), 3))
        await caught_up(clients, head)
        replay = Replica("nb")
        replay.apply_wire(rest_events(daemons[2], "nb"))
        assert replay.head == head
        expected = replay.dump()
        assert all(c.replica.dump() == expected for c in clients)
        for d in daemons:  # each daemon's own projection, and its copy of the log
            assert rest_snapshot(d, "nb").dump() == expected
            assert rest_events(d, "nb") == rest_events(daemons[0], "nb")
    finally:
        for c in clients:
            await c.close()


async def test_execution_is_exactly_once_and_one_daemon_runs_the_runtime(deployment: Deployment) -> None:
    daemons = deployment.start(3, "--pool-size", "0")
    clients = [client(d, "nb", f"user{i}") for i, d in enumerate(daemons)]
    for c in clients:
        await c.connect()
    try:
        await clients[0].commit([make_event("notebookCreated", title="Run")])
        await caught_up(clients, 1)
        per_client = 8
        queue_ids: list[str] = []

        async def queue(n: int, c: SyncClient) -> None:
            index: str | None = f"a{n}"
            for r in range(per_client):
                index = key_between(index, f"a{n + 1}")
                cell_id, queue_id = f"c{n}-{r}", f"q{n}-{r}"
                queue_ids.append(queue_id)
                await c.commit([
                    make_event("cellCreated", cellId=cell_id, cellType="code", fractionalIndex=index,
                               source=f"print('{cell_id}')"),
                    make_event("executionRequested", queueId=queue_id, cellId=cell_id),
                ])

        await asyncio.gather(*(queue(n, c) for n, c in enumerate(clients)))

        def all_done() -> bool | None:
            rows = clients[1].replica.view(views.executions)
            return (len(rows) == len(queue_ids) and all(r["status"] == "success" for r in rows)) or None

        await clients[1].wait_for(all_done, timeout=120)
        events = rest_events(daemons[2], "nb")
        for name in ("executionAssigned", "executionStarted", "executionCompleted"):
            per_queue = [e["args"]["queueId"] for e in events if e["name"] == name]
            assert sorted(per_queue) == sorted(queue_ids), name  # each execution once, none twice
        assert [e["name"] for e in events].count("runtimeSessionStarted") == 1
        for n in range(len(clients)):
            for r in range(per_client):
                outputs = clients[0].replica.view(views.outputs_by_cell, f"c{n}-{r}")[f"c{n}-{r}"]
                assert [o.get("text") for o in outputs] == [f"c{n}-{r}\n"]
        running = []
        for d in daemons:
            reply = httpx.get(f"{d.url}/api/runtimes", headers={"Authorization": f"Bearer {d.token}"}, timeout=30)
            reply.raise_for_status()
            running += [(d.url, r["runtime_id"]) for r in reply.json() if r["notebook_id"] == "nb"]
        assert len(running) == 1, running  # exactly one daemon started the managed runtime
    finally:
        for c in clients:
            await c.close()
