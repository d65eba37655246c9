"""Several processes, one notebook: Sessions in different processes share cells, sources,
outputs and one kernel, through a real daemon in a temporary RUNTIMED_HOME.

Each remote session lives in a spawned process and is driven over a pipe.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from conftest import DaemonProcess, running_daemon

from runtimed import DaemonClient, Session

pytestmark = pytest.mark.timeout(180)
T = TypeVar("T")
SPAWN = multiprocessing.get_context("spawn")


class RemoteError(Exception):
    pass


def _serve(conn: multiprocessing.connection.Connection, home: str, notebook_id: str | None, label: str) -> None:
    """The child: one Session, driven by (name, args, kwargs) messages; None ends it."""
    os.environ["RUNTIMED_HOME"] = home
    os.environ.pop("RUNTIMED_URL", None)
    import runtimed

    session = runtimed.Session(notebook_id, peer_label=label)
    while True:
        message = conn.recv()
        if message is None:
            break
        name, args, kwargs = message
        try:
            attr = getattr(session, name)
            value = attr(*args, **kwargs) if callable(attr) else attr
            conn.send(("ok", value))
        except Exception as exc:  # sent back as text: the parent raises RemoteError
            conn.send(("err", f"{type(exc).__name__}: {exc}"))
    session.close()
    conn.send(("ok", os.getpid()))


class Remote:
    """A Session in another process."""

    def __init__(self, home: str, notebook_id: str | None, label: str) -> None:
        self.conn, child = SPAWN.Pipe()
        self.proc = SPAWN.Process(target=_serve, args=(child, home, notebook_id, label), daemon=True)
        self.proc.start()
        child.close()

    def send(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.conn.send((name, args, kwargs))

    def receive(self, timeout: float = 120.0) -> Any:
        if not self.conn.poll(timeout):
            raise AssertionError(f"the remote session did not answer within {timeout} s")
        status, value = self.conn.recv()
        if status == "err":
            raise RemoteError(value)
        return value

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.send(name, *args, **kwargs)
        return self.receive()

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(None)
                self.receive(20)
            except (AssertionError, OSError, EOFError):
                pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("multiprocess-home")
    with running_daemon(home, "--pool-size", "2") as proc:
        yield proc


@pytest.fixture
def session(shared_daemon: DaemonProcess) -> Iterator[Session]:
    s = Session(peer_label="parent")
    s.connect()
    yield s
    s.close()


@pytest.fixture
def remote_factory(shared_daemon: DaemonProcess) -> Iterator[Callable[..., Remote]]:
    remotes: list[Remote] = []

    def make(notebook_id: str | None, label: str = "child") -> Remote:
        remote = Remote(str(shared_daemon.home.path), notebook_id, label)
        remotes.append(remote)
        return remote

    yield make
    for remote in remotes:
        remote.close()


def eventually(check: Callable[[], T], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(0.05)


def runtimes_of(notebook_id: str) -> list[dict[str, Any]]:
    return [r for r in DaemonClient().status()["runtimes"] if r["notebook_id"] == notebook_id and r["status"] != "dead"]


def test_cells_sources_outputs_and_kernel_are_shared(session: Session, remote_factory: Callable[..., Remote]) -> None:
    child = remote_factory(session.notebook_id)
    assert child.call("notebook_id") == session.notebook_id
    assert child.proc.pid != os.getpid()

    # a cell made by the child appears here
    cell_id = child.call("create_cell", "x = 1")
    assert eventually(lambda: [c.source for c in session.get_cells()]) == ["x = 1"]

    # an edit made here reaches the child
    session.set_source(cell_id, "x = 41\nprint('edited by the parent')")
    assert eventually(lambda: child.call("get_cell", cell_id).source.startswith("x = 41"))

    # the child runs the parent's text; the outputs reach the parent
    result = child.call("execute_cell", cell_id)
    assert result.success and result.stdout == "edited by the parent\n"
    outputs = eventually(lambda: session.get_cell(cell_id).outputs)
    assert outputs[0].text == "edited by the parent\n"
    assert eventually(lambda: session.get_cell(cell_id).execution_count) == result.execution_count

    # one kernel: the child's variable is visible here, and both see the same process
    assert session.run("x + 1").display_data[0].data["text/plain"] == "42"
    parent_pid = session.run("import os; os.getpid()").display_data[0].data["text/plain"]
    child_pid = child.call("run", "import os; os.getpid()").display_data[0].data["text/plain"]
    assert parent_pid == child_pid
    assert len(runtimes_of(session.notebook_id)) == 1
    assert child.call("kernel_started") and session.kernel_started


def test_two_child_processes(shared_daemon: DaemonProcess, remote_factory: Callable[..., Remote]) -> None:
    notebook_id = f"mp-{os.getpid()}-{time.monotonic_ns()}"
    a = remote_factory(notebook_id, "alice")
    b = remote_factory(notebook_id, "bob")
    cell_id = a.call("create_cell", "shared = 'from alice'")
    a.call("execute_cell", cell_id)
    assert eventually(lambda: [c.id for c in b.call("get_cells")]) == [cell_id]
    assert b.call("run", "shared").display_data[0].data["text/plain"] == "'from alice'"
    peers = eventually(lambda: len(p := b.call("get_peers")) >= 3 and p)  # alice, bob and the runtime
    assert {p["actor"]["name"] for p in peers if p["actor"]["kind"] == "human"} == {"alice", "bob"}
    assert sum(p["is_self"] for p in peers) == 1


def test_simultaneous_edits_converge(session: Session, remote_factory: Callable[..., Remote]) -> None:
    """Edits sent at the same time from two processes end as one text in both replicas."""
    cell_id = session.create_cell("base")
    child = remote_factory(session.notebook_id)
    assert eventually(lambda: child.call("get_cell", cell_id).source == "base")
    for i in range(5):
        child.send("append_source", cell_id, f" c{i}")
        session.append_source(cell_id, f" p{i}")
        child.receive()
    final = eventually(lambda: (s := session.get_cell(cell_id).source) == child.call("get_cell", cell_id).source
                       and s)
    assert final.startswith("base")
    assert all(f"p{i}" in final for i in range(5))  # this process's appends all survive


def test_kernel_lifecycle_across_processes(session: Session, remote_factory: Callable[..., Remote]) -> None:
    child = remote_factory(session.notebook_id)
    child.call("start_kernel", env_source="uv:prewarmed")
    assert eventually(lambda: session.kernel_started)
    assert session.env_source == "uv:prewarmed"

    cell_id = session.create_cell("import time\nprint('started', flush=True)\ntime.sleep(60)")
    queue_id = session.queue_cell(cell_id)
    eventually(lambda: session.get_cell(cell_id).outputs, 30)
    child.call("interrupt")
    result = session.wait_for_execution(queue_id, timeout_secs=20)
    assert result.error is not None and result.error.ename == "KeyboardInterrupt"

    session.run("lost = True")
    child.call("restart_kernel")
    assert session.run("lost").error.ename == "NameError"

    child.call("shutdown_kernel")
    assert eventually(lambda: not session.kernel_started)
    assert runtimes_of(session.notebook_id) == []


def test_killed_peer_leaves(session: Session, remote_factory: Callable[..., Remote]) -> None:
    child = remote_factory(session.notebook_id, "doomed")
    child.call("create_cell", "1")
    eventually(lambda: any(p["actor"]["name"] == "doomed" for p in session.get_peers()))
    os.kill(child.proc.pid, signal.SIGKILL)
    child.proc.join(10)
    assert eventually(lambda: not any(p["actor"]["name"] == "doomed" for p in session.get_peers()))
    assert session.run("'still fine'").success


def _forked_child(notebook_id: str, queue: Any, parent_session: Session) -> None:
    try:
        inherited = parent_session.run("'inherited session'").display_data[0].data["text/plain"]
        with Session(notebook_id) as fresh:
            fresh_value = fresh.run("'fresh session'").display_data[0].data["text/plain"]
        parent_session.close()
        queue.put((inherited, fresh_value))
    except BaseException as exc:
        queue.put(repr(exc))


def test_fork_after_use(session: Session) -> None:
    """A forked child (the background loop thread is not copied) can use Sessions without hanging."""
    assert session.run("1").success  # the session loop thread runs in this process now
    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()
    proc = fork.Process(target=_forked_child, args=(session.notebook_id, queue, session))
    proc.start()
    try:
        answer = queue.get(timeout=90)
    finally:
        proc.join(20)
        if proc.is_alive():
            proc.kill()
    assert answer == ("'inherited session'", "'fresh session'")
    assert session.run("'parent still works'").success
