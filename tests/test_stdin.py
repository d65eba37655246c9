"""stdin: input handlers on run/execute_cell, the immediate failure without one (as nbclient),
input answered by a connected page, and runt console / runt exec answering from the terminal."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from conftest import DaemonProcess, running_daemon

from runtimed import AsyncSession, Session
from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.sync import SyncClient
from runtimed.errors import RuntimedError
from runtimed.schema import views
from runtimed.schema.events import make_event

pytestmark = pytest.mark.timeout(120)
NEVER = 3600  # the daemon's input timeout: nothing in this module may wait for it


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("stdin-home"), env={"RUNTIMED_INPUT_TIMEOUT": str(NEVER)}) as proc:
        yield proc


def endpoint(d: DaemonProcess) -> DaemonEndpoint:
    return DaemonEndpoint(d.url, d.token)


@pytest.fixture(scope="module")
def session(daemon: DaemonProcess) -> Iterator[Session]:
    with Session("stdin-shared", endpoint=endpoint(daemon)) as s:
        yield s
        s.shutdown_kernel()


def test_answers_from_a_list_and_from_callables(session: Session) -> None:
    result = session.run("a = input('First? ')\nb = input('Second? ')\nprint(a, b)", stdin=["one", "two"])
    assert result.success and result.stdout.endswith("one two\n")
    prompts: list[tuple[str, bool]] = []

    def answer(prompt: str, password: bool) -> str:
        prompts.append((prompt, password))
        return "s3cret" if password else "Ada"

    code = "import getpass\nname = input('Name? ')\npw = getpass.getpass('Password: ')\nprint(name, len(pw))"
    result = session.run(code, stdin=answer)
    assert result.success and result.stdout.endswith("Ada 6\n")
    assert prompts == [("Name? ", False), ("Password: ", True)]
    cell_id = session.create_cell("print(input('Echo? ').upper())")
    assert session.execute_cell(cell_id, stdin=lambda prompt: "quiet").stdout.endswith("QUIET\n")


def test_without_a_handler_input_fails_at_once(session: Session) -> None:
    head = session.client.replica.head
    result = session.run("value = input('Nobody answers: ')")  # the daemon's input timeout is an hour
    assert result.status == "error" and result.error is not None
    assert result.error.ename == "StdinNotImplementedError"
    assert "inputRequested" not in session.client.replica.view(views.event_names, head)
    assert session.run("'still fine'").success


def test_a_handler_that_fails_cancels_the_cell(session: Session) -> None:
    def refuse(prompt: str) -> str:
        raise ValueError("no answer today")

    with pytest.raises(ValueError, match="no answer today"):
        session.run("input('Question? ')", stdin=refuse)
    with pytest.raises(RuntimedError, match="ran out"):
        session.run("input('one'); input('two')", stdin=["only one"])
    assert session.run("'next'", timeout_secs=60).success  # the kernel is free again


@pytest.mark.anyio
async def test_async_handler(daemon: DaemonProcess) -> None:
    async with AsyncSession("stdin-async", endpoint=endpoint(daemon)) as s:
        async def answer(prompt: str) -> str:
            return prompt.strip("? ").lower()

        result = await s.run("print(input('Hello? '))", stdin=answer)
        assert result.stdout.endswith("hello\n")
        await s.shutdown_kernel()


@pytest.fixture
async def page(daemon: DaemonProcess) -> AsyncIterator[SyncClient]:
    """A client connected the way the web page connects (hello client "web")."""
    client = SyncClient(daemon.url, daemon.token, "stdin-page", {"id": "page-user", "kind": "human", "name": "page"},
                        client="web")
    await client.connect()
    yield client
    await client.close()


@pytest.mark.anyio
async def test_a_connected_page_can_answer(daemon: DaemonProcess, page: SyncClient) -> None:
    async with AsyncSession("stdin-page", endpoint=endpoint(daemon)) as s:
        queue_id = await s.queue_cell(await s.create_cell("print('got', input('From the page? '))"))
        pending = await page.wait_for(lambda: page.replica.view(views.pending_inputs), 60)
        assert pending[0]["queue_id"] == queue_id and pending[0]["prompt"] == "From the page? "
        await page.commit([make_event("inputReplied", queue_id=queue_id, value="a person")])
        result = await s.wait_for_execution(queue_id)
        assert result.success and result.stdout.endswith("got a person\n")
        await s.shutdown_kernel()


def runt(*args: str, env: dict[str, str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtimed.cli.main", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=90)


def test_runt_exec_answers_from_its_stdin(daemon: DaemonProcess) -> None:
    with Session("stdin-exec", endpoint=endpoint(daemon)) as s:
        s.create_cell("1")
        done = runt("exec", "stdin-exec", "name = input('Who? ')\nprint('hi', name)", env=daemon.env(), stdin="Bob\n")
        assert done.returncode == 0, done.stderr
        assert "Who? " in done.stdout and "hi Bob" in done.stdout
        closed = runt("exec", "stdin-exec", "input('Who? ')", env=daemon.env(), stdin="")
        assert closed.returncode != 0 and "stdin is closed" in closed.stderr
        s.shutdown_kernel()


def test_runt_console_answers_from_the_terminal(daemon: DaemonProcess) -> None:
    lines = "name = input('Your name? ')\nGrace\nprint('hello', name)\n"
    done: Any = runt("console", env=daemon.env(), stdin=lines)
    assert done.returncode == 0, done.stderr
    assert "Your name? " in done.stdout and "hello Grace" in done.stdout
