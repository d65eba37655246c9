"""runtimed.Session (the blocking API) against a real daemon with real ipykernel kernels.

One daemon serves the module (in a temporary RUNTIMED_HOME); every test works on its own
notebook, so each gets its own kernel. The embedded-default test starts its own daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nbformat
import pytest
from conftest import DaemonProcess, running_daemon

import runtimed
from runtimed import (
    CellNotFoundError,
    DaemonClient,
    EventRejected,
    ExecutionTimeoutError,
    KernelError,
    RuntimedError,
    Session,
)
from runtimed.client.session import _LoopThread
from runtimed.home import pid_alive
from runtimed.schema.events import make_event

pytestmark = pytest.mark.timeout(120)
T = TypeVar("T")


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("session-home")
    with running_daemon(home, "--pool-size", "2") as proc:
        yield proc


@pytest.fixture
def session(shared_daemon: DaemonProcess) -> Iterator[Session]:
    s = Session()
    yield s
    end_kernel_nowait(s)
    s.close()


def end_kernel_nowait(s: Session) -> None:
    """End the notebook's runtime session without waiting for the kernel to exit.

    Kernels of finished tests would otherwise pile up until the idle timeout.
    """
    active = s._async._active_session() if s.is_connected else None
    if active is not None:
        with contextlib.suppress(RuntimedError):
            _LoopThread.run(s.client.commit([make_event("runtimeSessionEnded", session_id=active["session_id"],
                                                        reason="shutdown")]))


@pytest.fixture
def other(session: Session) -> Iterator[Session]:
    """A second session on the same notebook (same process)."""
    s = Session(session.notebook_id, peer_label="other")
    yield s
    s.close()


def eventually(check: Callable[[], T], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy (the replicas sync asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


def events_named(session: Session, name: str) -> list[dict[str, Any]]:
    """The args of every event called ``name`` in the session's replica of the log."""
    rows = session.client.replica.conn.execute("SELECT args FROM events WHERE name = ? ORDER BY seq", (name,))
    return [json.loads(r[0]) for r in rows]


def room(notebook_id: str) -> dict[str, Any]:
    return next(r for r in DaemonClient().list_rooms() if r["notebook_id"] == notebook_id)


# -- connectivity ---------------------------------------------------------------------------------


def test_connect_creates_the_notebook(session: Session) -> None:
    assert re.fullmatch(r"agent-session-[0-9a-f-]{36}", session.notebook_id)
    uuid.UUID(session.notebook_id.removeprefix("agent-session-"))
    assert not session.is_connected
    session.connect()
    assert session.is_connected
    assert not session.kernel_started and session.env_source is None
    assert session.url.endswith(f"/?notebook={session.notebook_id}")
    info = room(session.notebook_id)
    assert info["active_peers"] == 1 and info["has_kernel"] is False and info["status"] == "no runtime"
    assert "connected" in repr(session) and session.notebook_id in repr(session)
    session.connect()  # idempotent
    session.close()
    assert not session.is_connected and "disconnected" in repr(session)
    session.close()  # idempotent


def test_methods_connect_by_themselves(session: Session) -> None:
    cell_id = session.create_cell("1 + 1")
    assert session.is_connected
    assert session.get_cell(cell_id).source == "1 + 1"


def test_context_manager(shared_daemon: DaemonProcess) -> None:
    with Session(f"ctx-{uuid.uuid4().hex[:8]}") as s:
        assert s.is_connected
        s.create_cell("x")
    assert not s.is_connected
    with Session(s.notebook_id) as again:  # the notebook outlives its sessions
        assert [c.source for c in again.get_cells()] == ["x"]


def test_reconnects_after_close(session: Session) -> None:
    cell_id = session.create_cell("a = 1")
    session.close()
    assert session.get_cell(cell_id).source == "a = 1"
    assert session.is_connected


def test_explicit_notebook_id_joins_the_same_document(session: Session, other: Session) -> None:
    cell_id = session.create_cell("shared = True")
    assert other.notebook_id == session.notebook_id
    assert eventually(lambda: [c.id for c in other.get_cells()]) == [cell_id]


def test_peers(session: Session, other: Session) -> None:
    session.connect()
    other.connect()
    peers = eventually(lambda: len(p := session.get_peers()) == 2 and p)
    assert sorted(p["is_self"] for p in peers) == [False, True]
    names = {p["actor"]["name"] for p in peers if not p["is_self"]}
    assert names == {"other"}
    other.close()
    assert eventually(lambda: len(session.get_peers()) == 1)


def test_a_dropped_session_disconnects(shared_daemon: DaemonProcess) -> None:
    s = Session()
    s.connect()
    notebook_id = s.notebook_id
    assert room(notebook_id)["active_peers"] == 1
    del s
    gc.collect()
    assert eventually(lambda: room(notebook_id)["active_peers"] == 0)


def test_embedded_default_daemon_starts_on_connect(home: Path) -> None:
    """With only RUNTIMED_HOME set and no daemon, Session().connect() starts the embedded one."""
    client = DaemonClient()
    assert not client.is_running() and not client.ping()
    session = Session()
    try:
        session.connect()
        assert client.ping() and client.is_running()
        status = client.status()
        assert status["version"] == runtimed.__version__
        assert Path(status["home"]) == home
        result = session.run("print('embedded')")
        assert result.stdout == "embedded\n"
    finally:
        session.close()
        info = client.home.read_daemon_info() or {}
        assert client.shutdown() is True
    assert not client.ping()
    assert not pid_alive(info["pid"]) or not client.is_running()


def test_survives_a_daemon_restart(daemon: DaemonProcess) -> None:
    """The daemon stops and comes back (on another port): the next call finds it and resumes the notebook."""
    with Session() as s:
        cell_id = s.create_cell("print('before')")
        old_url = daemon.url
        daemon.stop()
        eventually(lambda: not s.is_connected)
        daemon.start()
        assert daemon.url != old_url
        assert [c.id for c in s.get_cells()] == [cell_id]
        assert s.is_connected and s.url.startswith(daemon.url)
        assert s.execute_cell(cell_id).stdout == "before\n"


# -- document operations --------------------------------------------------------------------------


def test_create_and_read_cells(session: Session) -> None:
    code = session.create_cell("x = 1")
    md = session.create_cell("# Title", cell_type="markdown")
    raw = session.create_cell("raw text", cell_type="raw")
    empty = session.create_cell()
    cell = session.get_cell(code)
    assert (cell.id, cell.cell_type, cell.source, cell.execution_count, cell.outputs, cell.metadata) == (
        code, "code", "x = 1", None, [], {})
    assert session.get_cell(md).cell_type == "markdown"
    assert session.get_cell(raw).cell_type == "raw"
    assert session.get_cell(empty).source == ""
    assert [c.id for c in session.get_cells()] == [code, md, raw, empty]
    assert "Cell(id=" in repr(cell) and "x = 1" in repr(cell)


def test_create_cell_index(session: Session) -> None:
    b = session.create_cell("b")
    a = session.create_cell("a", index=0)
    d = session.create_cell("d")
    c = session.create_cell("c", index=2)
    last_but_one = session.create_cell("c2", index=-1)
    assert [x.source for x in session.get_cells()] == ["a", "b", "c", "c2", "d"]
    assert [x.id for x in session.get_cells()] == [a, b, c, last_but_one, d]


def test_set_and_append_source(session: Session) -> None:
    cell_id = session.create_cell("x = 1")
    session.set_source(cell_id, "x = 2\ny = 'ünïcødé ✓'")
    assert session.get_cell(cell_id).source == "x = 2\ny = 'ünïcødé ✓'"
    session.set_source(cell_id, "x = 2\ny = 'ünïcødé ✓'")  # unchanged: no event
    session.append_source(cell_id, "\nz = 3")
    assert session.get_cell(cell_id).source == "x = 2\ny = 'ünïcødé ✓'\nz = 3"
    session.set_source(cell_id, "")
    assert session.get_cell(cell_id).source == ""


def test_set_cell_type(session: Session) -> None:
    cell_id = session.create_cell("*text*")
    session.set_cell_type(cell_id, "markdown")
    assert session.get_cell(cell_id).cell_type == "markdown"


def test_move_and_delete(session: Session) -> None:
    a, b, c = (session.create_cell(s) for s in "abc")
    session.move_cell(a, after_cell_id=c)
    assert [x.source for x in session.get_cells()] == ["b", "c", "a"]
    session.move_cell(a)  # no anchor: to the top
    assert [x.source for x in session.get_cells()] == ["a", "b", "c"]
    session.move_cell(c, index=1)
    assert [x.source for x in session.get_cells()] == ["a", "c", "b"]
    session.delete_cell(c)
    assert [x.source for x in session.get_cells()] == ["a", "b"]
    with pytest.raises(CellNotFoundError):
        session.get_cell(c)


def test_metadata(session: Session) -> None:
    cell_id = session.create_cell("1")
    session.set_metadata("author", {"name": "Ada", "tags": [1, 2]})
    assert session.get_metadata("author") == {"name": "Ada", "tags": [1, 2]}
    assert session.get_metadata("missing") is None
    session.set_metadata("tags", ["parameters"], cell_id=cell_id)
    assert session.get_metadata("tags", cell_id=cell_id) == ["parameters"]
    cell = session.get_cell(cell_id)
    assert cell.metadata == {"tags": ["parameters"]} and cell.tags == ["parameters"]
    session.set_metadata("author", None)
    assert session.get_metadata("author") is None


def test_clear_outputs(session: Session) -> None:
    result = session.run("print('x')")
    assert session.get_cell(result.cell_id).outputs and session.get_cell(result.cell_id).execution_count
    session.clear_outputs(result.cell_id)  # as JupyterLab's Clear Outputs: the count goes too
    cleared = session.get_cell(result.cell_id)
    assert cleared.outputs == [] and cleared.execution_count is None
    kept = session.run("print('y')")
    count = session.get_cell(kept.cell_id).execution_count
    session.clear_outputs(kept.cell_id, keep_execution_count=True)
    assert session.get_cell(kept.cell_id).outputs == [] and session.get_cell(kept.cell_id).execution_count == count


def test_to_ipynb_and_save(session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session.create_cell("# Notes", cell_type="markdown")
    session.run("print('saved'); 40 + 2")
    nb = session.to_ipynb()
    nbformat.validate(nbformat.from_dict(nb))
    assert [c["cell_type"] for c in nb["cells"]] == ["markdown", "code"]
    path = session.save(tmp_path / "out.ipynb")
    assert isinstance(path, str) and Path(path).exists()
    saved = nbformat.read(path, as_version=4)
    outputs = saved.cells[1].outputs
    assert outputs[0]["text"] == "saved\n" and outputs[1]["data"]["text/plain"] == "42"
    monkeypatch.chdir(tmp_path)
    default = session.save()
    assert Path(default).name == f"{session.notebook_id}.ipynb" and Path(tmp_path, default).exists()


# -- document-first execution ---------------------------------------------------------------------


def test_execute_runs_the_source_the_document_holds(session: Session) -> None:
    cell_id = session.create_cell("value = 1\nprint(value)")
    session.set_source(cell_id, "value = 2\nprint(value)")
    result = session.execute_cell(cell_id)
    assert result.success and result.stdout == "2\n"
    assert result.source == "value = 2\nprint(value)"
    started = events_named(session, "executionStarted")
    assert started[-1]["source"] == "value = 2\nprint(value)"
    assert started[-1]["queueId"] == result.queue_id
    cell = session.get_cell(cell_id)
    assert cell.execution_count == result.execution_count and cell.outputs[0].text == "2\n"


def test_execute_runs_another_peers_edit(session: Session, other: Session) -> None:
    cell_id = session.create_cell("print('mine')")
    eventually(lambda: any(c.id == cell_id for c in other.get_cells()))
    other.set_source(cell_id, "print('theirs')")
    eventually(lambda: session.get_cell(cell_id).source == "print('theirs')")
    assert session.execute_cell(cell_id).stdout == "theirs\n"


def test_queue_cell_and_wait(session: Session) -> None:
    cell_id = session.create_cell("import time; time.sleep(0.2); 'done'")
    queue_id = session.queue_cell(cell_id)
    assert isinstance(queue_id, str)
    result = session.wait_for_execution(queue_id, timeout_secs=60)
    assert result.queue_id == queue_id and result.execute_result is not None
    assert result.execute_result.data["text/plain"] == "'done'"


def test_run_and_execution_counts(session: Session) -> None:
    first = session.run("a = 20")
    second = session.run("a + 22")
    assert first.success and first.outputs == [] and first.execution_count == 1
    assert second.execution_count == 2
    assert second.display_data[0].data["text/plain"] == "42"
    assert second.display_data[0].execution_count == 2
    assert len(session.get_cells()) == 2
    assert "ExecutionResult(" in repr(second) and "success=True" in repr(second)


def test_run_all(session: Session) -> None:
    session.create_cell("n = 1")
    session.create_cell("# heading", cell_type="markdown")
    session.create_cell("n += 1\nprint(n)")
    results = session.run_all()
    assert [r.success for r in results] == [True, True] and results[1].stdout == "2\n"
    session.create_cell("raise RuntimeError('stop here')")
    session.create_cell("print('never')")
    results = session.run_all()
    assert [r.status for r in results] == ["success", "success", "error", "cancelled"]
    assert results[2].error is not None and results[2].error.evalue == "stop here"
    assert results[3].outputs == [] and not results[3].success


def test_run_all_cells_only_queues(session: Session) -> None:
    session.create_cell("import time; time.sleep(0.3)")
    session.create_cell("print('b')")
    assert session.run_all_cells() == 2
    cells = session.get_cells()
    assert eventually(lambda: session.get_cell(cells[1].id).outputs, timeout=60)[0].text == "b\n"


# -- kernel lifecycle -----------------------------------------------------------------------------


def _runtime_of(notebook_id: str) -> dict[str, Any] | None:
    return next((r for r in DaemonClient().status()["runtimes"]
                 if r["notebook_id"] == notebook_id and r["status"] != "dead"), None)


def test_start_kernel(session: Session, other: Session) -> None:
    session.start_kernel(env_source="uv:prewarmed")
    assert session.kernel_started and session.kernel_name == "python3"
    assert session.env_source == "uv:prewarmed"
    assert session.get_metadata("kernelspec")["name"] == "python3"
    runtime = _runtime_of(session.notebook_id)
    assert runtime is not None and runtime["kernel_name"] == "python3"
    info = room(session.notebook_id)
    assert info["has_kernel"] and info["kernel"] == "python3" and info["status"] == "idle"
    session.run("kept = 'state'")
    session.start_kernel()  # already running: joined, state kept
    assert session.run("kept").display_data[0].data["text/plain"] == "'state'"
    assert _runtime_of(session.notebook_id)["runtime_id"] == runtime["runtime_id"]
    other.connect()
    assert eventually(lambda: other.kernel_started)  # shared
    assert other.env_source == "uv:prewarmed"


def test_start_kernel_unknown_kernel(session: Session) -> None:
    with pytest.raises(KernelError) as info:
        session.start_kernel(kernel_type="no-such-kernel")
    assert "no-such-kernel" in str(info.value) and "python3" in str(info.value)
    assert not session.kernel_started


def test_interrupt(session: Session) -> None:
    session.run("state = 'alive'")
    cell_id = session.create_cell("import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    queue_id = session.queue_cell(cell_id)
    eventually(lambda: session.get_cell(cell_id).outputs, timeout=30)
    started = time.monotonic()
    session.interrupt()
    result = session.wait_for_execution(queue_id, timeout_secs=20)
    assert time.monotonic() - started < 15
    assert not result.success and result.error is not None and result.error.ename == "KeyboardInterrupt"
    assert result.stdout == "sleeping\n"
    assert session.run("state").display_data[0].data["text/plain"] == "'alive'"  # same kernel


def test_interrupt_without_running_cell_is_harmless(session: Session) -> None:
    session.start_kernel()
    session.interrupt()
    assert session.run("1").success


def test_restart_kernel(session: Session) -> None:
    session.run("import os\nforgotten = 1")
    pid = session.run("os.getpid()").display_data[0].data["text/plain"]
    runtime = _runtime_of(session.notebook_id)
    session.restart_kernel()
    assert session.kernel_started
    result = session.run("forgotten")
    assert not result.success and result.error.ename == "NameError"
    assert result.execution_count == 1  # a fresh kernel counts from 1
    new_pid = session.run("import os; os.getpid()").display_data[0].data["text/plain"]
    assert new_pid != pid
    assert _runtime_of(session.notebook_id)["runtime_id"] == runtime["runtime_id"]  # the runtime goes on


def test_restart_kernel_while_a_cell_runs(session: Session) -> None:
    cell_id = session.create_cell("import time\nprint('running', flush=True)\ntime.sleep(60)")
    queue_id = session.queue_cell(cell_id)
    eventually(lambda: session.get_cell(cell_id).outputs, timeout=30)
    started = time.monotonic()
    session.restart_kernel(timeout_secs=30)
    result = session.wait_for_execution(queue_id, timeout_secs=20)
    assert time.monotonic() - started < 25
    assert not result.success and result.status == "error"
    assert session.run("1 + 1").display_data[0].data["text/plain"] == "2"


def test_restart_kernel_without_kernel_starts_one(session: Session) -> None:
    session.restart_kernel()
    assert session.kernel_started


def test_shutdown_kernel(session: Session, other: Session) -> None:
    session.start_kernel()
    pid = int(session.run("import os; os.getpid()").display_data[0].data["text/plain"])
    other.connect()
    eventually(lambda: other.kernel_started)
    session.shutdown_kernel()
    assert not session.kernel_started
    assert _runtime_of(session.notebook_id) is None
    eventually(lambda: not pid_alive(pid), timeout=20)
    assert eventually(lambda: not other.kernel_started)
    assert room(session.notebook_id)["has_kernel"] is False
    session.shutdown_kernel()  # nothing to shut down: fine
    # the next execution starts a new kernel by itself
    result = session.run("import os; os.getpid()", timeout_secs=90)
    assert result.success and int(result.display_data[0].data["text/plain"]) != pid
    assert session.kernel_started
    session.shutdown_kernel()
    session.start_kernel(timeout_secs=90)  # and start_kernel right after a shutdown works too
    assert session.kernel_started


# -- every output type ----------------------------------------------------------------------------

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_output_types(session: Session) -> None:
    code = textwrap.dedent(f"""
        import sys, base64
        from IPython.display import display, HTML, Markdown, JSON, Image
        print("to stdout")
        print("to stderr", file=sys.stderr)
        display(HTML("<b>bold</b>"))
        display(Markdown("*md*"))
        display(Image(data=base64.b64decode("{PNG}")))
        display({{"application/json": {{"a": [1, 2]}}, "text/plain": "json"}}, raw=True)
        display({{"text/plain": "with metadata"}}, raw=True, metadata={{"tag": "m"}})
        class Rich:
            def _repr_html_(self):
                return "<i>rich</i>"
        Rich()
    """)
    result = session.run(code)
    assert result.success, result.error
    kinds = [(o.output_type, o.name) for o in result.outputs]
    assert kinds == [("stream", "stdout"), ("stream", "stderr")] + [("display_data", None)] * 5 + [
        ("execute_result", None)]
    assert result.stdout == "to stdout\n" and result.stderr == "to stderr\n"
    html, md, image, js, meta, rich = result.display_data
    assert html.data["text/html"] == "<b>bold</b>"
    assert md.data["text/markdown"] == "*md*"
    assert image.data["image/png"].replace("\n", "") == PNG
    assert js.data["application/json"] == {"a": [1, 2]}
    assert meta.metadata == {"tag": "m"}
    assert rich.output_type == "execute_result" and rich.data["text/html"] == "<i>rich</i>"
    assert rich.execution_count == result.execution_count
    assert result.error is None
    assert [o.output_type for o in session.get_cell(result.cell_id).outputs] == [o.output_type for o in result.outputs]


def test_update_display(session: Session) -> None:
    result = session.run(textwrap.dedent("""
        from IPython.display import display
        handle = display({"text/plain": "first"}, raw=True, display_id="progress")
        handle.update({"text/plain": "second"}, raw=True)
    """))
    assert [o.data["text/plain"] for o in result.display_data] == ["second"]
    assert result.display_data[0].display_id == "progress"
    later = session.run('handle.update({"text/plain": "third"}, raw=True)')  # updates the earlier cell
    assert later.outputs == []
    assert session.get_cell(result.cell_id).outputs[0].data["text/plain"] == "third"


def test_clear_output_from_the_kernel(session: Session) -> None:
    result = session.run("from IPython.display import clear_output\nprint('a')\nclear_output()\nprint('b')")
    assert result.stdout == "b\n"
    waited = session.run("print('a')\nclear_output(wait=True)\nprint('c')")
    assert waited.stdout == "c\n"


def test_matplotlib_figure(session: Session) -> None:
    pytest.importorskip("matplotlib")
    result = session.run("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
                         "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    assert result.success, result.error
    assert any("image/png" in o.data for o in result.display_data)


# -- terminal emulation ---------------------------------------------------------------------------


def test_carriage_return_overwrites(session: Session) -> None:
    assert session.run("print('hello\\rJE')").stdout == "JEllo\n"


def test_progress_bar_stays_one_line(session: Session) -> None:
    result = session.run(textwrap.dedent("""
        import time
        for i in range(101):
            print(f"\\rprogress {i:3d}%", end="", flush=True)
            if i % 20 == 0:
                time.sleep(0.06)
        print()
    """))
    assert result.stdout == "progress 100%\n"
    assert len([o for o in result.outputs if o.output_type == "stream"]) == 1


def test_tqdm_progress_bar(session: Session) -> None:
    result = session.run("from tqdm import tqdm\nfor _ in tqdm(range(50), ascii=True, mininterval=0): pass")
    if not result.success and result.error.ename == "ModuleNotFoundError":
        pytest.skip("tqdm is not installed in the kernel")
    assert "\r" not in result.stderr
    assert result.stderr.count("\n") == 1 and "50/50" in result.stderr


def test_backspace(session: Session) -> None:
    assert session.run("print('abc\\b\\bX')").stdout == "aXc\n"


def test_interleaved_streams(session: Session) -> None:
    result = session.run(textwrap.dedent("""
        import sys
        for i in range(3):
            print("out", i, flush=True)
            print("err", i, file=sys.stderr, flush=True)
    """))
    names = [o.name for o in result.outputs]
    assert names == ["stdout", "stderr"] * 3
    assert result.stdout == "out 0\nout 1\nout 2\n"
    assert result.stderr == "err 0\nerr 1\nerr 2\n"


def test_ansi_colours_are_kept(session: Session) -> None:
    result = session.run("print('\\x1b[31mred\\x1b[0m plain')")
    assert result.stdout == "\x1b[31mred\x1b[0m plain\n"


def test_long_output(session: Session) -> None:
    result = session.run("for i in range(20000): print(i)")
    lines = result.stdout.splitlines()
    assert len(lines) == 20000 and lines[-1] == "19999"


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_cell(session: Session) -> None:
    with pytest.raises(CellNotFoundError) as info:
        session.get_cell("no-such-cell")
    assert str(info.value) == "Cell not found: no-such-cell"
    assert isinstance(info.value, RuntimedError)
    for call in (lambda: session.set_source("nope", "x"), lambda: session.execute_cell("nope"),
                 lambda: session.delete_cell("nope"), lambda: session.move_cell("nope"),
                 lambda: session.clear_outputs("nope"), lambda: session.queue_cell("nope"),
                 lambda: session.set_metadata("k", 1, cell_id="nope")):
        with pytest.raises(CellNotFoundError, match="Cell not found: nope"):
            call()


def test_syntax_error(session: Session) -> None:
    result = session.run("def broken(:\n    pass")
    assert not result.success and result.status == "error"
    assert result.error is not None and result.error.ename == "SyntaxError"
    assert result.error.traceback


def test_exception_with_traceback(session: Session) -> None:
    result = session.run(textwrap.dedent("""
        def inner():
            raise ValueError("boom")
        def outer():
            inner()
        print("before")
        outer()
    """))
    assert not result.success
    assert result.stdout == "before\n"
    error = result.error
    assert error is not None and (error.ename, error.evalue) == ("ValueError", "boom")
    text = "\n".join(error.traceback)
    assert "inner" in text and "outer" in text and "ValueError" in text
    assert session.run("1 + 1").success  # the kernel goes on


def test_execution_timeout(session: Session) -> None:
    session.start_kernel()
    cell_id = session.create_cell("import time\ntime.sleep(30)")
    started = time.monotonic()
    with pytest.raises(ExecutionTimeoutError) as info:
        session.execute_cell(cell_id, timeout_secs=1)
    assert time.monotonic() - started < 10
    assert "interrupt()" in str(info.value)
    session.interrupt()
    assert eventually(lambda: session.get_cell(cell_id).outputs, timeout=20)[0].ename == "KeyboardInterrupt"


def test_notebook_execution_timeout_setting(session: Session) -> None:
    """The runtime stops a cell that outlives the notebook's execution_timeout (runtimed metadata)."""
    session.set_metadata("runtimed", {"execution_timeout": 1})
    result = session.run("import time; time.sleep(20)", timeout_secs=30)
    assert not result.success and result.error is not None and result.error.ename == "ExecutionTimeout"


def test_markdown_cells_do_not_execute(session: Session) -> None:
    cell_id = session.create_cell("# title", cell_type="markdown")
    with pytest.raises(RuntimedError, match="only code cells execute"):
        session.execute_cell(cell_id)


def test_invalid_cell_type(session: Session) -> None:
    with pytest.raises(EventRejected):
        session.create_cell("x", cell_type="spreadsheet")


def test_unknown_queue_id(session: Session) -> None:
    with pytest.raises(RuntimedError, match="no execution"):
        session.wait_for_execution("q-missing", timeout_secs=1)


# -- inside a running event loop ------------------------------------------------------------------


def test_sync_session_inside_asyncio_run(shared_daemon: DaemonProcess) -> None:
    async def main() -> tuple[str, str]:
        asyncio.get_running_loop()  # a loop is running here, as in Jupyter
        with Session() as s:
            result = s.run("print('from inside a loop')")
            cell = s.get_cell(result.cell_id)
        await asyncio.sleep(0)
        return result.stdout, cell.outputs[0].text or ""

    assert asyncio.run(main()) == ("from inside a loop\n", "from inside a loop\n")


def test_sync_session_inside_an_ipykernel_cell(session: Session, shared_daemon: DaemonProcess) -> None:
    """A real Jupyter kernel cell (itself run by runtimed) uses the blocking Session API."""
    code = textwrap.dedent(f"""
        import asyncio, runtimed
        try:
            asyncio.get_running_loop()
            loop_running = True
        except RuntimeError:
            loop_running = asyncio.get_event_loop().is_running()
        with runtimed.Session(home={str(shared_daemon.home.path)!r}, peer_label="inner") as inner:
            r = inner.run("6 * 7")
            print(loop_running, r.display_data[0].data["text/plain"], inner.notebook_id)
    """)
    result = session.run(code, timeout_secs=90)
    assert result.success, result.error and "\n".join(result.error.traceback)
    loop_running, value, inner_id = result.stdout.split()
    assert value == "42" and loop_running == "True"
    assert inner_id != session.notebook_id
