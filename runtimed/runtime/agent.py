"""The runtime agent: a sync client that claims execution requests and runs them in a kernel.

It starts a runtime session (displacing an older one, or waiting for it to end),
claims the oldest pending request with ``executionAssigned`` (the server arbitrates:
the session id is a fencing token), records in ``executionStarted`` the exact source
it read from the document, streams outputs as events, and completes each execution
with its status, count, duration and error. The same agent runs inside the daemon
and as an external ``runt runtime connect`` process.

- Claims, outputs, completions and statuses go through one ordered pipe: a claim never
  overtakes the completion of the previous cell (stop-on-error stays exact) yet does not
  wait for it to be acknowledged. 'busy' rides along with the first claim and 'idle' is
  reported a moment after the queue empties, so back-to-back cells cost no status events.
- A running execution whose ``cancel_requested`` flag turns on (executionCancelRequested,
  its cell deleted or made non-code) is interrupted, again if needed, and completes as
  ``cancelled``.
- The claimed requests of a run job's batch queued behind the cell that starts are sent to an ipykernel with it
  (``SEND_AHEAD``), so the kernel goes from cell to cell without waiting for the runtime; what it answers to
  them is held until each is started in the log. A failure makes the kernel abort them (``stop_on_error``),
  as the log cancels the rest of the batch. A cancel of one of them interrupts it once it runs.
- Kernel death fails the running cell (``KernelDied``) and restarts the kernel; a requested
  restart fails it as ``KernelRestarted``; a cell that ignores the interrupt sent at its
  timeout gets the kernel restarted. Restarts are shared and work waits for them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from runtimed.client.sync import SyncClient
from runtimed.errors import ConnectionLostError, RuntimedError
from runtimed.runtime.artifact_sink import ArtifactSink
from runtimed.runtime.cell_policy import cell_timeout
from runtimed.runtime.comms import CommRelay, forward
from runtimed.runtime.kernel import ExecuteReply, KernelSession, SentRequest
from runtimed.runtime.memory import LARGE_OUTPUT_BYTES, release_memory_soon
from runtimed.runtime.outputs import Blob, OutputWriter, artifact_not_stored
from runtimed.schema import events as ev
from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id
from runtimed.schema.limits import Limits
from runtimed.schema.materializer import Envelope
from runtimed.schema.replica import Replica
from runtimed.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SIZED_EVENTS = frozenset({"outputAdded", "streamTextChanged", "streamTailSet", "displayUpdated", "commOpened",
                          "commStateChanged", "commCustomMessage"})
"""Events that may be large: measured, so that one push stays under the message size limit."""
CLAIM_AHEAD = 32
"""Pending requests a runtime claims ahead of the cell it runs, so that the next one starts without a round trip."""
SEND_AHEAD = 16
"""Claimed requests of a batch sent to the kernel at once behind the cell that starts (Jupyter frontends send a
whole run-all at once): the kernel then runs them back to back while the runtime records each. The daemon's own
runtimes do (they cannot lose the daemon and keep their kernel); an external runtime sends none by default, so that a
lost connection leaves at most one cell run that the log does not show."""
AHEAD_ABORT_WAIT = 10.0
"""Seconds a runtime waits for the kernel to abort the requests sent ahead of a failed cell before it sends more."""
IDLE_REPORT_DELAY = 0.1
"""Seconds an agent waits before reporting 'idle', so that back-to-back cells stay 'busy'."""
CONTROL_EVENTS = frozenset({"runtimeInterruptRequested", "runtimeRestartRequested", "runtimeSessionEnded"})
AiExecutor = Callable[..., Awaitable[dict[str, Any] | None]]
"""Runs an AI cell (``runtimed.agents.ai_cell.AiCellExecutor``, injected: the runtime does not import agents).
Called with ``client``, ``cell_id``, ``queue_id``, ``output`` (the writer's ``on_output``) and ``serve`` (given an
actor id, this agent runs that actor's requests while the AI cell runs); returns None or ``{ename, evalue}``."""


def _remove_spools(artifacts: list[Blob]) -> None:
    """Remove the spool files of a stream's artifacts once stored (or never to be)."""
    for _, data, _ in artifacts:
        if isinstance(data, Path):
            data.unlink(missing_ok=True)


class EventPipe:
    """Pushes emitted events in order, batching whatever accumulates while a push is in flight.

    ``emit`` is fire-and-forget (outputs, statuses); ``submit`` goes through the same ordered
    pipe and returns the server's results, so a claim never overtakes the outputs and the
    completion of the previous cell, yet does not wait for them to be acknowledged first.
    """

    MAX_BATCH_EVENTS = 1000
    MAX_BATCH_BYTES = 8 * 1024 * 1024

    def __init__(self, client: SyncClient, sink: ArtifactSink | None = None) -> None:
        self.client = client
        self.sink = sink
        """Stores the artifacts of staged events before they are pushed (None: outputs are not offloaded)."""
        self._queue: list[tuple[dict[str, Any], int, asyncio.Future | None]] = []
        self._artifacts: dict[str, list[Blob]] = {}
        """Artifacts to store before the event of that id is pushed."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = asyncio.create_task(self._run(), name="event-pipe")
        self.rejections: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        self._wanted: set[str] = set()  # ids of submitted events whose results are awaited
        self._future_ids: dict[asyncio.Future[Any], list[str]] = {}  # a submit's future -> its events' ids
        self.acked_seq = 0
        """The highest seq the server gave an event of this pipe."""

    def emit(self, event: dict[str, Any]) -> None:
        self._put(event, None)

    def stage(self, event: dict[str, Any], artifacts: Sequence[Blob]) -> None:
        """Emit an event that references artifacts: they are stored first, in order with everything else."""
        self._artifacts[event["id"]] = list(artifacts)
        self._put(event, None)

    def submit(self, events: list[dict[str, Any]]) -> asyncio.Future:
        """Queue events behind everything emitted so far; the future gives their results."""
        future = asyncio.get_running_loop().create_future()
        for i, event in enumerate(events):
            self._put(event, future if i == len(events) - 1 else None)
        ids = self._future_ids[future] = [e["id"] for e in events]
        self._wanted.update(ids)
        return future

    def _put(self, event: dict[str, Any], future: asyncio.Future | None) -> None:
        size = len(orjson.dumps(event)) if event["name"] in SIZED_EVENTS else 256
        self._queue.append((event, size, future))
        self._idle.clear()
        self._wake.set()

    def _take_batch(self) -> list[tuple[dict[str, Any], int, asyncio.Future | None]]:
        count = size = 0
        for count, (_, event_size, _) in enumerate(self._queue, 1):  # noqa: B007
            size += event_size
            if count >= self.MAX_BATCH_EVENTS or (size > self.MAX_BATCH_BYTES and count > 1):
                if size > self.MAX_BATCH_BYTES:
                    count -= 1
                break
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch

    async def _run(self) -> None:
        results_by_id: dict[str, dict[str, Any]] = {}
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._take_batch()
                if self._artifacts:
                    batch = [(await self._store_artifacts(event), size, future) for event, size, future in batch]
                try:
                    results = await self.client.push([event for event, _, _ in batch])
                except RuntimedError as exc:
                    log.warning("runtime events not acknowledged: %s", exc)
                    results = [{"id": event["id"], "error": {"code": exc.code, "message": exc.message}}
                               for event, _, _ in batch]
                for result in results:
                    self.acked_seq = max(self.acked_seq, result.get("seq", 0))
                    if result.get("id") in self._wanted:
                        self._wanted.discard(result["id"])
                        results_by_id[result["id"]] = result
                    if "error" in result:
                        self.rejections.append(result)
                        log.info("event rejected: %s", result["error"])
                for _, _, future in batch:
                    if future is not None and not future.done():
                        future.set_result([results_by_id.pop(i, {"id": i, "error": {"code": "lost", "message": "no result"}})
                                           for i in self._future_ids.pop(future, [])])
            self._idle.set()

    async def _store_artifacts(self, event: dict[str, Any]) -> dict[str, Any]:
        """Store the artifacts an event references; an event whose artifacts cannot be stored becomes an error
        output saying why (nothing is pushed that references a missing artifact)."""
        artifacts = self._artifacts.pop(event["id"], None)
        if not artifacts or self.sink is None:
            return event
        try:
            for sha, data, content_type in artifacts:
                await self.sink.put(sha, data, content_type)
        except RuntimedError as exc:
            log.warning("artifact of %s not stored: %s", event["id"], exc)
            return artifact_not_stored(event, exc.message)
        finally:
            _remove_spools(artifacts)
        return event

    async def drain(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        for _, _, future in self._queue:
            if future is not None and not future.done():
                future.set_exception(ConnectionLostError("the runtime stopped before the events were pushed"))
        self._queue.clear()
        for artifacts in self._artifacts.values():
            _remove_spools(artifacts)
        self._artifacts.clear()
        if self.sink is not None:
            await self.sink.close()


class RuntimeAgent:
    def __init__(
        self,
        client: SyncClient,
        kernel: KernelSession,
        *,
        runtime_id: str | None = None,
        displace: bool = True,
        input_timeout: float = 300.0,
        flush_interval: float = 0.05,
        stdin_allowed: Callable[[str], bool] | None = None,
        artifacts: ArtifactSink | None = None,
        ai_executor: AiExecutor | None = None,
        send_ahead: int = 0,
    ) -> None:
        self.client = client
        self.kernel = kernel
        self.runtime_id = runtime_id or new_id("rt-")
        self.session_id = new_id("s-")
        self.displace = displace
        self.input_timeout = input_timeout
        self.stdin_allowed = stdin_allowed
        """Decides per execution (queue id) whether anyone can answer ``input()``; without it, always."""
        self.flush_interval = flush_interval
        self.artifacts = artifacts
        """Where large output values go (None: a value too large for an event becomes an error output)."""
        self.ai_executor = ai_executor
        """Runs ``ai`` cells (None: they fail with UnsupportedCellType)."""
        self.send_ahead = send_ahead
        """How many requests of a run job's batch go to the kernel ahead of their start (0: none; ``SEND_AHEAD``)."""
        self._ai_task: asyncio.Task | None = None
        self._ai_queue_id: str | None = None
        self.pipe: EventPipe | None = None
        self.comms: CommRelay | None = None
        self.running_queue_id: str | None = None
        self._running_cell_id: str | None = None
        self.status = "starting"
        self.started_at = time.time()
        self.last_activity = time.monotonic()
        self.executions = 0
        self.sent_ahead = 0
        """Requests sent to the kernel ahead of their start (``SEND_AHEAD``)."""
        self._task: asyncio.Task | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._interrupted_by_cancel = False
        self._restart_during: str | None = None  # the queue id a requested restart stopped
        self._restarting: asyncio.Task | None = None
        self._control_tasks: set[asyncio.Task] = set()
        self._reported_status = "idle"  # the last status pushed to the log
        self._start: asyncio.Future[list[dict[str, Any]]] | None = None
        """The answer to the last executionStarted (claimed-ahead starts are not waited for)."""
        self._claiming: set[str] = set()  # queue ids of claims pushed and not yet seen applied
        self._handled_claims: set[str] = set()
        """Claimed-ahead executions this agent started or completed as cancelled, until the replica shows it."""
        self._idle_timer: asyncio.TimerHandle | None = None
        self._ahead: dict[str, SentRequest] = {}
        """Requests sent to the kernel behind the running cell, in the kernel's order (queue id -> request)."""
        self._aborting: set[asyncio.Task[None]] = set()
        """Waits for the kernel's answers to requests it aborts after a failure (nothing is sent before)."""
        self._running_request: SentRequest | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.end_reason: str | None = None
        self._max_event_bytes = Limits.from_env().max_event_bytes

    # -- session lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, open a runtime session, and begin working through the queue."""
        if self.client.replica.head == 0:  # the agent reads the projection, never the log: keep no copy of it
            self.client.replica = Replica(self.client.notebook_id, record_events=False)
        await self.client.connect()
        if self.client.replica.view(views.notebook_info) is None:
            raise RuntimedError(f"notebook {self.client.notebook_id!r} does not exist", code="notebook_not_found")
        await self._open_session()
        self.pipe = EventPipe(self.client, self.artifacts)
        self.comms = CommRelay(self.pipe.emit, stage=self.pipe.stage if self.artifacts is not None else None,
                               current_cell=lambda: self._running_cell_id)
        self.comms.attach(self.kernel)
        self._unsubscribe = self.client.on_events(self._on_events)
        self._task = asyncio.create_task(self._work(), name=f"runtime-{self.runtime_id}")

    async def _open_session(self) -> None:
        started = make_event(
            "runtimeSessionStarted", session_id=self.session_id, runtime_id=self.runtime_id,
            kernel_name=self.kernel.kernel_name, language=self.kernel.language or "",
            capabilities={"interrupt": True, "restart": True, "input": True, "pid": self.kernel.pid,
                          ev.ASSIGN_WHEN_IDLE: True},
            host=socket.gethostname(),
        )
        idle = make_event("runtimeStatusChanged", session_id=self.session_id, status="idle")
        for _attempt in range(50):
            active = self.client.replica.view(views.active_session)
            events = [started, idle]
            if active is not None:
                if not self.displace:
                    await self.client.wait_for(lambda: self.client.replica.view(views.active_session) is None, None)
                    continue
                events.insert(0, make_event("runtimeSessionEnded", session_id=active["session_id"], reason="displaced"))
            results = await self.client.push(events)
            if "error" not in results[-2]:
                last = results[-1].get("seq", 0)
                await self.client.wait_for(lambda: self.client.replica.head >= last)  # noqa: B023 - awaited here
                self.status = "idle"
                return
            await asyncio.sleep(0.05)
        raise RuntimedError("could not open a runtime session: another runtime keeps taking the notebook",
                            code="runtime_conflict")

    def session_active(self) -> bool:
        session = self.client.replica.view(views.runtime_session, self.session_id)
        return session is not None and session["active"]

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def stop(self, reason: str = "shutdown", *, shutdown_kernel: bool = True) -> None:
        """End the session (if still ours), stop working, and shut the kernel down."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self.end_reason = reason
        self._cancel_idle_report()
        for task in list(self._control_tasks):
            if task is not asyncio.current_task():
                task.cancel()
        for pending in (self._task, self._restarting):
            if pending is not None and pending is not asyncio.current_task():
                await cancel_and_wait(pending)
        if self.comms is not None:
            self.comms.flush_all()  # the widgets' last states (the session's end marks them not live)
        if self.pipe is not None and self.client.is_connected:
            with contextlib.suppress(TimeoutError):  # outputs already emitted still reach the log
                await self.pipe.drain(timeout=5)
        if self.session_active() and self.client.is_connected:
            with contextlib.suppress(RuntimedError, TimeoutError):
                await self.client.push([make_event("runtimeSessionEnded", session_id=self.session_id, reason=reason)],
                                       timeout=5)
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.pipe is not None:
            await self.pipe.close()
        if shutdown_kernel:
            with contextlib.suppress(Exception):
                await self.kernel.shutdown()
        await self.client.close()
        self._drop_replica()
        self.status = "dead"
        self._stopped.set()
        release_memory_soon()

    def _drop_replica(self) -> None:
        """A stopped agent keeps no copy of the notebook: its replica holds every output and may be large."""
        replica = self.client.replica
        self.client.replica = Replica(self.client.notebook_id, record_events=False)  # empty: no session, no work
        replica.close()

    # -- control ---------------------------------------------------------------------------------

    def _on_events(self, envs: list[Envelope]) -> None:
        if self._stopping:
            return
        for env in envs:
            if env.name in CONTROL_EVENTS:
                self._spawn(self._control(env))
            elif isinstance(env.args, ev.CommUpdateRequested) and self.comms is not None \
                    and env.args.comm_id in self.comms.live:
                forward(self.kernel, env.args)  # a viewer changed a widget: the kernel hears it as a comm_msg
        self._cancel_claims()
        running = self.running_queue_id
        if running is not None and self._ai_task is None and any(env.name == "executionRequested" for env in envs):
            self._claim_ahead()  # work queued behind a running cell (an AI cell serves its own requests)
        if running is not None and not self._interrupted_by_cancel and self._cancel_requested(running):
            # cancelled while running: executionCancelRequested, or its cell deleted or no longer code
            self._interrupted_by_cancel = True
            self._spawn(self._interrupt_until_stopped(running))

    async def _interrupt_until_stopped(self, queue_id: str, attempts: int = 5) -> None:
        """Interrupt a cancelled cell, again if it keeps running (an interrupt that lands before the
        kernel started the cell, or in code that swallows one KeyboardInterrupt, is not the end of it)."""
        if self._ai_task is not None and queue_id == self._ai_queue_id:
            self._ai_task.cancel()  # an AI cell stops at once: it runs no kernel code of its own
            return
        for _ in range(attempts):
            request = self._running_request
            if request is not None and request.done.done():
                return  # it ended: an interrupt now would land in what the kernel runs next
            try:
                await self.kernel.interrupt()
            except Exception:
                log.exception("runtime %s could not interrupt its kernel", self.runtime_id)
                return
            for _ in range(20):
                await asyncio.sleep(0.05)
                if self.running_queue_id != queue_id:
                    return

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._control_tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._control_tasks.discard)
        return task

    async def _control(self, env: Envelope) -> None:
        try:
            await self._handle_control(env)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("runtime %s could not handle %s", self.runtime_id, env.name)

    async def _handle_control(self, env: Envelope) -> None:
        running = self.running_queue_id
        if env.name == "runtimeInterruptRequested":
            if running is not None and running == self._ai_queue_id and self._ai_task is not None:
                self._ai_task.cancel()
            elif running is not None:
                await self.kernel.interrupt()
        elif env.name == "runtimeRestartRequested":
            if running is not None:
                self._restart_during = running
            await self._restart("restart requested")
        elif isinstance(env.args, ev.RuntimeSessionEnded) and env.args.session_id == self.session_id:
            if env.args.reason != "shutdown":
                log.info("runtime session %s ended (%s); stopping", self.session_id, env.args.reason)
            self._spawn(self.stop(env.args.reason))

    async def _restart(self, detail: str) -> None:
        """Restart the kernel; concurrent requests share one restart. Work waits until it is back."""
        if self._restarting is None or self._restarting.done():
            self._restarting = asyncio.create_task(self._do_restart(detail), name=f"restart-{self.runtime_id}")
        await asyncio.shield(self._restarting)

    async def _do_restart(self, detail: str) -> None:
        self._set_status("restarting", detail)
        self._abandon_ahead()  # the restart loses them: they are sent again when their turn comes
        if self.comms is not None:
            self.comms.kernel_gone()
        try:
            await self.kernel.restart()
        except Exception as exc:
            log.exception("runtime %s could not restart its kernel", self.runtime_id)
            self._set_status("dead", f"the kernel could not be restarted: {exc}")
            self._spawn(self.stop("error"))
            return
        self._set_status("busy" if self.running_queue_id is not None else "idle")

    async def _kernel_ready(self) -> None:
        """Wait for a restart in progress; restart a kernel that died while idle."""
        if self._restarting is not None and not self._restarting.done():
            await asyncio.shield(self._restarting)
        if self.kernel.execution_state == "dead":
            await self._restart("the kernel died")

    def _set_status(self, status: str, detail: str | None = None) -> None:
        """Record and report a status at once (a pending delayed 'idle' is dropped)."""
        self._cancel_idle_report()
        self.status = status
        self._report(status, detail)

    def _report(self, status: str, detail: str | None = None) -> None:
        if self.pipe is not None and self.session_active():
            self._reported_status = status
            self.pipe.emit(make_event("runtimeStatusChanged", session_id=self.session_id, status=status, detail=detail))

    def _report_idle_soon(self) -> None:
        """Idle now, reported a moment later: back-to-back cells then cost no busy/idle events at all."""
        self.status = "idle"
        if self._reported_status == "idle" or self._idle_timer is not None:
            return
        self._idle_timer = asyncio.get_running_loop().call_later(IDLE_REPORT_DELAY, self._idle_report_due)

    def _idle_report_due(self) -> None:
        self._idle_timer = None
        if self.status == "idle" and not self._stopping:
            self._report("idle")

    def _cancel_idle_report(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    # -- the work loop ---------------------------------------------------------------------------

    def _next_work(self) -> views.NextWork | None:
        return self.client.replica.view(views.next_work, self.session_id)

    async def _work(self) -> None:
        try:
            while self.session_active():
                await self.client.wait_for(lambda: self._next_work() is not None or not self.session_active(), None)
                job = self._next_work()  # read again, now: events may have been applied since the wait saw it
                if job is None or not self.session_active():
                    if not self.session_active():
                        break
                    continue
                if self._ahead and next(iter(self._ahead)) != job.queue_id:  # never expected: they are next in the queue
                    log.warning("runtime %s: %s is next, not the request sent ahead", self.runtime_id, job.queue_id)
                    self._abandon_ahead()  # no longer the log's
                ahead = self._ahead.get(job.queue_id)
                if ahead is not None:  # the kernel has it: it is started, cancelled or not (a cancel interrupts it)
                    source: str | None = self._start_claimed(job.queue_id, job.cell_id, ahead.code)
                elif job.claimed and (job.cancel_requested or job.queue_id in self._handled_claims):
                    self._cancel_claims()  # cancelled before it started: completed as such, never run
                    await self._settled(job.queue_id, "assigned")
                    continue
                elif not job.claimed and job.queue_id in self._claiming:  # our claim is on its way: wait for it
                    await self._settled(job.queue_id, "pending")
                    self._claiming.discard(job.queue_id)
                    continue
                elif job.claimed:  # claimed ahead: start at once, the claim is already ours
                    source = self._start_claimed(job.queue_id, job.cell_id)
                else:
                    source = await self._claim(job.queue_id, job.cell_id)
                if source is not None:
                    self._claim_ahead()
                    status = await self._execute(job.queue_id, job.cell_id, source, send_ahead=True)
                    self.last_activity = time.monotonic()
                    await self._started_applied()
                    if status != "success":  # a failure may stop its batch: the server says what is left to run
                        await self._caught_up()
                if self._next_work() is None and self.status == "busy":
                    self._report_idle_soon()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("runtime agent %s failed", self.runtime_id)
        finally:
            if not self._stopped.is_set():
                session = self.client.replica.view(views.runtime_session, self.session_id)
                self._spawn(self.stop((session["ended_reason"] if session else None) or "error"))

    async def _claim(self, queue_id: str, cell_id: str) -> str | None:
        """Claim a pending request (compare-and-set on the server); the source it runs, or None if lost."""
        cell = self.client.replica.view(views.cell, cell_id)
        source = cell["source"] if cell else ""
        assert self.pipe is not None
        events = [
            make_event("executionAssigned", queue_id=queue_id, session_id=self.session_id),
            make_event("executionStarted", queue_id=queue_id, session_id=self.session_id, source=source),
        ]
        self._cancel_idle_report()
        if self._reported_status != "busy":
            events.append(make_event("runtimeStatusChanged", session_id=self.session_id, status="busy"))
            self._reported_status = "busy"
        self.status = "busy"
        results = await self.pipe.submit(events)
        if "error" in results[0] or "error" in results[1]:
            log.debug("claim of %s lost: %s", queue_id, results[0].get("error") or results[1].get("error"))
            with contextlib.suppress(TimeoutError):  # the replica catches up with what the server saw
                await self.client.wait_for(
                    lambda: self._queue_status(queue_id) != "pending" or not self.session_active(), 5)
            return None
        self._start = asyncio.get_running_loop().create_future()
        self._start.set_result(results)  # the replica catches up while the kernel runs
        return source

    def _start_claimed(self, queue_id: str, cell_id: str, source: str | None = None) -> str:
        """Start an execution this session claimed ahead, without waiting for the server's answer.

        The claim was acknowledged, and a claimed execution is only ever flagged by a cancel (the materializer
        leaves the decision to its runtime), so the start cannot lose unless the session ends. Its result is
        awaited after the cell (:meth:`_started_applied`): at most one start is ever unconfirmed. ``source``: what
        the kernel was sent ahead; else the cell's source now.
        """
        assert self.pipe is not None
        if source is None:
            cell = self.client.replica.view(views.cell, cell_id)
            source = cell["source"] if cell else ""
        events = [make_event("executionStarted", queue_id=queue_id, session_id=self.session_id, source=source)]
        self._cancel_idle_report()
        if self._reported_status != "busy":
            events.append(make_event("runtimeStatusChanged", session_id=self.session_id, status="busy"))
            self._reported_status = "busy"
        self.status = "busy"
        self._handled_claims.add(queue_id)  # started: a cancel from now on interrupts it (_on_events)
        self._start = self.pipe.submit(events)
        return source

    async def _started_applied(self) -> None:
        """Wait for the last start's answer and for the replica to show it (so that the cell is not picked again)."""
        start, self._start = self._start, None
        if start is None:
            return
        results = await asyncio.wait_for(asyncio.shield(start), 30)
        if "error" in results[0]:
            log.warning("runtime %s: start of a claimed execution refused: %s", self.runtime_id, results[0]["error"])
        seq = max((r.get("seq", 0) for r in results), default=0)
        if self.client.replica.head < seq:
            await self.client.wait_for(lambda: self.client.replica.head >= seq, 30)

    async def _caught_up(self) -> None:
        """Everything this agent pushed is acknowledged and applied to its replica."""
        assert self.pipe is not None
        await self.pipe.drain()
        acked = self.pipe.acked_seq
        if self.client.replica.head < acked:
            await self.client.wait_for(lambda: self.client.replica.head >= acked, 30)

    def _claim_ahead(self) -> None:
        """Claim the next pending requests (up to ``CLAIM_AHEAD``) while a cell runs: ``executionAssigned`` rides
        in the pipe with the outputs, and the next cell then starts without a round trip to the server."""
        if self.pipe is None or not self.session_active():
            return
        replica = self.client.replica
        self._claiming = {q for q in self._claiming if self._queue_status(q) == "pending"}
        room = CLAIM_AHEAD - replica.view(views.claimed_count, self.session_id) - len(self._claiming)
        if room <= 0:
            return
        for queue_id in replica.view(views.pending_queue_ids, room + len(self._claiming)):
            if queue_id not in self._claiming and room > 0:
                room -= 1
                self._claiming.add(queue_id)
                self.pipe.emit(make_event("executionAssigned", queue_id=queue_id, session_id=self.session_id))

    def _cancel_claims(self) -> None:
        """Complete as ``cancelled`` the claimed-ahead executions a cancel flagged (they never started)."""
        if self.pipe is None or not self.session_active():
            return
        self._handled_claims = {q for q in self._handled_claims if self._queue_status(q) == "assigned"}
        for queue_id in self.client.replica.view(views.claims_to_cancel, self.session_id):
            if queue_id not in self._handled_claims and queue_id not in self._ahead:  # the kernel runs those
                self._handled_claims.add(queue_id)
                self.pipe.emit(make_event("executionCompleted", queue_id=queue_id, status="cancelled", duration_ms=0.0))

    async def _settled(self, queue_id: str, status: str) -> None:
        """Wait (bounded) until the replica shows an execution leave ``status`` (or the session end)."""
        with contextlib.suppress(TimeoutError):
            await self.client.wait_for(lambda: self._queue_status(queue_id) != status or not self.session_active(), 30)

    def _queue_status(self, queue_id: str) -> str | None:
        item = self.client.replica.view(views.execution, queue_id)
        return item["status"] if item else None

    def _execution_timeout(self) -> float | None:
        """The notebook's execution timeout; a cell's own ``timeout`` (cell_policy.py) takes precedence."""
        value = self.client.replica.view(views.run_settings).get("execution_timeout")
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def _cancel_requested(self, queue_id: str) -> bool:
        item = self.client.replica.view(views.execution, queue_id)
        return item is not None and item["cancel_requested"]

    async def _execute(self, queue_id: str, cell_id: str, source: str, *, send_ahead: bool = False) -> str:
        """Run a started execution and complete it; returns the completion's status. ``send_ahead``: send the
        claimed requests of its batch queued behind it to the kernel with it (the work loop's cells only)."""
        assert self.pipe is not None
        self.running_queue_id = queue_id
        self._running_cell_id = cell_id
        self._interrupted_by_cancel = False
        self._restart_during = None
        self.executions += 1
        cell = self.client.replica.view(views.cell, cell_id)
        writer = OutputWriter(self.pipe.emit, cell_id=cell_id, queue_id=queue_id, flush_interval=self.flush_interval,
                              max_event_bytes=self._max_event_bytes,
                              stage=self.pipe.stage if self.artifacts is not None else None)
        started = time.perf_counter()
        timeout = (cell_timeout(cell["metadata"]) if cell is not None else None) or self._execution_timeout()
        try:
            await self._kernel_ready()
            ahead = self._ahead.pop(queue_id, None)
            if ahead is not None:
                reply = await self._run_sent_ahead(queue_id, ahead, writer, timeout)
            elif self._cancel_requested(queue_id):  # cancelled between the claim and now: do not run it
                self._interrupted_by_cancel = True
                reply = ExecuteReply(status="aborted")
            elif cell is not None and cell["cell_type"] == "ai" and self.ai_executor is not None:
                reply = await self._run_ai(queue_id, cell_id, writer, timeout)
            elif cell is not None and cell["cell_type"] != "code":
                reply = ExecuteReply(status="error", ename="UnsupportedCellType",
                                     evalue=f"this runtime runs code cells; {cell['cell_type']} cells need another runtime")
            else:
                reply = await self._run_code(queue_id, source, writer, timeout, send_ahead=send_ahead)
        except Exception as exc:  # the runtime itself failed: say so on this cell and go on
            log.exception("runtime %s failed to run %s", self.runtime_id, queue_id)
            reply = ExecuteReply(status="error", ename="RuntimeError",
                                 evalue=f"the runtime could not run this cell: {type(exc).__name__}: {exc}")
        finally:
            writer.close()
            if self.comms is not None:
                self.comms.flush_all()  # the widgets' states are in the log before the completion
            self.running_queue_id = None
            self._running_cell_id = None
            request, self._running_request = self._running_request, None
        if reply.status == "error" and request is not None and request.stop_on_error and self._ahead:
            self._abort_ahead()  # the kernel aborts what it queued behind a failure, as the log cancels the batch
        duration_ms = (time.perf_counter() - started) * 1000
        restarted = self._restart_during == queue_id
        completion = self._completion(queue_id, reply, duration_ms, timeout, writer, restarted=restarted)
        self.pipe.emit(completion)
        if writer.stream_chars >= LARGE_OUTPUT_BYTES:
            self._spawn(self._release_after_outputs())
        if restarted:
            await self._kernel_ready()
        elif reply.kernel_died:
            await self._restart("the kernel died")
        elif (reply.timed_out or reply.input_timed_out) and reply.execution_count is None:
            # no execute_reply even after the interrupt: the cell ignores KeyboardInterrupt; free the kernel
            await self._restart("the cell did not stop when interrupted")
        return str(completion["args"]["status"])

    def _input_for(self, queue_id: str) -> Callable[[str, bool], Awaitable[str]] | None:
        """How the kernel's ``input()`` is answered for this execution (None: StdinNotImplementedError)."""
        if self.stdin_allowed is not None and not self.stdin_allowed(queue_id):
            return None
        return functools.partial(self._ask_input, queue_id)

    async def _run_code(self, queue_id: str, source: str, writer: OutputWriter, timeout: float | None, *,
                        send_ahead: bool) -> ExecuteReply:
        """Send a code cell to the kernel (with what is queued behind it, if ``send_ahead``) and wait for it."""
        if self._aborting:  # sent now, it could be aborted with them
            await asyncio.wait(self._aborting, timeout=AHEAD_ABORT_WAIT)
        item = self.client.replica.view(views.execution, queue_id)
        batch_id = item["batch_id"] if item else None
        reply = ExecuteReply(status="aborted")
        for _attempt in range(3):
            request = self.kernel.send(source, writer.on_output, on_input=self._input_for(queue_id),
                                       input_timeout=self.input_timeout, stop_on_error=batch_id is not None)
            self._running_request = request
            if send_ahead:
                self._send_ahead(queue_id, batch_id)
                send_ahead = False
            reply = await self.kernel.wait(request, timeout)
            if reply.status != "aborted" or self._interrupted_by_cancel:
                break
            log.info("runtime %s: the kernel aborted %s (an earlier failure's abort); sending it again",
                     self.runtime_id, queue_id)
        return reply

    def _send_ahead(self, queue_id: str, batch_id: str | None) -> None:
        """Send the kernel, right behind ``queue_id``, the claimed requests of the same batch that follow it: all
        at once, so that a failure finds them queued and the kernel aborts them all (``stop_on_error``).

        Only a run job's batches (requested by an ``automation`` actor): nobody edits a run's cells while it runs,
        and it is cancelled as a whole. A cancel of one cell the kernel already has can only interrupt it."""
        if batch_id is None or self._ahead or not self.send_ahead or not self.kernel.aborts_queue_on_error:
            return
        for item in self.client.replica.view(views.queued_behind, self.session_id, queue_id, self.send_ahead):
            if not item.claimed or item.cancel_requested or item.batch_id != batch_id or item.cell_type != "code" \
                    or item.requester_kind != "automation" or item.queue_id in self._handled_claims:
                break
            self._ahead[item.queue_id] = self.kernel.send(item.source, on_input=self._input_for(item.queue_id),
                                                          input_timeout=self.input_timeout, stop_on_error=True)
            self.sent_ahead += 1

    async def _run_sent_ahead(self, queue_id: str, request: SentRequest, writer: OutputWriter,
                              timeout: float | None) -> ExecuteReply:
        """Wait for a request sent ahead, now started in the log: its held outputs go out first. Cancelled, it is
        interrupted if it still runs; aborted by the kernel though the log still wants it, it is sent again."""
        self._running_request = request
        self.kernel.release(request, writer.on_output)
        if self._cancel_requested(queue_id) and not request.done.done() and not self._interrupted_by_cancel:
            self._interrupted_by_cancel = True
            self._spawn(self._interrupt_until_stopped(queue_id))
        reply = await self.kernel.wait(request, timeout)
        if reply.status == "aborted" and not self._interrupted_by_cancel:
            log.info("runtime %s: the kernel aborted %s, sent ahead; sending it again", self.runtime_id, queue_id)
            return await self._run_code(queue_id, request.code, writer, timeout, send_ahead=False)
        return reply

    def _abort_ahead(self) -> None:
        """After a failure with ``stop_on_error``: the kernel aborts the requests sent ahead. They are the log's
        again (cancelled with their batch, or sent anew); their answers are awaited before anything is sent."""
        for queue_id, request in self._ahead.items():
            task = asyncio.ensure_future(self._await_abort(queue_id, request))
            self._aborting.add(task)
            task.add_done_callback(self._aborting.discard)
        self._ahead.clear()

    async def _await_abort(self, queue_id: str, request: SentRequest) -> None:
        self.kernel.release(request)  # what it answers is dropped
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(request.done), AHEAD_ABORT_WAIT)
        if request.reply is not None and request.reply.get("status") != "aborted":
            log.warning("runtime %s: the kernel ran %s, sent ahead, after a failure that stopped its batch "
                        "(it arrived after the kernel's abort); its outputs were dropped", self.runtime_id, queue_id)
        self.kernel.discard(request)

    def _abandon_ahead(self) -> None:
        """Forget the requests sent ahead (the kernel restarts and loses them); they are sent again in turn."""
        for request in self._ahead.values():
            self.kernel.discard(request)
        self._ahead.clear()

    async def _run_ai(self, queue_id: str, cell_id: str, writer: OutputWriter, timeout: float | None) -> ExecuteReply:
        """Run an AI cell with the injected executor, bounded by the execution timeout; an interrupt or a cancel
        stops it. Its errors are outputs (a code cell's kernel writes its own; here nobody else would)."""
        assert self.ai_executor is not None
        if self._ai_task is not None:
            reply = ExecuteReply(status="error", ename="AiCellNested", evalue="an AI cell cannot run another AI cell")
            writer.on_output("error", {"ename": reply.ename, "evalue": reply.evalue, "traceback": []})
            return reply
        actors: set[str] = set()
        task = self._ai_task = asyncio.ensure_future(self.ai_executor(
            client=self.client, cell_id=cell_id, queue_id=queue_id, output=writer.on_output, serve=actors.add))
        self._ai_queue_id = queue_id
        server = self._spawn(self._serve_ai_requests(queue_id, actors))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        finally:
            server.cancel()
            await cancel_and_wait(task)
            self._ai_task = self._ai_queue_id = None
            self.running_queue_id = queue_id
        if self._interrupted_by_cancel:
            return ExecuteReply(status="aborted")
        if not done:  # _completion says so in an output
            return ExecuteReply(status="error", ename="ExecutionTimeout",
                                evalue=f"the AI cell ran longer than the execution timeout ({timeout:g} s) and was stopped")
        if task.cancelled():
            error = {"ename": "KeyboardInterrupt", "evalue": "the AI cell was interrupted"}
        elif task.exception() is not None:
            exc = task.exception()
            error = {"ename": "AiCellError", "evalue": f"the AI cell failed: {type(exc).__name__}: {exc}"}
        else:
            error = task.result()
            if error is None:
                return ExecuteReply(status="ok")
        writer.on_output("error", {**error, "traceback": []})
        return ExecuteReply(status="error", ename=error["ename"], evalue=error["evalue"])

    async def _serve_ai_requests(self, ai_queue_id: str, actors: set[str]) -> None:
        """While an AI cell runs, run the cells its model asked for (they would otherwise wait behind it)."""
        def wanted() -> tuple[str, str] | None:
            for actor in actors:
                pending = self.client.replica.view(views.pending_requests_by, actor)
                if pending:
                    return pending[0]
            return None

        while True:
            job = await self.client.wait_for(wanted, None)
            assert job is not None  # wait_for returns a truthy value
            queue_id, cell_id = job
            saved, saved_start = self._interrupted_by_cancel, self._start
            source = await self._claim(queue_id, cell_id)
            if source is not None:
                await self._execute(queue_id, cell_id, source)
                await self._started_applied()
            self._start = saved_start
            self.running_queue_id, self._interrupted_by_cancel = ai_queue_id, saved
            if self._cancel_requested(ai_queue_id) and self._ai_task is not None:  # cancelled while that ran
                self._interrupted_by_cancel = True
                self._ai_task.cancel()

    async def _release_after_outputs(self) -> None:
        """After a large output: once it is pushed and applied here, return the freed memory to the OS."""
        assert self.pipe is not None
        with contextlib.suppress(TimeoutError, RuntimedError):
            await self.pipe.drain(timeout=60)
            acked = self.pipe.acked_seq
            await self.client.wait_for(lambda: self.client.replica.head >= acked, 60)
        await release_memory_soon()

    def _completion(self, queue_id: str, reply: ExecuteReply, duration_ms: float, timeout: float | None,
                    writer: OutputWriter, *, restarted: bool = False) -> dict[str, Any]:
        status, error = "success", None
        if self._interrupted_by_cancel:
            status = "cancelled"
        elif restarted:
            status = "error"
            error = {"ename": "KernelRestarted", "evalue": "the kernel was restarted (on request) while this cell ran; "
                     "its state is gone", "traceback": []}
        elif reply.kernel_died:
            status = "error"
            error = {"ename": "KernelDied", "evalue": "the kernel died while running this cell; it was restarted "
                     f"(its state is gone). {reply.evalue or ''}".strip(), "traceback": []}
        elif reply.timed_out:
            status = "error"
            error = {"ename": "ExecutionTimeout", "evalue": f"the cell ran longer than the execution timeout "
                     f"({timeout:g} s) and was interrupted", "traceback": []}
        elif reply.input_timed_out:
            status = "error"
            error = {"ename": "InputTimeout", "evalue": f"nobody answered input() within {self.input_timeout:g} s; "
                     "the cell was interrupted", "traceback": []}
        elif reply.status != "ok":
            status = "error"
            error = {"ename": reply.ename or "Error", "evalue": reply.evalue or "", "traceback": list(reply.traceback or [])}
        if error is not None and error["ename"] in ("KernelDied", "KernelRestarted", "ExecutionTimeout", "InputTimeout"):
            writer.on_output("error", error)  # make the failure visible as an output too
        return make_event("executionCompleted", queue_id=queue_id, status=status,
                          execution_count=reply.execution_count, duration_ms=round(duration_ms, 3), error=error)

    async def _ask_input(self, queue_id: str, prompt: str, password: bool) -> str:
        assert self.pipe is not None
        await self.pipe.drain()
        (asked,) = await self.client.commit([make_event("inputRequested", queue_id=queue_id, prompt=prompt,
                                                        password=password)])

        def answered() -> tuple[str] | None:
            state = self.client.replica.view(views.input_state, queue_id)
            if state is None or state["replied_seq"] is None or state["replied_seq"] <= asked:
                return None
            return (state["value"] or "",)

        value = await self.client.wait_for(answered, self.input_timeout)
        assert value is not None  # wait_for returns a truthy value
        return value[0]

    def describe(self) -> dict[str, Any]:
        return {
            "runtime_id": self.runtime_id,
            "session_id": self.session_id,
            "notebook_id": self.client.notebook_id,
            "kernel_name": self.kernel.kernel_name,
            "language": self.kernel.language,
            "status": self.status,
            "pid": self.kernel.pid,
            "connection_file": self.kernel.connection_file,
            "started_at": self.started_at,
            "executions": self.executions,
            "sent_ahead": self.sent_ahead,
        }
