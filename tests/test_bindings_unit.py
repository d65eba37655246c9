"""The Python bindings without a daemon: exports, construction, signatures, models, and
calls made when no daemon runs (they fail fast with a RuntimedError that says what to do).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import pydoc
import socket
import time
import typing
from pathlib import Path

import pytest

import runtimed
from runtimed import (
    AsyncSession,
    Cell,
    DaemonClient,
    DaemonNotRunningError,
    DaemonStartError,
    ExecutionResult,
    Output,
    RuntimedError,
    Session,
)
from runtimed.client.session import _LoopThread

pytestmark = pytest.mark.timeout(60)

PUBLISHED_SESSION_METHODS = [
    # the methods of nteract's published runtimed.Session that runtimed implements, same names
    "connect", "start_kernel", "shutdown_kernel", "restart_kernel", "interrupt", "create_cell", "set_source",
    "append_source", "set_cell_type", "get_cell", "get_cells", "delete_cell", "move_cell", "clear_outputs",
    "get_peers", "save", "set_metadata", "get_metadata", "execute_cell", "run", "queue_cell", "run_all_cells",
    "close",
]


# -- exports --------------------------------------------------------------------------------------


def test_public_names() -> None:
    for name in ("Session", "AsyncSession", "DaemonClient", "Cell", "Output", "ExecutionResult", "RuntimedError",
                 "run_notebook"):
        assert name in runtimed.__all__ and getattr(runtimed, name) is not None
    for name in runtimed.__all__:
        assert hasattr(runtimed, name), name
    assert set(runtimed.__all__) <= set(dir(runtimed))
    with pytest.raises(AttributeError):
        _ = runtimed.NoSuchThing  # type: ignore[attr-defined]


def test_import_runtimed_loads_the_error_registry_only_when_used() -> None:
    """``import runtimed`` is the first import of every ``runt`` command: it loads neither typing nor the error
    registry (issue 16), and the errors, as names or as the submodule, are there when asked for."""
    import subprocess
    import sys

    code = ("import sys, runtimed; print('typing' in sys.modules, 'runtimed.errors' in sys.modules); "
            "print(runtimed.errors.RuntimedError is runtimed.RuntimedError, issubclass(runtimed.AuthError, "
            "runtimed.RuntimedError))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "True", "True"]


def test_error_hierarchy() -> None:
    distinct = [runtimed.CellNotFoundError, runtimed.ConnectionLostError, runtimed.DaemonNotRunningError,
                runtimed.DaemonStartError, runtimed.EventRejected, runtimed.ExecutionTimeoutError,
                runtimed.KernelError, runtimed.NotFoundError, runtimed.AuthError, runtimed.InvalidNotebookError]
    assert len({cls.code for cls in distinct}) == len(distinct)
    for cls in distinct:
        assert issubclass(cls, RuntimedError) and cls is not RuntimedError
    assert issubclass(runtimed.CellNotFoundError, runtimed.NotFoundError)
    error = runtimed.ExecutionTimeoutError("took too long")
    assert str(error) == "took too long" and error.to_dict() == {"code": "execution_timeout", "message": "took too long"}


def test_py_typed_is_shipped() -> None:
    assert (Path(runtimed.__file__).parent / "py.typed").exists()


# -- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Session, AsyncSession])
def test_construction_contacts_nothing(cls: type, home: Path) -> None:
    s = cls()
    assert s.notebook_id.startswith("agent-session-")
    assert len(s.notebook_id) == len("agent-session-") + 36
    assert cls().notebook_id != s.notebook_id
    assert cls("my-notebook").notebook_id == "my-notebook"
    assert cls(notebook_id="nb-2", peer_label="agent").actor["name"] == "agent"
    assert not s.is_connected and not s.kernel_started
    assert s.env_source is None and s.kernel_name is None and s.url == ""
    assert repr(s) == f"<{cls.__name__} notebook_id={s.notebook_id!r} disconnected, no kernel>"
    with pytest.raises(RuntimedError, match="not connected"):
        _ = s.client
    assert not (home / "daemon.json").exists()


def test_notebook_id_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        Session(42)  # type: ignore[arg-type]


# -- signatures: Session mirrors AsyncSession with explicit, typed, documented methods ----------


def _coroutine_methods(cls: type) -> dict[str, typing.Any]:
    return {name: fn for name, fn in inspect.getmembers(cls, inspect.iscoroutinefunction) if not name.startswith("_")}


def test_session_mirrors_async_session() -> None:
    coroutines = _coroutine_methods(AsyncSession)
    assert {"execute_cell", "run", "connect", "close", "start_kernel"} <= set(coroutines)
    # these return the blocking counterpart (a Session, a plain iterator) of what the coroutine returns
    own_return = {"create_notebook", "open_notebook", "stream_execute"}
    for name, async_fn in coroutines.items():
        sync_fn = getattr(Session, name, None)
        assert sync_fn is not None, f"Session lacks {name}"
        assert not inspect.iscoroutinefunction(sync_fn)
        assert inspect.signature(sync_fn).parameters == inspect.signature(async_fn).parameters, name
        if name not in own_return:
            assert inspect.signature(sync_fn).return_annotation == inspect.signature(async_fn).return_annotation, name
        assert sync_fn.__doc__ and async_fn.__doc__, name
    for name in ("notebook_id", "is_connected", "kernel_started", "env_source", "kernel_name", "url", "client"):
        assert isinstance(getattr(Session, name), property) and isinstance(getattr(AsyncSession, name), property)
    assert "__getattr__" not in Session.__dict__


def test_published_api_names() -> None:
    for name in PUBLISHED_SESSION_METHODS:
        assert callable(getattr(Session, name)) and inspect.iscoroutinefunction(getattr(AsyncSession, name)), name
    params = inspect.signature(Session.execute_cell).parameters
    assert params["timeout_secs"].default == 60.0
    assert inspect.signature(Session.run).parameters["timeout_secs"].default == 60.0
    start = inspect.signature(Session.start_kernel).parameters
    assert (start["kernel_type"].default, start["env_source"].default, start["kernel_name"].default) == (
        "python", None, None)
    create = inspect.signature(Session.create_cell).parameters
    assert (create["source"].default, create["cell_type"].default, create["index"].default) == ("", "code", None)
    assert inspect.signature(Session.restart_kernel).parameters["wait_for_ready"].default is True
    assert list(inspect.signature(Session.__init__).parameters) == [
        "self", "notebook_id", "peer_label", "home", "actor", "endpoint", "client_name"]
    for name in ("ping", "is_running", "status", "list_rooms", "flush_pool", "shutdown"):
        assert callable(getattr(DaemonClient, name))


def test_help_shows_signature_and_docstring() -> None:
    text = pydoc.render_doc(runtimed.Session.execute_cell, renderer=pydoc.plaintext)
    assert ("execute_cell(self, cell_id: 'str', timeout_secs: 'float' = 60.0, *, stdin: 'InputHandler | None' = None)"
            " -> 'ExecutionResult'") in text
    assert "document" in text and "ExecutionTimeoutError" in text
    hints = typing.get_type_hints(Session.execute_cell)
    assert hints["return"] is ExecutionResult and hints["cell_id"] is str
    assert typing.get_type_hints(Session.get_cells)["return"] == list[Cell]
    for cls in (Session, AsyncSession, DaemonClient):
        for name, member in inspect.getmembers(cls):
            if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
                assert member.__doc__, f"{cls.__name__}.{name} has no docstring"


# -- models ---------------------------------------------------------------------------------------


def test_output_from_dict_and_back() -> None:
    stream = Output.from_dict({"output_type": "stream", "name": "stdout", "text": "hi\n", "output_id": "o-1"})
    assert (stream.name, stream.text, stream.data, stream.output_id) == ("stdout", "hi\n", {}, "o-1")
    assert stream.to_dict() == {"output_type": "stream", "name": "stdout", "text": "hi\n"}
    result = Output.from_dict({"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {},
                               "execution_count": 3})
    assert result.to_dict() == {"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {},
                                "execution_count": 3}
    error = Output.from_dict({"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t"]})
    assert error.traceback == ["t"] and error.to_dict()["ename"] == "E"
    assert repr(stream) == "Output('stream', name='stdout', text='hi\\n')"
    assert repr(error) == "Output('error', ename='E', evalue='v')"
    assert "execution_count=3" in repr(result)


def test_execution_result_properties() -> None:
    outputs = [
        Output("stream", name="stdout", text="a"), Output("stream", name="stderr", text="b"),
        Output("stream", name="stdout", text="c"), Output("display_data", data={"text/html": "<b/>"}),
        Output("execute_result", data={"text/plain": "1"}, execution_count=1),
        Output("error", ename="ValueError", evalue="x", traceback=["tb"]),
    ]
    r = ExecutionResult(cell_id="c-1", outputs=outputs, success=False, execution_count=1, status="error")
    assert (r.stdout, r.stderr) == ("ac", "b")
    assert [o.output_type for o in r.display_data] == ["display_data", "execute_result"]
    assert r.execute_result is outputs[4] and r.error is outputs[5]
    empty = ExecutionResult(cell_id="c-2", outputs=[], success=True)
    assert (empty.stdout, empty.stderr, empty.display_data, empty.error, empty.execute_result) == ("", "", [], None, None)
    assert repr(empty) == "ExecutionResult(cell_id='c-2', success=True, status='success', execution_count=None, outputs=0)"
    assert pickle.loads(pickle.dumps(r)) == r


def test_cell_model() -> None:
    cell = Cell(id="c-1", cell_type="code", source="x" * 100, metadata={"tags": ["parameters"]})
    assert cell.tags == ["parameters"] and Cell("c", "code", "").tags == []
    assert "..." in repr(cell) and len(repr(cell)) < 150
    assert pickle.loads(pickle.dumps(cell)) == cell


# -- without a daemon -----------------------------------------------------------------------------


def test_daemon_client_without_daemon(home: Path) -> None:
    client = DaemonClient()
    assert client.home.path == home
    assert client.ping() is False
    assert client.is_running() is False
    assert "running=False" in repr(client)
    for call in (client.status, client.list_rooms, client.flush_pool, client.shutdown):
        started = time.monotonic()
        with pytest.raises(DaemonNotRunningError) as info:
            call()
        assert time.monotonic() - started < 5
        assert "runt daemon start" in str(info.value) and str(home) in str(info.value)
    assert not (home / "daemon.json").exists()  # DaemonClient never starts one


def test_daemon_client_with_a_stale_daemon_file(home: Path) -> None:
    (home / "daemon.json").write_text('{"url": "http://127.0.0.1:9", "pid": 999999999}')
    (home / "token").write_text("t")
    client = DaemonClient()
    assert not client.ping() and not client.is_running()
    with pytest.raises(DaemonNotRunningError):
        client.status()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("cls", [Session, AsyncSession])
def test_connect_to_a_daemon_that_is_not_there(cls: type, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIMED_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("RUNTIMED_TOKEN", "secret")
    s = cls()
    started = time.monotonic()
    with pytest.raises(DaemonNotRunningError, match="does not answer"):
        if cls is Session:
            s.create_cell("x")  # connects by itself, and fails the same way
        else:
            asyncio.run(s.create_cell("x"))
    assert time.monotonic() - started < 10
    assert not s.is_connected
    assert not (home / "daemon.json").exists()


def test_home_that_cannot_hold_a_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("RUNTIMED_HOME", str(not_a_folder))
    monkeypatch.delenv("RUNTIMED_URL", raising=False)
    with pytest.raises(DaemonStartError, match="cannot start the embedded daemon"):
        Session().connect(timeout=5)


# -- the background loop of the blocking API ------------------------------------------------------


def test_loop_thread_inside_a_running_loop() -> None:
    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    async def main() -> int:
        return _LoopThread.run(value())  # blocking call while this loop runs (as in Jupyter)

    assert asyncio.run(main()) == 7


def test_loop_thread_timeout_cancels() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    with pytest.raises(runtimed.ConnectionLostError):
        _LoopThread.run(slow(), timeout=0.2)
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while not cancelled.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cancelled.is_set()


def test_loop_thread_refuses_reentry() -> None:
    async def reenter() -> None:
        _LoopThread.run(asyncio.sleep(0))

    with pytest.raises(RuntimedError, match="session loop itself"):
        _LoopThread.run(reenter())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_loop_thread_after_fork() -> None:
    assert _LoopThread.run(asyncio.sleep(0, "parent")) == "parent"
    pid = os.fork()
    if pid == 0:  # the child: the loop thread was not copied, a new one must start
        code = 0
        try:
            code = 0 if _LoopThread.run(asyncio.sleep(0, "child"), timeout=10) == "child" else 1
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
