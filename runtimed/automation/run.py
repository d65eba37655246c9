"""Run a notebook like papermill, except that the run is a live notebook in the daemon.

The prepared notebook (parameters injected) is imported as a new notebook, every
code cell is requested as one stop-on-error batch, and the daemon's runtime runs
them; people and agents can watch or join at the printed URL. The output notebook
is the projection exported back to ``.ipynb`` with papermill's metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

import nbformat

from runtimed import __version__
from runtimed.automation import deps, expectations, papermill_compat, steps
from runtimed.automation.notify import notify
from runtimed.automation.options import (
    CellProgress,
    RunOptions,
    is_local,
    load_input,
)
from runtimed.automation.parameters import ERROR_MARKER_TAG, parameterize_path, prepare_notebook
from runtimed.client.discovery import DaemonEndpoint, ensure_daemon
from runtimed.client.http import DaemonHTTP, prefetch_artifacts
from runtimed.client.session import _LoopThread
from runtimed.client.sync import SyncClient
from runtimed.errors import ExitCode, RuntimedError
from runtimed.home import Home
from runtimed.schema import views
from runtimed.schema.events import RUN_IMPORT_ACTOR, make_event
from runtimed.schema.ids import new_id

STATUS_EXIT_CODES = {
    "success": ExitCode.OK, "prepared": ExitCode.OK, "error": ExitCode.FAILURE, "kernel_died": ExitCode.KERNEL_DIED,
    "timeout": ExitCode.TIMEOUT, "start_failed": ExitCode.START_FAILED, "failed": ExitCode.FAILURE,
    "cancelled": ExitCode.FAILURE,
    "expectations_failed": ExitCode.FAILURE,
}
IMPORT_ACTOR = {"id": RUN_IMPORT_ACTOR, "kind": "human", "name": "import"}
"""Who imports a run's notebook (the import endpoint records this actor for the owner's ``x-runtimed-actor``)."""
FAILURE_KINDS = {"KernelDied": "kernel_died", "ExecutionTimeout": "timeout", "KernelStartFailed": "start_failed"}

ERROR_STYLE = 'style="color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;"'
ERROR_MESSAGE_TEMPLATE = f"<span {ERROR_STYLE}>An Exception was encountered at '<a href=\"#papermill-error-cell\">In [%s]</a>'.</span>"
ERROR_ANCHOR_MSG = (f'<span id="papermill-error-cell" {ERROR_STYLE}>'
                    "Execution using papermill encountered an exception here and stopped:</span>")


@dataclass
class RunResult:
    notebook: nbformat.NotebookNode
    status: str
    notebook_id: str | None = None
    url: str | None = None
    duration_s: float = 0.0
    failed_cell: dict[str, Any] | None = None
    output_path: str | None = None
    message: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each phase of the run (prepare, daemon, import, connect, start, execute, ...)."""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(queue id, {id, expects_error}) of every cell execution the run requested (resume continues them)."""
    runtime_id: str | None = None
    """The runtime left running (``--keep-runtime``, or a failed run kept for resume)."""
    failed_expectations: list[dict[str, Any]] = field(default_factory=list)
    """``{cell_id, index, check, message}`` of each failed expectation (automation/expectations.py)."""
    ipynb_text: str | None = field(default=None, repr=False)
    """``notebook`` as the ``.ipynb`` text written to the output (the run record's copy reuses it)."""

    @property
    def exit_code(self) -> int:
        return STATUS_EXIT_CODES[self.status]

    @property
    def success(self) -> bool:
        return self.exit_code == ExitCode.OK

    def summary(self) -> dict[str, Any]:
        return {"input_path": self.notebook.metadata.get("papermill", {}).get("input_path"),
                "notebook_id": self.notebook_id, "url": self.url, "status": self.status, "exit_code": self.exit_code,
                "duration_s": round(self.duration_s, 3), "failed_cell": self.failed_cell,
                "output_path": self.output_path, "message": self.message,
                "parameters": dict(self.notebook.metadata.get("papermill", {}).get("parameters", {})),
                "failed_expectations": self.failed_expectations,
                "phases": {k: round(v, 4) for k, v in self.phases.items()}}


Reporter = Callable[[str], None]


def _iso(ts: str | None) -> str | None:
    return ts.replace("Z", "+00:00") if ts else None


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def _notebook_id_for(input_path: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", PurePath(input_path.split("://")[-1]).stem or "stdin").strip("-.")[:40]
    return f"run-{stem or 'notebook'}-{uuid.uuid4().hex[:8]}"


def prepare(opts: RunOptions) -> tuple[nbformat.NotebookNode, str | None]:
    """The papermill-prepared notebook and the templated output path."""
    parameters = dict(opts.parameters)
    input_path = parameterize_path(opts.input_path, parameters)
    output_path = parameterize_path(opts.output_path, parameters)
    injected: dict[str, Any] = {}  # first, as papermill does, so that -p can still override them
    if opts.inject_paths or opts.inject_input_path:
        injected["PAPERMILL_INPUT_PATH"] = input_path
    if opts.inject_paths or opts.inject_output_path:
        injected["PAPERMILL_OUTPUT_PATH"] = output_path
    parameters = {**injected, **parameters}
    papermill_compat.check_language(opts.language)
    source = load_input(opts)
    try:
        nb = prepare_notebook(source, parameters, input_path=input_path, output_path=output_path,
                              report_mode=opts.report_mode, kernel_name=opts.kernel_name, language=opts.language,
                              warn=opts.control.warn if opts.control is not None else None)
    except RuntimedError as exc:
        if exc.code != "unknown_kernel" or opts.prepare_only:
            raise
        # as papermill: the output notebook is written (parameters injected) even though no kernel can run it
        target = output_target(output_path, opts.client_cwd) if opts.write_output_file else None
        papermill_compat.check_output_dir(target)
        nb = prepare_notebook(source, parameters, input_path=input_path, output_path=output_path,
                              report_mode=opts.report_mode, language=opts.language)
        write_output(nb, target)
        raise
    if not opts.prepare_only:  # papermill's notebook_start: no stale outputs or counts survive a run
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
    cwd = _absolute_cwd(opts.cwd, opts.client_cwd)
    settings: dict[str, Any] = {k: v for k, v in (("cwd", cwd), ("execution_timeout", opts.execution_timeout))
                                if v is not None}
    if opts.approve:  # recorded in the run's notebook (an audited event), read by the agents' approval check
        settings.update({"approvals": "off"} if "all" in opts.approve else {"approve_tools": list(opts.approve)})
    if settings:
        nb.metadata["runtimed"] = {**nb.metadata.get("runtimed", {}), **settings}
    if opts.no_deps:
        deps.no_deps(nb)
    steps.clear_records(nb)
    steps.check(nb.cells)
    for cell in nb.cells:  # stable ids, so results map back to cells
        if not cell.get("id"):
            cell["id"] = uuid.uuid4().hex[:16]
    expectations.load(nb, opts.expect_file)  # bad expectations are a usage error before the run
    return nb, output_path


def _absolute_cwd(cwd: str | None, client_cwd: str | None = None) -> str | None:
    """A relative ``--cwd`` is relative to where runt runs, not to where the daemon runs."""
    import os

    if not cwd or "://" in cwd:
        return cwd
    return os.path.abspath(os.path.join(client_cwd or os.getcwd(), os.path.expanduser(cwd)))


def _default_cwd(nb: nbformat.NotebookNode, endpoint: DaemonEndpoint, client_cwd: str | None) -> None:
    """Without --cwd the kernel runs where runt runs, as papermill's does (for a daemon on this machine)."""
    import os

    settings = nb.metadata.get("runtimed") or {}
    if "cwd" not in settings and (client_cwd or is_local(endpoint)):
        nb.metadata["runtimed"] = {**settings, "cwd": client_cwd or os.getcwd()}


def output_target(path: str | None, client_cwd: str | None) -> str | None:
    """Where an output path points for the process that writes it: relative to the client's directory."""
    import os

    if path is None or path == "-" or "://" in path or client_cwd is None:
        return path
    return os.path.join(client_cwd, os.path.expanduser(path))


def write_output(nb: nbformat.NotebookNode, output_path: str | None, *,
                 ipynb_text: str | None = None) -> str | None:
    """Write the output notebook; return its ``.ipynb`` text when it wrote one (``ipynb_text``: that text
    from an earlier write of the same notebook, reused instead of serializing it again)."""
    if output_path is None:
        return None
    if output_path == "-":
        sys.stdout.write(nbformat.writes(nb))
        sys.stdout.flush()
        return None
    import json

    from runtimed.formats.files import notebook_format, save_notebook

    if notebook_format(output_path) == "yaml":  # the YAML writer cannot represent NotebookNode values
        save_notebook(json.loads(json.dumps(nb)), output_path)
        return None
    return save_notebook(nb, output_path, ipynb_text=ipynb_text)


def _skipped(count: int) -> str:
    """The live log's note for ``count`` characters of a spilled stream that left the log before it was logged."""
    return f"\n[… {count:,} characters not logged live …]\n"


class _LiveLog:
    """``--log-output``: cell output streamed to stderr as it arrives, between papermill's banners.

    As papermill's log: ``Executing notebook with kernel: NAME``, then ``Executing Cell N---`` and
    ``Ending Cell N---`` around each cell (N counts every cell of the notebook, from 1). Output is
    streamed as it comes instead of once per message, and tracebacks are shown too.
    """

    def __init__(self, client: SyncClient, kernel_name: str | None) -> None:
        self.lengths: dict[str, int] = {}
        self.client = client
        self.kernel_name = kernel_name or (client.replica.view(views.notebook_metadata).get("kernelspec") or {}).get(
            "name")
        self.index = {cell["id"]: i + 1 for i, cell in enumerate(client.replica.view(views.ordered_cells))}
        self.last = 0
        self.cells: dict[str, int] = {}

    def _cell(self, queue_id: str) -> int | None:
        if queue_id not in self.cells:
            item = self.client.replica.view(views.execution, queue_id)
            if item is not None and item["cell_id"] not in self.index:  # cells arrived after we were made
                self.index = {c["id"]: i + 1 for i, c in enumerate(self.client.replica.view(views.ordered_cells))}
            if item is None or item["cell_id"] not in self.index:
                return None
            self.cells[queue_id] = self.index[item["cell_id"]]
        return self.cells[queue_id]

    def replay(self) -> None:
        """Log what happened before this log was attached (a client that connects to a run under way)."""
        items = sorted((i for i in self.client.replica.view(views.executions) if i["started_at"]),
                       key=lambda i: i["started_at"] or "")
        for item in items:
            self._started(item["queue_id"])
            for output in self.client.replica.view(views.execution_outputs, item["cell_id"], item["queue_id"]):
                if output.get("output_type") == "stream":  # a spilled one: its tail, after what left the log
                    text, omitted = output.get("text") or "", int(output.get("omitted") or 0)
                    self.lengths[output["output_id"]] = omitted + len(text)
                    self._write((_skipped(omitted) if omitted else "") + text)
                elif output.get("output_type") == "error":
                    self._write("\n".join(output.get("traceback") or []) + "\n")
                elif isinstance((output.get("data") or {}).get("text/plain"), str):
                    self._write(output["data"]["text/plain"] + "\n")
            if item["status"] in ("success", "error", "cancelled"):
                self._completed(item["queue_id"])

    def _started(self, queue_id: str) -> None:
        number = self._cell(queue_id)
        if number is None:
            return
        if self.last == 0:
            kernel = self.kernel_name or (self.client.replica.view(views.notebook_metadata).get("kernelspec")
                                          or {}).get("name")
            self._write(f"Executing notebook with kernel: {kernel or 'python3'}\n")
        for passed in range(self.last + 1, number):  # markdown and other cells a run passes over
            self._write(papermill_compat.banner("start", passed) + "\n" + papermill_compat.banner("end", passed) + "\n")
        self.last = max(self.last, number)
        self._write(papermill_compat.banner("start", number) + "\n")

    def _completed(self, queue_id: str) -> None:
        number = self._cell(queue_id)
        if number is not None:
            self._write(papermill_compat.banner("end", number) + "\n")

    def __call__(self, envs: list[Any]) -> None:
        for env in envs:
            args = env.args
            if env.name == "executionStarted":
                self._started(args.queue_id)
            elif env.name == "executionCompleted":
                self._completed(args.queue_id)
            elif env.name == "outputAdded" and args.output_type == "stream":
                self.lengths[args.output_id] = len(args.text or "")
                self._write(args.text or "")
            elif env.name == "streamTextChanged" and args.output_id in self.lengths:
                text = args.text if args.offset >= self.lengths[args.output_id] else "\r" + args.text
                self._write(text)
                self.lengths[args.output_id] = args.offset + len(args.text)
            elif env.name == "streamTailSet" and args.output_id in self.lengths:
                self._tail(args)
            elif env.name == "outputAdded" and args.output_type == "error":
                self._write("\n".join(args.traceback or []) + "\n")
            elif env.name == "outputAdded" and isinstance((args.data or {}).get("text/plain"), str):
                self._write(args.data["text/plain"] + "\n")  # papermill logs text/plain results too

    def _tail(self, args: Any) -> None:
        """A spilled stream's new tail (``streamTailSet``): what follows what was logged; text that left the log
        before it was logged is said to be skipped (the output notebook has it all)."""
        logged = self.lengths[args.output_id]
        if logged < args.omitted:
            self._write(_skipped(args.omitted - logged) + args.text)
        else:
            self._write(args.text[logged - args.omitted :])
        self.lengths[args.output_id] = max(logged, args.omitted + len(args.text))

    @staticmethod
    def _write(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()


@dataclass
class _RunSession:
    """The run's sync connection to its notebook (what the run needs of a Session, and no more)."""

    client: SyncClient
    notebook_id: str
    url: str

    @property
    def is_connected(self) -> bool:
        return self.client.is_connected

    async def close(self) -> None:
        await self.client.close()


class _Phases(dict):
    """Wall-clock seconds per phase of a run, for ``--json`` and the benchmarks."""

    def __init__(self) -> None:
        super().__init__()
        self._last = time.monotonic()

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self[name] = self.get(name, 0.0) + now - self._last
        self._last = now


async def run_async(opts: RunOptions, *, report: Reporter | None = None) -> RunResult:
    """Prepare, import, execute and export one notebook. ``report`` gets human-readable progress lines."""
    say = report or (lambda _line: None)
    started = time.monotonic()
    phases = _Phases()
    nb, output_path = prepare(opts)
    phases.mark("prepare")
    target = output_target(output_path, opts.client_cwd) if opts.write_output_file else None
    papermill_compat.check_output_dir(target)
    if opts.prepare_only:
        write_output(nb, target)
        return RunResult(nb, "prepared", output_path=output_path, message="prepared only (not executed)")

    endpoint = await _endpoint(opts)
    _default_cwd(nb, endpoint, opts.client_cwd)
    phases.mark("daemon")
    notebook_id = opts.notebook_id or _notebook_id_for(opts.input_path)
    http = DaemonHTTP(endpoint)
    try:
        if opts.importer is not None:  # a job of the daemon: in process, the notebook as it is
            await opts.importer(notebook_id, nb, IMPORT_ACTOR)
        else:
            await asyncio.to_thread(http.request, "POST", "/api/notebooks/import", params={"id": notebook_id},
                                    content=nbformat.writes(nb).encode(), headers={"x-runtimed-actor": IMPORT_ACTOR["id"]})
        try:
            await asyncio.to_thread(deps.approve_declared, http, notebook_id, nb)
            phases.mark("import")
            session = await _connect(endpoint, notebook_id, opts)
        except BaseException:  # cancelled or failed after the import: a job's prestarted runtime must not idle on
            if not opts.keep_runtime:
                _stop_in_process(opts, notebook_id)
            raise
        phases.mark("connect")
        say(f"Live notebook: {session.url}")
        result = await _run_session(session, nb, _requests_for(session.client.replica.view(views.ordered_cells)),
                                    opts, started, http, phases, target)
    finally:
        http.close()
    result.output_path = output_path
    return await _conclude(result, opts, phases, started, target)


async def resume_async(opts: RunOptions, notebook_id: str, previous: list[tuple[str, dict[str, Any]]], *,
                       from_cell: str | None, fix_cell: str | None = None, set_source: str | None = None,
                       report: Reporter | None = None) -> RunResult:
    """Continue a failed or cancelled run on its notebook: from ``from_cell`` (the failing cell) in the
    kernel it left running, or from the start (``from_cell=None``) on a new one.

    ``set_source`` replaces ``fix_cell``'s source first (the fix). ``previous`` are the run's
    earlier requests, so the output's papermill metadata covers the whole run.
    """
    say = report or (lambda _line: None)
    started = time.monotonic()
    phases = _Phases()
    endpoint = await _endpoint(opts)
    output_path = parameterize_path(opts.output_path, opts.parameters)
    target = output_target(output_path, opts.client_cwd) if opts.write_output_file else None
    http = DaemonHTTP(endpoint)
    try:
        session = await _connect(endpoint, notebook_id, opts)
        client = session.client
        if from_cell is not None and client.replica.view(views.active_session) is None:
            await session.close()
            raise RuntimedError(f"the kernel of notebook {notebook_id!r} is gone (its grace period ended or it died): "
                                "its state cannot be resumed", code="kernel_gone")
        if set_source is not None and fix_cell is not None:
            from runtimed.schema.crdt import SourceDoc, encode_update

            update = SourceDoc(client.replica.view(views.cell_ystate, fix_cell)).update_to(set_source)
            if update is not None:
                await client.commit([make_event("cellSourceEdited", cell_id=fix_cell, update=encode_update(update))])
        say(f"Live notebook: {session.url}")
        cells = client.replica.view(views.ordered_cells)
        if from_cell is not None:
            ids = [c["id"] for c in cells]
            cells = cells[ids.index(from_cell):] if from_cell in ids else []
        from runtimed.formats import notebook_from_projection

        resolve = await _fetch_artifacts(client, http)  # earlier outputs may be artifacts
        prepared = client.replica.view(notebook_from_projection, resolve_artifact=resolve)
        result = await _run_session(session, prepared, _requests_for(cells), opts, started, http, phases, target,
                                    previous=previous if from_cell is not None else [])
    finally:
        http.close()
    result.output_path = output_path
    return await _conclude(result, opts, phases, started, target)


async def _endpoint(opts: RunOptions) -> DaemonEndpoint:
    if opts.endpoint is not None:
        return opts.endpoint
    return await asyncio.to_thread(ensure_daemon, Home.resolve(opts.home))


async def _connect(endpoint: DaemonEndpoint, notebook_id: str, opts: RunOptions) -> _RunSession:
    actor = {"id": f"runt-run-{uuid.uuid4().hex[:8]}", "kind": "automation", "name": "runt run"}
    transport = opts.transport
    # the run reads the state only (no view of the events table): its replica does not keep the events
    session = _RunSession(SyncClient(endpoint.url, endpoint.token, notebook_id, actor, client="runt-run",
                                     transport=(lambda: transport(notebook_id)) if transport is not None else None,
                                     record_events=False),
                          notebook_id, f"{endpoint.url}/?notebook={notebook_id}")
    await session.client.connect(30.0)
    return session


_stopping: set[asyncio.Future[Any]] = set()
"""The jobs' runtime stops under way (referenced until done; the job does not wait for them)."""


def _stop_in_process(opts: RunOptions, notebook_id: str) -> None:
    """A job's stop of its notebook's runtime, in the background (``RunOptions.runtime_stopper``)."""
    if opts.runtime_stopper is not None:
        _stopping.add(task := asyncio.ensure_future(opts.runtime_stopper(notebook_id)))
        task.add_done_callback(_stopping.discard)


async def _run_session(session: _RunSession, prepared: nbformat.NotebookNode,
                       requests: list[tuple[str, dict[str, Any]]], opts: RunOptions, started: float,
                       http: DaemonHTTP, phases: _Phases, target: str | None,
                       previous: list[tuple[str, dict[str, Any]]] | None = None) -> RunResult:
    """Execute on a connected session; stop its runtime afterwards unless it is to be kept."""
    result: RunResult | None = None
    try:
        result = await _execute(session, prepared, requests, opts, started, http, phases, target, previous or [])
    finally:
        runtime = session.client.replica.view(views.active_session) if session.is_connected else None
        await session.close()
        keep = opts.keep_runtime or (opts.keep_runtime_on_failure and (result is None or not result.success))
        # a job stops in process, the runtime still starting included: a run cancelled before its runtime's session
        # began has no kernel state to resume, and its prestarted runtime would idle until the idle timeout
        if opts.runtime_stopper is not None and not opts.keep_runtime and (not keep or runtime is None):
            _stop_in_process(opts, session.notebook_id)
        elif runtime is not None and not keep and opts.control is not None:  # a job: the daemon lives on, no wait
            asyncio.get_running_loop().run_in_executor(None, stop_runtime, http.endpoint, runtime["runtime_id"])
        elif runtime is not None and not keep:
            await asyncio.to_thread(_stop_runtime, http, runtime["runtime_id"])
        elif runtime is not None and result is not None:
            result.runtime_id = runtime["runtime_id"]
        phases.mark("stop")
    return result


async def _conclude(result: RunResult, opts: RunOptions, phases: _Phases, started: float,
                    target: str | None) -> RunResult:
    result.ipynb_text = write_output(result.notebook, target)
    if opts.stdout_file or opts.stderr_file:
        _write_stream_files(result.notebook, opts)
    phases.mark("write")
    if opts.notify_url:
        if await asyncio.to_thread(notify, opts.notify_url, result.summary(), opts.notify_on) is False:
            from runtimed.automation.notify import redact_url

            result.message += f" (--notify {redact_url(opts.notify_url)} failed: see the daemon's log)"
        phases.mark("notify")
    result.phases = dict(phases)
    result.duration_s = time.monotonic() - started
    return result


STOP_WAIT_S = 0.05
"""How long a run waits for its runtime's shutdown: the daemon finishes it after we hang up."""


def stop_runtime(endpoint: DaemonEndpoint, runtime_id: str) -> None:
    """Stop a runtime a run left running (the daemon's jobs, when a failed run's grace period ends)."""
    http = DaemonHTTP(endpoint)
    try:
        _stop_runtime(http, runtime_id)
    finally:
        http.close()


def _stop_runtime(http: DaemonHTTP, runtime_id: str) -> None:
    """Stop the run's runtime (papermill's kernel does not outlive its run); the notebook stays.

    Shutting a kernel down takes the daemon up to a second or two; the request is sent in
    full and the daemon completes it whether or not we are still listening, so a run does
    not wait for it.
    """
    import httpx

    try:
        http.request("DELETE", f"/api/runtimes/{runtime_id}", timeout=httpx.Timeout(5.0, read=STOP_WAIT_S))
    except (RuntimedError, httpx.TimeoutException):  # not a managed runtime, gone, or still shutting down
        pass


def _requests_for(cells: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The code and AI cells a run executes, with a queue id each (skip-execution and empty cells are not)."""
    requests = []
    for cell in cells:
        tags = cell["metadata"].get("tags", [])
        if cell["cell_type"] not in ("code", "ai") or "skip-execution" in tags or not cell["source"].strip():
            continue
        requests.append((new_id("q-"), {**cell, "expects_error": "raises-exception" in tags}))
    return requests


AUTOSAVE_ON_STOP_S = 30.0
"""How long a stopped run (Ctrl-C, a lost connection) may take to write the output as far as it got."""


class _Autosave:
    """papermill's autosave: the output notebook rewritten after a cell completes, at most every ``every`` s.

    A save runs as a task of the loop (it fetches artifacts and writes off the loop: inside the daemon a
    blocking save would stall the daemon it asks), one at a time; ``settle`` waits for the one in flight so
    an autosave never lands after the final write.
    """

    def __init__(self, save: Callable[[], Awaitable[None]], every: float) -> None:
        self.save = save
        self.every = max(0.0, every)
        self.last = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._again = False  # a cell completed while a save was in flight

    def cell_done(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True  # saved again when the save in flight ends (claimed-ahead cells end back to back)
        elif time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._saves())

    async def _saves(self) -> None:
        while True:
            self._again = False
            await self._save()
            if not self._again or time.monotonic() - self.last < self.every:
                return
            self.last = time.monotonic()

    async def now(self) -> None:
        await self.settle()
        self.last = time.monotonic()
        await self._save()

    async def settle(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _save(self) -> None:
        try:
            await self.save()
        except Exception as exc:  # noqa: BLE001 - an autosave that fails must not fail the run; the final write reports
            print(f"runt run: autosave failed: {exc}", file=sys.stderr)


async def _execute(session: _RunSession, prepared: nbformat.NotebookNode, requests: list[tuple[str, dict[str, Any]]],
                   opts: RunOptions, started: float, http: DaemonHTTP, phases: _Phases, target: str | None,
                   previous: list[tuple[str, dict[str, Any]]]) -> RunResult:
    client = session.client
    batch_id = new_id("b-")
    start_time = datetime.now(UTC)
    progress = CellProgress(len(requests), enabled=opts.progress_bar)
    kernel_name = (prepared.metadata.get("kernelspec") or {}).get("name")
    live_log = client.on_events(_LiveLog(client, kernel_name)) if opts.log_output else None
    queue_ids = {q for q, _ in requests}
    everything = previous + requests
    control = opts.control

    async def partial() -> nbformat.NotebookNode:
        return _finish(client, prepared, everything, start_time, opts, await _fetch_artifacts(client, http))

    async def save() -> None:
        await asyncio.to_thread(write_output, await partial(), target)

    async def start_failed() -> RunResult:
        await client.commit([make_event("executionCancelRequested")])
        return RunResult(await partial(), "start_failed", session.notebook_id, session.url,
                         time.monotonic() - started, requests=everything,
                         message=f"no runtime started within --start-timeout {opts.start_timeout:g} s")

    if control is not None:
        control.client = client
        control.snapshot = partial

    autosave = _Autosave(save, opts.autosave_cell_every) \
        if target and opts.request_save_on_cell_execute else None
    finished = [0]
    total = [-1]  # the notebook's finished executions when the run's were last counted

    def all_done() -> bool:
        # called after every change the client sees: the run's own count (a query over its queue ids) is
        # taken again only when the notebook's count moved, which determines it (views.finished_total)
        now = client.replica.view(views.finished_total)  # (a resync replaces the replica)
        if now == total[0]:
            return finished[0] == len(queue_ids)
        total[0] = now
        done = client.replica.view(views.count_finished, queue_ids)
        if done != finished[0]:
            finished[0] = done
            progress.update(done)
            if control is not None:
                control.progress(done, len(queue_ids))
            if autosave is not None and done < len(queue_ids):
                autosave.cell_done()
        return done == len(queue_ids)

    evaluate = steps.http_evaluator(http, session.notebook_id, opts.start_timeout)
    checker = expectations.Checker(expectations.load(prepared, opts.expect_file), evaluate)
    stepwise = steps.needed(requests, opts.retries, checker.plan.variable_cells())
    language: asyncio.Future[dict[str, Any] | None] | None = None
    try:
        if control is not None and control.cancelled:  # cancelled before it started: nothing is requested
            requests, queue_ids, stepwise = [], set(), False
        if stepwise:  # retries, run_if or checks between cells (automation/steps.py)
            def stepped(done: int) -> None:
                progress.update(done)
                if control is not None:
                    control.progress(done, len(requests))

            try:
                outcome = await steps.run(
                    client, requests, allow_errors=opts.allow_errors, retries=opts.retries,
                    start_timeout=opts.start_timeout, progress=stepped, evaluate=evaluate,
                    is_failure=lambda item, cell: _counts_as_failure(item, cell, opts),
                    check_after=checker.plan.variable_cells(), after_cell=checker.after_cell)
            except TimeoutError:
                return await start_failed()
            requests = outcome.requests(requests)
            queue_ids = {q for q, _ in requests}
            everything = previous + requests
            phases.mark("execute")
        else:
            await client.commit([
                make_event("executionRequested", queue_id=q, cell_id=c["id"],
                           batch_id=None if opts.allow_errors or c["expects_error"] else batch_id)
                for q, c in requests
            ])
            phases.mark("request")
            if control is not None:
                control.progress(0, len(queue_ids))
        if queue_ids and not stepwise:
            try:
                await client.wait_for(lambda: client.replica.view(views.active_session) is not None or all_done(),
                                      opts.start_timeout)
                phases.mark("start")
            except TimeoutError:
                return await start_failed()
            if client.replica.view(views.active_session) is not None:  # asked while the cells run: ready at the end
                language = asyncio.ensure_future(papermill_compat.kernel_language(http, session.notebook_id))
            await client.wait_for(all_done, None)
            phases.mark("execute")
        items = _items(client, queue_ids)
        if checker.plan.notebook.get("variables") and not (stepwise and outcome.failure) and not any(
                _counts_as_failure(items[q], c, opts) for q, c in requests if q in items):
            await checker.at_end()
        if queue_ids:
            await papermill_compat.update_language_info(client, http, session.notebook_id, language)
    except BaseException:  # Ctrl-C or a lost connection: nothing stays queued, and the output shows how far it got
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.push([make_event("executionCancelRequested")]), 5)
        if autosave is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(autosave.now(), AUTOSAVE_ON_STOP_S)
        raise
    finally:
        progress.close()
        if live_log is not None:
            live_log()
        if language is not None and not language.done():
            language.cancel()
    if autosave is not None:
        await autosave.settle()
    nb = await partial()
    phases.mark("export")
    result = _outcome(nb, requests, _items(client, queue_ids), session, time.monotonic() - started, opts)
    result.requests = everything
    result = steps.finish(result, outcome) if stepwise else result
    if checker.plan:
        failures, events = checker.finish(result.notebook, time.monotonic() - started)
        if events:
            await client.commit(events)
        result.failed_expectations = failures
        if failures and result.success:
            result.status = "expectations_failed"
            result.message = f"{len(failures)} expectation(s) failed: " + "; ".join(
                f"{'cell ' + str(f['index']) if f['index'] is not None else 'notebook'} {f['check']}: {f['message']}"
                for f in failures)
    return result


def _items(client: SyncClient, queue_ids: set[str]) -> dict[str, views.ExecutionRow]:
    return {item["queue_id"]: item for item in client.replica.view(views.executions, queue_ids=queue_ids)}


def _counts_as_failure(item: Mapping[str, Any], cell: Mapping[str, Any], opts: RunOptions) -> bool:
    """An error that stops the run (and marks the cell ``failed``), as nbclient decides it."""
    if item["status"] != "error":
        return False
    ename = (item["error"] or {}).get("ename")
    return ename in FAILURE_KINDS or not (opts.allow_errors or cell["expects_error"])


def _outcome(nb: nbformat.NotebookNode, requests: list[tuple[str, dict[str, Any]]], items: dict[str, Any],
             session: _RunSession, duration: float, opts: RunOptions) -> RunResult:
    index_of = {cell.get("id"): i for i, cell in enumerate(nb.cells)}
    if opts.control is not None and opts.control.cancelled:
        stopped = next(((q, c) for q, c in requests if items[q]["status"] in ("cancelled", "error")), None)
        failed = None
        if stopped is not None:
            index = index_of.get(stopped[1]["id"])
            failed = {"index": index, "id": stopped[1]["id"], "ename": "Cancelled", "evalue": "the run was cancelled",
                      "execution_count": items[stopped[0]]["execution_count"]}
        where = f" at cell {failed['index']} (id {failed['id']})" if failed else ""
        return RunResult(nb, "cancelled", session.notebook_id, session.url, duration, failed,
                         message=f"cancelled{where}")
    for queue_id, cell in requests:
        item = items[queue_id]
        if not _counts_as_failure(item, cell, opts):
            continue
        error = item["error"] or {}
        ename = error.get("ename", "Error")
        kind = FAILURE_KINDS.get(ename)
        if kind is None and ename == "SystemExit" and error.get("evalue") in ("", "0"):
            break  # papermill: sys.exit(0) ends the run without failing it
        index = index_of.get(cell["id"])
        failed = {"index": index, "id": nb.cells[index].get("id") if index is not None else cell["id"],
                  "ename": ename, "evalue": error.get("evalue", ""), "execution_count": item["execution_count"]}
        nb = _add_error_banner(nb, failed)
        message = f"cell {failed['index']} (id {failed['id']}) raised {ename}: {failed['evalue']}"
        return RunResult(nb, kind or "error", session.notebook_id, session.url, duration, failed, message=message)
    return RunResult(nb, "success", session.notebook_id, session.url, duration, message="completed")


async def _fetch_artifacts(client: Any, http: DaemonHTTP | None) -> Callable[[str], bytes] | None:
    """The output's artifacts, fetched off the event loop before the export (a run job runs in the daemon)."""
    if http is None:
        return None
    return await prefetch_artifacts(client.replica, lambda sha: http.request("GET", f"/api/artifacts/{sha}").content)


def _finish(client: Any, prepared: nbformat.NotebookNode, requests: list[tuple[str, dict[str, Any]]],
            start_time: datetime, opts: RunOptions,
            resolve: Callable[[str], bytes] | None = None) -> nbformat.NotebookNode:
    """Export the projection and add papermill's notebook and per-cell metadata.

    As papermill records it: cells passed before the run stopped are ``completed`` (a cell
    that is not executed, such as markdown, with zero duration), the cell that stopped it
    is ``failed`` with ``exception: true``, and every cell after it stays ``pending``.
    """
    from runtimed.formats import notebook_from_projection

    nb = client.replica.view(notebook_from_projection, resolve_artifact=resolve)
    items = _items(client, {q for q, _ in requests})
    by_cell = {cell["id"]: (items[q], cell) for q, cell in requests if q in items}
    exported_ids = [c["id"] for c in client.replica.view(views.ordered_cells)]
    exception = False
    stopped = False
    passed_at = _iso(start_time.isoformat())
    for cell, cell_id in zip(nb.cells, exported_ids, strict=True):
        entry = by_cell.get(cell_id)
        meta: dict[str, Any] = {"exception": None, "start_time": None, "end_time": None, "duration": None,
                                "status": "pending"}
        if entry is not None and entry[0]["started_at"]:
            item, source_cell = entry
            failed = _counts_as_failure(item, source_cell, opts)
            meta.update(start_time=_iso(item["started_at"]), end_time=_iso(item["completed_at"]),
                        duration=_seconds(item["started_at"], item["completed_at"]),
                        exception=failed, status="failed" if failed else "completed")
            cell.metadata["execution"] = {
                "iopub.status.busy": item["started_at"], "iopub.execute_input": item["started_at"],
                "shell.execute_reply": item["completed_at"], "iopub.status.idle": item["completed_at"],
            }
            passed_at = _iso(item["completed_at"]) or passed_at
            if failed and not stopped:
                exception = stopped = True
        elif entry is None and not stopped:  # markdown, raw, skip-execution, empty: passed over
            meta.update(exception=False, start_time=passed_at, end_time=passed_at, duration=0.0, status="completed")
        cell.metadata["papermill"] = meta
        cell.metadata.setdefault("tags", [])
    end_time = datetime.now(UTC)
    papermill = dict(prepared.metadata.get("papermill", {}))
    papermill.update(start_time=start_time.isoformat(), end_time=end_time.isoformat(),
                     duration=(end_time - start_time).total_seconds(), exception=exception or None)
    papermill.setdefault("version", __version__)
    nb.metadata["papermill"] = papermill
    return nb


def _add_error_banner(nb: nbformat.NotebookNode, failed: dict[str, Any]) -> nbformat.NotebookNode:
    message = nbformat.v4.new_markdown_cell(ERROR_MESSAGE_TEMPLATE % str(failed["execution_count"]))
    message.metadata["tags"] = [ERROR_MARKER_TAG]
    anchor = nbformat.v4.new_markdown_cell(ERROR_ANCHOR_MSG)
    anchor.metadata["tags"] = [ERROR_MARKER_TAG]
    index = failed["index"] if failed["index"] is not None else len(nb.cells)
    nb.cells.insert(index, anchor)
    nb.cells.insert(0, message)
    return nb


def _write_stream_files(nb: nbformat.NotebookNode, opts: RunOptions) -> None:
    import fsspec

    for name, given in (("stdout", opts.stdout_file), ("stderr", opts.stderr_file)):
        path = output_target(given, opts.client_cwd)
        if path:
            text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                           if o.get("output_type") == "stream" and o.get("name") == name)
            with fsspec.open(path, "w", encoding="utf-8") as f:
                f.write(text)


async def run_many(options: list[RunOptions], parallel: int = 1, *, report: Reporter | None = None) -> list[RunResult]:
    """Several runs, at most ``parallel`` at once, each on its own notebook and runtime."""
    limit = asyncio.Semaphore(max(1, parallel))

    async def one(opts: RunOptions) -> RunResult:
        async with limit:
            try:
                return await run_async(opts, report=report)
            except (RuntimedError, OSError, ValueError) as exc:  # one bad run does not stop the others
                message = exc.message if isinstance(exc, RuntimedError) else f"{type(exc).__name__}: {exc}"
                result = RunResult(nbformat.v4.new_notebook(), "failed", message=f"{opts.input_path}: {message}")
                result.notebook.metadata["papermill"] = {"parameters": dict(opts.parameters),
                                                         "input_path": opts.input_path}
                result.output_path = opts.output_path
                return result

    return list(await asyncio.gather(*(one(o) for o in options)))


def run_notebook(input: str | nbformat.NotebookNode, output: str | None = None, parameters: dict[str, Any] | None = None,
                 kernel_name: str | None = None, **options: Any) -> RunResult:
    """Run a notebook papermill-style on the daemon; returns the executed notebook and its status.

    ``input`` is a path or fsspec URL (``.ipynb`` or YAML) or a NotebookNode. Other keyword
    arguments are :class:`RunOptions` fields (cwd, execution_timeout, allow_errors, ...).
    """
    if isinstance(input, nbformat.NotebookNode):
        options["input_notebook"] = input
        input = "<notebook>"
    opts = RunOptions(input_path=input, output_path=output, parameters=dict(parameters or {}),
                      kernel_name=kernel_name, **options)
    return _LoopThread.run(run_async(opts))
