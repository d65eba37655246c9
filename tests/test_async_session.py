"""runtimed.AsyncSession against a real daemon with real ipykernel kernels.

One daemon serves the module (in a temporary RUNTIMED_HOME); every test works on its own
notebook. The embedded-default test starts its own daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nbformat
import pytest
from conftest import DaemonProcess, running_daemon

import runtimed
from runtimed import (
    AsyncSession,
    CellNotFoundError,
    DaemonClient,
    ExecutionTimeoutError,
    KernelError,
    RuntimedError,
    Session,
)
from runtimed.home import pid_alive
from runtimed.schema.events import make_event

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
T = TypeVar("T")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("async-home")
    with running_daemon(home, "--pool-size", "2") as proc:
        yield proc


async def end_kernel_nowait(s: AsyncSession) -> None:
    """End the notebook's runtime session without waiting for its kernel to exit."""
    active = s._active_session() if s.is_connected else None
    if active is not None:
        with contextlib.suppress(RuntimedError):
            await s.client.commit([make_event("runtimeSessionEnded", session_id=active["session_id"],
                                              reason="shutdown")])


@pytest.fixture
async def session(shared_daemon: DaemonProcess) -> AsyncIterator[AsyncSession]:
    s = AsyncSession()
    yield s
    await end_kernel_nowait(s)
    await s.close()


@pytest.fixture
async def other(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    s = AsyncSession(session.notebook_id, peer_label="other")
    yield s
    await s.close()


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        await asyncio.sleep(0.05)


def events_named(session: AsyncSession, name: str) -> list[dict[str, Any]]:
    rows = session.client.replica.conn.execute("SELECT args FROM events WHERE name = ? ORDER BY seq", (name,))
    return [json.loads(r[0]) for r in rows]


# -- connectivity ---------------------------------------------------------------------------------


async def test_connect_and_close(session: AsyncSession) -> None:
    assert session.notebook_id.startswith("agent-session-")
    assert not session.is_connected and not session.kernel_started
    await session.connect()
    assert session.is_connected
    assert "AsyncSession" in repr(session) and "connected" in repr(session)
    rooms = await asyncio.to_thread(DaemonClient().list_rooms)
    assert session.notebook_id in [r["notebook_id"] for r in rooms]
    await session.close()
    assert not session.is_connected
    await session.close()


async def test_async_with(shared_daemon: DaemonProcess) -> None:
    notebook_id = f"async-ctx-{uuid.uuid4().hex[:8]}"
    async with AsyncSession(notebook_id) as s:
        assert s.is_connected
        await s.create_cell("kept")
    assert not s.is_connected
    async with AsyncSession(notebook_id) as again:
        assert [c.source for c in await again.get_cells()] == ["kept"]


async def test_methods_connect_by_themselves(session: AsyncSession) -> None:
    cells = await session.get_cells()
    assert cells == [] and session.is_connected
    await session.close()
    cell_id = await session.create_cell("after close")
    assert (await session.get_cell(cell_id)).source == "after close"


async def test_concurrent_connects_share_one_connection(session: AsyncSession) -> None:
    await asyncio.gather(*(session.connect() for _ in range(5)))
    peers = await session.get_peers()
    assert len(peers) == 1 and peers[0]["is_self"]


async def test_embedded_default_daemon_starts_on_connect(home: Path) -> None:
    client = DaemonClient()
    assert not await asyncio.to_thread(client.ping)
    s = AsyncSession()
    try:
        await s.connect()
        assert await asyncio.to_thread(client.ping)
        status = await asyncio.to_thread(client.status)
        assert Path(status["home"]) == home
        assert (await s.run("'embedded'")).display_data[0].data["text/plain"] == "'embedded'"
    finally:
        await s.close()
        assert await asyncio.to_thread(client.shutdown) is True
    assert not await asyncio.to_thread(client.is_running)


def test_one_async_session_across_event_loops(shared_daemon: DaemonProcess) -> None:
    """A session used under two asyncio.run() calls reconnects on the new loop instead of hanging."""
    s = AsyncSession()

    async def first() -> str:
        return await s.create_cell("first")

    async def second() -> list[str]:
        await s.create_cell("second")
        sources = [c.source for c in await s.get_cells()]
        await s.close()
        return sources

    asyncio.run(first())
    assert asyncio.run(asyncio.wait_for(second(), 30)) == ["first", "second"]


# -- document operations --------------------------------------------------------------------------


async def test_document_operations(session: AsyncSession) -> None:
    a = await session.create_cell("a = 1")
    md = await session.create_cell("# md", cell_type="markdown")
    top = await session.create_cell("top", index=0)
    assert [c.id for c in await session.get_cells()] == [top, a, md]
    await session.set_source(a, "a = 2")
    await session.append_source(a, "\nb = 3")
    cell = await session.get_cell(a)
    assert (cell.source, cell.cell_type, cell.outputs, cell.execution_count) == ("a = 2\nb = 3", "code", [], None)
    await session.move_cell(top, after_cell_id=md)
    assert [c.id for c in await session.get_cells()] == [a, md, top]
    await session.move_cell(top, index=1)
    assert [c.id for c in await session.get_cells()] == [a, top, md]
    await session.set_cell_type(top, "raw")
    assert (await session.get_cell(top)).cell_type == "raw"
    await session.delete_cell(top)
    assert [c.id for c in await session.get_cells()] == [a, md]
    await session.set_metadata("k", [1, {"x": None}])
    assert await session.get_metadata("k") == [1, {"x": None}]
    await session.set_metadata("tags", ["t"], cell_id=a)
    assert await session.get_metadata("tags", cell_id=a) == ["t"]


async def test_concurrent_cell_creation(session: AsyncSession) -> None:
    ids = await asyncio.gather(*(session.create_cell(f"cell {i}") for i in range(20)))
    cells = await session.get_cells()
    assert sorted(c.id for c in cells) == sorted(ids)
    assert {c.source for c in cells} == {f"cell {i}" for i in range(20)}


async def test_save_and_to_ipynb(session: AsyncSession, tmp_path: Path) -> None:
    await session.run("print('out')")
    nb = await session.to_ipynb()
    nbformat.validate(nbformat.from_dict(nb))
    path = await session.save(tmp_path / "nb.ipynb")
    assert nbformat.read(path, as_version=4).cells[0].outputs[0]["text"] == "out\n"


async def test_sees_another_sessions_changes(session: AsyncSession, other: AsyncSession) -> None:
    cell_id = await session.create_cell("x = 1")

    async def other_sees() -> str | None:
        cells = await other.get_cells()
        return cells[0].source if cells else None

    assert await eventually(other_sees) == "x = 1"
    await other.set_source(cell_id, "x = 'edited by other'\nx")

    async def source() -> bool:
        return (await session.get_cell(cell_id)).source.startswith("x = 'edited")

    await eventually(source)
    result = await session.execute_cell(cell_id)
    assert result.display_data[0].data["text/plain"] == "'edited by other'"

    async def outputs_seen() -> list[runtimed.Output]:
        return (await other.get_cell(cell_id)).outputs

    assert (await eventually(outputs_seen))[0].data["text/plain"] == "'edited by other'"


async def test_concurrent_edits_merge(session: AsyncSession, other: AsyncSession) -> None:
    """Two peers replace the same text at once: the CRDT keeps both edits, in both replicas."""
    cell_id = await session.create_cell("base")

    async def other_has_it() -> bool:
        return any(c.source == "base" for c in await other.get_cells())

    await eventually(other_has_it)
    # both diffs are computed from "base" before either is acknowledged
    await asyncio.gather(session.set_source(cell_id, "mine + base"), other.set_source(cell_id, "base + theirs"))

    async def converged() -> str | None:
        a, b = (await session.get_cell(cell_id)).source, (await other.get_cell(cell_id)).source
        return a if a == b and "mine" in a and "theirs" in a else None

    assert await eventually(converged) == "mine + base + theirs"


async def test_sync_and_async_sessions_on_one_notebook(session: AsyncSession) -> None:
    cell_id = await session.create_cell("from_async = 1")
    sync = Session(session.notebook_id)
    try:
        cells = await asyncio.to_thread(sync.get_cells)
        assert [c.id for c in cells] == [cell_id]
        await asyncio.to_thread(sync.execute_cell, cell_id)
        result = await session.run("from_async + 1")
        assert result.display_data[0].data["text/plain"] == "2"
    finally:
        await asyncio.to_thread(sync.close)


# -- execution ------------------------------------------------------------------------------------


async def test_document_first_execution(session: AsyncSession) -> None:
    cell_id = await session.create_cell("print('old')")
    await session.set_source(cell_id, "print('new')")
    result = await session.execute_cell(cell_id)
    assert result.success and result.stdout == "new\n" and result.source == "print('new')"
    started = events_named(session, "executionStarted")
    assert [e["source"] for e in started] == ["print('new')"]


async def test_concurrent_executions_queue_in_order(session: AsyncSession) -> None:
    first = await session.create_cell("import time; time.sleep(0.3); order = ['first']")
    second = await session.create_cell("order.append('second'); order")
    r1, r2 = await asyncio.gather(session.execute_cell(first), session.execute_cell(second))
    assert r1.success and r2.success
    assert r2.display_data[0].data["text/plain"] == "['first', 'second']"
    assert r2.execution_count == r1.execution_count + 1


async def test_run_all(session: AsyncSession) -> None:
    await session.create_cell("x = 1")
    await session.create_cell("x / 0")
    await session.create_cell("print('skipped')")
    results = await session.run_all()
    assert [r.status for r in results] == ["success", "error", "cancelled"]
    assert results[1].error is not None and results[1].error.ename == "ZeroDivisionError"
    assert await session.run_all_cells() == 3


async def test_output_types(session: AsyncSession) -> None:
    result = await session.run(textwrap.dedent("""
        import sys
        from IPython.display import display, HTML
        print("o")
        print("e", file=sys.stderr)
        display(HTML("<p>h</p>"))
        h = display({"text/plain": "v1"}, raw=True, display_id="d")
        h.update({"text/plain": "v2"}, raw=True)
        {"k": 1}
    """))
    assert [o.output_type for o in result.outputs] == ["stream", "stream", "display_data", "display_data",
                                                        "execute_result"]
    assert (result.stdout, result.stderr) == ("o\n", "e\n")
    assert result.display_data[0].data["text/html"] == "<p>h</p>"
    assert result.display_data[1].data["text/plain"] == "v2"
    assert result.display_data[2].data["text/plain"] == "{'k': 1}"


async def test_terminal_emulation(session: AsyncSession) -> None:
    result = await session.run(textwrap.dedent("""
        import sys, time
        for i in range(50):
            print(f"\\r{i + 1}/50", end="", flush=True)
            time.sleep(0.005)
        print()
        print("abc\\b\\bX", flush=True)
        print("\\x1b[1;32mgreen\\x1b[0m", file=sys.stderr, flush=True)
        print("after")
    """))
    assert result.stdout == "50/50\naXc\nafter\n"
    assert result.stderr == "\x1b[1;32mgreen\x1b[0m\n"
    assert [o.name for o in result.outputs] == ["stdout", "stderr", "stdout"]


# -- errors ---------------------------------------------------------------------------------------


async def test_errors(session: AsyncSession) -> None:
    with pytest.raises(CellNotFoundError, match="^Cell not found: missing$"):
        await session.get_cell("missing")
    with pytest.raises(CellNotFoundError):
        await session.execute_cell("missing")
    syntax = await session.run("1 +")
    assert not syntax.success and syntax.error.ename == "SyntaxError"
    failed = await session.run("def f():\n    raise KeyError('k')\nf()")
    assert failed.status == "error" and failed.error.ename == "KeyError" and failed.error.evalue == "'k'"
    assert any("f()" in line for line in failed.error.traceback)
    with pytest.raises(KernelError):
        await session.start_kernel(kernel_name="nope")


async def test_execution_timeout(session: AsyncSession) -> None:
    cell_id = await session.create_cell("import time; time.sleep(30)")
    started = time.monotonic()
    with pytest.raises(ExecutionTimeoutError) as info:
        await session.execute_cell(cell_id, timeout_secs=2)
    assert time.monotonic() - started < 10
    assert isinstance(info.value, RuntimedError)
    await session.interrupt()


async def test_cancelling_the_caller_leaves_no_waiter_behind(session: AsyncSession) -> None:
    cell_id = await session.create_cell("import time; time.sleep(5)")
    task = asyncio.create_task(session.execute_cell(cell_id))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await session.interrupt()
    assert (await session.run("'still usable'")).success


# -- kernel lifecycle -----------------------------------------------------------------------------


async def test_kernel_lifecycle(session: AsyncSession, other: AsyncSession) -> None:
    await session.start_kernel(env_source="uv:prewarmed")
    assert session.kernel_started and session.env_source == "uv:prewarmed"
    await other.connect()
    assert other.kernel_started and other.kernel_name == "python3"

    await session.run("import os; marker = 'set'")
    pid = int((await other.run("os.getpid()")).display_data[0].data["text/plain"])  # one kernel for both

    cell_id = await session.create_cell("import time\nprint('go', flush=True)\ntime.sleep(60)")
    queue_id = await session.queue_cell(cell_id)

    async def running() -> bool:
        return bool((await session.get_cell(cell_id)).outputs)

    await eventually(running, 30)
    await other.interrupt()  # any peer can interrupt
    interrupted = await session.wait_for_execution(queue_id, timeout_secs=20)
    assert interrupted.error is not None and interrupted.error.ename == "KeyboardInterrupt"
    assert (await session.run("marker")).display_data[0].data["text/plain"] == "'set'"

    await session.restart_kernel()
    gone = await session.run("marker")
    assert gone.error is not None and gone.error.ename == "NameError"
    new_pid = int((await session.run("import os; os.getpid()")).display_data[0].data["text/plain"])
    assert new_pid != pid

    await session.shutdown_kernel()
    assert not session.kernel_started and session.env_source is None

    async def other_sees_shutdown() -> bool:
        return not other.kernel_started

    await eventually(other_sees_shutdown)
    for _ in range(200):
        if not pid_alive(new_pid):
            break
        await asyncio.sleep(0.1)
    assert not pid_alive(new_pid)
    assert (await session.run("1 + 1", timeout_secs=90)).success  # a new kernel starts by itself


async def test_async_session_in_an_ipykernel_cell(session: AsyncSession, shared_daemon: DaemonProcess) -> None:
    """Top-level await in a real Jupyter kernel cell."""
    code = textwrap.dedent(f"""
        import runtimed
        async with runtimed.AsyncSession(home={str(shared_daemon.home.path)!r}) as inner:
            r = await inner.run("'awaited'")
        print(r.display_data[0].data["text/plain"])
    """)
    result = await session.run(code, timeout_secs=90)
    assert result.success, result.error and "\n".join(result.error.traceback)
    assert result.stdout == "'awaited'\n"
