"""Runtime agents (DESIGN 5 and 6) end to end: a real daemon, real kernels, driven through AsyncSession.

One daemon with managed runtimes serves the module. Most tests share one notebook (and so one
kernel): cells are independent, and it keeps the module fast. Tests that need their own notebook
settings (timeouts, run-all, kernelspecs) use their own notebook.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DaemonProcess

from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.session import AsyncSession
from runtimed.schema import views
from runtimed.schema.events import make_event

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

SHARED = "rt-shared"
INPUT_TIMEOUT = 1.5
EVENT_LIMIT = 1024 * 1024  # small, so that outputs above it are cheap to make


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon with managed runtimes for the module (a short input() timeout, a 1 MiB event limit)."""
    home = tmp_path_factory.mktemp("rt-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNTIMED_INPUT_TIMEOUT", str(INPUT_TIMEOUT))
        mp.setenv("RUNTIMED_LIMIT_MAX_EVENT_BYTES", str(EVENT_LIMIT))
        proc = DaemonProcess(home)
        proc.start()
    yield proc
    proc.stop()


def endpoint(d: DaemonProcess) -> DaemonEndpoint:
    return DaemonEndpoint(d.url, d.token)


def session(d: DaemonProcess, notebook_id: str = SHARED) -> AsyncSession:
    return AsyncSession(notebook_id, endpoint=endpoint(d))


def api(d: DaemonProcess, method: str, path: str) -> Any:
    response = httpx.request(method, f"{d.url}{path}", headers={"Authorization": f"Bearer {d.token}"}, timeout=30)
    response.raise_for_status()
    return response.json()


def rows(s: AsyncSession, sql: str, *params: Any) -> list[tuple]:
    return s.client.replica.conn.execute(sql, params).fetchall()


def log_events(s: AsyncSession, *names: str) -> list[dict[str, Any]]:
    marks = ",".join("?" * len(names))
    return [{"seq": seq, "name": name, "args": json.loads(args)}
            for seq, name, args in rows(s, f"SELECT seq, name, args FROM events WHERE name IN ({marks}) ORDER BY seq",
                                        *names)]


def status_of(s: AsyncSession, queue_id: str) -> str | None:
    found = views.executions(s.client.replica.conn, queue_id=queue_id)
    return found[0]["status"] if found else None


async def wait_status(s: AsyncSession, queue_id: str, *statuses: str, timeout: float = 30) -> str:
    return await s.client.wait_for(lambda: status_of(s, queue_id) in statuses and status_of(s, queue_id), timeout)


async def queue(s: AsyncSession, code: str) -> tuple[str, str]:
    cell_id = await s.create_cell(code)
    return cell_id, await s.queue_cell(cell_id)


def stream_text(result: Any, name: str = "stdout") -> str:
    return "".join(o.text or "" for o in result.outputs if o.output_type == "stream" and o.name == name)


def stored_bytes(s: AsyncSession, output_id: str) -> tuple[int, int]:
    """(events, bytes of their args JSON) of one stream output: its outputAdded and streamTextChanged events."""
    found = [e for e in log_events(s, "outputAdded", "streamTextChanged") if e["args"].get("outputId") == output_id]
    return len(found), sum(len(json.dumps(e["args"], separators=(",", ":"))) for e in found)


# -- daemon-managed runtimes -------------------------------------------------------------------------


async def test_first_request_starts_a_runtime_with_the_notebooks_kernelspec(rt: DaemonProcess) -> None:
    async with session(rt, "rt-first") as s:
        await s.set_metadata("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
        assert views.active_session(s.client.replica.conn) is None
        result = await s.run("import sys; print(sys.executable)")
        assert result.success, result.outputs
        requested = log_events(s, "executionRequested")[0]["seq"]
        started = log_events(s, "runtimeSessionStarted")
        assert len(started) == 1 and started[0]["seq"] > requested
        assert started[0]["args"]["kernelName"] == "python3"
        active = views.active_session(s.client.replica.conn)
        assert active is not None and active["kernel_name"] == "python3"
        runtimes = api(rt, "GET", "/api/runtimes")
        assert any(r["notebook_id"] == "rt-first" and r["runtime_id"] == active["runtime_id"] for r in runtimes)


async def test_unknown_kernelspec_fails_the_request_naming_available_kernels(rt: DaemonProcess) -> None:
    async with session(rt, "rt-unknown-kernel") as s:
        await s.set_metadata("kernelspec", {"name": "no-such-kernel", "display_name": "?", "language": "?"})
        result = await s.run("1 + 1", timeout_secs=60)
        assert result.status == "error"
        error = result.error
        assert error is not None and error.ename == "KernelStartFailed"
        assert "no-such-kernel" in error.evalue and "python3" in error.evalue
        assert views.active_session(s.client.replica.conn) is None


async def test_working_directory_from_metadata(rt: DaemonProcess, tmp_path: Path) -> None:
    async with session(rt, "rt-cwd") as s:
        await s.set_metadata("runtimed", {"cwd": str(tmp_path / "missing")})
        failed = await s.run("1", timeout_secs=60)
        assert failed.status == "error" and failed.error.ename == "KernelStartFailed"
        assert "missing" in failed.error.evalue and "does not exist" in failed.error.evalue
        await s.set_metadata("runtimed", {"cwd": str(tmp_path)})
        result = await s.run("import os; os.getcwd()", timeout_secs=60)
        assert result.success and result.outputs[0].data["text/plain"] == repr(str(tmp_path))


# -- outputs -----------------------------------------------------------------------------------------


async def test_stream_stdout_and_stderr(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        result = await s.run("import sys\nprint('to out')\nprint('to err', file=sys.stderr)")
        assert result.success
        assert stream_text(result) == "to out\n"
        assert stream_text(result, "stderr") == "to err\n"


async def test_execute_result_and_display_data(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        result = await s.run("from IPython.display import display, HTML\ndisplay(HTML('<b>bold</b>'))\n6 * 7")
        assert result.success
        kinds = [o.output_type for o in result.outputs]
        assert kinds == ["display_data", "execute_result"]
        assert result.outputs[0].data["text/html"] == "<b>bold</b>"
        assert result.outputs[1].data == {"text/plain": "42"}
        assert result.outputs[1].execution_count == result.execution_count is not None


async def test_error_with_traceback(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        result = await s.run("def f():\n    return 1 / 0\nf()")
        assert result.status == "error" and not result.success
        error = result.error
        assert error is not None and error.ename == "ZeroDivisionError" and "division by zero" in error.evalue
        assert len(error.traceback) >= 2 and any("f()" in line for line in error.traceback)
        item = views.executions(s.client.replica.conn, cell_id=result.cell_id)[-1]
        assert item["error"]["ename"] == "ZeroDivisionError"


async def test_update_display_data_by_display_id(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        first = await s.run("from IPython.display import display\nh = display('one', display_id=True)\n"
                            "h2 = display('other', display_id='fixed')\nh.update('two')")
        assert first.success
        assert [o.data["text/plain"] for o in first.outputs] == ["'two'", "'other'"]
        assert first.outputs[0].display_id and first.outputs[1].display_id == "fixed"
        # an update from a later cell reaches the output of the earlier one
        later = await s.run("h.update('three'); h2.update('changed')")
        assert later.success and later.outputs == []
        cell = await s.get_cell(first.cell_id)
        assert [o.data["text/plain"] for o in cell.outputs] == ["'three'", "'changed'"]


async def test_clear_output_wait_clears_on_the_next_output(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        result = await s.run("from IPython.display import clear_output\nfor i in range(5):\n"
                             "    clear_output(wait=True)\n    print('step', i)")
        assert result.success
        assert [(o.output_type, o.text) for o in result.outputs] == [("stream", "step 4\n")]
        # wait=True with nothing after it keeps what is shown; wait=False clears at once
        kept = await s.run("print('stays')\nclear_output(wait=True)")
        assert stream_text(kept) == "stays\n"
        gone = await s.run("print('goes')\nclear_output()")
        assert gone.outputs == []


async def test_page_payload_arrives_as_output(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        result = await s.run("print?")
        assert result.success
        pages = [o for o in result.outputs if o.output_type == "display_data"]
        assert pages and "Docstring" in pages[0].data["text/plain"]


async def test_input_answered_with_input_replied(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        cell_id = await s.create_cell("name = input('Your name? ')\nprint('hello', name)")
        queue_id = await s.queue_cell(cell_id, allow_stdin=True)  # this client answers (by hand, below)
        pending = await s.client.wait_for(lambda: views.pending_inputs(s.client.replica.conn), 30)
        assert pending == [{"queue_id": queue_id, "prompt": "Your name? ", "password": False}]
        await s.client.commit([make_event("inputReplied", queue_id=queue_id, value="Ada")])
        result = await s.wait_for_execution(queue_id)
        assert result.success, result.outputs
        assert "hello Ada\n" in stream_text(result)
        assert views.pending_inputs(s.client.replica.conn) == []


async def test_input_unanswered_times_out_with_a_clear_error(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        started = time.monotonic()
        queue_id = await s.queue_cell(await s.create_cell("input('never answered: ')"), allow_stdin=True)
        result = await s.wait_for_execution(queue_id, timeout_secs=30)
        assert time.monotonic() - started < INPUT_TIMEOUT + 5
        assert result.status == "error"
        item = views.executions(s.client.replica.conn, cell_id=result.cell_id)[-1]
        assert item["error"]["ename"] == "InputTimeout"
        assert f"{INPUT_TIMEOUT:g} s" in item["error"]["evalue"]
        assert any(o.ename == "InputTimeout" for o in result.outputs)
        assert views.pending_inputs(s.client.replica.conn) == []
        # the kernel goes on
        assert (await s.run("'next'")).success


async def test_outputs_larger_than_an_event_are_split_or_stored_as_artifacts(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        big = await s.run("print('y' * 1_500_000)")
        assert big.success and stream_text(big) == "y" * 1_500_000 + "\n"
        huge = await s.run("from IPython.display import HTML, display\ndisplay(HTML('x' * 2_000_000))\n'after'")
        assert huge.success
        # over the inline threshold: stored as an artifact, the event keeps only a reference (issue 15)
        assert [o.output_type for o in huge.outputs] == ["display_data", "execute_result"]
        assert huge.outputs[0].data["text/html"] == "x" * 2_000_000


# -- streams rendered like a terminal ---------------------------------------------------------------


async def test_carriage_return_backspace_and_ansi(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        result = await s.run("print('hello world\\rHELLO')\nprint('abc\\b\\bX')\n"
                             "print('\\x1b[31mred\\x1b[0m plain')")
        assert stream_text(result) == "HELLO world\naXc\n\x1b[31mred\x1b[0m plain\n"


async def test_progress_bar_ends_as_its_final_line(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        result = await s.run("import time\nprint('start')\nfor i in range(101):\n"
                             "    print(f'\\rprogress {i:3d}% ' + '#' * (i // 10), end='', flush=True)\n"
                             "    time.sleep(0.002)\nprint()\nprint('end')")
        assert result.success
        assert stream_text(result) == "start\nprogress 100% ##########\nend\n"
        assert len(result.outputs) == 1  # consecutive writes coalesce into one output


async def test_interleaved_stdout_and_stderr_kept_apart(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        result = await s.run("import sys\nfor i in range(5):\n    print('out', i, flush=True)\n"
                             "    print('err', i, file=sys.stderr, flush=True)")
        assert stream_text(result) == "".join(f"out {i}\n" for i in range(5))
        assert stream_text(result, "stderr") == "".join(f"err {i}\n" for i in range(5))


async def test_ten_thousand_step_progress_bar_stays_small(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        result = await s.run("for i in range(10_000):\n    print(f'\\r{i + 1:5d}/10000 ' + '#' * (i // 500), "
                             "end='', flush=True)\nprint()")
        assert result.success
        assert stream_text(result) == "10000/10000 " + "#" * 19 + "\n"
        assert len(result.outputs) == 1
        output_id = views.outputs_by_cell(s.client.replica.conn, result.cell_id)[result.cell_id][0]["output_id"]
        count, size = stored_bytes(s, output_id)
        assert size < 10 * 1024, (count, size)
        # the REST log says the same
        logged = api(rt, "GET", f"/api/notebooks/{SHARED}/events?since=0&limit=100000")["events"]
        same = [e for e in logged if e["name"] in ("outputAdded", "streamTextChanged")
                and e["args"].get("outputId") == output_id]
        assert len(same) == count
        assert sum(len(json.dumps(e["args"], separators=(",", ":"))) for e in same) == size


# -- control -----------------------------------------------------------------------------------------


async def test_interrupt_ends_a_sleep_with_keyboard_interrupt(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        cell_id, queue_id = await queue(s, "import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
        await s.client.wait_for(lambda: views.outputs_by_cell(s.client.replica.conn, cell_id).get(cell_id), 30)
        started = time.monotonic()
        await s.interrupt()
        result = await s.wait_for_execution(queue_id, 10)
        assert time.monotonic() - started < 2
        assert result.status == "error"
        assert result.error is not None and result.error.ename == "KeyboardInterrupt"
        assert (await s.run("'still here'")).success


async def test_cancel_one_pending_request(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        _, first = await queue(s, "import time; time.sleep(1)")
        _, second = await queue(s, "print('second')")
        _, third = await queue(s, "print('third')")
        await wait_status(s, first, "running")
        await s.client.commit([make_event("executionCancelRequested", queue_id=second)])
        await wait_status(s, second, "cancelled")  # at once if pending; claimed ahead: its runtime completes it
        assert (await s.wait_for_execution(first)).success
        assert (await s.wait_for_execution(third)).success
        assert status_of(s, second) == "cancelled"
        assert not [e for e in log_events(s, "executionStarted") if e["args"]["queueId"] == second]


async def test_cancel_all_interrupts_the_running_cell_and_drops_the_queue(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        cell_id, running = await queue(s, "import time\nprint('go', flush=True)\ntime.sleep(60)")
        rest = [(await queue(s, f"print({i})"))[1] for i in range(3)]
        await s.client.wait_for(lambda: views.outputs_by_cell(s.client.replica.conn, cell_id).get(cell_id), 30)
        started = time.monotonic()
        await s.client.commit([make_event("executionCancelRequested")])
        for q in rest:  # pending: cancelled at once; claimed ahead: completed as cancelled by the runtime
            await wait_status(s, q, "cancelled", timeout=10)
        assert not [e for e in log_events(s, "executionStarted") if e["args"]["queueId"] in rest]
        result = await s.wait_for_execution(running, 10)
        assert time.monotonic() - started < 2
        assert result.status == "cancelled"
        assert (await s.run("'after'")).success


async def test_deleting_the_running_cell_stops_it(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        cell_id, queue_id = await queue(s, "import time\nprint('running', flush=True)\ntime.sleep(60)")
        _, after = await queue(s, "'next'")
        await s.client.wait_for(lambda: views.outputs_by_cell(s.client.replica.conn, cell_id).get(cell_id), 30)
        started = time.monotonic()
        await s.delete_cell(cell_id)
        await wait_status(s, queue_id, "cancelled", "error", "success", timeout=10)
        assert status_of(s, queue_id) == "cancelled"
        assert time.monotonic() - started < 3
        assert (await s.wait_for_execution(after, 30)).success


async def test_cancel_while_waiting_for_input(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        queue_id = await s.queue_cell(await s.create_cell("input('waiting: ')"), allow_stdin=True)
        await s.client.wait_for(lambda: views.pending_inputs(s.client.replica.conn), 30)
        await s.client.commit([make_event("executionCancelRequested", queue_id=queue_id)])
        result = await s.wait_for_execution(queue_id, 10)
        assert result.status == "cancelled"
        assert views.pending_inputs(s.client.replica.conn) == []
        assert (await s.run("'fine'")).success


def gate(path: Path) -> str:
    """Code that runs until ``path`` exists (at most 60 s): the test decides when the cell ends."""
    return (f"import os, time\nfor _ in range(6000):\n    if os.path.exists({str(path)!r}):\n        break\n"
            "    time.sleep(0.01)")


def claimed_by(s: AsyncSession, queue_id: str) -> str | None:
    """The session an execution is claimed by while it waits (assigned, not started), else None."""
    found = views.executions(s.client.replica.conn, queue_id=queue_id)
    return found[0]["session_id"] if found and found[0]["status"] == "assigned" else None


async def test_queued_cells_are_claimed_ahead_and_run_in_order(rt: DaemonProcess, tmp_path: Path) -> None:
    """While a cell runs, the runtime claims the cells queued behind it (executionAssigned, no start yet); each
    then starts without a claim of its own, in request order, exactly once."""
    async with session(rt, "rt-claim-ahead") as s:
        go = tmp_path / "go"
        _, first = await queue(s, "order = []\n" + gate(go))
        rest = [(await queue(s, f"order.append({i})"))[1] for i in range(1, 6)]
        await wait_status(s, first, "running")
        active = await s.client.wait_for(lambda: views.active_session(s.client.replica.conn), 30)
        await s.client.wait_for(lambda: all(claimed_by(s, q) == active["session_id"] for q in rest), 30)
        assert not [e for e in log_events(s, "executionStarted") if e["args"]["queueId"] in rest]
        go.touch()
        for q in rest:
            assert (await s.wait_for_execution(q, 30)).success
        assert (await s.run("print(order)")).stdout == "[1, 2, 3, 4, 5]\n"
        events = log_events(s, "executionAssigned", "executionStarted", "executionCompleted")
        first_done = next(e["seq"] for e in events if e["name"] == "executionCompleted" and e["args"]["queueId"] == first)
        for q in rest:
            assigned = [e["seq"] for e in events if e["name"] == "executionAssigned" and e["args"]["queueId"] == q]
            assert len(assigned) == 1 and assigned[0] < first_done  # claimed ahead, once
        starts = [e["args"]["queueId"] for e in events if e["name"] == "executionStarted"]
        assert [q for q in starts if q in rest] == rest


async def test_cancel_of_a_claimed_ahead_cell(rt: DaemonProcess, tmp_path: Path) -> None:
    """A cancel of a claimed (not started) cell of a run-all ends it as cancelled without running it; as for a
    pending cell, the rest of its batch still runs."""
    async with session(rt, "rt-claim-cancel") as s:
        go = tmp_path / "go"
        cells = [await s.create_cell("marks = []\n" + gate(go))]
        cells += [await s.create_cell(f"marks.append({i})") for i in range(1, 4)]
        queue_ids = [f"q-claim-cancel-{i}" for i in range(4)]
        await s.client.commit([make_event("executionRequested", queue_id=q, cell_id=c, batch_id="b-claim-cancel")
                               for q, c in zip(queue_ids, cells, strict=True)])
        await wait_status(s, queue_ids[0], "running")
        active = await s.client.wait_for(lambda: views.active_session(s.client.replica.conn), 30)
        await s.client.wait_for(lambda: all(claimed_by(s, q) == active["session_id"] for q in queue_ids[1:]), 30)
        await s.client.commit([make_event("executionCancelRequested", queue_id=queue_ids[2])])
        assert await wait_status(s, queue_ids[2], "cancelled", "success", "error") == "cancelled"
        assert status_of(s, queue_ids[0]) == "running"  # nothing else changed
        assert claimed_by(s, queue_ids[3]) == active["session_id"]
        ended = [e for e in log_events(s, "executionCompleted") if e["args"]["queueId"] == queue_ids[2]]
        assert ended[0]["args"]["status"] == "cancelled"
        go.touch()
        assert (await s.wait_for_execution(queue_ids[3], 30)).success
        assert (await s.wait_for_execution(queue_ids[1], 30)).success
        assert (await s.run("print(marks)")).stdout == "[1, 3]\n"
        assert not [e for e in log_events(s, "executionStarted") if e["args"]["queueId"] == queue_ids[2]]


async def test_run_all_stops_on_error(rt: DaemonProcess) -> None:
    async with session(rt, "rt-run-all") as s:
        for code in ("a = 1", "print(a)", "raise ValueError('boom')", "print('never')", "b = 2"):
            await s.create_cell(code)
        results = await s.run_all(timeout_secs=60)
        assert [r.status for r in results] == ["success", "success", "error", "cancelled", "cancelled"]
        assert results[2].error is not None and results[2].error.ename == "ValueError"
        started = {e["args"]["queueId"] for e in log_events(s, "executionStarted")}
        assert len(started) == 3


async def test_execution_timeout_from_notebook_metadata(rt: DaemonProcess) -> None:
    async with session(rt, "rt-timeout") as s:
        await s.set_metadata("runtimed", {"execution_timeout": 1})
        started = time.monotonic()
        result = await s.run("import time\ntime.sleep(30)", timeout_secs=30)
        assert time.monotonic() - started < 10
        assert result.status == "error"
        item = views.executions(s.client.replica.conn, cell_id=result.cell_id)[-1]
        assert item["error"]["ename"] == "ExecutionTimeout"
        assert "timeout" in item["error"]["evalue"] and "1 s" in item["error"]["evalue"]
        assert any(o.ename == "ExecutionTimeout" for o in result.outputs)
        # a cell within the timeout is fine, and without the setting long cells run
        assert (await s.run("time.sleep(0.2); 'quick'")).success
        await s.set_metadata("runtimed", None)
        assert (await s.run("time.sleep(1.5)")).success


async def test_execution_timeout_of_a_cell_that_ignores_interrupts_restarts_the_kernel(rt: DaemonProcess) -> None:
    async with session(rt, "rt-timeout-stubborn") as s:
        await s.set_metadata("runtimed", {"execution_timeout": 1})
        assert (await s.run("state = 'kept?'")).success
        result = await s.run("import time\nwhile True:\n    try:\n        time.sleep(10)\n"
                             "    except KeyboardInterrupt:\n        pass", timeout_secs=30)
        item = views.executions(s.client.replica.conn, cell_id=result.cell_id)[-1]
        assert result.status == "error" and item["error"]["ename"] == "ExecutionTimeout"
        # the kernel was restarted to free it: the runtime goes on, the state is gone
        after = await s.run("state", timeout_secs=60)
        assert after.status == "error" and after.error.ename == "NameError"
        statuses = [e["args"] for e in log_events(s, "runtimeStatusChanged") if e["args"]["status"] == "restarting"]
        assert statuses and "did not stop" in statuses[-1]["detail"]


async def test_restart_clears_state_and_the_runtime_goes_on(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        assert (await s.run("x_before_restart = 42; import os; os.getpid()")).success
        session_id = views.active_session(s.client.replica.conn)["session_id"]
        await s.restart_kernel()
        result = await s.run("x_before_restart")
        assert result.status == "error" and result.error.ename == "NameError"
        assert (await s.run("'alive'")).outputs[0].data["text/plain"] == "'alive'"
        assert views.active_session(s.client.replica.conn)["session_id"] == session_id


async def test_restart_while_running_ends_the_cell_and_goes_on(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        cell_id, queue_id = await queue(s, "import time\nprint('busy', flush=True)\ntime.sleep(60)")
        _, after = await queue(s, "'after restart'")
        await s.client.wait_for(lambda: views.outputs_by_cell(s.client.replica.conn, cell_id).get(cell_id), 30)
        await s.restart_kernel()
        result = await s.wait_for_execution(queue_id, 20)
        assert result.status == "error"
        assert (await s.wait_for_execution(after, 30)).success
        restarts = [e for e in log_events(s, "runtimeStatusChanged") if e["args"]["status"] == "restarting"]
        assert len([e for e in restarts if e["seq"] > log_events(s, "executionStarted")[-2]["seq"]]) == 1


# -- faults ------------------------------------------------------------------------------------------


async def test_kernel_death_is_reported_and_the_kernel_restarts(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        assert (await s.run("state = 1")).success
        _, dying = await queue(s, "import os\nprint('bye', flush=True)\nos._exit(1)")
        _, after = await queue(s, "print('next cell runs')")
        result = await s.wait_for_execution(dying, 30)
        assert result.status == "error"
        item = views.executions(s.client.replica.conn, queue_id=dying)[0]
        assert item["error"]["ename"] == "KernelDied" and "restarted" in item["error"]["evalue"]
        assert any(o.ename == "KernelDied" for o in result.outputs)
        nxt = await s.wait_for_execution(after, 60)
        assert nxt.success and stream_text(nxt) == "next cell runs\n"
        assert (await s.run("state")).error.ename == "NameError"


async def test_client_disconnecting_mid_run_changes_nothing(rt: DaemonProcess) -> None:
    async with session(rt) as s:
        cell_id, queue_id = await queue(s, "import time\nprint('begin', flush=True)\ntime.sleep(3)\nprint('done')")
        await wait_status(s, queue_id, "running")
    # every client of the notebook is gone now; watch from outside (REST) until the cell is done
    assert not [p for p in api(rt, "GET", f"/api/notebooks/{SHARED}/peers") if p["actor"]["kind"] != "runtime"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        view = api(rt, "GET", f"/api/notebooks/{SHARED}")
        if next(c for c in view["cells"] if c["id"] == cell_id)["execution"]["status"] == "success":
            break
        await asyncio.sleep(0.2)
    async with session(rt) as s:
        result = await s.wait_for_execution(queue_id, 30)
        assert result.success
        assert stream_text(result) == "begin\ndone\n"
        cell = await s.get_cell(cell_id)
        assert cell.outputs[0].text == "begin\ndone\n"


async def test_sync_session_runs_cells(rt: DaemonProcess) -> None:
    from runtimed.client.session import Session

    def blocking() -> None:
        with Session(SHARED, endpoint=endpoint(rt)) as s:
            result = s.run("'from a blocking session'")
            assert result.success and result.outputs[0].data["text/plain"] == "'from a blocking session'"

    await asyncio.to_thread(blocking)

