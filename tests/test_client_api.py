"""The published package's current async API (``Client``/``Notebook``) on our daemon, real kernels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import DaemonProcess, make_notebook, running_daemon, write

import runtimed
from runtimed import Client, Notebook
from runtimed.errors import NotFoundError

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("client-api-home")) as proc:
        yield proc


async def test_cells_run_and_read_without_await(daemon: DaemonProcess) -> None:
    async with Client(peer_label="tester") as client:
        notebook = await client.create_notebook()
        assert isinstance(notebook, Notebook) and notebook.is_connected
        cell = await notebook.cells.create("x = 2\nprint(x * 21)")
        first = await notebook.cells.insert_at(0, "# Intro", cell_type="markdown")
        assert notebook.cells.ids == [first.id, cell.id] and len(notebook.cells) == 2
        assert cell.id in notebook.cells and notebook.cells[cell.id] == cell
        assert notebook.cells.get_by_index(-1) == cell and notebook.cells.find("Intro") == [first]
        result = await cell.run()
        assert result.success and result.stdout == "42\n" and result.execution_id
        assert cell.outputs[0].text == "42\n" and cell.execution_count == 1 and cell.source.startswith("x = 2")
        with pytest.raises(TypeError, match="property"):
            notebook.cells.ids()  # type: ignore[operator]
        with pytest.raises(KeyError):
            notebook.cells["missing"]
        await cell.splice(0, 5, "x = 3")
        await cell.set_tags(["parameters"])
        await cell.set_source_hidden(True)
        assert cell.source == "x = 3\nprint(x * 21)" and cell.tags == ["parameters"] and cell.source_hidden
        assert not cell.outputs_hidden and cell.snapshot().metadata["tags"] == ["parameters"]
        execution = await cell.execute()
        assert execution.status in ("queued", "running", "done")
        result = await execution
        assert execution.done and execution.success and result.stdout == "63\n" and execution.execution_count == 2
        assert notebook.runtime.kernel.status in ("idle", "busy") and notebook.runtime.kernel.name == "python3"
        assert notebook.runtime.executions[execution.execution_id].status == "done"
        await first.move_after(cell)
        assert notebook.cells.ids == [cell.id, first.id]
        await first.delete()
        assert notebook.cells.ids == [cell.id]
        await notebook.stop_runtime()
        assert notebook.runtime.kernel.status == "not_started"


async def test_queue_all_run_all_and_results_by_id(daemon: DaemonProcess) -> None:
    async with Client() as client:
        notebook = await client.create_notebook()
        for code in ("a = 1", "b = a + 1", "b * 10"):
            await notebook.cells.create(code)
        executions = await notebook.queue_all()
        assert [e.cell_id for e in executions] == notebook.cells.ids
        last = await executions[-1]
        assert last.execute_result is not None and last.execute_result.data["text/plain"] == "20"
        again = await client.get_execution_result(executions[0].execution_id)
        assert again.success and again.cell_id == executions[0].cell_id
        with pytest.raises(NotFoundError):
            await client.get_execution_result("q-unknown")
        assert await notebook.run_all() == 3
        listed = {info.notebook_id: info for info in await client.list_active_notebooks()}
        assert listed[notebook.notebook_id].has_runtime
        joined = await client.join_notebook(notebook.notebook_id, peer_label="second")
        assert joined.cells.ids == notebook.cells.ids
        with pytest.raises(NotFoundError):
            await client.join_notebook("no-such-notebook")
        assert await client.ping() and await client.is_running() and "pool" in await client.status()
        await notebook.restart()
        assert (await (await notebook.cells.create("'a' in dir()")).run()).execute_result.data["text/plain"] == "False"  # type: ignore[union-attr]
        await notebook.stop_runtime()


async def test_presence_dependencies_and_files(daemon: DaemonProcess, tmp_path: Path) -> None:
    path = write(make_notebook(("code", "1 + 1")), tmp_path / "work.ipynb")
    async with Client(peer_label="alice") as alice, Client(peer_label="bob") as bob:
        mine = await alice.open_notebook(path)
        theirs = await bob.open_notebook(path)
        assert theirs.notebook_id == mine.notebook_id
        cell = mine.cells.get_by_index(0)
        await mine.presence.set_cursor(cell.id, 0, 3)
        cursors = await theirs.session.client.wait_for(lambda: theirs.session.client.peers and True, 20)
        assert cursors
        assert [c[1:] for c in await theirs.presence.get_remote_cursors()] == [("alice", cell.id, 0, 3)]
        assert any(label == "alice" for _, label in theirs.peers)
        assert await mine.add_dependencies(["six", "toolz"]) == ["six", "toolz"]
        assert await mine.remove_dependency("six") == ["toolz"] and await theirs.get_dependencies() == ["toolz"]
        result = await mine.sync_environment()  # a real uv environment (tests/test_environments.py)
        assert result.success and result.synced_packages == ["toolz"], result.error
        await cell.run()
        assert await mine.save() == str(path)
        assert nbformat.read(path, as_version=4).cells[0].outputs[0]["data"]["text/plain"] == "2"
        copy = tmp_path / "copy.ipynb"
        assert await mine.save_as(copy) == str(copy) and copy.exists()
        await mine.stop_runtime()


def test_exports() -> None:
    for name in ("Client", "Notebook", "NotebookInfo", "CellHandle", "CellCollection", "Execution", "Presence",
                 "CompletionResult", "ExecutionEvent", "QueueState", "sidecar"):
        assert name in runtimed.__all__ and getattr(runtimed, name) is not None
