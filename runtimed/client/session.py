"""``runtimed.Session`` and ``AsyncSession``: a notebook in the daemon, as a Python object.

Every change is an event pushed through the sync client; reads come from the local
replica (the same materializer as the server). Execution is document-first: the
runtime runs the cell's source as the shared document holds it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from runtimed.client.discovery import DaemonEndpoint, ensure_daemon
from runtimed.client.http import DaemonHTTP
from runtimed.client.models import Cell, ExecutionResult, Output
from runtimed.client.sync import SyncClient
from runtimed.errors import CellNotFoundError, ExecutionTimeoutError, KernelError, RuntimedError
from runtimed.home import Home
from runtimed.schema import views
from runtimed.schema.crdt import SourceDoc, encode_update
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id
from runtimed.schema.ordering import key_for_position

T = TypeVar("T")
KERNEL_TYPES = {"python": "python3", "python3": "python3"}
TERMINAL = ("success", "error", "cancelled")


def _default_actor() -> dict[str, Any]:
    user = os.environ.get("USER") or "user"
    return {"id": f"{user}-{uuid.uuid4().hex[:8]}", "kind": "human", "name": user}


class AsyncSession:
    """An async handle on one notebook. ``async with AsyncSession() as s: await s.run("1+1")``."""

    def __init__(self, notebook_id: str | None = None, *, home: str | os.PathLike[str] | None = None,
                 actor: dict[str, Any] | None = None, endpoint: DaemonEndpoint | None = None) -> None:
        self._notebook_id = notebook_id or f"agent-session-{uuid.uuid4()}"
        self._home = Home.resolve(home)
        self.actor = actor or _default_actor()
        self._endpoint = endpoint
        self._client: SyncClient | None = None
        self._http: DaemonHTTP | None = None
        self._kernel_started = False
        self._env_source: str | None = None

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "disconnected"
        return f"<{type(self).__name__} notebook_id={self._notebook_id!r} {state} kernel_started={self._kernel_started}>"

    # -- properties ------------------------------------------------------------------------------

    @property
    def notebook_id(self) -> str:
        return self._notebook_id

    @property
    def is_connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    @property
    def kernel_started(self) -> bool:
        return self._kernel_started

    @property
    def env_source(self) -> str | None:
        return self._env_source

    @property
    def client(self) -> SyncClient:
        """The underlying sync client (its ``replica`` is the local SQL view of the notebook)."""
        if self._client is None:
            raise RuntimedError("not connected: call connect() first", code="not_connected")
        return self._client

    @property
    def url(self) -> str:
        """The live notebook URL (open it in a browser)."""
        endpoint = self._endpoint
        return f"{endpoint.url}/?notebook={self._notebook_id}" if endpoint else ""

    # -- connection ------------------------------------------------------------------------------

    async def connect(self, timeout: float = 30.0) -> None:
        """Connect (starting the embedded daemon if none runs) and create the notebook if it is new."""
        if self.is_connected:
            return
        if self._endpoint is None:
            self._endpoint = await asyncio.to_thread(ensure_daemon, self._home, timeout=timeout)
        self._http = DaemonHTTP(self._endpoint)
        self._client = SyncClient(self._endpoint.url, self._endpoint.token, self._notebook_id, self.actor)
        await self._client.connect(timeout)
        if views.notebook_info(self._conn) is None:
            await self._commit([make_event("notebookCreated", title=self._notebook_id)], check=False)
        if views.active_session(self._conn) is not None:
            self._kernel_started = True

    async def _connected(self) -> SyncClient:
        if not self.is_connected:
            await self.connect()
        assert self._client is not None
        return self._client

    @property
    def _conn(self):
        assert self._client is not None, "not connected"
        return self._client.replica.conn

    async def _commit(self, events: list[dict[str, Any]], *, check: bool = True) -> list[int]:
        client = await self._connected()
        if check:
            return await client.commit(events)
        results = await client.push(events)
        seqs = [r["seq"] for r in results if "seq" in r]
        if seqs:
            await client.wait_for(lambda: client.replica.head >= max(seqs))
        return seqs

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._http is not None:
            self._http.close()
            self._http = None

    async def __aenter__(self) -> AsyncSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- kernels ---------------------------------------------------------------------------------

    async def start_kernel(self, kernel_type: str = "python", env_source: str | None = None,
                           kernel_name: str | None = None) -> None:
        """Start (or join) the notebook's runtime with the given kernel."""
        await self._connected()
        assert self._http is not None
        name = kernel_name or KERNEL_TYPES.get(kernel_type, kernel_type)
        specs = await asyncio.to_thread(self._http.get, "/api/kernelspecs")
        if name not in specs:
            raise KernelError(f"no kernel named {name!r}; available kernels: {', '.join(sorted(specs))}",
                              code="unknown_kernel")
        spec = {"name": name, "display_name": specs[name]["display_name"], "language": specs[name]["language"]}
        metadata = views.notebook_metadata(self._conn)
        events = []
        if metadata.get("kernelspec") != spec:
            events.append(make_event("notebookMetadataSet", key="kernelspec", value=spec))
        if env_source is not None:
            runtimed_meta = dict(metadata.get("runtimed") or {}, env_source=env_source)
            events.append(make_event("notebookMetadataSet", key="runtimed", value=runtimed_meta))
        if events:
            await self._commit(events)
        self._env_source = env_source
        active = views.active_session(self._conn)
        if active is None or active["kernel_name"] != name:
            await asyncio.to_thread(self._http.post, f"/api/notebooks/{self._notebook_id}/runtime")
            await self._client.wait_for(lambda: views.active_session(self._conn) is not None, 60)
        self._kernel_started = True

    async def interrupt(self) -> None:
        await self._commit([make_event("runtimeInterruptRequested")])

    async def restart_kernel(self, timeout: float = 60.0) -> None:
        """Restart the kernel: its state is gone, the runtime goes on."""
        seq = (await self._commit([make_event("runtimeRestartRequested")]))[0]
        client = await self._connected()

        def restarted() -> bool:
            row = self._conn.execute(
                "SELECT MAX(seq) FROM events WHERE name = 'runtimeStatusChanged' AND seq > ? "
                "AND json_extract(args, '$.status') = 'idle'", (seq,)
            ).fetchone()
            return bool(row and row[0])

        await client.wait_for(restarted, timeout)

    async def shutdown_kernel(self) -> None:
        active = views.active_session(self._conn) if self._client else None
        if active is not None:
            await self._commit([make_event("runtimeSessionEnded", session_id=active["session_id"], reason="shutdown")])
        self._kernel_started = False

    # -- cells -----------------------------------------------------------------------------------

    def _ordered_keys(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT fractional_index FROM cells ORDER BY fractional_index, id")]

    async def create_cell(self, source: str = "", cell_type: str = "code", index: int | None = None) -> str:
        await self._connected()
        cell_id = new_id("c-")
        key = key_for_position(self._ordered_keys(), index)
        await self._commit([make_event("cellCreated", cell_id=cell_id, cell_type=cell_type, fractional_index=key,
                                       source=source)])
        return cell_id

    def _require_cell(self, cell_id: str) -> dict[str, Any]:
        cell = views.cell(self._conn, cell_id)
        if cell is None:
            raise CellNotFoundError(f"Cell not found: {cell_id}")
        return cell

    async def set_source(self, cell_id: str, source: str) -> None:
        """Replace a cell's source; sent as the Yjs update of a minimal diff."""
        await self._connected()
        self._require_cell(cell_id)
        row = self._conn.execute("SELECT ystate FROM cells WHERE id = ?", (cell_id,)).fetchone()
        update = SourceDoc(row[0]).update_to(source)
        if update is not None:
            await self._commit([make_event("cellSourceEdited", cell_id=cell_id, update=encode_update(update))])

    async def get_cell(self, cell_id: str) -> Cell:
        await self._connected()
        cell = self._require_cell(cell_id)
        outputs = views.outputs_by_cell(self._conn, cell_id).get(cell_id, [])
        return _cell(cell, outputs)

    async def get_cells(self) -> list[Cell]:
        await self._connected()
        outputs = views.outputs_by_cell(self._conn)
        return [_cell(c, outputs.get(c["id"], [])) for c in views.ordered_cells(self._conn)]

    async def delete_cell(self, cell_id: str) -> None:
        await self._connected()
        self._require_cell(cell_id)
        await self._commit([make_event("cellDeleted", cell_id=cell_id)])

    async def move_cell(self, cell_id: str, after_cell_id: str | None = None, *, index: int | None = None) -> None:
        """Move a cell after another one (None: to the top), or to a position ``index``."""
        await self._connected()
        self._require_cell(cell_id)
        others = [r for r in self._conn.execute(
            "SELECT id, fractional_index FROM cells WHERE id != ? ORDER BY fractional_index, id", (cell_id,))]
        keys = [k for _, k in others]
        if index is None:
            if after_cell_id is None:
                index = 0
            else:
                self._require_cell(after_cell_id)
                index = [i for i, _ in others].index(after_cell_id) + 1
        await self._commit([make_event("cellMoved", cell_id=cell_id, fractional_index=key_for_position(keys, index))])

    async def clear_outputs(self, cell_id: str) -> None:
        await self._connected()
        self._require_cell(cell_id)
        await self._commit([make_event("outputsCleared", cell_id=cell_id, wait=False)])

    async def set_metadata(self, key: str, value: Any, cell_id: str | None = None) -> None:
        await self._connected()
        if cell_id is None:
            await self._commit([make_event("notebookMetadataSet", key=key, value=value)])
        else:
            self._require_cell(cell_id)
            await self._commit([make_event("cellMetadataSet", cell_id=cell_id, key=key, value=value)])

    async def get_metadata(self, key: str, cell_id: str | None = None) -> Any:
        await self._connected()
        if cell_id is None:
            return views.notebook_metadata(self._conn).get(key)
        return self._require_cell(cell_id)["metadata"].get(key)

    # -- execution -------------------------------------------------------------------------------

    async def queue_cell(self, cell_id: str, *, batch_id: str | None = None) -> str:
        """Request execution of a cell; returns the queue id. The runtime runs its current source."""
        await self._connected()
        self._require_cell(cell_id)
        queue_id = new_id("q-")
        await self._commit([make_event("executionRequested", queue_id=queue_id, cell_id=cell_id, batch_id=batch_id)])
        return queue_id

    async def wait_for_execution(self, queue_id: str, timeout_secs: float | None = 60.0) -> ExecutionResult:
        client = await self._connected()

        def finished() -> dict[str, Any] | None:
            item = views.executions(self._conn, queue_id=queue_id)
            return item[0] if item and item[0]["status"] in TERMINAL else None

        try:
            item = await client.wait_for(finished, timeout_secs)
        except TimeoutError:
            raise ExecutionTimeoutError(
                f"execution {queue_id} did not finish within {timeout_secs} s (it may still be running; "
                "interrupt() stops it)"
            ) from None
        return self._result(item)

    def _result(self, item: dict[str, Any]) -> ExecutionResult:
        cell_id = item["cell_id"]
        outputs = [Output.from_dict(o) for o in views.outputs_by_cell(self._conn, cell_id).get(cell_id, [])]
        if item["status"] != "success" and not any(o.output_type == "error" for o in outputs) and item["error"]:
            outputs.append(Output(output_type="error", ename=item["error"].get("ename"),
                                  evalue=item["error"].get("evalue"), traceback=item["error"].get("traceback") or []))
        return ExecutionResult(cell_id=cell_id, outputs=outputs, success=item["status"] == "success",
                               execution_count=item["execution_count"], status=item["status"])

    async def execute_cell(self, cell_id: str, timeout_secs: float = 60.0) -> ExecutionResult:
        queue_id = await self.queue_cell(cell_id)
        self._kernel_started = True
        return await self.wait_for_execution(queue_id, timeout_secs)

    async def run(self, code: str, timeout_secs: float = 60.0) -> ExecutionResult:
        cell_id = await self.create_cell(code)
        return await self.execute_cell(cell_id, timeout_secs)

    async def run_all(self, timeout_secs: float | None = None) -> list[ExecutionResult]:
        """Queue every code cell as one batch (an error cancels the rest) and wait for them all."""
        await self._connected()
        batch_id = new_id("b-")
        cells = [c for c in views.ordered_cells(self._conn) if c["cell_type"] == "code"]
        queue_ids = [new_id("q-") for _ in cells]
        await self._commit([make_event("executionRequested", queue_id=q, cell_id=c["id"], batch_id=batch_id)
                            for q, c in zip(queue_ids, cells, strict=True)])
        self._kernel_started = True
        return [await self.wait_for_execution(q, timeout_secs) for q in queue_ids]

    # -- documents and peers ---------------------------------------------------------------------

    async def to_ipynb(self) -> dict[str, Any]:
        from runtimed.formats import notebook_from_projection

        await self._connected()
        return notebook_from_projection(self._conn)

    async def save(self, path: str | os.PathLike[str]) -> Path:
        from runtimed.formats import write_ipynb

        target = Path(path)
        target.write_text(write_ipynb(await self.to_ipynb()))
        return target

    async def get_peers(self) -> list[dict[str, Any]]:
        await self._connected()
        assert self._http is not None
        return await asyncio.to_thread(self._http.get, f"/api/notebooks/{self._notebook_id}/peers")


def _cell(cell: dict[str, Any], outputs: list[dict[str, Any]]) -> Cell:
    return Cell(id=cell["id"], cell_type=cell["cell_type"], source=cell["source"],
                execution_count=cell["execution_count"], outputs=[Output.from_dict(o) for o in outputs],
                metadata=cell["metadata"])


class _LoopThread:
    """One background event loop for all sync sessions: works even inside a running loop (Jupyter)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        with cls._lock:
            if cls._loop is None or not cls._loop.is_running():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="runtimed-session-loop", daemon=True).start()
                cls._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, cls._loop).result(timeout)


class Session:
    """A blocking handle on one notebook; mirrors :class:`AsyncSession` method for method."""

    def __init__(self, notebook_id: str | None = None, **kwargs: Any) -> None:
        self._async = AsyncSession(notebook_id, **kwargs)

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncSession", "Session", 1)

    def __enter__(self) -> Session:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._async, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return _LoopThread.run(attr(*args, **kwargs))

        blocking.__name__ = name
        blocking.__doc__ = attr.__doc__
        return blocking

    # properties are not forwarded by __getattr__ lookups on the class, so name them
    notebook_id = property(lambda self: self._async.notebook_id)
    is_connected = property(lambda self: self._async.is_connected)
    kernel_started = property(lambda self: self._async.kernel_started)
    env_source = property(lambda self: self._async.env_source)
    url = property(lambda self: self._async.url)


__all__ = ["AsyncSession", "Session"]
