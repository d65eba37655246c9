"""The thin client of ``runt run`` and ``runt runs``: submit a run to the daemon, follow it, write its output.

The run itself is a job of the daemon (``automation/jobs.py``): this process only submits it,
shows progress (long polls of ``GET /api/runs/{id}``), streams cell output for ``--log-output``
and writes the output notebook when the daemon cannot (``-``, or a daemon on another machine).
Killing it never stops the run; Ctrl-C cancels it (as papermill's does), and the output notebook
shows how far it got.
"""

from __future__ import annotations

import contextlib
import json
import sys

TYPE_CHECKING = False  # typing's flag without importing typing (see runtimed/__init__.py)
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from typing import Any

    from runtimed.client.discovery import DaemonEndpoint

FINAL = {"success", "error", "cancelled", "kernel_died", "timeout", "start_failed", "failed", "prepared", "expectations_failed"}
POLL_S = 30.0
SETTLE_S = 1.0
"""Without a progress bar, the daemon answers a follow's long poll before the run's end at most once a second
(the end itself at once): a poll per cell would cost the daemon an HTTP request per cell."""
PROGRESS_SETTLE_S = 0.2
CANCEL_WAIT_S = 60.0
LOG_OPEN_WAIT_S = 60.0
"""How long ``--log-output`` waits for the run's notebook to open in the daemon (the run goes on regardless)."""
LOG_CATCH_UP_S = 2.0
"""After the run's end, how long ``--log-output`` may take to show the outputs it has not shown yet."""
LOG_END_WAIT_S = 10.0
"""After the run's end, how long ``runt run`` waits for its log in all (a log still connecting included)."""


def cells_requested(run: dict[str, Any]) -> bool:
    """The daemon has the run's notebook and has requested its cells: its live URL shows them. Until then a follow
    polls without settling, so that the URL is announced (and the live log starts) as soon as it is worth opening."""
    return run.get("total") is not None or run["status"] not in ("queued", "starting")


def _settle(run: dict[str, Any], settle: float) -> float:
    return settle if cells_requested(run) else 0.0


class RunClient:
    """REST calls about runs (blocking, or async in a worker thread), with the daemon's errors as RuntimedError.

    Each call is one standard-library request (``client/light_http.py``): ``runt run`` makes a handful of them, and httpx's import would cost more than a small run.
    This module imports asyncio only where it is used: ``runt run`` submits before it needs it."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    @classmethod
    def of(cls, endpoint: DaemonEndpoint) -> RunClient:
        return cls(endpoint.url, endpoint.token)

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                timeout: float = POLL_S + 30) -> Any:
        """One blocking call (``runt run`` submits this way, before it imports asyncio)."""
        from runtimed.client import light_http

        try:
            status, content = light_http.request(self.url, method, path, headers=light_http.bearer(self.token),
                                                 body=json, params=params, timeout=timeout)
        except light_http.Timeout:
            raise light_http.daemon_timeout(self.url, method, path, timeout) from None
        except Exception as exc:
            from runtimed.errors import DaemonNotRunningError  # the registry loads only for an error

            if isinstance(exc, DaemonNotRunningError):
                raise DaemonNotRunningError(f"cannot reach the daemon at {self.url}; "
                                            "start it with `runt daemon start`") from None
            raise
        return light_http.json_or_error(status, content)

    async def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                   timeout: float = POLL_S + 30) -> Any:
        import asyncio

        return await asyncio.to_thread(self.request, method, path, json=json, params=params, timeout=timeout)

    async def close(self) -> None:
        """Nothing to close: every call has its own connection."""


async def follow(client: RunClient, run: dict[str, Any], *, progress_bar: bool = False, log_output: bool = False,
                 log_to_stderr: bool = False, on_change: Callable[[dict[str, Any]], None] | None = None,
                 say: Callable[[str], None] = lambda _l: None) -> dict[str, Any]:
    """Wait for the run to end, showing progress; Ctrl-C cancels it and waits (bounded) for its output."""
    import asyncio

    from runtimed.automation.options import CellProgress
    from runtimed.tasks import cancel_and_wait

    progress: CellProgress | None = None
    warned = 0  # the run's warnings shown so far
    log_task: asyncio.Task[None] | None = None
    run_ended = asyncio.Event()

    def start_log() -> None:  # once the live URL is announced: the log does not cut into that line
        nonlocal log_task
        if log_output and log_task is None:
            log_task = asyncio.create_task(_stream_log(client, run["notebook_id"], log_to_stderr, run_ended))

    try:
        try:
            if cells_requested(run):
                start_log()
            while run["status"] not in FINAL:
                settle = PROGRESS_SETTLE_S if progress_bar else SETTLE_S
                run = await asyncio.to_thread(poll, client, run, _settle(run, settle))
                warned = _show_warnings(run, warned)
                if progress is None and progress_bar and run.get("total"):
                    progress = CellProgress(run["total"], enabled=True)
                if progress is not None:
                    progress.update(run.get("done") or 0)
                if on_change is not None:
                    on_change(run)
                if cells_requested(run):
                    start_log()
        except (KeyboardInterrupt, asyncio.CancelledError):
            say(_cancelling(run))
            run = await asyncio.shield(_cancel_and_wait(client, run))
    finally:
        _show_warnings(run, warned)  # a run that ended before the first poll
        if progress is not None:
            progress.close()
        if run["status"] in FINAL:  # the log shows what it has not shown yet, then ends
            start_log()
            run_ended.set()
            if log_task is not None:
                await asyncio.wait({log_task}, timeout=LOG_END_WAIT_S)
        if log_task is not None:
            await cancel_and_wait(log_task)
    return run


def follow_plainly(client: RunClient, run: dict[str, Any], *, log_level: str,
                   on_change: Callable[[dict[str, Any]], None], say: Callable[[str], None]) -> dict[str, Any]:
    """:func:`follow` without a progress bar or a live log, and without asyncio (the plain ``runt run``, whose
    cell runs while this process would import it): blocking long polls; Ctrl-C cancels the run."""
    warned = 0
    try:
        while run["status"] not in FINAL:
            run = poll(client, run, _settle(run, SETTLE_S))
            warned = _show_warnings(run, warned, log_level)
            on_change(run)
    except KeyboardInterrupt:
        say(_cancelling(run))
        import asyncio

        run = asyncio.run(_cancel_and_wait(client, run))
    finally:
        _show_warnings(run, warned, log_level)  # a run that ended before the first poll
    return run


def poll(client: RunClient, run: dict[str, Any], settle: float) -> dict[str, Any]:
    """The run once it has changed since ``run`` (a long poll of at most ``POLL_S``; blocking)."""
    return client.request("GET", f"/api/runs/{run['id']}",
                          params={"version": run["version"], "wait": POLL_S, "settle": settle})


def _cancelling(run: dict[str, Any]) -> str:
    return f"runt run: cancelling run {run['id']} (its output is kept; `runt runs resume {run['id']}` continues it)"


def _show_warnings(run: dict[str, Any], shown: int, log_level: str | None = None) -> int:
    """Log the run's warnings not shown yet on the CLI's logger (papermill's ``--log-level`` applies); how many
    are shown now. With ``log_level``, the logger is set up first (the plain ``runt run`` loads logging only
    when there is something to log)."""
    warnings = run.get("warnings") or []
    if len(warnings) > shown:
        import logging

        from runtimed.automation.papermill_compat import LOGGER, setup_logging

        if log_level is not None:
            setup_logging(log_level)
        for message in warnings[shown:]:
            logging.getLogger(LOGGER).warning(message)
    return max(shown, len(warnings))


async def _cancel_and_wait(client: RunClient, run: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    run = await client.call("POST", f"/api/runs/{run['id']}/cancel")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_WAIT_S
    while run["status"] not in FINAL and loop.time() < deadline:
        run = await client.call("GET", f"/api/runs/{run['id']}", params={"version": run["version"], "wait": 5})
    return run


async def _stream_log(daemon: RunClient, notebook_id: str, to_stderr: bool, run_ended: asyncio.Event) -> None:
    """``--log-output``: the run's cell output as it arrives (a replica of the run's notebook), until the run has
    ended and the log has shown everything the notebook held then."""
    import asyncio
    import uuid

    from runtimed.automation.run import _LiveLog
    from runtimed.client.sync import SyncClient

    actor = {"id": f"runt-log-{uuid.uuid4().hex[:8]}", "kind": "automation", "name": "runt run --log-output"}
    client = SyncClient(daemon.url, daemon.token, notebook_id, actor, client="runt-run")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOG_OPEN_WAIT_S
    while True:  # the daemon imports the notebook just after the submit: wait for it, bounded
        try:
            await client.connect(max(0.1, min(30.0, deadline - loop.time())))
            break
        except Exception:  # noqa: BLE001 - not there yet
            await client.close()
            if loop.time() >= deadline:
                break
            client = SyncClient(daemon.url, daemon.token, notebook_id, actor, client="runt-run")
            await asyncio.sleep(0.05)
    if not client.is_connected:
        await client.close()
        sys.stderr.write(f"runt run: no live log: notebook {notebook_id} did not open in the daemon; "
                         "the output notebook still has every output\n")
        return
    live = _LiveLog(client, None)  # on stderr, with papermill's banners
    client.on_events(live)
    live.replay()  # what ran before we connected (same loop turn: no event slips between the two)
    try:
        await run_ended.wait()
        head = (await daemon.call("GET", f"/api/notebooks/{notebook_id}/events",
                                  params={"since": client.replica.head, "limit": 1}))["head"]
        with contextlib.suppress(TimeoutError):
            await client.wait_for(lambda: client.replica.head >= head, LOG_CATCH_UP_S)
    finally:
        await client.close()


async def fetch_notebook(client: RunClient, run_id: str) -> dict[str, Any]:
    return await client.call("GET", f"/api/runs/{run_id}/notebook")


def write_notebook(nb: dict[str, Any], path: str) -> None:
    import nbformat

    from runtimed.automation.run import write_output

    write_output(nbformat.reads(json.dumps(nb), as_version=4), path)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
