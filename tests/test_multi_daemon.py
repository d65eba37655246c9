"""Many daemons, one notebook: real ``runtimed`` processes with different homes sharing one PostgreSQL
store (``--store postgresql://...``) and one token (``RUNTIMED_TOKEN``), clients on each of them.

Events committed through one daemon reach the clients of the others through LISTEN/NOTIFY and the
shared log; concurrent writers on every daemon converge to byte-identical replicas; execution claims
are exactly-once and the managed runtime of a notebook is started by exactly one daemon (a lease in the
database). Failover: clients given several daemons (``RUNTIMED_URL`` as a list) use the first that answers
and move to another when theirs is killed, resuming from their last seq; an external runtime does the same
and keeps its session; a runtime connected nowhere is ended as lost by another daemon (leases, not memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DaemonProcess
from pg import PgCluster, database_url

from runtimed.client.discovery import DaemonEndpoint, Failover, endpoint_for
from runtimed.client.http import DaemonHTTP
from runtimed.client.session import AsyncSession
from runtimed.client.sync import SyncClient
from runtimed.errors import DaemonNotRunningError
from runtimed.runtime.agent import RuntimeAgent
from runtimed.runtime.external import run_external_runtime
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


SLOW_KERNEL = ("import os, sys, time\nopen(os.environ['SLOW_KERNEL_LAUNCHES'], 'a').write(f'{os.getpid()}\\n')\n"
               "time.sleep(4)\nsys.argv = [sys.argv[0], '-f', sys.argv[1]]\n"
               "from ipykernel.kernelapp import launch_new_instance\nlaunch_new_instance()\n")


async def test_the_runtime_lease_is_kept_while_a_kernel_starts_slowly(deployment: Deployment, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon renews its lease on a notebook's runtime while the kernel starts (building an environment can
    take minutes): with a 1 s lease and a kernel that takes 4 s to start, the other daemon, woken again and
    again by new requests meanwhile, never starts a second runtime."""
    spec = tmp_path / "jupyter" / "kernels" / "slow"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", SLOW_KERNEL, "{connection_file}"], "display_name": "Slow", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("RUNTIMED_RUNTIME_LEASE_TTL", "1")
    launches = tmp_path / "launches"  # one line per slow kernel started, by either daemon
    monkeypatch.setenv("SLOW_KERNEL_LAUNCHES", str(launches))
    daemons = deployment.start(2, "--pool-size", "0")
    first, second = client(daemons[0], "slow", "alice"), client(daemons[1], "slow", "bob")
    for c in (first, second):
        await c.connect()
    try:
        await first.commit([make_event("notebookCreated", title="Slow kernel"),
                            make_event("notebookMetadataSet", key="kernelspec",
                                       value={"name": "slow", "display_name": "Slow", "language": "python"}),
                            make_event("cellCreated", cellId="c0", cellType="code", fractionalIndex="a0",
                                       source="print('first')"),
                            make_event("executionRequested", queueId="q0", cellId="c0")])
        await caught_up([first, second], 4)
        queue_ids, index = ["q0"], "a0"

        def started() -> bool | None:
            return second.replica.view(views.active_session) is not None or None

        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while started() is None and loop.time() < deadline:  # the other daemon is woken by each request
            index = key_between(index, None)
            n = len(queue_ids)
            await second.commit([make_event("cellCreated", cellId=f"c{n}", cellType="code", fractionalIndex=index,
                                             source=f"print({n})"),
                                 make_event("executionRequested", queueId=f"q{n}", cellId=f"c{n}")])
            queue_ids.append(f"q{n}")
            with contextlib.suppress(TimeoutError):
                await second.wait_for(started, timeout=0.3)
        assert len(queue_ids) > 5  # requests kept arriving while the kernel started (4 s, the lease 1 s)

        def all_done() -> bool | None:
            rows = second.replica.view(views.executions)
            return (len(rows) == len(queue_ids) and all(r["status"] == "success" for r in rows)) or None

        await second.wait_for(all_done, timeout=120)
        events = rest_events(daemons[1], "slow")
        assert [e["name"] for e in events].count("runtimeSessionStarted") == 1
        running = []
        for d in daemons:
            reply = httpx.get(f"{d.url}/api/runtimes", headers={"Authorization": f"Bearer {d.token}"}, timeout=30)
            reply.raise_for_status()
            running += [d.url for r in reply.json() if r["notebook_id"] == "slow"]
        assert len(running) == 1, running  # the daemon that claimed it first (either) runs it
        assert len(launches.read_text().split()) == 1  # and the other never started a kernel of its own
    finally:
        for c in (first, second):
            await c.close()


# -- failover ----------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def moving_client(endpoint: DaemonEndpoint, notebook_id: str, name: str) -> SyncClient:
    """A client that fails over between the daemons of ``endpoint``."""
    return SyncClient(endpoint.url, endpoint.token, notebook_id, {"id": name, "kind": "human", "name": name},
                      rediscover=Failover(endpoint))


def log_ids(events: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(e["seq"], e["id"]) for e in events]


def seen(c: SyncClient) -> list[tuple[int, str]]:
    """The (seq, id) of every event the client's replica has applied: acknowledged by the log."""
    return [(int(seq), str(event_id)) for seq, event_id in
            c.replica.conn.execute("SELECT seq, id FROM events ORDER BY seq").fetchall()]


async def assert_converged(clients: list[SyncClient], daemon: DaemonProcess, notebook_id: str,
                           acknowledged: list[tuple[int, str]]) -> None:
    """The log holds each id once and every event a client had seen (acknowledged) at the same seq; every
    client's replica catches up with it and equals its replay (up to the client's head: a runtime may still
    be reporting its status)."""
    events = rest_events(daemon, notebook_id)
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert set(acknowledged) <= set(log_ids(events)), "an acknowledged event is missing or moved"
    await caught_up(clients, len(events))
    events = rest_events(daemon, notebook_id)
    for c in clients:
        replay = Replica(notebook_id)
        replay.apply_wire(events[:c.replica.head])
        assert c.replica.dump() == replay.dump()


def test_a_list_of_daemon_urls_is_checked_and_none_answering_is_reported() -> None:
    with pytest.raises(DaemonNotRunningError, match="'gpu-box:8730' is not a daemon URL"):
        endpoint_for("http://127.0.0.1:8730, gpu-box:8730", "token")
    with pytest.raises(DaemonNotRunningError, match="no daemon URL"):
        endpoint_for(" , ", "token")
    dead = [f"http://127.0.0.1:{closed_port()}" for _ in range(2)]
    endpoint = endpoint_for(",".join(dead) + ",", "token")
    assert endpoint.url == dead[0] and endpoint.urls == tuple(dead)  # none answers: the first, reported by its user
    http = DaemonHTTP(endpoint, timeout=5)
    try:
        with pytest.raises(DaemonNotRunningError) as caught:
            http.get("/api/notebooks")
        assert all(url in str(caught.value) for url in dead)
    finally:
        http.close()


async def test_clients_given_several_daemons_use_the_first_that_answers_and_fail_over(
        deployment: Deployment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a, b, c = deployment.start(3, "--no-runtimes")
    urls = [f"http://127.0.0.1:{closed_port()}", a.url, b.url, c.url]
    monkeypatch.setenv("RUNTIMED_URL", ",".join(urls))
    session = AsyncSession("nb", home=tmp_path / "client-home")
    await session.connect()
    assert session.url.startswith(a.url + "/")  # the first that answers
    http = DaemonHTTP(endpoint_for(",".join(urls), a.token), timeout=30)
    assert http.endpoint.url == a.url
    watcher = client(c, "nb", "watcher")
    await watcher.connect()
    try:
        writer = session.client
        cell_id = await session.create_cell("")
        window = asyncio.Semaphore(8)  # pushes in flight when the daemon dies: re-sent, stored once
        results: list[dict[str, Any]] = []

        async def push(i: int) -> None:
            async with window:
                results.extend(await writer.push([meta(cell_id, i, key=f"k{i % 50}")]))

        pushes = [asyncio.create_task(push(i)) for i in range(400)]
        await watcher.wait_for(lambda: watcher.replica.head >= 60 or None, timeout=DEADLINE)
        acknowledged = seen(watcher) + seen(writer)
        a.kill9()
        await asyncio.wait_for(asyncio.gather(*pushes), DEADLINE)
        assert len(results) == 400 and not [r for r in results if "error" in r]
        assert writer.url in (b.url, c.url)
        await session.create_cell("after the failover")  # the session's own calls work on the new daemon
        await assert_converged([watcher, writer], b, "nb", acknowledged)
        stored = {e["id"]: e["seq"] for e in rest_events(c, "nb")}
        assert all(stored[r["id"]] == r["seq"] for r in results)  # each push acknowledged with its one seq
        listed = http.get("/api/notebooks")  # REST fails over too (its connection could not be made)
        assert [n["id"] for n in listed] == ["nb"]
        assert http.endpoint.url in (b.url, c.url)
    finally:
        http.close()
        await session.close()
        await watcher.close()


WAIT_FOR_FLAG = """import os, time
print('started', flush=True)
deadline = time.monotonic() + 120
while not os.path.exists({flag!r}) and time.monotonic() < deadline:
    time.sleep(0.02)
print('done')"""


def cell_text(c: SyncClient, cell_id: str) -> str:
    return "".join(str(o.get("text", "")) for o in c.replica.view(views.outputs_by_cell, cell_id).get(cell_id, []))


def execution(c: SyncClient, queue_id: str) -> dict[str, Any] | None:
    rows = c.replica.view(views.executions, queue_id=queue_id)
    return dict(rows[0]) if rows else None


@contextlib.asynccontextmanager
async def external_runtime(endpoint: DaemonEndpoint, notebook_id: str):  # type: ignore[no-untyped-def]
    """``runt runtime connect`` in this process: the agent once it works for the notebook."""
    ready: asyncio.Future[RuntimeAgent] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_external_runtime(endpoint, notebook_id, handle_signals=False,
                                                    on_ready=lambda agent: ready.set_result(agent)))
    try:
        yield await asyncio.wait_for(asyncio.shield(ready), DEADLINE)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, DEADLINE)


async def test_killing_the_runtimes_daemon_mid_execution_loses_nothing(deployment: Deployment,
                                                                      tmp_path: Path) -> None:
    a, b, c = deployment.start(3, "--no-runtimes", "--runtime-grace", "10")
    endpoint = endpoint_for([a.url, b.url, c.url], a.token)
    writer = moving_client(endpoint, "nb", "writer")  # on A, like the runtime
    watchers = [client(b, "nb", "watcher-b"), client(c, "nb", "watcher-c")]
    for each in (writer, *watchers):
        await each.connect()
    flag = tmp_path / "go"
    try:
        await writer.commit([make_event("notebookCreated", title="Failover"),
                             make_event("cellCreated", cellId="c1", cellType="code", fractionalIndex="a0",
                                        source=WAIT_FOR_FLAG.format(flag=str(flag))),
                             make_event("cellCreated", cellId="c2", cellType="code", fractionalIndex="a1",
                                        source="print('still here')")])
        async with external_runtime(endpoint, "nb") as agent:
            assert agent.client.url == a.url
            session_id = agent.session_id
            await watchers[0].commit([make_event("executionRequested", queueId="q1", cellId="c1")])
            await watchers[0].wait_for(lambda: cell_text(watchers[0], "c1") == "started\n" or None, DEADLINE)
            writes = [asyncio.create_task(writer.push([meta("c2", i)])) for i in range(20)]
            acknowledged = seen(watchers[0]) + seen(watchers[1])
            a.kill9()
            flag.touch()
            await asyncio.wait_for(asyncio.gather(*writes), DEADLINE)
            done = await watchers[1].wait_for(
                lambda: (row := execution(watchers[1], "q1")) and row["status"] in ("success", "error") and row,
                DEADLINE)
            # the runtime reconnected to another daemon and kept its session: the cell completed there
            assert done["status"] == "success", done
            assert cell_text(watchers[1], "c1") == "started\ndone\n"
            assert agent.client.url in (b.url, c.url) and agent.session_id == session_id
            await watchers[1].commit([make_event("executionRequested", queueId="q2", cellId="c2")])
            await watchers[1].wait_for(lambda: cell_text(watchers[1], "c2") == "still here\n" or None, DEADLINE)
            # its output comes before its completion: wait for that too before counting the completions
            await watchers[1].wait_for(
                lambda: (row := execution(watchers[1], "q2")) and row["status"] == "success" or None, DEADLINE)
            await assert_converged([writer, *watchers], b, "nb", acknowledged)
            names = [e["name"] for e in rest_events(c, "nb")]
            assert "runtimeSessionEnded" not in names
            assert names.count("executionCompleted") == 2
    finally:
        for each in (writer, *watchers):
            await each.close()


async def test_a_runtime_connected_nowhere_is_ended_as_lost_by_another_daemon(deployment: Deployment,
                                                                             tmp_path: Path) -> None:
    grace = 1.0
    a, b = deployment.start(2, "--no-runtimes", "--runtime-grace", str(grace))
    watcher = client(b, "nb", "watcher")
    await watcher.connect()
    flag = tmp_path / "go"
    try:
        await watcher.commit([
            make_event("notebookCreated", title="Lost"),
            make_event("cellCreated", cellId="c1", cellType="code", fractionalIndex="a0",
                       # connected to A longer than the grace period: B must not take it for lost meanwhile
                       source=f"import time\ntime.sleep({grace * 4})\n" + WAIT_FOR_FLAG.format(flag=str(flag))),
        ])
        # one daemon only: when A dies this runtime keeps trying A and is connected nowhere
        async with external_runtime(DaemonEndpoint(a.url, a.token), "nb") as agent:
            session_id = agent.session_id
            await watcher.commit([make_event("executionRequested", queueId="q1", cellId="c1")])
            await watcher.wait_for(lambda: cell_text(watcher, "c1") == "started\n" or None, DEADLINE)
            active = watcher.replica.view(views.active_session)
            assert active is not None and active["session_id"] == session_id
            a.kill9()
            done = await watcher.wait_for(
                lambda: (row := execution(watcher, "q1")) and row["status"] in ("success", "error") and row,
                DEADLINE)
        assert done["status"] == "error"
        assert done["error"]["ename"] == "RuntimeLost"
        assert watcher.replica.view(views.active_session) is None
        ended = [e for e in rest_events(b, "nb") if e["name"] == "runtimeSessionEnded"]
        assert [e["args"] for e in ended] == [{"sessionId": session_id, "reason": "lost"}]
        assert ended[0]["actor"]["kind"] == "system"
    finally:
        await watcher.close()
