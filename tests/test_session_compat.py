"""The published package's Session-era API on our daemon: per-cell accessors, cell metadata,
kernelspec, notebooks made or opened from files, streaming, subscriptions, the queue,
completions, history and presence. One real daemon (real kernels) serves the module."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import DaemonProcess, make_notebook, running_daemon, write

from runtimed import AsyncSession, Session
from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.models import ExecutionEvent
from runtimed.errors import RuntimedError
from runtimed.schema import views

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("compat-home")) as proc:
        yield proc


def endpoint(d: DaemonProcess) -> DaemonEndpoint:
    return DaemonEndpoint(d.url, d.token)


@pytest.fixture(scope="module")
def shared(daemon: DaemonProcess) -> Iterator[Session]:
    """One notebook with a kernel for the tests that only add cells to it."""
    with Session("compat-shared", endpoint=endpoint(daemon)) as s:
        yield s
        s.shutdown_kernel()


def eventually(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_per_cell_accessors(daemon: DaemonProcess) -> None:
    with Session("compat-accessors", endpoint=endpoint(daemon)) as s:
        a = s.create_cell("x = 40 + 2\nprint(x)")
        b = s.create_cell("# Title", cell_type="markdown", index=0)
        assert s.get_cell_ids() == [b, a]
        assert s.get_cell_source(a) == "x = 40 + 2\nprint(x)" and s.get_cell_type(b) == "markdown"
        assert s.get_cell_position(b) < s.get_cell_position(a)
        assert s.get_cell_execution_count(a) is None and s.get_cell_outputs(a) == []
        s.execute_cell(a)
        assert s.get_cell_execution_count(a) == 1
        assert [json.loads(o) for o in s.get_cell_outputs(a)] == [{"output_type": "stream", "name": "stdout",
                                                                   "text": "42\n"}]
        assert s.get_cell_source("nope") is None and s.get_cell_type("nope") is None
        assert s.get_cell_outputs("nope") is None and s.get_cell_position("nope") is None
        s.splice_source(a, 0, 1, "y = 1\nx")
        assert s.get_cell_source(a).startswith("y = 1\nx = 40")
        with pytest.raises(RuntimedError, match="cannot splice"):
            s.splice_source(a, 999, 0, "z")
        s.shutdown_kernel()


def test_cell_metadata_and_kernelspec(shared: Session) -> None:
    s = shared
    cell_id = s.create_cell("1")
    assert s.set_cell_metadata(cell_id, json.dumps({"foo": {"bar": 1}, "keep": True}))
    assert json.loads(s.get_cell_metadata(cell_id) or "") == {"foo": {"bar": 1}, "keep": True}
    s.set_cell_metadata(cell_id, {"keep": False})  # replaces: foo is gone
    assert s.get_cell(cell_id).metadata == {"keep": False}
    assert s.update_cell_metadata_at(cell_id, ["foo", "deep", "x"], "[1, 2]")
    assert s.get_cell(cell_id).metadata["foo"] == {"deep": {"x": [1, 2]}}
    s.set_cell_tags(cell_id, ["parameters", "slow"])
    s.set_cell_source_hidden(cell_id, True)
    s.set_cell_outputs_hidden(cell_id, True)
    cell = s.get_cell(cell_id)
    assert cell.tags == ["parameters", "slow"] and cell.is_source_hidden and cell.is_outputs_hidden
    assert json.loads(cell.metadata_json)["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    s.set_cell_source_hidden(cell_id, False)
    assert not s.get_cell(cell_id).is_source_hidden and s.get_cell(cell_id).is_outputs_hidden
    with pytest.raises(RuntimedError, match="not valid JSON"):
        s.set_cell_metadata(cell_id, "{broken")
    with pytest.raises(RuntimedError, match="list of strings"):
        s.set_cell_tags(cell_id, "parameters")  # type: ignore[arg-type]
    s.set_kernelspec("python3", "Python 3 (ipykernel)", "python")
    assert s.get_kernelspec() == {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def test_create_notebook_with_working_dir(daemon: DaemonProcess, tmp_path: Path) -> None:
    s = Session.create_notebook(runtime="python", working_dir=tmp_path, endpoint=endpoint(daemon))
    try:
        assert s.is_connected and s.get_kernelspec()["name"] == "python3"  # type: ignore[index]
        assert s.run("import os; print(os.getcwd())").stdout.strip() == str(tmp_path)
        assert s.kernel_type == "python3" and s.connection_info is not None
        s.shutdown_kernel()
    finally:
        s.close()
    with pytest.raises(RuntimedError, match="no kernel named"):
        Session.create_notebook(runtime="no-such-kernel", endpoint=endpoint(daemon))


def test_open_notebook_and_save_back(daemon: DaemonProcess, tmp_path: Path) -> None:
    path = write(make_notebook(("code", "value = 6 * 7\nvalue"), ("markdown", "# Notes")), tmp_path / "nb.ipynb")
    s = Session.open_notebook(path, endpoint=endpoint(daemon))
    try:
        assert [c.source for c in s.get_cells()] == ["value = 6 * 7\nvalue", "# Notes"]
        cell_id = s.get_cell_ids()[0]
        assert s.execute_cell(cell_id).execute_result.data["text/plain"] == "42"  # type: ignore[union-attr]
        assert s.run("import os; os.getcwd()").execute_result.data["text/plain"] == repr(str(tmp_path))  # type: ignore[union-attr]
        # the same path joins the same live notebook
        again = Session.open_notebook(str(path), endpoint=endpoint(daemon))
        assert again.notebook_id == s.notebook_id and len(again.get_cells()) == 3
        again.close()
        assert s.save() == str(path)
        saved = nbformat.read(path, as_version=4)
        assert saved.cells[0].outputs[0]["data"]["text/plain"] == "42" and len(saved.cells) == 3
        s.shutdown_kernel()
    finally:
        s.close()
    with pytest.raises(RuntimedError, match="no notebook file"):
        Session.open_notebook(tmp_path / "missing.ipynb", endpoint=endpoint(daemon))


def test_stream_execute_yields_outputs_in_order(shared: Session) -> None:
    cell_id = shared.create_cell("import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)\n"
                                 "display({'text/html': '<b>x</b>'}, raw=True)\n'end'")
    events = list(shared.stream_execute(cell_id))
    kinds = [e.event_type for e in events]
    assert kinds[0] == "execution_queued" and kinds[1] == "execution_started" and kinds[-1] == "done"
    outputs = [e for e in events if e.event_type == "output"]
    texts = [e.output.text for e in outputs if e.output and e.output.output_type == "stream"]
    assert texts[-1] == "0\n1\n2\n" and len(texts) >= 2  # the stream grew while the cell ran
    assert all(e.output_index == 0 for e in outputs if e.output and e.output.output_type == "stream")
    types = [e.output.output_type for e in outputs if e.output]
    assert types.index("display_data") < types.index("execute_result")
    assert events[-1].execution_count == shared.get_cell_execution_count(cell_id)
    assert len({e.queue_id for e in events if e.queue_id}) == 1
    failing = shared.create_cell("1/0")
    last = list(shared.stream_execute(failing, signal_only=True))
    assert last[-1].event_type == "error" and "ZeroDivisionError" in (last[-1].error_message or "")
    assert all(e.output is None for e in last if e.event_type == "output")


@pytest.mark.anyio
async def test_async_stream_execute(daemon: DaemonProcess) -> None:
    async with AsyncSession("compat-async-stream", endpoint=endpoint(daemon)) as s:
        cell_id = await s.create_cell("print('a'); 'b'")
        seen: list[ExecutionEvent] = [e async for e in await s.stream_execute(cell_id)]
        assert [e.event_type for e in seen if e.event_type != "output"] == ["execution_queued", "execution_started",
                                                                           "done"]
        assert any(e.output and e.output.text == "a\n" for e in seen)
        assert await s.get_cell_ids() == [cell_id] and await s.get_cell_source(cell_id) == "print('a'); 'b'"
        assert await s.get_cell_execution_count(cell_id) == 1
        await s.shutdown_kernel()


def test_subscribe_filters_by_cell_and_type(daemon: DaemonProcess) -> None:
    ep = endpoint(daemon)
    with Session("compat-subscribe", endpoint=ep) as watcher, Session("compat-subscribe", endpoint=ep) as writer:
        watched = writer.create_cell("print('watched')")
        other = writer.create_cell("print('other')")
        eventually(lambda: watched in watcher.get_cell_ids())
        only_done = watcher.subscribe(cell_ids=[watched], event_types=["done", "error"])
        everything = watcher.subscribe()
        writer.execute_cell(other)
        writer.set_source(watched, "print('changed')")
        writer.execute_cell(watched)
        first = next(only_done)
        assert first.event_type == "done" and first.cell_id == watched
        kinds: list[tuple[str, str | None]] = []
        for event in everything:
            kinds.append((event.event_type, event.cell_id))
            if event.event_type == "done" and event.cell_id == watched:
                break
        assert ("done", other) in kinds and ("cell_changed", watched) in kinds
        assert kinds.index(("cell_changed", watched)) < kinds.index(("done", watched))
        assert ("output", watched) in kinds
        only_done.close()
        everything.close()
        with pytest.raises(RuntimedError, match="unknown event type"):
            watcher.subscribe(event_types=["bogus"])
        writer.shutdown_kernel()


def test_queue_state_and_run_all_cells(daemon: DaemonProcess) -> None:
    with Session("compat-queue", endpoint=endpoint(daemon)) as s:
        s.start_kernel()
        slow = s.create_cell("import time; time.sleep(1.5)")
        waiting = s.create_cell("'after'")
        entries = s.queue_all_cells()
        assert [str(e) for e in entries] == [slow, waiting]
        state = eventually(lambda: (q := s.get_queue_state()).executing is not None and q)
        assert state.executing == slow and state.executing.execution_id == entries[0].execution_id
        assert state.queued == [waiting] and state.queued[0].execution_id == entries[1].execution_id
        result = s.wait_for_execution(entries[1].execution_id)
        assert result.execution_id == entries[1].execution_id
        empty = s.get_queue_state()
        assert empty.executing is None and empty.queued == []
        assert s.run_all_cells() == 2
        s.shutdown_kernel()


def test_complete_and_history_are_ephemeral(daemon: DaemonProcess) -> None:
    with Session("compat-kernel-questions", endpoint=endpoint(daemon)) as s:
        s.run("alpha_value = 1\nalphabet_soup = 2")
        head = s.client.replica.head
        completions = s.complete("alph")
        assert {"alpha_value", "alphabet_soup"} <= set(completions.matches)
        assert completions.cursor_start == 0 and completions.cursor_end == 4
        assert all(item.source == "kernel" for item in completions.items)
        middle = s.complete("x = alpha_v + 1", cursor_pos=11)
        assert middle.matches == ["alpha_value"] and (middle.cursor_start, middle.cursor_end) == (4, 11)
        s.set_metadata("probe", 1)  # logged after the questions, which logged nothing (the runtime may report idle)
        assert set(s.client.replica.view(views.event_names, head)) <= {"notebookMetadataSet", "runtimeStatusChanged"}
        marker = f"print('second {uuid.uuid4().hex}')"  # IPython searches every session of its history file
        s.run(marker)
        history = s.get_history(n=10)
        assert [h.source for h in history][-2:] == ["alpha_value = 1\nalphabet_soup = 2", marker]
        assert [h.source for h in s.get_history(pattern=marker[:30] + "*")] == [marker]
        s.shutdown_kernel()


def test_presence_between_two_sessions(daemon: DaemonProcess) -> None:
    ep = endpoint(daemon)
    with Session("compat-presence", "alice", endpoint=ep) as alice, Session("compat-presence", "bob", endpoint=ep) as bob:
        cell_id = alice.create_cell("x = 1\ny = 2")
        alice.set_cursor(cell_id, line=1, column=3)
        cursors = eventually(lambda: bob.get_remote_cursors())
        assert [(label, cell, line, col) for _, label, cell, line, col in cursors] == [("alice", cell_id, 1, 3)]
        assert alice.get_remote_cursors() == []
        alice.set_selection(cell_id, 0, 0, 1, 2)
        eventually(lambda: bob.get_remote_cursors() and bob.get_remote_cursors()[0][3:] == (1, 2))
        selection = eventually(lambda: next((p.get("selection") for p in bob.client.peers.values()
                                             if p.get("selection")), None))
        assert selection == {"anchor": {"line": 0, "column": 0}, "head": {"line": 1, "column": 2}}
        alice.clear_selection()
        eventually(lambda: not any(p.get("selection") for p in bob.client.peers.values()))
        assert bob.get_remote_cursors()[0][3:] == (1, 2)
        alice.clear_cursor()
        eventually(lambda: bob.get_remote_cursors() == [])
        peers = bob.get_peers()
        assert {p["peer_label"] for p in peers} >= {"alice", "bob"}
        assert all(p["peer_id"] == p["connectionId"] for p in peers)


def test_subscription_from_another_thread_sees_a_long_run(shared: Session) -> None:
    """A blocking subscription read in one thread while another thread runs cells."""
    cell_id = shared.create_cell("print('from thread')")
    events = shared.subscribe(cell_ids=[cell_id], event_types=["done"])
    runner = threading.Thread(target=shared.execute_cell, args=(cell_id,))
    runner.start()
    assert next(events).event_type == "done"
    runner.join(30)
    events.close()
