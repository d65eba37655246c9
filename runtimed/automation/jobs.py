"""Runs as jobs of the daemon: ``POST /api/runs`` starts one, the daemon executes it, clients only watch.

The executor is the one in ``automation/run.py`` (``run_async`` / ``resume_async``), run as an
asyncio task on the daemon's event loop, so a run outlives the ``runt run`` that submitted it
(even a ``kill -9``). Each run is recorded in ``$RUNTIMED_HOME/runs/<id>.json`` (rewritten on every
change, atomically) so ``runt runs`` survives a daemon restart, and its output notebook, as far as it
got, in ``runs/<id>.ipynb``. A failed or cancelled run keeps its runtime for ``resume_grace`` seconds
so that ``runt runs resume`` continues in the same kernel.

Installed into the daemon at start by ``runtimed/cli/daemon_main.py`` (the server declares the
``RunService`` protocol it needs and never imports this package).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtimed.automation.options import submittable
from runtimed.errors import NotFoundError, RuntimedError
from runtimed.settings import env_number

if TYPE_CHECKING:  # the executor (nbformat, the client) loads after the daemon serves: see RunJobs.start
    from runtimed.automation.options import RunControl, RunOptions
    from runtimed.automation.run import RunResult
    from runtimed.client.discovery import DaemonEndpoint

log = logging.getLogger(__name__)

DEFAULT_RESUME_GRACE = 600.0
"""Seconds a failed or cancelled run keeps its runtime (and kernel state) for ``runt runs resume``."""
FINAL = {"success", "error", "cancelled", "kernel_died", "timeout", "start_failed", "failed", "prepared", "expectations_failed"}
RESUMABLE = {"error", "cancelled", "kernel_died", "timeout"}
MAX_WAIT_S = 60.0


def resume_grace_setting() -> float:
    return env_number("RUNTIMED_RUN_RESUME_GRACE", float(DEFAULT_RESUME_GRACE), float, allow_zero=True)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def options_from(spec: dict[str, Any], notebook: dict[str, Any] | None) -> RunOptions:
    """A submitted options object as RunOptions; unknown or non-submittable fields are a clear error."""
    from runtimed.automation.options import SUBMITTED_FIELDS, RunOptions
    known = {f.name for f in dataclasses.fields(RunOptions)} - set(SUBMITTED_FIELDS)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise RuntimedError(f"unknown run option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                            code="invalid_request")
    approve = spec.get("approve", [])
    if not isinstance(approve, list | tuple) or not all(isinstance(t, str) for t in approve):
        # a bare string would be read letter by letter (and "all" in "install_package" is True)
        raise RuntimedError(f"approve must be a list of agent tool names or [\"all\"], got {approve!r}",
                            code="invalid_request")
    if not spec.get("input_path") and notebook is None:
        raise RuntimedError("give the notebook's content or an input_path", code="invalid_request")
    try:
        opts = RunOptions(**{"input_path": "<notebook>", **spec})
    except TypeError as exc:
        raise RuntimedError(f"bad run options: {exc}", code="invalid_request") from None
    if notebook is not None:
        from runtimed.formats import read_ipynb

        try:  # the reader a local file goes through: any nbformat version, upgraded and validated
            opts.input_notebook = read_ipynb(json.dumps(notebook))
        except RuntimedError as exc:
            raise RuntimedError(f"the submitted notebook ({opts.input_path}) is not a valid notebook: {exc.message}",
                                code="invalid_request") from None
        except Exception as exc:  # noqa: BLE001 - any malformed notebook is the caller's input error
            raise RuntimedError(f"the submitted notebook is not a valid notebook: {exc}",
                                code="invalid_request") from None
    return opts


class RunJobs:
    """The daemon's runs: submit, watch, cancel, resume, export; schedules fire through :meth:`submit`."""

    def __init__(self, home_path: Path, endpoint: Callable[[], DaemonEndpoint], *,
                 resume_grace: float | None = None, transport: Callable[[str], Any] | None = None,
                 importer: Callable[..., Any] | None = None,
                 runtime_stopper: Callable[[str], Awaitable[Any]] | None = None) -> None:
        self.transport = transport
        """An in-process connection to a notebook of the daemon, for the runs' sync clients (else a WebSocket)."""
        self.importer = importer
        """Imports a run's notebook into the daemon in process (``RunOptions.importer``; else over HTTP)."""
        self.runtime_stopper = runtime_stopper
        """Stops a run's runtime in process (``RunOptions.runtime_stopper``; else over HTTP)."""
        self.dir = home_path / "runs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.endpoint = endpoint
        self.resume_grace = resume_grace_setting() if resume_grace is None else resume_grace
        self.records: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.controls: dict[str, RunControl] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.changed = asyncio.Condition()
        self.scheduler: Any = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        for path in sorted(self.dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                log.warning("skipping unreadable run record %s: %s", path, exc)
                continue
            if record.get("status") not in FINAL:  # the daemon stopped (or died) during the run
                record.update(status="failed", exit_code=1, ended_at=record.get("ended_at") or _now(),
                              message="the daemon stopped during the run; its output was saved as far as it got")
            record["resumable_until"] = None  # runtimes do not outlive their daemon
            self.records[record["id"]] = record
            self._save(record)
        from runtimed.automation.schedules import Scheduler

        self.scheduler = Scheduler(self.dir.parent / "schedules.json", self)
        await self.scheduler.start()
        # the executor's imports (nbformat, the sync client: about a second) happen while the daemon already
        # serves, so that neither its start nor the first run waits for them
        asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "runtimed.automation.run")

    async def stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        for timer in self.timers.values():
            timer.cancel()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    # -- records -----------------------------------------------------------------------------------------

    def _save(self, record: dict[str, Any]) -> None:
        record["version"] = record.get("version", 0) + 1
        path = self.dir / f"{record['id']}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({k: v for k, v in record.items() if not k.startswith("_")}, default=str))
        os.replace(tmp, path)

    async def _changed(self, record: dict[str, Any]) -> None:
        self._save(record)
        await self._notify()

    def get(self, run_id: str) -> dict[str, Any]:
        record = self.records.get(run_id)
        if record is None:
            raise NotFoundError(f"no run {run_id!r}", code="run_not_found")
        return _public(record)

    def list_runs(self, limit: int = 200) -> list[dict[str, Any]]:
        runs = sorted(self.records.values(), key=lambda r: r["created_at"], reverse=True)
        return [_public(r) for r in runs[:limit]]

    async def wait(self, run_id: str, version: int, timeout: float, settle: float = 0.0) -> dict[str, Any]:
        """The run once its record changed past ``version`` (or as it is after ``timeout``): a long poll.

        With ``settle``, a change that does not end the run is answered no sooner than ``settle`` seconds after
        the request, so that a client without a progress bar does not poll once per cell."""
        self.get(run_id)
        now = time.monotonic()
        deadline = now + min(max(timeout, 0.0), MAX_WAIT_S)
        earliest = now + min(max(settle, 0.0), MAX_WAIT_S)
        async with self.changed:
            while True:
                record = self.records[run_id]
                now = time.monotonic()
                if record["version"] > version and (record["status"] in FINAL or now >= earliest):
                    break
                until = min(deadline, earliest) if record["version"] > version else deadline
                if now >= deadline or until <= now:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), until - now)
        return self.get(run_id)

    # -- submit, cancel, resume --------------------------------------------------------------------------

    async def submit(self, spec: dict[str, Any], notebook: dict[str, Any] | None = None, *,
                     schedule_id: str | None = None) -> dict[str, Any]:
        from runtimed.automation.run import _notebook_id_for, run_async

        opts = options_from(spec, notebook)
        run_id = f"r-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        opts.notebook_id = opts.notebook_id or _notebook_id_for(opts.input_path)
        endpoint = self.endpoint()
        record: dict[str, Any] = {
            "id": run_id, "notebook_id": opts.notebook_id, "input_path": opts.input_path,
            "output_path": opts.output_path, "parameters": opts.parameters, "status": "queued", "done": 0,
            "total": None, "failed_cell": None, "message": "", "exit_code": None, "created_at": _now(),
            "started_at": None, "ended_at": None, "duration_s": None,
            "url": f"{endpoint.url}/?notebook={opts.notebook_id}", "runtime_id": None, "resumable_until": None,
            "schedule_id": schedule_id, "attempts": 1, "options": submittable(opts), "requests": [], "warnings": [],
        }
        self.records[run_id] = record
        await self._changed(record)
        self._launch(record, opts, lambda: run_async(opts))
        return _public(record)

    def _launch(self, record: dict[str, Any], opts: RunOptions, make: Callable[[], Any]) -> None:
        from runtimed.automation.options import RunControl

        control = RunControl(on_progress=lambda done, total: self._progress(record, done, total),
                             on_warning=lambda message: self._warned(record, message))
        opts.control = control
        opts.endpoint = self.endpoint()
        opts.transport = self.transport
        opts.importer = self.importer
        opts.runtime_stopper = self.runtime_stopper
        opts.keep_runtime_on_failure = True
        opts.progress_bar = False
        opts.log_output = False  # the attached client streams the log itself
        self.controls[record["id"]] = control
        self.tasks[record["id"]] = asyncio.get_running_loop().create_task(self._job(record, opts, make),
                                                                          name=f"run-{record['id']}")

    def _progress(self, record: dict[str, Any], done: int, total: int) -> None:
        """A cell finished: watchers wake at once; the record on disk follows at most every second."""
        record.update(done=done, total=total, status="running")
        if time.monotonic() - record.get("_saved", 0.0) >= 1.0:
            record["_saved"] = time.monotonic()
            self._save(record)
        else:
            record["version"] = record.get("version", 0) + 1
        asyncio.get_running_loop().create_task(self._notify())

    def _warned(self, record: dict[str, Any], message: str) -> None:
        """A warning for the user (the attached `runt run` prints it, as papermill logs it); the daemon logs it too."""
        log.info("run %s: %s", record["id"], message)
        record.setdefault("warnings", []).append(message)
        record["version"] = record.get("version", 0) + 1
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _job(self, record: dict[str, Any], opts: RunOptions, make: Callable[[], Any]) -> None:
        run_id = record["id"]
        record.update(status="starting", started_at=record["started_at"] or _now(), ended_at=None)
        await self._changed(record)
        started = time.monotonic()
        try:
            result: RunResult = await make()
            self._finished(record, result)
        except asyncio.CancelledError:  # the daemon stops: the executor saved the output as far as it got
            record.update(status="failed", exit_code=1,
                          message="the daemon stopped during the run; its output was saved as far as it got")
        except Exception as exc:  # noqa: BLE001 - one bad run is recorded, never takes the daemon down
            message = exc.message if isinstance(exc, RuntimedError) else f"{type(exc).__name__}: {exc}"
            record.update(status="failed", exit_code=getattr(exc, "exit_code", 1), message=message)
            log.warning("run %s failed: %s", run_id, message)
        finally:
            record["ended_at"] = _now()
            record["duration_s"] = round((record.get("duration_s") or 0.0) + time.monotonic() - started, 3)
            self.tasks.pop(run_id, None)
            self.controls.pop(run_id, None)
            self._save(record)
            async with self.changed:
                self.changed.notify_all()

    def _finished(self, record: dict[str, Any], result: RunResult) -> None:
        from runtimed.automation.run import stop_runtime, write_output

        record["summary"] = result.summary()
        record["resolved_output_path"] = result.output_path
        record.update(status=result.status, exit_code=int(result.exit_code), failed_cell=result.failed_cell,
                      message=result.message, runtime_id=result.runtime_id, notebook_id=result.notebook_id
                      or record["notebook_id"], requests=[[q, {"id": c["id"], "expects_error": c["expects_error"]}]
                                                          for q, c in result.requests])
        if result.url:
            record["url"] = result.url
        write_output(result.notebook, str(self.dir / f"{record['id']}.ipynb"), ipynb_text=result.ipynb_text)
        if result.runtime_id is not None and not record["options"].get("keep_runtime"):
            if result.status in RESUMABLE:
                record["resumable_until"] = datetime.fromtimestamp(time.time() + self.resume_grace, UTC).isoformat()
                self._stop_later(record, result.runtime_id)
            else:
                asyncio.get_running_loop().run_in_executor(None, stop_runtime, self.endpoint(), result.runtime_id)

    def _stop_later(self, record: dict[str, Any], runtime_id: str) -> None:
        from runtimed.automation.run import stop_runtime

        def stop() -> None:
            self.timers.pop(record["id"], None)
            record["resumable_until"] = None
            record["runtime_id"] = None
            asyncio.get_running_loop().create_task(self._changed(record))
            asyncio.get_running_loop().run_in_executor(None, stop_runtime, self.endpoint(), runtime_id)

        self.timers[record["id"]] = asyncio.get_running_loop().call_later(self.resume_grace, stop)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        self.get(run_id)
        control = self.controls.get(run_id)
        if control is not None:
            await control.cancel()
        return self.get(run_id)

    async def resume(self, run_id: str, *, set_source: str | None = None, from_start: bool = False
                     ) -> dict[str, Any]:
        record = self.records.get(run_id)
        if record is None:
            raise NotFoundError(f"no run {run_id!r}", code="run_not_found")
        if record["status"] not in RESUMABLE | {"failed"} or run_id in self.tasks:
            raise RuntimedError(f"run {run_id} is {record['status']}: only a failed or cancelled run resumes",
                                code="run_not_resumable")
        failed = record.get("failed_cell") or {}
        if set_source is not None and not failed.get("id"):
            raise RuntimedError(f"run {run_id} has no failing cell for --set-source", code="run_not_resumable")
        if not from_start and not failed.get("id"):
            raise RuntimedError(f"run {run_id} has no failing cell to resume from; rerun it from the start with "
                                f"`runt runs resume {run_id} --from-start`", code="run_not_resumable")
        if not from_start and record.get("runtime_id") is None:
            raise RuntimedError(f"the kernel of run {run_id} is gone (its {self.resume_grace:g} s grace period "
                                "ended, or the daemon restarted): its state cannot be resumed", code="kernel_gone")
        from runtimed.automation.run import resume_async

        opts = options_from(record["options"], None)
        opts.notebook_id = record["notebook_id"]
        opts.output_path = record.get("resolved_output_path") or opts.output_path  # pm[run_uuid] stays the same
        previous = [(q, c) for q, c in record.get("requests", [])]
        timer = self.timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
        record.update(status="running", attempts=record.get("attempts", 1) + 1, resumable_until=None,
                      failed_cell=None, message="resumed" if not from_start else "rerun from the start",
                      exit_code=None, runtime_id=None, done=0, total=None)
        from_cell = None if from_start else failed["id"]
        self._launch(record, opts, lambda: resume_async(opts, record["notebook_id"], previous, from_cell=from_cell,
                                                        fix_cell=failed.get("id"), set_source=set_source))
        return _public(record)

    async def notebook(self, run_id: str) -> dict[str, Any]:
        """The run's output notebook as far as it got (the daemon's copy, written when the run ends)."""
        self.get(run_id)
        control = self.controls.get(run_id)
        if control is not None and control.snapshot is not None:
            return dict(await control.snapshot())
        path = self.dir / f"{run_id}.ipynb"
        if not path.exists():
            raise NotFoundError(f"run {run_id} has no output notebook yet", code="run_not_found")
        return json.loads(path.read_text())


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("options", "requests") and not k.startswith("_")} | {
        "options": {k: v for k, v in record["options"].items() if k not in ("notify_url",)}}
