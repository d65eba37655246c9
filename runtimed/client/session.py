"""``runtimed.Session`` and ``AsyncSession``: a notebook in the daemon, as a Python object.

Every change is an event pushed through the sync client; reads come from the local
replica (the same materializer as the server). Execution is document-first: the
runtime runs the cell's source as the shared document holds it, so a cell edited by
anyone (this session, another process, the browser) runs with its latest text.

``AsyncSession`` is the implementation; ``Session`` is a blocking facade whose methods
each run the matching coroutine on one shared background event loop. That loop lives
in its own thread, so ``Session`` also works where an event loop is already running
(Jupyter, IPython, inside ``asyncio.run``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from runtimed.client import compat
from runtimed.client.ai_settings import AsyncAiSettings, SyncAiSettings
from runtimed.client.discovery import DaemonEndpoint, _healthy, ensure_daemon
from runtimed.client.http import DaemonHTTP, prefetch_artifacts
from runtimed.client.models import (
    Cell,
    CompletionResult,
    ExecutionEvent,
    ExecutionResult,
    HistoryEntry,
    NotebookConnectionInfo,
    Output,
    QueueEntry,
    QueueState,
)
from runtimed.client.stdin import Answerer, InputHandler
from runtimed.client.streams import BlockingIterator, EventSubscription
from runtimed.client.sync import SyncClient
from runtimed.client.widgets import AsyncWidgets, Widgets
from runtimed.errors import (
    AuthError,
    CellNotFoundError,
    ConnectionLostError,
    DaemonNotRunningError,
    DaemonStartError,
    ExecutionTimeoutError,
    KernelError,
    NotFoundError,
    RuntimedError,
)
from runtimed.home import Home
from runtimed.schema import views
from runtimed.schema.crdt import SourceDoc, encode_update
from runtimed.schema.events import EXECUTABLE_CELL_TYPES, is_valid_id, make_event
from runtimed.schema.ids import new_id
from runtimed.schema.ordering import key_for_position
from runtimed.schema.replica import Replica

T = TypeVar("T")

KERNEL_TYPES = {"python": "python3", "python3": "python3"}
"""``start_kernel(kernel_type=...)`` aliases; any other value is taken as a kernelspec name."""
TERMINAL = ("success", "error", "cancelled")
CELL_TYPES = ("code", "markdown", "raw")
DEFAULT_TIMEOUT = 60.0
CONNECT_TIMEOUT = 30.0


def _default_actor(peer_label: str | None = None) -> dict[str, Any]:
    user = os.environ.get("USER") or "user"
    return {"id": f"{user}-{uuid.uuid4().hex[:8]}", "kind": "human", "name": peer_label or user}


def _timeout_text(seconds: float | None) -> str:
    return "the time allowed" if seconds is None else f"{seconds:g} s"


class AsyncSession(AsyncAiSettings):
    """An async handle on one notebook of the daemon.

    ``async with AsyncSession() as s: result = await s.run("1 + 1")``

    Sessions with the same ``notebook_id`` (in this process or any other) share the
    notebook's cells and its one kernel. Every method that needs the daemon connects
    first (starting the embedded daemon of ``$RUNTIMED_HOME`` when none runs), and every
    wait is bounded: a timeout raises a :class:`~runtimed.RuntimedError` subclass.
    """

    def __init__(
        self,
        notebook_id: str | None = None,
        peer_label: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        actor: dict[str, Any] | None = None,
        endpoint: DaemonEndpoint | None = None,
        client_name: str = "python",
    ) -> None:
        """Describe a session; nothing is contacted until :meth:`connect` (or the first call that needs it).

        Args:
            notebook_id: The notebook to open or create. Default: a new ``agent-session-<uuid>``.
            peer_label: The name other peers see for this session (default: ``$USER``).
            home: The daemon home (default ``$RUNTIMED_HOME``, else ``~/.local/share/runtimed``).
            actor: The full actor ``{id, kind, name}`` recorded on this session's events.
            endpoint: A daemon endpoint to use instead of discovering one.
            client_name: The client kind other peers see (``"runt-console"`` tells runtimes that a
                person at a terminal answers ``input()``).
        """
        if notebook_id is not None and not isinstance(notebook_id, str):
            raise TypeError(f"notebook_id must be a str, got {type(notebook_id).__name__}")
        if notebook_id is not None and not is_valid_id(notebook_id):
            raise RuntimedError(f"invalid notebook id {notebook_id!r}: use 1-128 characters of letters, digits, "
                                "'.', '_', ':' or '-', starting with a letter or digit", code="invalid_notebook_id")
        self._notebook_id = notebook_id or f"agent-session-{uuid.uuid4()}"
        self._home = Home.resolve(home)
        self.actor: dict[str, Any] = actor or _default_actor(peer_label)
        self._endpoint = endpoint
        self._client: SyncClient | None = None
        self._http: DaemonHTTP | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._env_source: str | None = None
        self._endpoint_given = endpoint is not None
        self._pid = os.getpid()
        self._client_name = client_name
        self._file: Path | None = None  # the .ipynb this session was opened from (save() writes it back)
        self._own_presence: dict[str, Any] = {}

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "disconnected"
        kernel = "kernel started" if self.kernel_started else "no kernel"
        return f"<{type(self).__name__} notebook_id={self._notebook_id!r} {state}, {kernel}>"

    # -- properties ------------------------------------------------------------------------------

    @property
    def notebook_id(self) -> str:
        """The id of the notebook this session works on."""
        return self._notebook_id

    @property
    def is_connected(self) -> bool:
        """Whether the session is connected to the daemon right now."""
        return self._client is not None and self._client.is_connected

    @property
    def kernel_started(self) -> bool:
        """Whether the notebook has a running kernel (started by this or any other peer)."""
        return self._active_session() is not None

    @property
    def kernel_name(self) -> str | None:
        """The kernelspec name of the running kernel, or None."""
        active = self._active_session()
        return active["kernel_name"] if active else None

    def _active_session(self) -> views.SessionRow | None:
        if self._client is None:
            return None
        try:
            return self._client.replica.view(views.active_session)
        except Exception:  # a replica closed or replaced by a resync
            return None

    @property
    def env_source(self) -> str | None:
        """The environment label given to :meth:`start_kernel` (by any peer) while a kernel runs, else None.

        runtimed's managed runtimes run the notebook's kernelspec from the prewarmed pool
        whatever the label; it is recorded in the notebook metadata (``runtimed.env_source``).
        """
        if not self.kernel_started or self._client is None:
            return None
        settings = self._client.replica.view(views.notebook_metadata).get("runtimed")
        value = settings.get("env_source") if isinstance(settings, dict) else None
        return value if isinstance(value, str) else self._env_source

    @property
    def client(self) -> SyncClient:
        """The underlying sync client (its ``replica`` is the local SQL view of the notebook)."""
        if self._client is None:
            raise RuntimedError("not connected: call connect() first", code="not_connected")
        return self._client

    @property
    def url(self) -> str:
        """The live notebook URL (open it in a browser); empty before the daemon is known."""
        endpoint = self._endpoint
        return f"{endpoint.url}/?notebook={self._notebook_id}" if endpoint else ""

    # -- connection ------------------------------------------------------------------------------

    async def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect to the daemon (starting the embedded one if none runs) and create the notebook if new.

        Raises:
            DaemonStartError: no daemon runs and the embedded one could not start.
            DaemonNotRunningError: ``RUNTIMED_URL`` points at a daemon that does not answer.
            ConnectionLostError: the daemon did not accept the connection within ``timeout`` s.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._forget_connection()  # made on another (probably closed) event loop, or before a fork
            self._loop, self._lock, self._pid = loop, asyncio.Lock(), os.getpid()
        assert self._lock is not None
        async with self._lock:
            if self.is_connected:
                return
            if self._client is not None and await self._resume(timeout):
                return
            if self._endpoint is None:
                try:
                    self._endpoint = await asyncio.to_thread(ensure_daemon, self._home, timeout=timeout)
                except OSError as exc:
                    raise DaemonStartError(f"cannot start the embedded daemon in {self._home.path}: {exc} "
                                           "(set RUNTIMED_HOME to a writable folder)") from exc
            if not await self._healthy(timeout):
                url = self._endpoint.url
                self._forget_endpoint()
                hint = " (or unset RUNTIMED_URL to use the embedded default)" if os.environ.get("RUNTIMED_URL") else ""
                raise DaemonNotRunningError(f"the daemon at {url} does not answer; start one with "
                                            f"`runt daemon start`{hint}")
            if self._http is None:
                self._http = DaemonHTTP(self._endpoint, timeout=timeout)
            client = SyncClient(self._endpoint.url, self._endpoint.token, self._notebook_id, self.actor,
                                client=self._client_name,
                                rediscover=None if self._endpoint_given else self._rediscover)
            self._client = client
            try:
                await client.connect(timeout)
                if client.replica.view(views.notebook_info) is None:
                    # rejected when another peer created it first: either way it arrives through the sync
                    await client.push([make_event("notebookCreated", title=self._notebook_id)], timeout)
                    await client.wait_for(lambda: client.replica.view(views.notebook_info) is not None, timeout)
            except BaseException:
                await self._close_client()
                raise

    async def _rediscover(self, *, start: bool | None = None) -> tuple[str, str] | None:
        """The daemon of this session's home now, started again when it died (for the sync client).

        A background reconnect starts the embedded daemon again only while a call is in progress
        (pushes or a wait): a daemon stopped on purpose stays stopped until a call needs one."""
        if start is None:
            start = self._client is not None and self._client.busy
        try:
            endpoint = await asyncio.to_thread(ensure_daemon, self._home, start=start, timeout=CONNECT_TIMEOUT)
        except DaemonNotRunningError:
            return None
        if self._endpoint is None or endpoint.url != self._endpoint.url or endpoint.token != self._endpoint.token:
            self._close_http()
            self._endpoint = endpoint
        return endpoint.url, endpoint.token

    async def _resume(self, timeout: float) -> bool:
        """Reconnect the existing client, keeping its replica and its unacknowledged pushes (re-sent with the
        same ids, so a call interrupted by a disconnect completes once instead of failing and being repeated).
        When the daemon is gone, the embedded default is found or started again and the client follows it."""
        client = self._client
        assert client is not None
        try:
            if not await self._healthy(timeout) and not self._endpoint_given:
                found = await self._rediscover(start=True)
                if found is not None:
                    client.retarget(*found)
            await client.connect(timeout)
            return True
        except (AuthError, DaemonStartError):
            raise
        except RuntimedError:
            if client.pending_pushes:
                raise  # closing it would drop pushes that may still be stored: say so instead
            await self._close_client()
            self._forget_endpoint()  # the daemon may have come back elsewhere: discover it again
            return False

    def _forget_connection(self) -> None:
        """Drop a connection made on another event loop (it cannot be awaited from this one)."""
        client, self._client = self._client, None
        if self._pid != os.getpid():  # forked: the sockets belong to the parent; just let go of them
            self._http = None
            return
        if client is not None:
            runner = client._runner
            if runner is not None and self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(runner.cancel)

    async def _healthy(self, timeout: float) -> bool:
        assert self._endpoint is not None
        return await asyncio.to_thread(_healthy, self._endpoint.url, min(timeout, 5.0))

    def _forget_endpoint(self) -> None:
        if not self._endpoint_given:
            self._endpoint = None
            self._close_http()

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    async def _connected(self) -> SyncClient:
        if not self.is_connected or self._loop is not asyncio.get_running_loop():
            await self.connect()
        assert self._client is not None
        return self._client

    @property
    def _replica(self) -> Replica:
        if self._client is None:
            raise RuntimedError("not connected: call connect() first", code="not_connected")
        return self._client.replica

    async def _commit(self, events: list[dict[str, Any]]) -> list[int]:
        """Push events; raise EventRejected on a rejection; return once the replica has applied them."""
        client = await self._connected()
        return await client.commit(events)

    async def _http_call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A REST call to the daemon; transport failures become ConnectionLostError."""
        await self._connected()
        if self._http is None:  # dropped when the session followed a restarted daemon
            assert self._endpoint is not None
            self._http = DaemonHTTP(self._endpoint, timeout=CONNECT_TIMEOUT)
        try:
            return await asyncio.to_thread(getattr(self._http, method), path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectionLostError(f"{method.upper()} {path} failed: {exc}") from None

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
            client.replica.close()

    async def close(self) -> None:
        """Disconnect. The notebook and its kernel stay in the daemon; a later call reconnects."""
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            self._forget_connection()
        await self._close_client()
        self._close_http()

    async def __aenter__(self) -> AsyncSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- kernels ---------------------------------------------------------------------------------

    async def start_kernel(self, kernel_type: str = "python", env_source: str | None = None,
                           kernel_name: str | None = None, *, timeout_secs: float = DEFAULT_TIMEOUT) -> None:
        """Start the notebook's kernel, or join the one already running.

        Args:
            kernel_type: ``"python"`` (the ``python3`` kernelspec) or any kernelspec name.
            env_source: A label for the environment (e.g. ``"uv:prewarmed"``), recorded in the
                notebook metadata and returned by :attr:`env_source`.
            kernel_name: An explicit kernelspec name; overrides ``kernel_type``.
            timeout_secs: How long to wait for the kernel to be ready.

        A running kernel of the same kernelspec is kept (its state too); one of another
        kernelspec is shut down and replaced.

        Raises:
            KernelError: unknown kernelspec, a daemon without managed runtimes, or no kernel
                ready within ``timeout_secs``.
        """
        await self._connected()
        name = kernel_name or KERNEL_TYPES.get(kernel_type, kernel_type)
        specs = await self._http_call("get", "/api/kernelspecs")
        if name not in specs:
            raise KernelError(f"no kernel named {name!r}; available kernels: {', '.join(sorted(specs))}",
                              code="unknown_kernel")
        spec = {"name": name, "display_name": specs[name].get("display_name", name),
                "language": specs[name].get("language", "")}
        metadata = self._replica.view(views.notebook_metadata)
        events = []
        if metadata.get("kernelspec") != spec:
            events.append(make_event("notebookMetadataSet", key="kernelspec", value=spec))
        if env_source is not None:
            current = metadata.get("runtimed")
            settings: dict[str, Any] = current if isinstance(current, dict) else {}
            if settings.get("env_source") != env_source:
                events.append(make_event("notebookMetadataSet", key="runtimed", value={**settings, "env_source": env_source}))
        if events:
            await self._commit(events)
        self._env_source = env_source
        active = self._replica.view(views.active_session)
        if active is not None and active["kernel_name"] == name:
            return
        if active is not None:  # another kernelspec: replace it
            await self._end_session(active, timeout_secs)
        await self._ensure_runtime(name, timeout_secs)

    async def _ensure_runtime(self, name: str, timeout_secs: float) -> None:
        """Ask the daemon for a managed runtime until one with this kernelspec is active."""
        client = await self._connected()
        deadline = time.monotonic() + timeout_secs

        def ready() -> bool:
            active = self._replica.view(views.active_session)
            return active is not None and active["kernel_name"] == name

        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KernelError(f"no {name} kernel was ready within {timeout_secs:g} s; see the daemon log "
                                  f"({self._home.log_file})", code="kernel_start_timeout")
            try:
                # an agent that is still stopping (after shutdown_kernel) is answered as is: ask again shortly
                await self._http_call("post", f"/api/notebooks/{self._notebook_id}/runtime",
                                      timeout=max(remaining, 1.0))
            except DaemonNotRunningError:
                raise
            except RuntimedError as exc:
                raise KernelError(f"could not start a {name} kernel: {exc.message}", code=exc.code) from None
            try:
                await client.wait_for(ready, min(1.0, max(remaining, 0.01)))
            except TimeoutError:
                continue

    async def _end_session(self, active: views.SessionRow, timeout_secs: float) -> None:
        """End a runtime session and wait (bounded) until its managed runtime is gone."""
        await self._commit([make_event("runtimeSessionEnded", session_id=active["session_id"], reason="shutdown")])
        deadline = time.monotonic() + min(timeout_secs, 15.0)
        while time.monotonic() < deadline:
            try:
                runtimes = await self._http_call("get", "/api/runtimes")
            except RuntimedError:
                return
            alive = [r for r in runtimes if r.get("session_id") == active["session_id"] and r.get("status") != "dead"]
            if not alive:
                return
            await asyncio.sleep(0.05)

    async def interrupt(self) -> None:
        """Interrupt the cell that is running now (it ends with a ``KeyboardInterrupt`` error).

        Queued cells still run afterwards. Does nothing when no cell runs.
        """
        await self._commit([make_event("runtimeInterruptRequested")])

    async def restart_kernel(self, wait_for_ready: bool = True, *, timeout_secs: float = DEFAULT_TIMEOUT) -> None:
        """Restart the kernel: its state (variables, imports) is gone, the runtime goes on.

        With no kernel running, one is started. With ``wait_for_ready`` (default) the call
        returns once the new kernel is idle.

        Raises:
            KernelError: the kernel was not back within ``timeout_secs``.
        """
        client = await self._connected()
        active = self._replica.view(views.active_session)
        if active is None:
            spec = self._replica.view(views.notebook_metadata).get("kernelspec")
            name = spec.get("name") if isinstance(spec, dict) else None
            await self.start_kernel(kernel_name=name or "python3", timeout_secs=timeout_secs)
            return
        (seq,) = await self._commit([make_event("runtimeRestartRequested")])
        if not wait_for_ready:
            return

        def restarted() -> bool:
            if self._replica.view(views.active_session) is None:
                return True
            statuses = self._replica.view(views.status_history, seq)
            # restarting, then ready again (idle, or busy when work was waiting)
            return "restarting" in statuses and statuses[-1] in ("idle", "busy")

        try:
            await client.wait_for(restarted, timeout_secs)
        except TimeoutError:
            raise KernelError(f"the kernel did not come back within {timeout_secs:g} s after the restart",
                              code="restart_timeout") from None
        if self._replica.view(views.active_session) is None:
            raise KernelError("the runtime ended while restarting its kernel; start_kernel() starts a new one",
                              code="runtime_ended")

    async def shutdown_kernel(self) -> None:
        """Shut the notebook's kernel down (for every peer). The next execution starts a new one."""
        await self._connected()
        active = self._replica.view(views.active_session)
        if active is not None:
            await self._end_session(active, DEFAULT_TIMEOUT)

    # -- cells -----------------------------------------------------------------------------------

    def _ordered_keys(self) -> list[str]:
        return [key for _, key in self._replica.view(views.order_keys)]

    def _require_cell(self, cell_id: str) -> views.CellRow:
        cell = self._replica.view(views.cell, cell_id)
        if cell is None:
            raise CellNotFoundError(f"Cell not found: {cell_id}")
        return cell

    async def create_cell(self, source: str = "", cell_type: str = "code", index: int | None = None) -> str:
        """Create a cell and return its id.

        Args:
            source: The cell's text.
            cell_type: ``"code"``, ``"markdown"`` or ``"raw"``.
            index: Position among the cells: ``None`` appends, ``0`` prepends, negative
                values count from the end.
        """
        await self._connected()
        cell_id = new_id("c-")
        key = key_for_position(self._ordered_keys(), index)
        await self._commit([make_event("cellCreated", cell_id=cell_id, cell_type=cell_type, fractional_index=key,
                                       source=source)])
        return cell_id

    async def set_source(self, cell_id: str, source: str) -> None:
        """Replace a cell's source (sent as the CRDT update of a minimal diff, so concurrent edits merge)."""
        await self._connected()
        self._require_cell(cell_id)
        update = SourceDoc(self._replica.view(views.cell_ystate, cell_id)).update_to(source)
        if update is not None:
            await self._commit([make_event("cellSourceEdited", cell_id=cell_id, update=encode_update(update))])

    async def append_source(self, cell_id: str, text: str) -> None:
        """Append text to a cell's source."""
        await self._connected()
        current = self._require_cell(cell_id)["source"]
        await self.set_source(cell_id, current + text)

    async def set_cell_type(self, cell_id: str, cell_type: str) -> None:
        """Change a cell's type (``"code"``, ``"markdown"``, ``"raw"``); its outputs are cleared."""
        await self._connected()
        if self._require_cell(cell_id)["cell_type"] != cell_type:
            await self._commit([make_event("cellTypeChanged", cell_id=cell_id, cell_type=cell_type)])

    async def get_cell(self, cell_id: str) -> Cell:
        """One cell with its outputs.

        Raises:
            CellNotFoundError: no cell has this id (``"Cell not found: <id>"``).
        """
        await self._connected()
        cell = self._require_cell(cell_id)
        outputs = self._replica.view(views.outputs_by_cell, cell_id).get(cell_id, [])
        return _cell(cell, outputs, self._fetch_artifact)

    async def get_cells(self) -> list[Cell]:
        """Every cell, in notebook order, with its outputs."""
        await self._connected()
        outputs = self._replica.view(views.outputs_by_cell)
        return [_cell(c, outputs.get(c["id"], []), self._fetch_artifact) for c in self._replica.view(views.ordered_cells)]

    async def delete_cell(self, cell_id: str) -> None:
        """Delete a cell (its queued executions are cancelled)."""
        await self._connected()
        self._require_cell(cell_id)
        await self._commit([make_event("cellDeleted", cell_id=cell_id)])

    async def move_cell(self, cell_id: str, after_cell_id: str | None = None, *, index: int | None = None) -> None:
        """Move a cell just after ``after_cell_id`` (``None``: to the top), or to position ``index``."""
        await self._connected()
        self._require_cell(cell_id)
        others = self._replica.view(views.order_keys, except_cell=cell_id)
        keys = [k for _, k in others]
        if index is None:
            if after_cell_id is None:
                index = 0
            else:
                if after_cell_id == cell_id:
                    return
                self._require_cell(after_cell_id)
                index = [i for i, _ in others].index(after_cell_id) + 1
        await self._commit([make_event("cellMoved", cell_id=cell_id, fractional_index=key_for_position(keys, index))])

    async def clear_outputs(self, cell_id: str, *, keep_execution_count: bool = False) -> None:
        """Remove a cell's outputs, and its execution count and finished run's status as JupyterLab's "Clear
        Outputs" and nbconvert's ``ClearOutputPreprocessor`` do (``keep_execution_count=True``: only the outputs)."""
        await self._connected()
        self._require_cell(cell_id)
        await self._commit([make_event("outputsCleared", cell_id=cell_id, wait=False,
                                       execution=not keep_execution_count)])

    async def set_metadata(self, key: str, value: Any, cell_id: str | None = None) -> None:
        """Set a notebook metadata key (or a cell's, with ``cell_id``) to a JSON value; ``None`` deletes it."""
        await self._connected()
        if cell_id is None:
            await self._commit([make_event("notebookMetadataSet", key=key, value=value)])
        else:
            self._require_cell(cell_id)
            await self._commit([make_event("cellMetadataSet", cell_id=cell_id, key=key, value=value)])

    async def get_metadata(self, key: str, cell_id: str | None = None) -> Any:
        """A notebook metadata value (or a cell's, with ``cell_id``); None when unset."""
        await self._connected()
        if cell_id is None:
            return self._replica.view(views.notebook_metadata).get(key)
        return self._require_cell(cell_id)["metadata"].get(key)

    # -- execution -------------------------------------------------------------------------------

    async def queue_cell(self, cell_id: str, *, batch_id: str | None = None, allow_stdin: bool = False) -> str:
        """Request execution of a cell and return at once with its queue id.

        The runtime runs the cell's source as the document holds it when the run starts.
        The kernel starts by itself when none runs. Wait with :meth:`wait_for_execution`.
        ``allow_stdin=True`` tells the runtime that this client answers ``input()`` (pass
        ``stdin=`` to :meth:`wait_for_execution`); otherwise ``input()`` raises
        ``StdinNotImplementedError`` at once unless a page or console is connected.
        """
        await self._connected()
        cell = self._require_cell(cell_id)
        if cell["cell_type"] not in EXECUTABLE_CELL_TYPES:
            raise RuntimedError(f"cell {cell_id} is a {cell['cell_type']} cell; only code cells execute",
                                code="not_executable")
        queue_id = new_id("q-")
        if allow_stdin:
            await self._http_call("post", f"/api/notebooks/{self._notebook_id}/stdin", json={"queue_ids": [queue_id]})
        await self._commit([make_event("executionRequested", queue_id=queue_id, cell_id=cell_id, batch_id=batch_id)])
        return queue_id

    def _finished(self, queue_id: str) -> views.ExecutionRow | None:
        item = self._replica.view(views.execution, queue_id)
        return item if item is not None and item["status"] in TERMINAL else None

    def _input_asked(self, queue_id: str) -> views.PendingInput | None:
        return next((p for p in self._replica.view(views.pending_inputs) if p["queue_id"] == queue_id), None)

    async def _wait_or_input(self, queue_id: str, timeout_secs: float | None,
                             watch_input: bool) -> ExecutionResult | views.PendingInput:
        """The result once the execution ends, or (``watch_input``) the input request it is waiting on."""
        client = await self._connected()
        if not self._replica.view(views.executions, queue_id=queue_id):
            raise NotFoundError(f"no execution {queue_id!r} in notebook {self._notebook_id!r}", code="execution_not_found")

        def ready() -> tuple[views.ExecutionRow | None, views.PendingInput | None] | None:
            done = self._finished(queue_id)
            asked = self._input_asked(queue_id) if watch_input and done is None else None
            return (done, asked) if done is not None or asked is not None else None

        try:
            found = await client.wait_for(ready, timeout_secs)
        except TimeoutError:
            raise ExecutionTimeoutError(self._timeout_message(queue_id, timeout_secs)) from None
        assert found is not None
        done, asked = found
        return self._result(done) if done is not None else asked  # type: ignore[return-value]

    async def reply_input(self, queue_id: str, value: str) -> None:
        """Answer the ``input()`` an execution is waiting on (``inputReplied``; every peer sees it)."""
        await self._commit([make_event("inputReplied", queue_id=queue_id, value=str(value))])

    async def _stop_for_failed_answer(self, queue_id: str) -> None:
        with contextlib.suppress(RuntimedError):
            await self._commit([make_event("executionCancelRequested", queue_id=queue_id)])

    async def wait_for_execution(self, queue_id: str, timeout_secs: float | None = DEFAULT_TIMEOUT, *,
                                 stdin: InputHandler | None = None) -> ExecutionResult:
        """Wait until a queued execution ends and return its result.

        With ``stdin`` (a callable ``f(prompt)``/``f(prompt, password)``, sync or async, or a list
        of answers) every ``input()``/``getpass()`` of the cell is answered; the time spent in the
        handler does not count against ``timeout_secs``. A handler that raises cancels the cell
        and the error is raised here.

        Raises:
            ExecutionTimeoutError: it did not end within ``timeout_secs`` (it goes on running;
                :meth:`interrupt` stops it).
        """
        answerer = Answerer(stdin) if stdin is not None else None
        deadline = None if timeout_secs is None else time.monotonic() + timeout_secs
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            found = await self._wait_or_input(queue_id, remaining, answerer is not None)
            if isinstance(found, ExecutionResult):
                return found
            assert answerer is not None
            try:
                value = await answerer(found["prompt"], found["password"])
            except BaseException:
                await self._stop_for_failed_answer(queue_id)
                raise
            await self.reply_input(queue_id, value)

    def _timeout_message(self, queue_id: str, timeout_secs: float | None) -> str:
        items = self._replica.view(views.executions, queue_id=queue_id)
        status = items[0]["status"] if items else "unknown"
        message = f"execution {queue_id} did not finish within {_timeout_text(timeout_secs)} (it is {status}"
        if status == "pending" and self._replica.view(views.active_session) is None:
            return message + " and no kernel has picked it up; is the daemon running without runtimes?)"
        return message + "; it goes on: interrupt() stops it)"

    def _fetch_artifact(self, sha: str) -> bytes:
        """An artifact's bytes, fetched when an output value stored as one is first read."""
        if self._http is None:
            raise RuntimedError("this session is not connected; artifacts are fetched from the daemon",
                                code="artifact_unresolved")
        return self._http.request("GET", f"/api/artifacts/{sha}", params={"notebook": self.notebook_id}).content

    def _fetch_artifact_range(self, sha: str, offset: int, length: int) -> tuple[bytes, int]:
        """``length`` bytes of an artifact from ``offset`` (an HTTP range request) and its whole size."""
        if self._http is None:
            raise RuntimedError("this session is not connected; artifacts are fetched from the daemon",
                                code="artifact_unresolved")
        response = self._http.request("GET", f"/api/artifacts/{sha}", params={"notebook": self.notebook_id},
                                      headers={"Range": f"bytes={offset}-{offset + max(1, length) - 1}"})
        total = response.headers.get("content-range", "").rpartition("/")[2]
        return response.content, int(total) if total.isdigit() else len(response.content)

    def _result(self, item: views.ExecutionRow) -> ExecutionResult:
        cell_id, queue_id = item["cell_id"], item["queue_id"]
        outputs = [Output.from_dict(data, self._fetch_artifact)
                   for data in self._replica.view(views.execution_outputs, cell_id, queue_id)]
        error = item["error"]
        if item["status"] == "error" and error and not any(o.output_type == "error" for o in outputs):
            outputs.append(Output(output_type="error", ename=error.get("ename"), evalue=error.get("evalue"),
                                  traceback=list(error.get("traceback") or [])))
        return ExecutionResult(cell_id=cell_id, outputs=outputs, success=item["status"] == "success",
                               execution_count=item["execution_count"], status=item["status"], queue_id=queue_id,
                               source=item["source"])

    async def execute_cell(self, cell_id: str, timeout_secs: float = DEFAULT_TIMEOUT, *,
                           stdin: InputHandler | None = None) -> ExecutionResult:
        """Run a cell (its source as the shared document holds it) and wait for the result.

        A failing cell is not an exception: ``result.success`` is False and ``result.error``
        holds the error output. ``stdin`` answers the cell's ``input()`` (see
        :meth:`wait_for_execution`); without it, ``input()`` fails at once with
        ``StdinNotImplementedError`` unless a page or console is connected to the notebook.

        Raises:
            CellNotFoundError: no cell has this id.
            ExecutionTimeoutError: no result within ``timeout_secs`` (the cell goes on running).
        """
        queue_id = await self.queue_cell(cell_id, allow_stdin=stdin is not None)
        return await self.wait_for_execution(queue_id, timeout_secs, stdin=stdin)

    async def run(self, code: str, timeout_secs: float = DEFAULT_TIMEOUT, *,
                  stdin: InputHandler | None = None) -> ExecutionResult:
        """Append a code cell with ``code``, run it and wait for the result (``stdin``: see :meth:`execute_cell`)."""
        cell_id = await self.create_cell(code)
        return await self.execute_cell(cell_id, timeout_secs, stdin=stdin)

    async def _queue_all(self) -> list[str]:
        await self._connected()
        batch_id = new_id("b-")
        cells = [c for c in self._replica.view(views.ordered_cells) if c["cell_type"] in EXECUTABLE_CELL_TYPES]
        queue_ids = [new_id("q-") for _ in cells]
        if cells:
            await self._commit([make_event("executionRequested", queue_id=q, cell_id=c["id"], batch_id=batch_id)
                                for q, c in zip(queue_ids, cells, strict=True)])
        return queue_ids

    async def run_all(self, timeout_secs: float = DEFAULT_TIMEOUT) -> list[ExecutionResult]:
        """Run every code cell in order as one batch and wait for them all.

        An error stops the batch: the cells after it come back with ``status == "cancelled"``.
        ``timeout_secs`` bounds the wait for each cell.
        """
        queue_ids = await self._queue_all()
        return [await self.wait_for_execution(q, timeout_secs) for q in queue_ids]

    async def run_all_cells(self) -> int:
        """Queue every code cell as one batch and return how many were queued (without waiting)."""
        return len(await self._queue_all())

    # -- documents and peers ---------------------------------------------------------------------

    async def to_ipynb(self) -> dict[str, Any]:
        """The notebook as an nbformat 4.5 dict (a ``NotebookNode``).

        Output values and widget buffers stored as artifacts are fetched from the daemon and
        inlined, as the REST export does (the same ``notebook_from_projection`` path).
        """
        from runtimed.formats import notebook_from_projection

        await self._connected()
        resolve = await prefetch_artifacts(self._replica, self._fetch_artifact)
        return self._replica.view(notebook_from_projection, resolve_artifact=resolve)

    async def save(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write the notebook as ``.ipynb`` and return the absolute path written.

        The default path is the file the session was opened from (:meth:`open_notebook`),
        else ``<notebook_id>.ipynb`` in the current directory.
        """
        from runtimed.formats import write_ipynb

        default = self._file if self._file is not None else Path(f"{self._notebook_id}.ipynb")
        target = Path(path if path is not None else default).expanduser().absolute()
        text = write_ipynb(await self.to_ipynb())
        await asyncio.to_thread(target.write_text, text)
        return str(target)

    async def get_peers(self) -> list[dict[str, Any]]:
        """The connections open on this notebook (this one, other sessions, browsers, runtimes).

        Each is a dict with ``connectionId``, ``actor`` (``{id, kind, name}``), ``client``,
        ``cellId`` (where its cursor is) and ``is_self``.
        """
        client = await self._connected()
        peers: list[dict[str, Any]] = await self._http_call("get", f"/api/notebooks/{self._notebook_id}/peers")
        for peer in peers:
            peer["is_self"] = peer.get("connectionId") == client.connection_id
            peer["peer_id"], peer["peer_label"] = peer.get("connectionId"), compat.peer_label(peer.get("actor") or {})
        return peers

    # -- the published package's accessors ---------------------------------------------------------

    @property
    def kernel_type(self) -> str | None:
        """The running kernel's kernelspec name, or None (the published package's name for :attr:`kernel_name`)."""
        return self.kernel_name

    @property
    def connection_info(self) -> NotebookConnectionInfo | None:
        """What the daemon said when this session connected (None before :meth:`connect`)."""
        if self._client is None or not self.is_connected:
            return None
        return NotebookConnectionInfo(notebook_id=self._notebook_id, cell_count=self._replica.view(views.cell_count),
                                      connection_id=self._client.connection_id, url=self.url)

    async def get_cell_ids(self) -> list[str]:
        """Every cell id, in notebook order."""
        await self._connected()
        return [cell_id for cell_id, _ in self._replica.view(views.order_keys)]

    async def _cell_or_none(self, cell_id: str) -> views.CellRow | None:
        await self._connected()
        return self._replica.view(views.cell, cell_id)

    async def get_cell_source(self, cell_id: str) -> str | None:
        """A cell's source, or None when there is no such cell."""
        cell = await self._cell_or_none(cell_id)
        return cell["source"] if cell else None

    async def get_cell_type(self, cell_id: str) -> str | None:
        """A cell's type (``code``, ``markdown``, ``raw``), or None when there is no such cell."""
        cell = await self._cell_or_none(cell_id)
        return cell["cell_type"] if cell else None

    async def get_cell_execution_count(self, cell_id: str) -> int | None:
        """A cell's execution count (None when never run or no such cell)."""
        cell = await self._cell_or_none(cell_id)
        return cell["execution_count"] if cell else None

    async def get_cell_position(self, cell_id: str) -> str | None:
        """A cell's fractional index (cells sort by it), or None when there is no such cell."""
        cell = await self._cell_or_none(cell_id)
        return cell["fractional_index"] if cell else None

    async def get_cell_outputs(self, cell_id: str) -> list[str] | None:
        """A cell's outputs as nbformat JSON strings (the published shape), or None when there is no such cell."""
        if await self._cell_or_none(cell_id) is None:
            return None
        outputs = self._replica.view(views.outputs_by_cell, cell_id).get(cell_id, [])
        return [json.dumps(Output.from_dict(o).to_dict()) for o in outputs]

    async def get_cell_metadata(self, cell_id: str) -> str | None:
        """A cell's metadata as a JSON string, or None when there is no such cell."""
        cell = await self._cell_or_none(cell_id)
        return json.dumps(cell["metadata"], sort_keys=True) if cell else None

    async def set_cell_metadata(self, cell_id: str, metadata: str | dict[str, Any]) -> bool:
        """Replace a cell's whole metadata (a JSON string or a dict); returns True."""
        await self._connected()
        new = compat.parse_json_arg(metadata, "metadata")
        if not isinstance(new, dict):
            raise RuntimedError(f"cell metadata must be a JSON object, got {type(new).__name__}", code="invalid_request")
        changes = compat.metadata_changes(self._require_cell(cell_id)["metadata"], new)
        if changes:
            await self._commit([make_event("cellMetadataSet", cell_id=cell_id, key=k, value=v) for k, v in changes])
        return True

    async def update_cell_metadata_at(self, cell_id: str, path: list[str], value: Any) -> bool:
        """Set one nested metadata value, e.g. ``(["jupyter", "source_hidden"], "true")``; returns True.

        ``value`` is a JSON string (the published package's way) or any Python value;
        ``None``/``"null"`` removes the key.
        """
        await self._connected()
        parsed = compat.parse_json_arg(value, "value")
        key, top = compat.set_at_path(self._require_cell(cell_id)["metadata"], list(path), parsed)
        await self._commit([make_event("cellMetadataSet", cell_id=cell_id, key=key, value=top)])
        return True

    async def set_cell_source_hidden(self, cell_id: str, hidden: bool) -> bool:
        """Hide or show a cell's source (``metadata.jupyter.source_hidden``)."""
        return await self.update_cell_metadata_at(cell_id, ["jupyter", "source_hidden"], True if hidden else None)

    async def set_cell_outputs_hidden(self, cell_id: str, hidden: bool) -> bool:
        """Hide or show a cell's outputs (``metadata.jupyter.outputs_hidden``)."""
        return await self.update_cell_metadata_at(cell_id, ["jupyter", "outputs_hidden"], True if hidden else None)

    async def set_cell_tags(self, cell_id: str, tags: list[str]) -> bool:
        """Replace a cell's ``metadata.tags`` (an empty list removes them)."""
        if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
            raise RuntimedError("tags must be a list of strings, e.g. ['parameters']", code="invalid_request")
        return await self.update_cell_metadata_at(cell_id, ["tags"], list(tags) or None)

    async def set_kernelspec(self, name: str, display_name: str | None = None, language: str | None = None) -> None:
        """Set the notebook's kernelspec (the kernel the next runtime starts; a running one is kept)."""
        spec = {"name": name, "display_name": display_name or name, "language": language or ""}
        await self.set_metadata("kernelspec", spec)

    async def get_kernelspec(self) -> dict[str, str] | None:
        """The notebook's kernelspec ``{name, display_name, language}``, or None."""
        spec = await self.get_metadata("kernelspec")
        return dict(spec) if isinstance(spec, dict) else None

    async def splice_source(self, cell_id: str, index: int, delete_count: int, text: str = "") -> None:
        """Delete ``delete_count`` characters at ``index`` of a cell's source, then insert ``text`` there."""
        await self._connected()
        source = self._require_cell(cell_id)["source"]
        if not 0 <= index <= len(source) or delete_count < 0:
            raise RuntimedError(f"cannot splice at {index} (deleting {delete_count}): the source has {len(source)} "
                                "characters", code="invalid_request")
        await self.set_source(cell_id, source[:index] + text + source[index + delete_count:])

    # -- presence ----------------------------------------------------------------------------------

    async def _presence(self, **fields: Any) -> None:
        client = await self._connected()
        self._own_presence = {k: v for k, v in fields.items() if v is not None}
        await client.send_presence(**fields)

    async def set_cursor(self, cell_id: str, line: int = 0, column: int = 0) -> None:
        """Show this session's cursor in a cell to the other peers (presence: not stored in the log)."""
        await self._presence(cellId=cell_id, cursor={"line": int(line), "column": int(column)})

    async def set_selection(self, cell_id: str, anchor_line: int, anchor_col: int, head_line: int,
                            head_col: int) -> None:
        """Show a selection in a cell to the other peers (the cursor is at its head)."""
        await self._presence(cellId=cell_id, cursor={"line": int(head_line), "column": int(head_col)},
                             selection={"anchor": {"line": int(anchor_line), "column": int(anchor_col)},
                                        "head": {"line": int(head_line), "column": int(head_col)}})

    async def set_focus(self, cell_id: str) -> None:
        """Show that this session is on a cell, without a cursor position."""
        await self._presence(cellId=cell_id)

    async def clear_cursor(self) -> None:
        """Stop showing a cursor."""
        await self._presence(cellId=None)

    async def clear_selection(self) -> None:
        """Stop showing a selection (the cursor stays)."""
        await self._presence(**{k: v for k, v in self._own_presence.items() if k != "selection"})

    async def get_remote_cursors(self) -> list[tuple[str, str, str, int, int]]:
        """Other peers' cursors as ``(peer_id, peer_label, cell_id, line, column)``."""
        client = await self._connected()
        return compat.remote_cursors(client.peers, client.connection_id)

    # -- streams of events ---------------------------------------------------------------------------

    async def stream_execute(self, cell_id: str, timeout_secs: float = DEFAULT_TIMEOUT,
                             signal_only: bool = False) -> EventSubscription:
        """Run a cell and iterate over its events as they happen: ``execution_queued``,
        ``execution_started``, ``output`` (each output as it is now; a growing stream comes again
        with the same ``output_index``) and finally ``done`` or ``error``.

        ``async for event in await session.stream_execute(cell_id): ...``. ``timeout_secs``
        bounds the wait for each next event (``TimeoutError``); ``signal_only`` leaves
        ``event.output`` empty (read it with :meth:`get_cell`).
        """
        await self._connected()
        self._require_cell(cell_id)
        state: dict[str, str] = {}

        def mine(event: ExecutionEvent) -> bool:
            if event.event_type == "output":
                if signal_only:
                    event.output = None
                return event.cell_id == cell_id and (event.queue_id is None or event.queue_id == state.get("q"))
            return event.queue_id is not None and event.queue_id == state.get("q")

        subscription = EventSubscription(self._connected, event_types=("execution_queued", "execution_started",
                                                                       "output", "done", "error"),
                                         accept=mine, until=lambda e: e.event_type in ("done", "error"),
                                         timeout=timeout_secs, fetch=self._fetch_artifact)
        await subscription.attach()
        state["q"] = new_id("q-")
        try:
            await self._commit([make_event("executionRequested", queue_id=state["q"], cell_id=cell_id)])
        except BaseException:
            await subscription.close()
            raise
        return subscription

    def subscribe(self, cell_ids: list[str] | None = None, event_types: list[str] | None = None) -> EventSubscription:
        """Iterate over the notebook's changes as they happen (``async for event in session.subscribe()``).

        Filter by cell ids and by event types (:data:`runtimed.client.models.EVENT_TYPES`:
        execution events and ``cell_created``, ``cell_changed``, ``cell_deleted``,
        ``outputs_cleared``, ``metadata_changed``). It starts with the next change after the
        first ``await``; ``close()`` stops it.
        """
        return EventSubscription(self._connected, cell_ids=cell_ids, event_types=event_types,
                                 fetch=self._fetch_artifact)

    # -- the queue and the kernel's own answers ------------------------------------------------------

    async def get_queue_state(self) -> QueueState:
        """The execution running now (``executing``, a cell id with ``execution_id``) and those waiting."""
        await self._connected()
        return compat.queue_state(self._replica.view(views.executions))

    async def queue_all_cells(self) -> list[QueueEntry]:
        """Queue every code cell as one batch; one entry (cell id with ``execution_id``) per cell."""
        await self._connected()
        cells = [c for c in self._replica.view(views.ordered_cells) if c["cell_type"] in EXECUTABLE_CELL_TYPES]
        queue_ids = await self._queue_all()
        return [QueueEntry(c["id"], q) for c, q in zip(cells, queue_ids, strict=True)]

    async def _ask_kernel(self, what: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        await self._connected()
        if self._replica.view(views.active_session) is None:  # like an execution: the first question starts a kernel
            name, _cwd = self._replica.view(views.kernel_settings)
            await self._ensure_runtime(name, DEFAULT_TIMEOUT)
        reply: dict[str, Any] = await self._http_call("post", f"/api/notebooks/{self._notebook_id}/{what}",
                                                      json={**body, "timeout": timeout}, timeout=timeout + 5)
        return reply

    async def complete(self, code: str, cursor_pos: int | None = None, *, timeout_secs: float = 10.0
                       ) -> CompletionResult:
        """The kernel's completions for ``code`` at ``cursor_pos`` (default: its end).

        Ephemeral: asked of the kernel directly, nothing is written to the notebook. A kernel
        busy with a cell answers when the cell ends (bounded by ``timeout_secs``).
        """
        reply = await self._ask_kernel("complete", {"code": code, "cursor_pos": cursor_pos}, timeout_secs)
        return compat.completion(reply)

    async def get_history(self, pattern: str | None = None, n: int = 100, unique: bool = True, *,
                          timeout_secs: float = 10.0) -> list[HistoryEntry]:
        """The kernel's input history (the last ``n`` inputs, or those matching a glob ``pattern``)."""
        reply = await self._ask_kernel("history", {"pattern": pattern, "n": n, "unique": unique}, timeout_secs)
        return compat.history(reply)

    # -- notebooks made or opened --------------------------------------------------------------------

    @classmethod
    async def create_notebook(cls, runtime: str = "python", working_dir: str | os.PathLike[str] | None = None,
                              peer_label: str | None = None, **kwargs: Any) -> AsyncSession:
        """A new notebook for ``runtime`` (``"python"`` or a kernelspec name), connected.

        ``working_dir`` is where its kernel runs (``runtimed.cwd``). The kernel starts with the
        first execution (or :meth:`start_kernel`).
        """
        session = cls(None, peer_label, **kwargs)
        await session.connect()
        try:
            await session._setup_new(runtime, working_dir)
        except BaseException:
            await session.close()
            raise
        return session

    async def _setup_new(self, runtime: str, working_dir: str | os.PathLike[str] | None) -> None:
        name = KERNEL_TYPES.get(runtime, runtime)
        specs = await self._http_call("get", "/api/kernelspecs")
        if name not in specs:
            raise KernelError(f"no kernel named {name!r}; available kernels: {', '.join(sorted(specs))}",
                              code="unknown_kernel")
        await self.set_kernelspec(name, specs[name].get("display_name", name), specs[name].get("language", ""))
        if working_dir is not None:
            cwd = Path(working_dir).expanduser().absolute()
            if not cwd.is_dir():
                raise RuntimedError(f"working_dir {str(cwd)!r} is not a directory", code="bad_cwd")
            settings = self._replica.view(views.run_settings)
            await self.set_metadata("runtimed", {**settings, "cwd": str(cwd)})

    @classmethod
    async def open_notebook(cls, path: str | os.PathLike[str], peer_label: str | None = None,
                            **kwargs: Any) -> AsyncSession:
        """Open an ``.ipynb`` file as a live notebook; :meth:`save` writes it back to the file.

        The same path always opens the same live notebook (its id comes from the absolute
        path), so a second call, in any process, joins the first one's notebook and kernel.
        """
        file = Path(path).expanduser().absolute()
        if not file.is_file():
            raise NotFoundError(f"no notebook file {str(file)!r}", code="not_found")
        session = cls(compat.notebook_id_for_file(file), peer_label, **kwargs)
        session._file = file
        await session._import_file(file)
        await session.connect()
        settings = session._replica.view(views.run_settings)
        if settings.get("cwd") is None or settings.get("notebook_dir") is None:
            # run next to the file, as Jupyter does; a pyproject.toml there declares dependencies (environments.md)
            await session.set_metadata("runtimed", {"cwd": str(file.parent), **settings,
                                                    "notebook_dir": str(file.parent)})
        return session

    async def _import_file(self, file: Path) -> None:
        """Create the notebook from the file unless it is already live."""
        if self._endpoint is None:
            self._endpoint = await asyncio.to_thread(ensure_daemon, self._home, timeout=CONNECT_TIMEOUT)
        http = DaemonHTTP(self._endpoint, timeout=CONNECT_TIMEOUT)
        try:
            data = await asyncio.to_thread(file.read_bytes)
            await asyncio.to_thread(http.post, "/api/notebooks/import", params={"id": self._notebook_id,
                                    "title": file.stem}, content=data, headers={"x-runtimed-actor": self.actor["id"]})
        except RuntimedError as exc:
            if exc.code != "notebook_exists":
                raise
        finally:
            http.close()

    # -- approvals of agents' tool calls -----------------------------------------------------------

    async def approvals(self, pending_only: bool = True) -> list[dict[str, Any]]:
        """Agents' requests to use a tool on this notebook, oldest first (by default only those waiting).

        Each is a dict with ``approval_id``, ``tool``, ``arguments`` (with a ``preview``: the code to run
        or the diff of an edit), ``cell_id``, ``status`` and ``requested_by`` / ``resolved_by``
        (``{id, kind, name}``).
        """
        from runtimed.schema.approvals import list_approvals

        await self._connected()
        return self.client.replica.view(list_approvals, pending_only=pending_only)

    @property
    def widgets(self) -> AsyncWidgets:
        """The notebook's widget models: read their state, set values (see :mod:`runtimed.client.widgets`)."""
        return AsyncWidgets(self)

    async def resolve_approval(self, approval_id: str, decision: str = "approved") -> None:
        """Answer an agent's request as this session's actor: ``"approved"``, ``"approved_always"``
        (this tool, for this agent, on this notebook from now on) or ``"denied"``.

        Raises:
            EventRejected: no such request, already answered, or this session's actor is not a
                person (``approval_self``: an agent cannot approve requests).
        """
        await self._commit([make_event("toolApprovalResolved", approval_id=approval_id, decision=decision)])

    # -- dependencies and the notebook's environment (docs/environments.md) -------------------------

    async def get_dependencies(self) -> list[str]:
        """The notebook's dependencies (PEP 508 strings) by the documented precedence: ``runtimed.dependencies``,
        nteract's ``runt.uv.dependencies``, a PEP 723 block in the first code cell, ``pyproject.toml`` next to the file."""
        from runtimed.schema.dependencies import resolve

        await self._connected()
        request = resolve(*self._replica.view(views.dependency_inputs))
        return list(request.dependencies) if request is not None else []

    async def set_dependencies(self, dependencies: list[str], requires_python: str | None = None,
                               index_url: str | None = None) -> dict[str, Any]:
        """Replace the notebook's dependency list (``metadata.runtimed.dependencies``); the environment's state.

        Set by a person (this session's actor is ``human``), the list counts as approved for installing."""
        from runtimed.schema.dependencies import validate_requirement

        deps = [validate_requirement(d) for d in dependencies]
        body = {"dependencies": deps, "requires_python": requires_python, "index_url": index_url, "actor": self.actor}
        result: dict[str, Any] = await self._http_call("put", f"/api/notebooks/{self._notebook_id}/dependencies",
                                                       json=body)
        await self._wait_caught_up()
        return result

    async def _wait_caught_up(self) -> None:
        """Let the replica apply what a REST call just appended (bounded)."""
        head = (await self._http_call("get", f"/api/notebooks/{self._notebook_id}/events",
                                      params={"since": 0, "limit": 1}))["head"]
        await self.client.wait_for(lambda: self._replica.head >= head or None, CONNECT_TIMEOUT)

    async def add_dependency(self, requirement: str) -> list[str]:
        """Add a PEP 508 requirement (replacing one of the same package); the new list. Install with
        :meth:`sync_environment`, or just run a cell."""
        from runtimed.schema.dependencies import add_dependency

        await self._connected()
        settings = add_dependency(self._replica.view(views.notebook_metadata), requirement)
        await self.set_dependencies(settings["dependencies"], settings.get("requires_python"),
                                    settings.get("index_url"))
        return await self.get_dependencies()

    async def remove_dependency(self, package: str) -> bool:
        """Remove a dependency by package name (case-insensitive); whether it was there."""
        from runtimed.schema.dependencies import remove_dependency

        await self._connected()
        settings, removed = remove_dependency(self._replica.view(views.notebook_metadata), package)
        if removed:
            await self.set_dependencies(settings["dependencies"], settings.get("requires_python"),
                                        settings.get("index_url"))
        return removed

    async def get_environment(self) -> dict[str, Any]:
        """The notebook's environment: ``request`` (dependencies, hash, source), ``trusted``, ``approval``,
        ``built``, ``path`` and ``status`` (the last build's ``state`` and ``detail``, e.g. "installing 3 packages…")."""
        result: dict[str, Any] = await self._http_call("get", f"/api/notebooks/{self._notebook_id}/environment")
        return result

    async def approve_dependencies(self) -> dict[str, Any]:
        """Approve the notebook's current dependency list as this session's person (e.g. after importing a file)."""
        result: dict[str, Any] = await self._http_call(
            "post", f"/api/notebooks/{self._notebook_id}/environment/approve", json={"actor": self.actor})
        return result

    async def sync_environment(self, timeout_secs: float = 600.0) -> dict[str, Any]:
        """Create (or reuse) the notebook's environment now; its state. The next kernel starts in it.

        Raises:
            RuntimedError: ``dependencies_not_approved``, ``invalid_dependency``, ``environment_failed``
                (uv's explanation in the message) or ``environment_timeout``.
        """
        result: dict[str, Any] = await self._http_call(
            "post", f"/api/notebooks/{self._notebook_id}/environment/sync", timeout=timeout_secs)
        return result

    # the published runtimed package's names (nteract): uv dependencies live in the same list
    async def get_uv_dependencies(self) -> list[str]:
        """Alias of :meth:`get_dependencies` (the published ``runtimed`` package's name)."""
        return await self.get_dependencies()

    async def add_uv_dependency(self, package: str) -> None:
        """Alias of :meth:`add_dependency` (the published ``runtimed`` package's name)."""
        await self.add_dependency(package)

    async def remove_uv_dependency(self, package: str) -> bool:
        """Alias of :meth:`remove_dependency` (the published ``runtimed`` package's name)."""
        return await self.remove_dependency(package)


def _cell(cell: views.CellRow, outputs: list[dict[str, Any]], fetch: Callable[[str], bytes] | None = None) -> Cell:
    return Cell(id=cell["id"], cell_type=cell["cell_type"], source=cell["source"],
                execution_count=cell["execution_count"], outputs=[Output.from_dict(o, fetch) for o in outputs],
                metadata=cell["metadata"], position=cell["fractional_index"])


class _LoopThread:
    """One background event loop for every blocking session; works inside a running loop (Jupyter).

    Re-created after ``fork`` (the child has no copy of the thread).
    """

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _pid: int | None = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            alive = cls._thread is not None and cls._thread.is_alive() and cls._pid == os.getpid()
            if cls._loop is None or not alive or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="runtimed-session-loop", daemon=True)
                thread.start()
                cls._loop, cls._thread, cls._pid = loop, thread, os.getpid()
            return cls._loop

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the background loop and block until it is done (Ctrl-C cancels it)."""
        if threading.current_thread() is cls._thread and cls._pid == os.getpid():
            coro.close()
            raise RuntimedError("a blocking Session method was called from the session loop itself; "
                                "use AsyncSession in async code", code="wrong_thread")
        future = asyncio.run_coroutine_threadsafe(coro, cls.loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():  # the call itself ran out of time: say what it waited for
                raise ConnectionLostError("the daemon did not answer in time (the call's own bound ran out); "
                                          "`runt daemon status` shows whether it runs") from None
            future.cancel()
            raise ConnectionLostError(f"no answer within {_timeout_text(timeout)}") from None
        except BaseException:  # KeyboardInterrupt and friends: do not leave the coroutine running
            future.cancel()
            raise


async def _awaited(value: Any) -> Any:
    return await value


def _close_soon(session: AsyncSession) -> None:
    """Close a session on the background loop without waiting (for garbage-collected Sessions)."""
    loop = _LoopThread._loop
    if session._client is None or loop is None or loop.is_closed() or _LoopThread._pid != os.getpid():
        return
    with contextlib.suppress(RuntimeError):
        asyncio.run_coroutine_threadsafe(session.close(), loop)


class Session(SyncAiSettings):
    """A blocking handle on one notebook of the daemon; :class:`AsyncSession` method for method.

    ``with Session() as s: print(s.run("1 + 1").display_data[0].data["text/plain"])``

    Works in scripts and where an event loop already runs (Jupyter, IPython): the
    coroutines run on a background event loop thread.
    """

    def __init__(
        self,
        notebook_id: str | None = None,
        peer_label: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        actor: dict[str, Any] | None = None,
        endpoint: DaemonEndpoint | None = None,
        client_name: str = "python",
    ) -> None:
        """Describe a session; nothing is contacted until :meth:`connect` (or the first call that needs it).

        Args:
            notebook_id: The notebook to open or create. Default: a new ``agent-session-<uuid>``.
            peer_label: The name other peers see for this session (default: ``$USER``).
            home: The daemon home (default ``$RUNTIMED_HOME``, else ``~/.local/share/runtimed``).
            actor: The full actor ``{id, kind, name}`` recorded on this session's events.
            endpoint: A daemon endpoint to use instead of discovering one.
            client_name: The client kind other peers see (see :class:`AsyncSession`).
        """
        self._async = AsyncSession(notebook_id, peer_label, home=home, actor=actor, endpoint=endpoint,
                                   client_name=client_name)
        # a Session dropped without close() does not stay connected for the life of the process
        finalizer = weakref.finalize(self, _close_soon, self._async)
        finalizer.atexit = False

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return _LoopThread.run(coro)

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncSession", "Session", 1)

    def __enter__(self) -> Session:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def async_session(self) -> AsyncSession:
        """The :class:`AsyncSession` this session drives."""
        return self._async

    # -- properties ------------------------------------------------------------------------------

    @property
    def notebook_id(self) -> str:
        """The id of the notebook this session works on."""
        return self._async.notebook_id

    @property
    def is_connected(self) -> bool:
        """Whether the session is connected to the daemon right now."""
        return self._async.is_connected

    @property
    def kernel_started(self) -> bool:
        """Whether the notebook has a running kernel (started by this or any other peer)."""
        return self._async.kernel_started

    @property
    def kernel_name(self) -> str | None:
        """The kernelspec name of the running kernel, or None."""
        return self._async.kernel_name

    @property
    def env_source(self) -> str | None:
        """The environment label given to :meth:`start_kernel` while a kernel runs, else None."""
        return self._async.env_source

    @property
    def actor(self) -> dict[str, Any]:
        """The actor ``{id, kind, name}`` recorded on this session's events."""
        return self._async.actor

    @property
    def client(self) -> SyncClient:
        """The underlying sync client (its ``replica`` is the local SQL view of the notebook)."""
        return self._async.client

    @property
    def url(self) -> str:
        """The live notebook URL (open it in a browser); empty before the daemon is known."""
        return self._async.url

    # -- connection ------------------------------------------------------------------------------

    def connect(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Connect to the daemon (starting the embedded one if none runs) and create the notebook if new."""
        self._run(self._async.connect(timeout))

    def close(self) -> None:
        """Disconnect. The notebook and its kernel stay in the daemon; a later call reconnects."""
        self._run(self._async.close())

    # -- kernels ---------------------------------------------------------------------------------

    def start_kernel(self, kernel_type: str = "python", env_source: str | None = None,
                     kernel_name: str | None = None, *, timeout_secs: float = DEFAULT_TIMEOUT) -> None:
        """Start the notebook's kernel, or join the one already running (see :meth:`AsyncSession.start_kernel`)."""
        self._run(self._async.start_kernel(kernel_type, env_source, kernel_name, timeout_secs=timeout_secs))

    def interrupt(self) -> None:
        """Interrupt the cell that is running now (it ends with a ``KeyboardInterrupt`` error)."""
        self._run(self._async.interrupt())

    def restart_kernel(self, wait_for_ready: bool = True, *, timeout_secs: float = DEFAULT_TIMEOUT) -> None:
        """Restart the kernel: its state is gone, the runtime goes on (starts one if none runs)."""
        self._run(self._async.restart_kernel(wait_for_ready, timeout_secs=timeout_secs))

    def shutdown_kernel(self) -> None:
        """Shut the notebook's kernel down (for every peer). The next execution starts a new one."""
        self._run(self._async.shutdown_kernel())

    # -- cells -----------------------------------------------------------------------------------

    def create_cell(self, source: str = "", cell_type: str = "code", index: int | None = None) -> str:
        """Create a cell and return its id (``index``: None appends, 0 prepends, negative from the end)."""
        return self._run(self._async.create_cell(source, cell_type, index))

    def set_source(self, cell_id: str, source: str) -> None:
        """Replace a cell's source (a CRDT update of a minimal diff, so concurrent edits merge)."""
        self._run(self._async.set_source(cell_id, source))

    def append_source(self, cell_id: str, text: str) -> None:
        """Append text to a cell's source."""
        self._run(self._async.append_source(cell_id, text))

    def set_cell_type(self, cell_id: str, cell_type: str) -> None:
        """Change a cell's type (``"code"``, ``"markdown"``, ``"raw"``); its outputs are cleared."""
        self._run(self._async.set_cell_type(cell_id, cell_type))

    def get_cell(self, cell_id: str) -> Cell:
        """One cell with its outputs; raises :class:`CellNotFoundError` ("Cell not found: <id>")."""
        return self._run(self._async.get_cell(cell_id))

    def get_cells(self) -> list[Cell]:
        """Every cell, in notebook order, with its outputs."""
        return self._run(self._async.get_cells())

    def delete_cell(self, cell_id: str) -> None:
        """Delete a cell (its queued executions are cancelled)."""
        self._run(self._async.delete_cell(cell_id))

    def move_cell(self, cell_id: str, after_cell_id: str | None = None, *, index: int | None = None) -> None:
        """Move a cell just after ``after_cell_id`` (``None``: to the top), or to position ``index``."""
        self._run(self._async.move_cell(cell_id, after_cell_id, index=index))

    def clear_outputs(self, cell_id: str, *, keep_execution_count: bool = False) -> None:
        """Remove a cell's outputs and execution count (``keep_execution_count=True``: only the outputs)."""
        self._run(self._async.clear_outputs(cell_id, keep_execution_count=keep_execution_count))

    def set_metadata(self, key: str, value: Any, cell_id: str | None = None) -> None:
        """Set a notebook metadata key (or a cell's, with ``cell_id``) to a JSON value; ``None`` deletes it."""
        self._run(self._async.set_metadata(key, value, cell_id))

    def get_metadata(self, key: str, cell_id: str | None = None) -> Any:
        """A notebook metadata value (or a cell's, with ``cell_id``); None when unset."""
        return self._run(self._async.get_metadata(key, cell_id))

    # -- execution -------------------------------------------------------------------------------

    def queue_cell(self, cell_id: str, *, batch_id: str | None = None, allow_stdin: bool = False) -> str:
        """Request execution of a cell and return at once with its queue id (see :meth:`wait_for_execution`)."""
        return self._run(self._async.queue_cell(cell_id, batch_id=batch_id, allow_stdin=allow_stdin))

    def wait_for_execution(self, queue_id: str, timeout_secs: float | None = DEFAULT_TIMEOUT, *,
                           stdin: InputHandler | None = None) -> ExecutionResult:
        """Wait until a queued execution ends; raises :class:`ExecutionTimeoutError` after ``timeout_secs``.

        ``stdin`` answers the cell's ``input()``; a callable is called in this thread (so it may
        read the terminal), and its time does not count against ``timeout_secs``.
        """
        answerer = Answerer(stdin) if stdin is not None else None
        deadline = None if timeout_secs is None else time.monotonic() + timeout_secs
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            found = self._run(self._async._wait_or_input(queue_id, remaining, answerer is not None))
            if isinstance(found, ExecutionResult):
                return found
            assert answerer is not None
            try:
                value = asyncio.run(_awaited(answerer(found["prompt"], found["password"])))
            except BaseException:
                self._run(self._async._stop_for_failed_answer(queue_id))
                raise
            self.reply_input(queue_id, value)

    def reply_input(self, queue_id: str, value: str) -> None:
        """Answer the ``input()`` an execution is waiting on."""
        self._run(self._async.reply_input(queue_id, value))

    def execute_cell(self, cell_id: str, timeout_secs: float = DEFAULT_TIMEOUT, *,
                     stdin: InputHandler | None = None) -> ExecutionResult:
        """Run a cell (its source as the shared document holds it) and wait for the result.

        A failing cell is not an exception: ``result.success`` is False and ``result.error``
        holds the error output. ``stdin`` (a callable or a list of answers) answers
        ``input()``; without it, ``input()`` fails at once with ``StdinNotImplementedError``
        unless a page or console is connected to the notebook.

        Raises:
            CellNotFoundError: no cell has this id.
            ExecutionTimeoutError: no result within ``timeout_secs`` (the cell goes on running).
        """
        queue_id = self.queue_cell(cell_id, allow_stdin=stdin is not None)
        return self.wait_for_execution(queue_id, timeout_secs, stdin=stdin)

    def run(self, code: str, timeout_secs: float = DEFAULT_TIMEOUT, *,
            stdin: InputHandler | None = None) -> ExecutionResult:
        """Append a code cell with ``code``, run it and wait for the result (``stdin``: see :meth:`execute_cell`)."""
        return self.execute_cell(self.create_cell(code), timeout_secs, stdin=stdin)

    def run_all(self, timeout_secs: float = DEFAULT_TIMEOUT) -> list[ExecutionResult]:
        """Run every code cell in order as one batch (an error cancels the rest); ``timeout_secs`` per cell."""
        return self._run(self._async.run_all(timeout_secs))

    def run_all_cells(self) -> int:
        """Queue every code cell as one batch and return how many were queued (without waiting)."""
        return self._run(self._async.run_all_cells())

    # -- documents and peers ---------------------------------------------------------------------

    def to_ipynb(self) -> dict[str, Any]:
        """The notebook as an nbformat 4.5 dict (a ``NotebookNode``)."""
        return self._run(self._async.to_ipynb())

    def save(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write the notebook as ``.ipynb`` (default ``<notebook_id>.ipynb``) and return the path."""
        return self._run(self._async.save(path))

    def get_peers(self) -> list[dict[str, Any]]:
        """The connections open on this notebook, each ``{connectionId, actor, client, cellId, is_self}``."""
        return self._run(self._async.get_peers())

    # -- the published package's accessors ---------------------------------------------------------

    @property
    def kernel_type(self) -> str | None:
        """The running kernel's kernelspec name, or None."""
        return self._async.kernel_type

    @property
    def connection_info(self) -> NotebookConnectionInfo | None:
        """What this session is connected to (None before :meth:`connect`)."""
        return self._async.connection_info

    def get_cell_ids(self) -> list[str]:
        """Every cell id, in notebook order."""
        return self._run(self._async.get_cell_ids())

    def get_cell_source(self, cell_id: str) -> str | None:
        """A cell's source, or None when there is no such cell."""
        return self._run(self._async.get_cell_source(cell_id))

    def get_cell_type(self, cell_id: str) -> str | None:
        """A cell's type, or None when there is no such cell."""
        return self._run(self._async.get_cell_type(cell_id))

    def get_cell_execution_count(self, cell_id: str) -> int | None:
        """A cell's execution count (None when never run or no such cell)."""
        return self._run(self._async.get_cell_execution_count(cell_id))

    def get_cell_position(self, cell_id: str) -> str | None:
        """A cell's fractional index, or None when there is no such cell."""
        return self._run(self._async.get_cell_position(cell_id))

    def get_cell_outputs(self, cell_id: str) -> list[str] | None:
        """A cell's outputs as nbformat JSON strings, or None when there is no such cell."""
        return self._run(self._async.get_cell_outputs(cell_id))

    def get_cell_metadata(self, cell_id: str) -> str | None:
        """A cell's metadata as a JSON string, or None when there is no such cell."""
        return self._run(self._async.get_cell_metadata(cell_id))

    def set_cell_metadata(self, cell_id: str, metadata: str | dict[str, Any]) -> bool:
        """Replace a cell's whole metadata (a JSON string or a dict)."""
        return self._run(self._async.set_cell_metadata(cell_id, metadata))

    def update_cell_metadata_at(self, cell_id: str, path: list[str], value: Any) -> bool:
        """Set one nested metadata value (``value``: a JSON string or a Python value; None removes it)."""
        return self._run(self._async.update_cell_metadata_at(cell_id, path, value))

    def set_cell_source_hidden(self, cell_id: str, hidden: bool) -> bool:
        """Hide or show a cell's source (``metadata.jupyter.source_hidden``)."""
        return self._run(self._async.set_cell_source_hidden(cell_id, hidden))

    def set_cell_outputs_hidden(self, cell_id: str, hidden: bool) -> bool:
        """Hide or show a cell's outputs (``metadata.jupyter.outputs_hidden``)."""
        return self._run(self._async.set_cell_outputs_hidden(cell_id, hidden))

    def set_cell_tags(self, cell_id: str, tags: list[str]) -> bool:
        """Replace a cell's ``metadata.tags``."""
        return self._run(self._async.set_cell_tags(cell_id, tags))

    def set_kernelspec(self, name: str, display_name: str | None = None, language: str | None = None) -> None:
        """Set the notebook's kernelspec (used by the next runtime)."""
        self._run(self._async.set_kernelspec(name, display_name, language))

    def get_kernelspec(self) -> dict[str, str] | None:
        """The notebook's kernelspec ``{name, display_name, language}``, or None."""
        return self._run(self._async.get_kernelspec())

    def splice_source(self, cell_id: str, index: int, delete_count: int, text: str = "") -> None:
        """Delete ``delete_count`` characters at ``index`` of a cell's source, then insert ``text``."""
        self._run(self._async.splice_source(cell_id, index, delete_count, text))

    def set_cursor(self, cell_id: str, line: int = 0, column: int = 0) -> None:
        """Show this session's cursor in a cell to the other peers."""
        self._run(self._async.set_cursor(cell_id, line, column))

    def set_selection(self, cell_id: str, anchor_line: int, anchor_col: int, head_line: int, head_col: int) -> None:
        """Show a selection in a cell to the other peers."""
        self._run(self._async.set_selection(cell_id, anchor_line, anchor_col, head_line, head_col))

    def set_focus(self, cell_id: str) -> None:
        """Show that this session is on a cell."""
        self._run(self._async.set_focus(cell_id))

    def clear_cursor(self) -> None:
        """Stop showing a cursor."""
        self._run(self._async.clear_cursor())

    def clear_selection(self) -> None:
        """Stop showing a selection."""
        self._run(self._async.clear_selection())

    def get_remote_cursors(self) -> list[tuple[str, str, str, int, int]]:
        """Other peers' cursors as ``(peer_id, peer_label, cell_id, line, column)``."""
        return self._run(self._async.get_remote_cursors())

    def stream_execute(self, cell_id: str, timeout_secs: float = DEFAULT_TIMEOUT,
                       signal_only: bool = False) -> BlockingIterator[ExecutionEvent]:
        """Run a cell and iterate over its events as they happen (see :meth:`AsyncSession.stream_execute`)."""
        return BlockingIterator(self._run(self._async.stream_execute(cell_id, timeout_secs, signal_only)), self._run)

    def subscribe(self, cell_ids: list[str] | None = None,
                  event_types: list[str] | None = None) -> BlockingIterator[ExecutionEvent]:
        """Iterate over the notebook's changes as they happen (see :meth:`AsyncSession.subscribe`)."""
        subscription = self._async.subscribe(cell_ids, event_types)
        self._run(subscription.attach())
        return BlockingIterator(subscription, self._run)

    def get_queue_state(self) -> QueueState:
        """The execution running now and those waiting."""
        return self._run(self._async.get_queue_state())

    def queue_all_cells(self) -> list[QueueEntry]:
        """Queue every code cell as one batch; one entry per cell."""
        return self._run(self._async.queue_all_cells())

    def complete(self, code: str, cursor_pos: int | None = None, *, timeout_secs: float = 10.0) -> CompletionResult:
        """The kernel's completions for ``code`` at ``cursor_pos`` (nothing is written to the notebook)."""
        return self._run(self._async.complete(code, cursor_pos, timeout_secs=timeout_secs))

    def get_history(self, pattern: str | None = None, n: int = 100, unique: bool = True, *,
                    timeout_secs: float = 10.0) -> list[HistoryEntry]:
        """The kernel's input history."""
        return self._run(self._async.get_history(pattern, n, unique, timeout_secs=timeout_secs))

    @classmethod
    def create_notebook(cls, runtime: str = "python", working_dir: str | os.PathLike[str] | None = None,
                        peer_label: str | None = None, **kwargs: Any) -> Session:
        """A new notebook for ``runtime``, connected (see :meth:`AsyncSession.create_notebook`)."""
        session = cls(None, peer_label, **kwargs)
        session.connect()
        try:
            session._run(session._async._setup_new(runtime, working_dir))
        except BaseException:
            session.close()
            raise
        return session

    @classmethod
    def open_notebook(cls, path: str | os.PathLike[str], peer_label: str | None = None, **kwargs: Any) -> Session:
        """Open an ``.ipynb`` file as a live notebook; :meth:`save` writes it back (see :meth:`AsyncSession.open_notebook`)."""
        session = cls(None, peer_label, **kwargs)
        session._async = session._run(AsyncSession.open_notebook(path, peer_label, **kwargs))
        return session

    # -- approvals of agents' tool calls -----------------------------------------------------------

    def approvals(self, pending_only: bool = True) -> list[dict[str, Any]]:
        """Agents' requests to use a tool on this notebook (see :meth:`AsyncSession.approvals`)."""
        return self._run(self._async.approvals(pending_only))

    @property
    def widgets(self) -> Widgets:
        """The notebook's widget models (see :class:`runtimed.client.widgets.Widgets`)."""
        return Widgets(self)

    def resolve_approval(self, approval_id: str, decision: str = "approved") -> None:
        """Answer an agent's request: ``"approved"``, ``"approved_always"`` or ``"denied"``."""
        self._run(self._async.resolve_approval(approval_id, decision))

    # -- dependencies and the notebook's environment -----------------------------------------------

    def get_dependencies(self) -> list[str]:
        """The notebook's dependencies (see :meth:`AsyncSession.get_dependencies`)."""
        return self._run(self._async.get_dependencies())

    def set_dependencies(self, dependencies: list[str], requires_python: str | None = None,
                         index_url: str | None = None) -> dict[str, Any]:
        """Replace the dependency list (see :meth:`AsyncSession.set_dependencies`)."""
        return self._run(self._async.set_dependencies(dependencies, requires_python, index_url))

    def add_dependency(self, requirement: str) -> list[str]:
        """Add a PEP 508 requirement; the new list."""
        return self._run(self._async.add_dependency(requirement))

    def remove_dependency(self, package: str) -> bool:
        """Remove a dependency by package name; whether it was there."""
        return self._run(self._async.remove_dependency(package))

    def get_environment(self) -> dict[str, Any]:
        """The notebook's environment and the last build's progress (see :meth:`AsyncSession.get_environment`)."""
        return self._run(self._async.get_environment())

    def approve_dependencies(self) -> dict[str, Any]:
        """Approve the current dependency list as this session's person."""
        return self._run(self._async.approve_dependencies())

    def sync_environment(self, timeout_secs: float = 600.0) -> dict[str, Any]:
        """Create (or reuse) the notebook's environment now (see :meth:`AsyncSession.sync_environment`)."""
        return self._run(self._async.sync_environment(timeout_secs))

    def get_uv_dependencies(self) -> list[str]:
        """Alias of :meth:`get_dependencies` (the published ``runtimed`` package's name)."""
        return self.get_dependencies()

    def add_uv_dependency(self, package: str) -> None:
        """Alias of :meth:`add_dependency` (the published ``runtimed`` package's name)."""
        self.add_dependency(package)

    def remove_uv_dependency(self, package: str) -> bool:
        """Alias of :meth:`remove_dependency` (the published ``runtimed`` package's name)."""
        return self.remove_dependency(package)


__all__ = ["AsyncSession", "Session"]
