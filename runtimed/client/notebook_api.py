"""``runtimed.Client`` and ``Notebook``: the published package's current async API, as a thin
layer over :class:`~runtimed.AsyncSession` (one client core, one replica per notebook).

Properties (``notebook.cells``, ``cell.source``, ``notebook.runtime``...) read the local
replica and return at once; methods that change the notebook or talk to the kernel are
coroutines. Every handle is a view: it holds an id and the session, never a copy.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimed.client.daemon_client import DaemonClient
from runtimed.client.discovery import DaemonEndpoint, ensure_daemon
from runtimed.client.http import DaemonHTTP
from runtimed.client.models import Cell, ExecutionResult, Output, QueueState
from runtimed.client.session import DEFAULT_TIMEOUT, AsyncSession, _cell
from runtimed.client.stdin import InputHandler
from runtimed.errors import NotFoundError, RuntimedError
from runtimed.home import Home
from runtimed.schema import views

_STATUS = {"pending": "queued", "assigned": "queued", "running": "running", "success": "done", "error": "error",
           "cancelled": "error"}
"""Our execution states -> the published package's (queued, running, done, error)."""


class _SyncOnly(list):  # type: ignore[type-arg]
    """A list property that says so when it is called or awaited by mistake."""

    def __init__(self, items: Any, attr: str) -> None:
        super().__init__(items)
        self._attr = attr

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"'{self._attr}' is a property, not a method: drop the parentheses (.{self._attr})")

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError(f"'{self._attr}' is a plain property: use it without await (.{self._attr})")


def _replica_view(session: AsyncSession, fn: Any, *args: Any) -> Any:
    return session.client.replica.view(fn, *args)


# -- executions ----------------------------------------------------------------------------------


class Execution:
    """One execution of a cell (``await cell.execute()``); ``await execution`` waits for its result."""

    __slots__ = ("_session", "_cell_id", "_execution_id")

    def __init__(self, session: AsyncSession, cell_id: str, execution_id: str) -> None:
        self._session = session
        self._cell_id = cell_id
        self._execution_id = execution_id

    def _row(self) -> views.ExecutionRow | None:
        try:
            row: views.ExecutionRow | None = _replica_view(self._session, views.execution, self._execution_id)
        except RuntimedError:
            return None
        return row

    @property
    def execution_id(self) -> str:
        return self._execution_id

    @property
    def cell_id(self) -> str:
        return self._cell_id

    @property
    def status(self) -> str:
        """``queued``, ``running``, ``done`` or ``error`` (``unknown`` before it has synced)."""
        row = self._row()
        return _STATUS.get(row["status"], row["status"]) if row else "unknown"

    @property
    def success(self) -> bool | None:
        """Whether it succeeded; None while it has not ended."""
        row = self._row()
        if row is None or row["status"] not in ("success", "error", "cancelled"):
            return None
        return row["status"] == "success"

    @property
    def execution_count(self) -> int | None:
        row = self._row()
        return row["execution_count"] if row else None

    @property
    def done(self) -> bool:
        return self.status in ("done", "error")

    async def result(self, timeout_secs: float = DEFAULT_TIMEOUT, *, stdin: InputHandler | None = None
                     ) -> ExecutionResult:
        """Wait for the end and return the result (at once when it has ended)."""
        return await self._session.wait_for_execution(self._execution_id, timeout_secs, stdin=stdin)

    async def wait(self, timeout_secs: float = DEFAULT_TIMEOUT) -> None:
        """Wait for the end without collecting outputs."""
        await self.result(timeout_secs)

    async def cancel(self) -> None:
        """Cancel this execution (waiting: dropped; running: interrupted), not the others."""
        from runtimed.schema.events import make_event

        await self._session._commit([make_event("executionCancelRequested", queue_id=self._execution_id)])

    def __await__(self) -> Generator[Any, None, ExecutionResult]:
        return self.result().__await__()

    def __repr__(self) -> str:
        return f"Execution({self._cell_id[:12]}, {self._execution_id[:12]}, status={self.status})"


# -- cells ---------------------------------------------------------------------------------------


class CellHandle:
    """A live reference to one cell: properties read the replica, methods change the document."""

    __slots__ = ("_id", "_session")

    def __init__(self, cell_id: str, session: AsyncSession) -> None:
        self._id = cell_id
        self._session = session

    def _row(self) -> views.CellRow | None:
        row: views.CellRow | None = _replica_view(self._session, views.cell, self._id)
        return row

    @property
    def id(self) -> str:
        return self._id

    @property
    def source(self) -> str:
        row = self._row()
        return row["source"] if row else ""

    @property
    def cell_type(self) -> str:
        row = self._row()
        return row["cell_type"] if row else "code"

    @property
    def outputs(self) -> list[Output]:
        outputs = _replica_view(self._session, views.outputs_by_cell, self._id).get(self._id, [])
        return _SyncOnly([Output.from_dict(o) for o in outputs], "outputs")

    @property
    def execution_count(self) -> int | None:
        row = self._row()
        return row["execution_count"] if row else None

    @property
    def metadata(self) -> dict[str, Any]:
        row = self._row()
        return dict(row["metadata"]) if row else {}

    def snapshot(self) -> Cell:
        """The whole cell as it is now (a plain :class:`~runtimed.Cell`)."""
        row = self._row()
        if row is None:
            raise NotFoundError(f"Cell not found: {self._id}", code="cell_not_found")
        return _cell(row, _replica_view(self._session, views.outputs_by_cell, self._id).get(self._id, []))

    @property
    def tags(self) -> list[str]:
        return _SyncOnly(self.snapshot().tags if self._row() else [], "tags")

    @property
    def source_hidden(self) -> bool:
        return self._row() is not None and self.snapshot().is_source_hidden

    @property
    def outputs_hidden(self) -> bool:
        return self._row() is not None and self.snapshot().is_outputs_hidden

    async def set_source(self, source: str) -> CellHandle:
        await self._session.set_source(self._id, source)
        return self

    async def append(self, text: str) -> CellHandle:
        await self._session.append_source(self._id, text)
        return self

    async def splice(self, index: int, delete_count: int, text: str = "") -> CellHandle:
        await self._session.splice_source(self._id, index, delete_count, text)
        return self

    async def set_type(self, cell_type: str) -> CellHandle:
        await self._session.set_cell_type(self._id, cell_type)
        return self

    async def execute(self, *, allow_stdin: bool = False) -> Execution:
        """Queue this cell and return its :class:`Execution` at once."""
        queue_id = await self._session.queue_cell(self._id, allow_stdin=allow_stdin)
        return Execution(self._session, self._id, queue_id)

    queue = execute

    async def run(self, timeout_secs: float = DEFAULT_TIMEOUT, *, stdin: InputHandler | None = None
                  ) -> ExecutionResult:
        """Run this cell and wait for the result (``stdin`` answers its ``input()``)."""
        execution = await self.execute(allow_stdin=stdin is not None)
        return await execution.result(timeout_secs, stdin=stdin)

    async def delete(self) -> None:
        await self._session.delete_cell(self._id)

    async def move_after(self, other: CellHandle | str | None = None) -> CellHandle:
        """Move this cell after another one (None: to the top)."""
        after = other.id if isinstance(other, CellHandle) else other
        await self._session.move_cell(self._id, after)
        return self

    async def clear_outputs(self) -> CellHandle:
        await self._session.clear_outputs(self._id)
        return self

    async def set_tags(self, tags: list[str]) -> CellHandle:
        await self._session.set_cell_tags(self._id, tags)
        return self

    async def set_source_hidden(self, hidden: bool) -> CellHandle:
        await self._session.set_cell_source_hidden(self._id, hidden)
        return self

    async def set_outputs_hidden(self, hidden: bool) -> CellHandle:
        await self._session.set_cell_outputs_hidden(self._id, hidden)
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CellHandle) and other._id == self._id and other._session is self._session

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"Cell({self._id[:12]}, {self.cell_type})"


class CellCollection:
    """``notebook.cells``: iterate, index by id, search; ``create``/``insert_at`` are coroutines."""

    __slots__ = ("_session",)

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _ids(self) -> list[str]:
        return [cell_id for cell_id, _ in _replica_view(self._session, views.order_keys)]

    @property
    def ids(self) -> list[str]:
        """Every cell id, in notebook order."""
        return _SyncOnly(self._ids(), "ids")

    def get_by_id(self, cell_id: str) -> CellHandle:
        if cell_id not in self._ids():
            raise KeyError(f"no cell with id {cell_id!r}")
        return CellHandle(cell_id, self._session)

    def get_by_index(self, index: int) -> CellHandle:
        """The cell at a position (negative counts from the end)."""
        return CellHandle(self._ids()[index], self._session)

    def find(self, substring: str) -> list[CellHandle]:
        """The cells whose source contains ``substring``, in order."""
        cells = _replica_view(self._session, views.ordered_cells)
        return [CellHandle(c["id"], self._session) for c in cells if substring in c["source"]]

    def __getitem__(self, cell_id: str) -> CellHandle:
        if not isinstance(cell_id, str):
            raise TypeError(f"cells[...] takes a cell id (str), got {type(cell_id).__name__}; use get_by_index()")
        return self.get_by_id(cell_id)

    def __iter__(self) -> Iterator[CellHandle]:
        return iter([CellHandle(i, self._session) for i in self._ids()])

    def __len__(self) -> int:
        return len(self._ids())

    def __contains__(self, cell_id: object) -> bool:
        return cell_id in self._ids()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("'cells' is a plain property: use it without await (.cells)")

    async def create(self, source: str = "", cell_type: str = "code") -> CellHandle:
        """A new cell at the end."""
        return CellHandle(await self._session.create_cell(source, cell_type), self._session)

    async def insert_at(self, index: int, source: str = "", cell_type: str = "code") -> CellHandle:
        """A new cell at a position (0: first; negative counts from the end)."""
        return CellHandle(await self._session.create_cell(source, cell_type, index), self._session)

    def __repr__(self) -> str:
        return f"Cells({len(self)})"


# -- presence and runtime state ------------------------------------------------------------------


class Presence:
    """``notebook.presence``: cursors and selections (relayed to peers, never stored)."""

    __slots__ = ("_session",)

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def set_cursor(self, cell_id: str, line: int = 0, column: int = 0) -> None:
        await self._session.set_cursor(cell_id, line, column)

    async def set_selection(self, cell_id: str, anchor_line: int, anchor_col: int, head_line: int,
                            head_col: int) -> None:
        await self._session.set_selection(cell_id, anchor_line, anchor_col, head_line, head_col)

    async def focus(self, cell_id: str) -> None:
        await self._session.set_focus(cell_id)

    async def clear_cursor(self) -> None:
        await self._session.clear_cursor()

    async def clear_selection(self) -> None:
        await self._session.clear_selection()

    async def get_remote_cursors(self) -> list[tuple[str, str, str, int, int]]:
        """Other peers' cursors as ``(peer_id, peer_label, cell_id, line, column)``."""
        return await self._session.get_remote_cursors()

    def __repr__(self) -> str:
        return "Presence()"


@dataclass
class KernelState:
    status: str
    """``not_started``, ``starting``, ``idle``, ``busy``, ``restarting``, ``error`` or ``shutdown``."""
    name: str = ""
    language: str = ""
    env_source: str = ""


@dataclass
class ExecutionState:
    cell_id: str
    status: str
    execution_count: int | None
    success: bool | None


@dataclass
class RuntimeState:
    """``notebook.runtime``: the kernel, the queue and every execution, read from the replica."""

    kernel: KernelState
    queue: QueueState
    executions: dict[str, ExecutionState] = field(default_factory=dict)


def runtime_state(session: AsyncSession) -> RuntimeState:
    from runtimed.client import compat

    active = _replica_view(session, views.active_session)
    kernel = KernelState("not_started")
    if active is not None:
        kernel = KernelState(active["status"], active["kernel_name"], active["language"], session.env_source or "")
    rows = _replica_view(session, views.executions)
    executions = {
        r["queue_id"]: ExecutionState(r["cell_id"], _STATUS.get(r["status"], r["status"]), r["execution_count"],
                                      None if r["status"] in ("pending", "assigned", "running") else
                                      r["status"] == "success")
        for r in rows
    }
    return RuntimeState(kernel, compat.queue_state(rows), executions)


@dataclass
class SyncEnvironmentResult:
    success: bool
    synced_packages: list[str] = field(default_factory=list)
    error: str | None = None
    needs_restart: bool = False


# -- notebooks -----------------------------------------------------------------------------------


class Notebook:
    """A connected notebook (from :class:`Client`); ``async with`` disconnects at the end."""

    __slots__ = ("_session", "_cells", "_presence")

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._cells = CellCollection(session)
        self._presence = Presence(session)

    @property
    def session(self) -> AsyncSession:
        """The :class:`~runtimed.AsyncSession` underneath (every Session-era method is there)."""
        return self._session

    @property
    def notebook_id(self) -> str:
        return self._session.notebook_id

    @property
    def url(self) -> str:
        """The live notebook in a browser."""
        return self._session.url

    @property
    def cells(self) -> CellCollection:
        return self._cells

    @property
    def presence(self) -> Presence:
        return self._presence

    @property
    def runtime(self) -> RuntimeState:
        return runtime_state(self._session)

    @property
    def peers(self) -> list[tuple[str, str]]:
        """Other peers that show presence, as ``(peer_id, peer_label)`` (``await session.get_peers()``
        lists every connection)."""
        from runtimed.client import compat

        peers = self._session.client.peers
        return _SyncOnly([(pid, compat.peer_label(p.get("actor") or {})) for pid, p in peers.items()], "peers")

    @property
    def is_connected(self) -> bool:
        return self._session.is_connected

    async def save(self) -> str:
        """Write the notebook to its file (the opened one, else ``<notebook_id>.ipynb``); the path."""
        return await self._session.save(None)

    async def save_as(self, path: str | os.PathLike[str]) -> str:
        return await self._session.save(path)

    async def start(self, runtime: str = "python", env_source: str = "auto", notebook_path: str | None = None) -> None:
        """Start (or join) the kernel; ``notebook_path`` is accepted for compatibility and unused."""
        await self._session.start_kernel(runtime, None if env_source == "auto" else env_source)

    async def stop_runtime(self) -> None:
        await self._session.shutdown_kernel()

    async def restart(self, wait_for_ready: bool = True) -> list[str]:
        """Restart the kernel; returns progress messages."""
        await self._session.restart_kernel(wait_for_ready)
        return ["restarted"] if wait_for_ready else ["restart requested"]

    async def interrupt(self) -> None:
        await self._session.interrupt()

    async def run_all(self) -> int:
        """Queue every code cell; the number queued."""
        return await self._session.run_all_cells()

    async def queue_all(self) -> list[Execution]:
        return [Execution(self._session, e.cell_id, e.execution_id) for e in await self._session.queue_all_cells()]

    async def disconnect(self) -> None:
        await self._session.close()

    # -- dependencies: metadata ``runtimed.dependencies``, installed into a uv environment (docs/environments.md)

    async def get_dependencies(self) -> list[str]:
        return await self._session.get_dependencies()

    async def add_dependency(self, package: str) -> list[str]:
        return await self._session.add_dependency(package)

    async def add_dependencies(self, packages: list[str]) -> list[str]:
        deps = await self._session.get_dependencies()
        for package in packages:
            deps = await self._session.add_dependency(package) if package not in deps else deps
        return deps

    async def remove_dependency(self, package: str) -> list[str]:
        await self._session.remove_dependency(package)
        return await self._session.get_dependencies()

    async def sync_environment(self) -> SyncEnvironmentResult:
        """Create (or reuse) the notebook's uv environment now; a running kernel keeps its environment until
        it is restarted (``needs_restart``)."""
        from runtimed.errors import RuntimedError

        try:
            env = await self._session.sync_environment()
        except RuntimedError as exc:
            return SyncEnvironmentResult(False, error=exc.message)
        request = env.get("request") or {}
        return SyncEnvironmentResult(True, synced_packages=list(request.get("dependencies") or []),
                                     needs_restart=self._session.kernel_started)

    async def __aenter__(self) -> Notebook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    def __repr__(self) -> str:
        return f"Notebook({self.notebook_id})"


@dataclass
class NotebookInfo:
    """One notebook of the daemon, from :meth:`Client.list_active_notebooks`."""

    notebook_id: str
    runtime_type: str | None = None
    status: str | None = None
    active_peers: int = 0
    has_runtime: bool = False
    env_source: str | None = None
    title: str = ""

    @property
    def name(self) -> str:
        return self.title or self.notebook_id

    @property
    def path(self) -> Path | None:
        return None

    @property
    def is_ephemeral(self) -> bool:
        return True

    async def join(self, client: Client, peer_label: str | None = None) -> Notebook:
        return await client.join_notebook(self.notebook_id, peer_label)


class Client:
    """The daemon, asynchronously: ``async with Client() as client: nb = await client.create_notebook()``.

    ``socket_path`` is accepted for compatibility and ignored (runtimed daemons are found
    through ``$RUNTIMED_HOME``, ``RUNTIMED_URL``); ``endpoint`` names one explicitly.
    """

    def __init__(self, socket_path: str | None = None, peer_label: str | None = None, *,
                 home: str | os.PathLike[str] | None = None, endpoint: DaemonEndpoint | None = None) -> None:
        self._peer_label = peer_label
        self._home = Home.resolve(home)
        self._endpoint = endpoint
        self._notebooks: list[Notebook] = []

    def _session_kwargs(self) -> dict[str, Any]:
        return {"home": self._home.path, "endpoint": self._endpoint}

    def _track(self, session: AsyncSession) -> Notebook:
        notebook = Notebook(session)
        self._notebooks.append(notebook)
        return notebook

    async def create_notebook(self, runtime: str = "python", working_dir: str | os.PathLike[str] | None = None,
                              peer_label: str | None = None, dependencies: list[str] | None = None,
                              package_manager: str | None = None) -> Notebook:
        """A new connected notebook (``dependencies`` are recorded in its metadata)."""
        session = await AsyncSession.create_notebook(runtime, working_dir, peer_label or self._peer_label,
                                                     **self._session_kwargs())
        notebook = self._track(session)
        if dependencies:
            await notebook.add_dependencies(list(dependencies))
        return notebook

    async def open_notebook(self, path: str | os.PathLike[str], peer_label: str | None = None) -> Notebook:
        """An ``.ipynb`` file as a live notebook (``save()`` writes it back)."""
        session = await AsyncSession.open_notebook(path, peer_label or self._peer_label, **self._session_kwargs())
        return self._track(session)

    async def join_notebook(self, notebook_id: str, peer_label: str | None = None) -> Notebook:
        """A notebook that exists in the daemon (``NotFoundError`` otherwise: create_notebook makes new ones)."""
        endpoint = self._endpoint
        if endpoint is None:
            endpoint = await asyncio.to_thread(ensure_daemon, self._home)
        http = DaemonHTTP(endpoint, timeout=30)
        try:
            await asyncio.to_thread(http.get, f"/api/notebooks/{notebook_id}")
        finally:
            http.close()
        session = AsyncSession(notebook_id, peer_label or self._peer_label, home=self._home.path, endpoint=endpoint)
        await session.connect()
        return self._track(session)

    async def list_active_notebooks(self) -> list[NotebookInfo]:
        rooms = await asyncio.to_thread(DaemonClient(self._home.path).list_rooms)
        return [NotebookInfo(r["notebook_id"], r["kernel_type"], r["kernel_status"], r["active_peers"],
                             r["has_kernel"], None, r.get("title") or "") for r in rooms]

    async def get_execution_result(self, execution_id: str) -> ExecutionResult:
        """The result of an execution of a notebook this client has open (waits if it is still running)."""
        for notebook in self._notebooks:
            session = notebook.session
            if session.is_connected and _replica_view(session, views.execution, execution_id) is not None:
                return await session.wait_for_execution(execution_id)
        raise NotFoundError(f"no execution {execution_id!r} in the notebooks this client has open; join its "
                            "notebook first (join_notebook)", code="execution_not_found")

    async def ping(self) -> bool:
        return await asyncio.to_thread(DaemonClient(self._home.path).ping)

    async def is_running(self) -> bool:
        return await asyncio.to_thread(DaemonClient(self._home.path).is_running)

    async def status(self) -> dict[str, Any]:
        return await asyncio.to_thread(DaemonClient(self._home.path).status)

    async def flush_pool(self) -> None:
        await asyncio.to_thread(DaemonClient(self._home.path).flush_pool)

    async def close(self) -> None:
        """Disconnect this client's notebooks (the daemon, the notebooks and their kernels stay)."""
        notebooks, self._notebooks = self._notebooks, []
        for notebook in notebooks:
            await notebook.disconnect()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return "Client()"


__all__ = ["CellCollection", "CellHandle", "Client", "Execution", "KernelState", "Notebook", "NotebookInfo",
           "Presence", "RuntimeState", "SyncEnvironmentResult"]
