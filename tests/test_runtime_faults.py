"""Runtime faults and lifecycle (DESIGN 5): lost runtimes, displacement, racing runtimes, idle stop, the pool.

Two daemons serve the module: one with managed runtimes, a 1 s runtime grace and a 2 s idle
timeout; one without managed runtimes (so that only the external runtimes under test run).
External runtimes run in-process (``run_external_runtime`` as a task) or as a subprocess when
the test kills them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, DaemonProcess

from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.session import AsyncSession
from runtimed.runtime.agent import RuntimeAgent
from runtimed.runtime.external import run_external_runtime
from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.tasks import cancel_and_wait

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

GRACE = 1.0
IDLE = 2.0

EXTERNAL = """
import asyncio, sys
from runtimed.client.discovery import DaemonEndpoint
from runtimed.runtime.external import run_external_runtime
url, token, notebook, displace = sys.argv[1:5]
reason = asyncio.run(run_external_runtime(DaemonEndpoint(url, token), notebook, displace=displace == "1",
                                          on_ready=lambda agent: print("ready", agent.runtime_id, flush=True)))
print("ended", reason, flush=True)
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _start(home: Path, *args: str) -> DaemonProcess:
    proc = DaemonProcess(home, *args)
    proc.start()
    return proc


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """Managed runtimes, a short runtime grace and a short idle timeout."""
    proc = _start(tmp_path_factory.mktemp("faults-home"), "--runtime-grace", str(GRACE), "--idle-timeout", str(IDLE))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """No managed runtimes: only the external runtimes a test starts."""
    proc = _start(tmp_path_factory.mktemp("bare-home"), "--no-runtimes", "--runtime-grace", str(GRACE))
    yield proc
    proc.stop()


def endpoint(d: DaemonProcess) -> DaemonEndpoint:
    return DaemonEndpoint(d.url, d.token)


def session(d: DaemonProcess, notebook_id: str) -> AsyncSession:
    return AsyncSession(notebook_id, endpoint=endpoint(d))


def api(d: DaemonProcess, method: str, path: str) -> Any:
    response = httpx.request(method, f"{d.url}{path}", headers={"Authorization": f"Bearer {d.token}"}, timeout=30)
    response.raise_for_status()
    return response.json()


def log_events(s: AsyncSession, *names: str) -> list[dict[str, Any]]:
    marks = ",".join("?" * len(names))
    rows = s.client.replica.conn.execute(
        f"SELECT seq, name, args, actor FROM events WHERE name IN ({marks}) ORDER BY seq", names).fetchall()
    return [{"seq": seq, "name": name, "args": json.loads(args), "actor": json.loads(actor)}
            for seq, name, args, actor in rows]


def item(s: AsyncSession, queue_id: str) -> dict[str, Any]:
    return views.executions(s.client.replica.conn, queue_id=queue_id)[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is as good as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (the kernels a daemon launched)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(stat.parent.name))
    return found


async def eventually(predicate: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        await asyncio.sleep(interval)


class External:
    """An external runtime in a subprocess (so that it can be killed with SIGKILL)."""

    def __init__(self, d: DaemonProcess, notebook_id: str, *, displace: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", EXTERNAL, d.url, d.token, notebook_id, "1" if displace else "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        self.runtime_id: str | None = None

    async def ready(self, timeout: float = 60) -> str:
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        assert line.startswith("ready "), (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.runtime_id = line.split()[1]
        return self.runtime_id

    async def wait(self, timeout: float) -> int:
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.asynccontextmanager
async def in_process_runtime(d: DaemonProcess, notebook_id: str, *, displace: bool = True
                             ) -> AsyncIterator[tuple[asyncio.Task, list[RuntimeAgent]]]:
    """``run_external_runtime`` as a task of this loop; cancelled (ending its session) on exit."""
    agents: list[RuntimeAgent] = []
    task = asyncio.create_task(run_external_runtime(endpoint(d), notebook_id, displace=displace,
                                                    on_ready=agents.append, handle_signals=False))
    try:
        yield task, agents
    finally:
        await cancel_and_wait(task, timeout=60)


# -- a lost runtime ----------------------------------------------------------------------------------


async def test_killed_external_runtime_is_lost_and_the_next_request_runs_on_a_managed_one(
        managed: DaemonProcess) -> None:
    notebook = "faults-kill9"
    async with session(managed, notebook) as s:
        external = External(managed, notebook)
        try:
            runtime_id = await external.ready()
            await s.client.wait_for(lambda: views.active_session(s.client.replica.conn), 30)
            active = views.active_session(s.client.replica.conn)
            assert active["runtime_id"] == runtime_id
            kernel_pid = log_events(s, "runtimeSessionStarted")[-1]["args"]["capabilities"]["pid"]
            cell_id = await s.create_cell("import time\nprint('working', flush=True)\ntime.sleep(60)")
            queue_id = await s.queue_cell(cell_id)
            await s.client.wait_for(lambda: views.outputs_by_cell(s.client.replica.conn, cell_id).get(cell_id), 30)
            external.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            result = await s.wait_for_execution(queue_id, 30)
            assert GRACE * 0.9 <= time.monotonic() - killed < GRACE + 5
        finally:
            external.close()
        assert result.status == "error"
        error = item(s, queue_id)["error"]
        assert error["ename"] == "RuntimeLost" and "runtime lost" in error["evalue"]
        assert result.stdout == "working\n"  # what it printed before is kept
        ended = log_events(s, "runtimeSessionEnded")[-1]
        assert ended["args"] == {"sessionId": active["session_id"], "reason": "lost"}
        assert ended["actor"]["kind"] == "system"
        # the orphaned kernel notices its parent is gone and exits
        await eventually(lambda: not alive(kernel_pid), 15)

        nxt = await s.run("import os; print('on a new runtime')", timeout_secs=60)
        assert nxt.success and nxt.stdout == "on a new runtime\n"
        now = views.active_session(s.client.replica.conn)
        assert now is not None and now["runtime_id"] != runtime_id
        assert any(r["runtime_id"] == now["runtime_id"] for r in api(managed, "GET", "/api/runtimes"))


async def test_a_lost_runtimes_claimed_ahead_cells_run_on_the_next_runtime(managed: DaemonProcess, tmp_path: Path
                                                                          ) -> None:
    """Cells a runtime claimed ahead go back to the queue when it is lost, and run once, on another runtime."""
    notebook = "faults-claims"
    async with session(managed, notebook) as s:
        external = External(managed, notebook)
        try:
            runtime_id = await external.ready()
            active = await s.client.wait_for(lambda: views.active_session(s.client.replica.conn), 30)
            blocked = await s.create_cell(f"import os, time\nprint('working', flush=True)\nfor _ in range(6000):\n"
                                          f"    if os.path.exists({str(tmp_path / 'never')!r}):\n        break\n"
                                          f"    time.sleep(0.01)")
            running = await s.queue_cell(blocked)
            queued = [await s.queue_cell(await s.create_cell(f"print('cell {i}')")) for i in range(3)]
            await s.client.wait_for(lambda: views.outputs_by_cell(s.client.replica.conn, blocked).get(blocked), 30)
            await s.client.wait_for(lambda: all(item(s, q)["status"] == "assigned"
                                                and item(s, q)["session_id"] == active["session_id"] for q in queued), 30)
            external.proc.send_signal(signal.SIGKILL)
            results = [await s.wait_for_execution(q, 60) for q in queued]
        finally:
            external.close()
        assert item(s, running)["status"] == "error" and item(s, running)["error"]["ename"] == "RuntimeLost"
        assert [r.stdout for r in results] == [f"cell {i}\n" for i in range(3)]
        for q in queued:
            starts = [e for e in log_events(s, "executionStarted") if e["args"]["queueId"] == q]
            assert len(starts) == 1 and starts[0]["actor"]["id"] != f"runtime:{runtime_id}"
        requeued = {e["args"]["queueId"] for e in log_events(s, "executionRequeued")}
        assert requeued == set(queued)


async def test_brief_disconnect_within_the_grace_period_keeps_the_session(bare: DaemonProcess) -> None:
    notebook = "faults-blip"
    async with session(bare, notebook) as s, in_process_runtime(bare, notebook) as (_, agents):
        await eventually(lambda: agents and views.active_session(s.client.replica.conn), 60)
        agent = agents[0]
        cell_id = await s.create_cell("import time\ntime.sleep(1.5)\nprint('survived')")
        queue_id = await s.queue_cell(cell_id)
        await s.client.wait_for(lambda: item(s, queue_id)["status"] == "running", 30)
        ws = agent.client._ws
        assert ws is not None
        await ws.close()  # the connection drops; the sync client reconnects at once
        result = await s.wait_for_execution(queue_id, 30)
        assert result.success and result.stdout == "survived\n"
        assert views.active_session(s.client.replica.conn)["session_id"] == agent.session_id
        assert not log_events(s, "runtimeSessionEnded")


# -- displacement and racing runtimes ---------------------------------------------------------------


async def test_displaced_runtime_stops_and_its_process_exits(bare: DaemonProcess) -> None:
    notebook = "faults-displace"
    async with session(bare, notebook) as s:
        first = External(bare, notebook)
        try:
            await first.ready()
            await s.client.wait_for(lambda: views.active_session(s.client.replica.conn), 30)
            old = views.active_session(s.client.replica.conn)
            assert (await s.run("'first'", timeout_secs=60)).success
            old_kernel = log_events(s, "runtimeSessionStarted")[-1]["args"]["capabilities"]["pid"]
            async with in_process_runtime(bare, notebook, displace=True) as (task, agents):
                assert await first.wait(30) == 0  # the displaced runtime's process exits by itself
                assert "ended displaced" in first.proc.stdout.read()
                await eventually(lambda: not alive(old_kernel), 10)
                await eventually(lambda: agents, 30)
                new = views.active_session(s.client.replica.conn)
                assert new is not None and new["session_id"] == agents[0].session_id != old["session_id"]
                ended = [e for e in log_events(s, "runtimeSessionEnded") if e["args"]["sessionId"] == old["session_id"]]
                assert [e["args"]["reason"] for e in ended] == ["displaced"]
                result = await s.run("'second'", timeout_secs=60)
                assert result.success and result.outputs[0].data["text/plain"] == "'second'"
            assert task.cancelled() and agents[0].stopped and agents[0].end_reason == "shutdown"
            await s.client.wait_for(lambda: views.active_session(s.client.replica.conn) is None, 10)
        finally:
            first.close()


async def test_racing_runtimes_run_every_request_exactly_once(bare: DaemonProcess, tmp_path: Path) -> None:
    notebook = "faults-race"
    n = 120
    # the cells after the first quarter wait for the handover: a fast runtime would otherwise finish them all
    # before the test cancels it, and no other runtime would ever take over
    flag = tmp_path / "handed-over"
    gate = (f"import os, time\nfor _ in range(2400):\n    if os.path.exists({str(flag)!r}):\n        break\n"
            "    time.sleep(0.025)\n")
    async with session(bare, notebook) as s:
        cells = [await s.create_cell((gate if i >= n // 4 else "") + f"print({i})") for i in range(n)]
        queue_ids = []
        for cell_id in cells:
            queue_ids.append(await s.queue_cell(cell_id))
        # two runtimes start at once and wait for each other; a third displaces whoever works
        async with in_process_runtime(bare, notebook, displace=False) as (task_a, agents_a), \
                in_process_runtime(bare, notebook, displace=False) as (task_b, agents_b):

            def done() -> int:
                return sum(item(s, q)["status"] in ("success", "error", "cancelled") for q in queue_ids)

            await s.client.wait_for(lambda: done() >= n // 4, 60)
            first = views.active_session(s.client.replica.conn)
            working = next(t for t, a in ((task_a, agents_a), (task_b, agents_b))
                           if a and a[0].session_id == first["session_id"])
            working.cancel()  # the working runtime shuts down mid-queue; the waiting one takes over
            flag.touch()
            await s.client.wait_for(lambda: done() >= n // 2, 60)
            async with in_process_runtime(bare, notebook, displace=True):
                await s.client.wait_for(lambda: done() == n, 90)
        starts = Counter(e["args"]["queueId"] for e in log_events(s, "executionStarted"))
        assert set(starts) == set(queue_ids)
        assert max(starts.values()) == 1, [q for q, c in starts.items() if c > 1]
        statuses = Counter(item(s, q)["status"] for q in queue_ids)
        lost = [q for q in queue_ids if item(s, q)["status"] == "error"]
        assert statuses["success"] + len(lost) == n, statuses
        assert len(lost) <= 2  # at most the cell running at each handover
        for q in lost:
            assert item(s, q)["error"]["ename"] == "RuntimeLost"
        sessions = {e["args"]["sessionId"] for e in log_events(s, "executionAssigned")}
        assert len(sessions) >= 2
        # each successful cell printed its own number, once
        for i, (cell_id, q) in enumerate(zip(cells, queue_ids, strict=True)):
            if item(s, q)["status"] == "success":
                cell = await s.get_cell(cell_id)
                assert [o.text for o in cell.outputs] == [f"{i}\n"]


async def test_runtime_waiting_to_start_takes_over_when_the_active_one_ends(bare: DaemonProcess) -> None:
    notebook = "faults-wait"
    async with session(bare, notebook) as s:
        async with in_process_runtime(bare, notebook, displace=True) as (first_task, first):
            await eventually(lambda: first, 60)
            async with in_process_runtime(bare, notebook, displace=False) as (_, second):
                await asyncio.sleep(0.5)
                assert views.active_session(s.client.replica.conn)["session_id"] == first[0].session_id
                first_task.cancel()
                await eventually(lambda: second and views.active_session(s.client.replica.conn)
                                 and views.active_session(s.client.replica.conn)["session_id"]
                                 == second[0].session_id, 60)
                assert (await s.run("'taken over'", timeout_secs=60)).success
        reasons = [e["args"]["reason"] for e in log_events(s, "runtimeSessionEnded")]
        assert reasons == ["shutdown", "shutdown"]


async def test_fenced_runtime_events_are_rejected(bare: DaemonProcess) -> None:
    notebook = "faults-fence"
    async with session(bare, notebook) as s, in_process_runtime(bare, notebook) as (_, agents):
        await eventually(lambda: agents, 60)
        old = agents[0]
        async with in_process_runtime(bare, notebook) as (_, newer):
            await eventually(lambda: newer, 60)
            await asyncio.wait_for(old.wait_stopped(), 30)
            cell_id = await s.create_cell("1")
            queue_id = await s.queue_cell(cell_id)
            assert (await s.wait_for_execution(queue_id, 60)).success
            # the displaced session's claim is refused by the server (the session id is a fencing token)
            other = await s.create_cell("2")
            pending = await s.queue_cell(other)
            results = await s.client.push([
                make_event("executionAssigned", queue_id=pending, session_id=old.session_id)])
            assert results[0]["error"]["code"] == "session_inactive"
            assert (await s.wait_for_execution(pending, 60)).success
            assert all(e["args"]["sessionId"] == newer[0].session_id for e in log_events(s, "executionAssigned")
                       if e["args"]["queueId"] in (queue_id, pending))


# -- daemon-managed lifecycle ------------------------------------------------------------------------


async def test_idle_runtime_stops_after_the_idle_timeout_but_never_while_executing(managed: DaemonProcess) -> None:
    notebook = "faults-idle"
    async with session(managed, notebook) as s:
        result = await s.run(f"import time\ntime.sleep({IDLE * 2})\n'slept'", timeout_secs=60)
        assert result.success  # ran longer than the idle timeout and was not stopped
        active = views.active_session(s.client.replica.conn)
        assert active is not None
        assert not log_events(s, "runtimeSessionEnded")
        stopped_at = time.monotonic()
        await s.client.wait_for(lambda: views.active_session(s.client.replica.conn) is None, IDLE + 10)
        assert time.monotonic() - stopped_at >= IDLE * 0.5
        ended = log_events(s, "runtimeSessionEnded")[-1]
        assert ended["args"] == {"sessionId": active["session_id"], "reason": "shutdown"}
        assert not [r for r in api(managed, "GET", "/api/runtimes") if r["notebook_id"] == notebook]
        # the next request starts a new runtime
        again = await s.run("'again'", timeout_secs=60)
        assert again.success
        assert views.active_session(s.client.replica.conn)["session_id"] != active["session_id"]


def _pool(d: DaemonProcess) -> dict[str, int]:
    return api(d, "GET", "/api/status")["pool"]["python3"]


async def test_pool_refills_and_flush_replaces_it(managed: DaemonProcess) -> None:
    daemon_pid = managed.proc.pid
    await eventually(lambda: _pool(managed)["ready"] >= 1, 60)
    before = children(daemon_pid)
    async with session(managed, "faults-pool") as s:
        assert (await s.run("'took a pooled kernel'", timeout_secs=60)).success
        taken = log_events(s, "runtimeSessionStarted")[-1]["args"]["capabilities"]["pid"]
        assert taken in before  # the runtime got the prewarmed kernel
    await eventually(lambda: _pool(managed)["ready"] >= 1, 60)  # and the pool refilled behind it
    pooled = children(daemon_pid) - before
    assert len(pooled) >= 1
    status = api(managed, "POST", "/api/pool/flush")
    assert status["python3"]["ready"] == 0
    await eventually(lambda: _pool(managed)["ready"] >= 1, 60)
    await eventually(lambda: not (pooled & children(daemon_pid)), 15)  # the old pooled kernels are gone
    assert children(daemon_pid) - pooled - before  # new ones replaced them
