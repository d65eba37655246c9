"""What a run is asked to do, and the little a submitting client needs of it.

Kept apart from ``automation/run.py`` (the executor) so that ``runt run``, a thin client of the daemon's
run jobs, starts without importing the event catalog, the sync client and the executor (about half a
second of a run's fixed cost).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtimed.errors import RuntimedError

if TYPE_CHECKING:
    import nbformat

    from runtimed.client.discovery import DaemonEndpoint
    from runtimed.client.sync import SyncClient


@dataclass
class RunOptions:
    input_path: str
    output_path: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    kernel_name: str | None = None
    cwd: str | None = None
    start_timeout: float = 60.0
    execution_timeout: float | None = None
    allow_errors: bool = False
    prepare_only: bool = False
    report_mode: bool = False
    log_output: bool = False
    stdout_file: str | None = None
    stderr_file: str | None = None
    progress_bar: bool = False
    inject_paths: bool = False
    inject_input_path: bool = False
    inject_output_path: bool = False
    notebook_id: str | None = None
    notify_url: str | None = None
    approve: tuple[str, ...] = ()
    """``--approve``: agent tools (AI cells') that need no person's approval in this run; ``("all",)`` for all."""
    notify_on: str = "always"
    """When ``notify_url`` hears of the run: always, success or failure."""
    retries: int = 0
    """``--retries``: run again from the start this many times when the kernel dies or the runtime is lost."""
    expect_file: str | None = None
    """``--expect``: a YAML file of expectations about the cells' results (see automation/expectations.py)."""
    language: str | None = None
    """papermill's ``-l``: the notebook's language for parameter injection (overrides the notebook's)."""
    request_save_on_cell_execute: bool = True
    """papermill's ``--request-save-on-cell-execute``: save the output after each cell."""
    keep_runtime: bool = False
    """Leave the notebook's runtime (and kernel) running after the run; by default it is stopped."""
    no_deps: bool = False
    """Ignore the notebook's declared dependencies: run in the daemon's own environment (docs/environments.md)."""
    home: str | None = None
    input_notebook: nbformat.NotebookNode | None = None
    """Already-read input (stdin); ``input_path`` then only names it."""
    client_cwd: str | None = None
    """Where the submitting client runs: relative output paths and the kernel's default cwd resolve there
    (a run executes in the daemon, whose own working directory means nothing to the user)."""
    autosave_cell_every: float = 30.0
    """papermill's autosave: the output notebook is rewritten after a cell completes, at most every N seconds."""
    write_output_file: bool = True
    """False when the client writes the output itself (``-``, or a daemon that cannot reach the path)."""
    keep_runtime_on_failure: bool = False
    """Leave the runtime of a failed or cancelled run running (the daemon's jobs keep it for resume)."""
    control: RunControl | None = None
    """Progress and cancellation from the daemon's job runner (not serialized)."""
    endpoint: DaemonEndpoint | None = None
    """The daemon to run on (the daemon's own, for jobs); else found or started from ``home``."""
    transport: Callable[[str], AbstractAsyncContextManager[Any]] | None = None
    """Opens an in-process connection to a notebook of the daemon (its jobs); else a WebSocket to the endpoint."""
    importer: Callable[[str, nbformat.NotebookNode, dict[str, Any]], Awaitable[Any]] | None = None
    """Imports ``(notebook_id, notebook, actor)`` into the daemon in process (its jobs); else over HTTP."""
    runtime_stopper: Callable[[str], Awaitable[Any]] | None = None
    """Stops a notebook's runtime in process, one still starting included (its jobs); else over HTTP by id."""


SUBMITTED_FIELDS = ("control", "endpoint", "input_notebook", "transport", "importer", "runtime_stopper")
"""RunOptions fields that do not travel in ``POST /api/runs`` as they are (the notebook goes as content)."""


class RunControl:
    """What a run's owner (the daemon's job runner) sees of it while it runs and how it stops it."""

    def __init__(self, on_progress: Callable[[int, int], None] | None = None,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.on_progress = on_progress
        self.on_warning = on_warning
        self.cancelled = False
        self.client: SyncClient | None = None
        self.snapshot: Callable[[], Awaitable[nbformat.NotebookNode]] | None = None
        """The output notebook as far as the run got (set while it executes)."""

    def progress(self, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total)

    def warn(self, message: str) -> None:
        """A warning about the run (papermill's "Passed unknown parameter"): its owner shows it to the user."""
        if self.on_warning is not None:
            self.on_warning(message)

    async def cancel(self) -> None:
        """Cancel the run: its queued cells are dropped and the running one interrupted; the output is kept."""
        self.cancelled = True
        if self.client is not None and self.client.is_connected:
            from runtimed.schema.events import make_event

            await self.client.push([make_event("executionCancelRequested")], timeout=10)


def submittable(opts: RunOptions) -> dict[str, Any]:
    """RunOptions as the JSON ``POST /api/runs`` takes (the notebook travels separately)."""
    return {f.name: getattr(opts, f.name) for f in dataclasses.fields(RunOptions) if f.name not in SUBMITTED_FIELDS}


def load_input(opts: RunOptions) -> nbformat.NotebookNode:
    if opts.input_notebook is not None:
        return opts.input_notebook
    from runtimed.formats.files import load_notebook

    try:
        return load_notebook(opts.input_path)
    except FileNotFoundError:
        raise RuntimedError(f"input notebook {opts.input_path!r} not found", code="not_found") from None


def submitted_notebook(opts: RunOptions) -> dict[str, Any]:
    """The input notebook as ``POST /api/runs`` takes it. A local ``.ipynb`` is sent as its plain JSON (the
    daemon reads it with the full reader, which upgrades and validates it), so the client needs neither
    nbformat nor the catalog; YAML, URLs, stdin and a file that is not JSON go through the reader here."""
    if opts.input_notebook is None and "://" not in opts.input_path and opts.input_path.lower().endswith(".ipynb"):
        import json
        from pathlib import Path

        try:
            data = json.loads(Path(opts.input_path).read_bytes())
        except FileNotFoundError:
            raise RuntimedError(f"input notebook {opts.input_path!r} not found", code="not_found") from None
        except (ValueError, OSError):
            data = None  # the reader says what is wrong with it
        if isinstance(data, dict):
            return data
    return dict(load_input(opts))


def is_local(endpoint: DaemonEndpoint) -> bool:
    from urllib.parse import urlsplit

    return (urlsplit(endpoint.url).hostname or "") in ("127.0.0.1", "localhost", "::1")


class CellProgress:
    """A rich progress bar over executed cells (on stderr), or nothing."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._bar = None
        self._done = 0
        if enabled and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("Executing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True))
            self._task = self._bar.add_task("cells", total=total)
            self._bar.start()

    def update(self, done: int) -> None:
        if self._bar is not None and done != self._done:
            self._done = done
            self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
