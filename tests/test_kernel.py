"""KernelSession against real ipykernel kernels."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runtimed.errors import RuntimedError
from runtimed.runtime.kernel import (
    OUTPUT_MESSAGE_CHARS,
    OUTPUT_WINDOW_CHARS,
    KernelSession,
    UnknownKernelError,
    list_kernelspecs,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def kernel() -> AsyncIterator[KernelSession]:
    session = await KernelSession.start("python3")
    yield session
    await session.shutdown(now=True)


class Outputs(list[tuple[str, dict[str, Any]]]):
    """Collects on_output calls."""

    def __call__(self, kind: str, content: dict[str, Any]) -> None:
        self.append((kind, content))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self]

    def coalesced(self) -> list[tuple[str, dict[str, Any]]]:
        """Consecutive writes to one stream joined: ipykernel may split ``print`` in two messages."""
        merged: list[tuple[str, dict[str, Any]]] = []
        for kind, content in self:
            last = merged[-1] if merged else None
            if (
                kind == "stream"
                and last is not None
                and last[0] == "stream"
                and last[1]["name"] == content["name"]
            ):
                merged[-1] = (kind, {**content, "text": last[1]["text"] + content["text"]})
                continue
            merged.append((kind, content))
        return merged


async def run(kernel: KernelSession, code: str, **kw: Any) -> tuple[Any, Outputs]:
    outputs = Outputs()
    reply = await kernel.execute(code, outputs, **kw)
    return reply, outputs


def test_list_kernelspecs() -> None:
    specs = list_kernelspecs()
    assert specs["python3"]["language"] == "python"
    assert specs["python3"]["display_name"]


async def test_unknown_kernel_lists_available() -> None:
    with pytest.raises(UnknownKernelError) as info:
        await KernelSession.start("no-such-kernel")
    assert isinstance(info.value, RuntimedError)
    assert "no-such-kernel" in info.value.message
    assert "python3" in info.value.message


async def test_properties(kernel: KernelSession) -> None:
    assert kernel.kernel_name == "python3"
    assert kernel.language == "python"
    assert kernel.execution_state == "idle"
    assert kernel.connection_file.endswith(".json") and os.path.exists(kernel.connection_file)
    reply, out = await run(kernel, "import os; os.getpid()")
    assert out[-1][1]["data"]["text/plain"] == str(kernel.pid)
    assert await kernel.is_alive()


async def test_streams_are_kept_apart_in_order(kernel: KernelSession) -> None:
    code = (
        "import sys\n"
        "for i in range(3):\n"
        "    print('out', i, flush=True)\n"
        "    print('err', i, file=sys.stderr, flush=True)\n"
    )
    reply, out = await run(kernel, code)
    assert reply.status == "ok"
    assert set(out.kinds()) == {"stream"}
    stdout = "".join(c["text"] for k, c in out if c["name"] == "stdout")
    stderr = "".join(c["text"] for k, c in out if c["name"] == "stderr")
    assert stdout == "out 0\nout 1\nout 2\n"
    assert stderr == "err 0\nerr 1\nerr 2\n"
    assert [c["name"] for _, c in out.coalesced()] == ["stdout", "stderr"] * 3


async def test_execute_result_has_execution_count(kernel: KernelSession) -> None:
    reply, out = await run(kernel, "6 * 7")
    assert reply.status == "ok" and reply.execution_count is not None
    assert out == [
        (
            "execute_result",
            {"data": {"text/plain": "42"}, "metadata": {}, "execution_count": reply.execution_count},
        )
    ]
    again, _ = await run(kernel, "None")
    assert again.execution_count == reply.execution_count + 1


async def test_silent_execution_has_no_result(kernel: KernelSession) -> None:
    reply, out = await run(kernel, "1 + 1", silent=True)
    assert reply.status == "ok" and out == []


async def test_display_data_and_update_by_display_id(kernel: KernelSession) -> None:
    code = (
        "from IPython.display import display\n"
        "display({'text/plain': 'plain', 'text/html': '<b>x</b>'}, raw=True)\n"
        "h = display('first', display_id='d1')\n"
        "h.update('second')\n"
    )
    reply, out = await run(kernel, code)
    assert reply.status == "ok"
    assert out.kinds() == ["display_data", "display_data", "update_display_data"]
    assert out[0][1]["data"] == {"text/plain": "plain", "text/html": "<b>x</b>"}
    assert "display_id" not in out[0][1]
    assert out[1][1]["display_id"] == "d1" and out[1][1]["data"]["text/plain"] == "'first'"
    assert out[2][1]["display_id"] == "d1" and out[2][1]["data"]["text/plain"] == "'second'"


async def test_clear_output_wait(kernel: KernelSession) -> None:
    code = "from IPython.display import clear_output\nprint('a', flush=True)\nclear_output(wait=True)\nprint('b')"
    reply, out = await run(kernel, code)
    assert out.coalesced() == [
        ("stream", {"name": "stdout", "text": "a\n"}),
        ("clear_output", {"wait": True}),
        ("stream", {"name": "stdout", "text": "b\n"}),
    ]


async def test_error_output_and_reply(kernel: KernelSession) -> None:
    reply, out = await run(kernel, "1 / 0")
    assert reply.status == "error" and reply.ename == "ZeroDivisionError"
    assert reply.traceback and not reply.timed_out and not reply.kernel_died
    assert out.kinds() == ["error"]
    assert out[0][1]["ename"] == "ZeroDivisionError" and out[0][1]["traceback"]


async def test_page_payload_becomes_display_data(kernel: KernelSession) -> None:
    reply, out = await run(kernel, "print?")
    assert reply.status == "ok"
    assert out.kinds() == ["display_data"]
    assert "print" in out[0][1]["data"]["text/plain"]


async def test_input_is_answered(kernel: KernelSession) -> None:
    prompts: list[tuple[str, bool]] = []

    async def answer(prompt: str, password: bool) -> str:
        prompts.append((prompt, password))
        return "Ada"

    reply, out = await run(kernel, "name = input('Name? ')\nprint('hello', name)", on_input=answer)
    assert reply.status == "ok"
    assert prompts == [("Name? ", False)]
    assert ("stream", {"name": "stdout", "text": "hello Ada\n"}) in out.coalesced()


async def test_input_without_handler_is_an_error(kernel: KernelSession) -> None:
    reply, _ = await run(kernel, "input()")
    assert reply.status == "error" and reply.ename == "StdinNotImplementedError"


async def test_input_timeout_interrupts(kernel: KernelSession) -> None:
    async def never(prompt: str, password: bool) -> str:
        await asyncio.sleep(3600)
        return ""

    start = time.monotonic()
    reply, _ = await run(kernel, "input('? ')", on_input=never, input_timeout=0.5)
    assert time.monotonic() - start < 5
    assert reply.input_timed_out and reply.status == "error"
    assert reply.ename == "InputTimeout" and "0.5 s" in (reply.evalue or "")
    ok, out = await run(kernel, "'still usable'")
    assert ok.status == "ok" and out[0][1]["data"]["text/plain"] == "'still usable'"


async def test_interrupt_long_sleep(kernel: KernelSession) -> None:
    task = asyncio.create_task(kernel.execute("import time; time.sleep(60)", Outputs()))
    await asyncio.sleep(0.5)
    assert kernel.execution_state == "busy"
    start = time.monotonic()
    await kernel.interrupt()
    reply = await asyncio.wait_for(task, 5)
    assert time.monotonic() - start < 2
    assert reply.status == "error" and reply.ename == "KeyboardInterrupt"


async def test_execution_timeout(kernel: KernelSession) -> None:
    start = time.monotonic()
    reply, _ = await run(kernel, "import time; time.sleep(30)", timeout=0.5)
    assert time.monotonic() - start < 3
    assert reply.timed_out and reply.status == "error" and reply.ename == "ExecutionTimeout"
    ok, _ = await run(kernel, "pass")
    assert ok.status == "ok"


async def test_set_cwd(kernel: KernelSession, tmp_path: Any) -> None:
    await kernel.set_cwd(tmp_path)
    _, out = await run(kernel, "import os; os.getcwd()")
    assert out[0][1]["data"]["text/plain"] == repr(str(tmp_path))


async def test_a_huge_write_reaches_the_runtime_in_bounded_messages(kernel: KernelSession) -> None:
    """ipykernel would send one 3.5 MB message (all that was buffered); installed, it sends messages of at most
    OUTPUT_MESSAGE_CHARS, with the same text in the same order, and sys.stdout still looks like ipykernel's."""
    code = ("import sys\nfrom ipykernel.iostream import OutStream\nprint('start')\n"
            "sys.stdout.write(''.join(f'{i:07d}\\n' for i in range(437_500)))\n"
            "print(isinstance(sys.stdout, OutStream), type(sys.stdout).__name__)")
    reply, out = await run(kernel, code)
    assert reply.status == "ok"
    assert all(kind == "stream" and len(content["text"]) <= OUTPUT_MESSAGE_CHARS for kind, content in out)
    assert len(out) >= 4
    text = "".join(content["text"] for _, content in out)
    assert text == "start\n" + "".join(f"{i:07d}\n" for i in range(437_500)) + "True OutStream\n"


async def test_a_fast_writer_waits_for_a_slow_runtime(tmp_path: Any) -> None:
    """The kernel sends at most about OUTPUT_WINDOW_CHARS more than the runtime has handled: a cell writing
    48 MB in 128 KiB writes as fast as it can, read by a runtime that is far slower, is held back instead of
    piling up the whole print in the runtime's socket buffers (the kernel's own count of characters sent is
    read from its stdout's class)."""
    progress = tmp_path / "written"
    mb, write = 1024 * 1024, 128 * 1024
    code = (f"import sys\nchunk = 'x' * ({write} - 1) + '\\n'\n"
            f"for i in range(1, {48 * mb // write + 1}):\n    sys.stdout.write(chunk)\n"
            f"    open({str(progress)!r}, 'w').write(str(type(sys.stdout)._runtimed_sent[0]))\n")
    received, lead = 0, []

    def slow_runtime(kind: str, content: dict[str, Any]) -> None:
        nonlocal received
        data = content["text"].encode()
        for _ in range(100):  # a runtime much slower than the writer (hashing is only the work it does)
            hashlib.sha256(data).digest()
        received += len(data)
        written = int(progress.read_text() or 0) if progress.exists() else 0
        lead.append(written - received)  # sent by the kernel, not yet handled by the runtime

    session = await KernelSession.start("python3")
    try:
        reply = await session.execute(code, slow_runtime)
    finally:
        await session.shutdown(now=True)
    assert reply.status == "ok" and received == 48 * mb
    assert max(lead) <= OUTPUT_WINDOW_CHARS + 2 * OUTPUT_MESSAGE_CHARS  # without flow control: tens of MB


async def test_kernel_death_then_restart(tmp_path: Any) -> None:
    session = await KernelSession.start(cwd=tmp_path, env={"RUNTIMED_TEST_VAR": "yes"})
    try:
        _, out = await run(session, "import os; x = 1; (os.getcwd(), os.environ['RUNTIMED_TEST_VAR'])")
        assert out[0][1]["data"]["text/plain"] == repr((str(tmp_path), "yes"))
        start = time.monotonic()
        reply, _ = await run(session, "import os; os._exit(1)")
        assert time.monotonic() - start < 2
        assert reply.kernel_died and reply.status == "error" and reply.ename == "KernelDied"
        assert "exit code 1" in (reply.evalue or "")
        assert session.execution_state == "dead" and not await session.is_alive()
        again, _ = await run(session, "1")
        assert again.kernel_died

        await session.restart()
        assert await session.is_alive()
        reply, out = await run(session, "x")
        assert reply.ename == "NameError"
        reply, out = await run(session, "2 + 2")
        assert reply.status == "ok" and out[0][1]["data"]["text/plain"] == "4"
        _, out = await run(session, "import sys; print(getattr(sys.stdout, '_runtimed_flow', False))")
        assert out[0][1]["text"] == "True\n"  # the restarted kernel's output is bounded again
    finally:
        await session.shutdown(now=True)
    assert not os.path.exists(session.connection_file)


async def test_a_request_sent_ahead_runs_after_the_current_one_and_its_outputs_wait_for_wait(
        kernel: KernelSession) -> None:
    first, second = Outputs(), Outputs()
    running = kernel.send("import time\ntime.sleep(0.3)\nprint('first')", first)
    ahead = kernel.send("print('second')")  # no callback: sent ahead, held
    assert kernel.aborts_queue_on_error
    reply = await kernel.wait(running, 30)
    assert reply.status == "ok" and first.coalesced() == [("stream", {"name": "stdout", "text": "first\n"})]
    third = Outputs()
    assert (await kernel.execute("print('third')", third)).status == "ok"  # queued behind it: it ran before
    assert second == [] and third.coalesced() == [("stream", {"name": "stdout", "text": "third\n"})]
    second_reply = await kernel.wait(ahead, 30, on_output=second)
    assert second_reply.status == "ok" and second_reply.execution_count == reply.execution_count + 1  # type: ignore
    assert second.coalesced() == [("stream", {"name": "stdout", "text": "second\n"})]


async def test_a_failure_with_stop_on_error_aborts_the_requests_sent_ahead(kernel: KernelSession) -> None:
    await kernel.execute("ran = []", Outputs())
    failing = kernel.send("raise ValueError('boom')", Outputs(), stop_on_error=True)
    behind = [kernel.send(f"ran.append({i})", stop_on_error=True) for i in range(5)]
    assert (await kernel.wait(failing, 30)).ename == "ValueError"
    replies = [await kernel.wait(request, 30, on_output=Outputs()) for request in behind]
    assert [r.status for r in replies] == ["aborted"] * 5
    seen = Outputs()
    await kernel.execute("print(ran)", seen)
    assert seen.coalesced() == [("stream", {"name": "stdout", "text": "[]\n"})]


async def test_without_stop_on_error_the_requests_sent_ahead_still_run(kernel: KernelSession) -> None:
    failing = kernel.send("raise ValueError('boom')", Outputs(), stop_on_error=False)
    behind = kernel.send("1 + 1")
    assert (await kernel.wait(failing, 30)).ename == "ValueError"
    result = Outputs()
    assert (await kernel.wait(behind, 30, on_output=result)).status == "ok"
    assert result.kinds() == ["execute_result"] and result[0][1]["data"]["text/plain"] == "2"


async def test_replies_to_requests_sent_while_others_are_awaited_all_arrive(kernel: KernelSession) -> None:
    """Regression: jupyter_client sends through a synchronous shadow of the asyncio socket, which could swallow the
    wake-up of the pending receive; a reply then sat unread (about one run in two hung, more often while another
    kernel started, as when the pool refills)."""
    import zmq.asyncio

    assert hasattr(zmq.asyncio.Socket, "_schedule_remaining_events")  # what kernel._wake_reader relies on
    other = asyncio.ensure_future(KernelSession.start("python3"))
    try:
        for round_ in range(12):
            requests = [kernel.send(f"y{i} = {i}", Outputs(), stop_on_error=False) for i in range(17 * round_, 17 * round_ + 17)]
            for request in requests:
                assert (await kernel.wait(request, 20)).status == "ok"
    finally:
        await (await other).shutdown(now=True)


def test_kernel_messages_keep_jupyter_clients_checks_and_leave_dates_as_text() -> None:
    """The runtime's reader is Session.deserialize without the dateutil parse of the header dates."""
    from jupyter_client.session import Session

    from runtimed.runtime.kernel import deserialize

    session = Session(key=b"secret")
    request = session.msg("execute_request", {"code": "x = 1"})
    reply = session.msg("status", {"execution_state": "idle"}, parent=request["header"])
    frames = session.serialize(reply)
    parts = frames[frames.index(b"<IDS|MSG>") + 1:]

    ours = deserialize(session, list(parts))
    assert isinstance(ours["header"]["date"], str) and isinstance(ours["parent_header"]["date"], str)
    theirs = Session(key=b"secret").deserialize(list(parts))
    for part in ("header", "parent_header"):
        assert {k: v for k, v in ours[part].items() if k != "date"} == \
            {k: v for k, v in theirs[part].items() if k != "date"}
        assert theirs[part]["date"].isoformat().replace("+00:00", "Z") == ours[part]["date"]
    assert (ours["content"], ours["metadata"], ours["msg_type"]) == (theirs["content"], theirs["metadata"], "status")

    with pytest.raises(ValueError, match="Duplicate Signature"):  # replay protection is jupyter_client's
        deserialize(session, list(parts))
    forged = [parts[0], *parts[1:4], b'{"execution_state": "busy"}']
    with pytest.raises(ValueError, match="Invalid Signature"):
        deserialize(Session(key=b"secret"), forged)
