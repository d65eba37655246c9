"""Runtime supervision: daemon-managed runtimes, started on demand from a prewarmed pool, stopped when idle.

The first execution request on a notebook with no active runtime starts an agent
with the notebook's kernelspec. Agents connect to the daemon over the same sync
protocol as external runtimes (in process, through ``server/local.py``); the
supervisor only decides when they live and die. The daemon and the REST layer see
it through the small ``RuntimeSupervisor`` Protocol.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

from runtimed.agents.ai_cell import AiCellExecutor
from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.sync import SyncClient
from runtimed.errors import RuntimedError
from runtimed.runtime.agent import SEND_AHEAD, RuntimeAgent
from runtimed.runtime.environments import EnvironmentStore
from runtimed.runtime.pool import KernelPool
from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id
from runtimed.schema.materializer import Envelope
from runtimed.server.environments import (
    ENAMES,
    NotebookEnvironments,
    env_max_age_days,
    env_pool_idle,
    env_pool_size,
)
from runtimed.server.kernel_requests import stdin_answerable
from runtimed.server.liveness import SYSTEM_ACTOR
from runtimed.server.local import local_connection
from runtimed.server.local_artifacts import StoreSink
from runtimed.server.release import RuntimeRelease, release_grace_setting
from runtimed.server.service import NotebookService
from runtimed.settings import env_number
from runtimed.tasks import cancel_and_wait

log = logging.getLogger(__name__)

WAKE_EVENTS = frozenset({"executionRequested", "executionRequeued", "runtimeSessionEnded"})
WATCHDOG_INTERVAL = 2.0
STOP_PENDING_START_WAIT = 10.0
"""Seconds a stop waits for the notebook's runtime start under way before it cancels the start."""
RUNTIME_LEASE_TTL = 30.0
"""Seconds a daemon's claim on a notebook's managed runtime lasts without renewal (``RUNTIMED_RUNTIME_LEASE_TTL``;
renewed every third of it while the runtime starts, then by the watchdog): of several daemons sharing a store,
only the holder starts the runtime; a dead holder's claim expires."""


def input_timeout_setting() -> float:
    """Seconds a managed runtime waits for an answer to ``input()`` (``RUNTIMED_INPUT_TIMEOUT``, default 300)."""
    return env_number("RUNTIMED_INPUT_TIMEOUT", 300.0, float)


def lease_ttl_setting() -> float:
    """``RUNTIMED_RUNTIME_LEASE_TTL`` in seconds (default ``RUNTIME_LEASE_TTL``)."""
    return env_number("RUNTIMED_RUNTIME_LEASE_TTL", RUNTIME_LEASE_TTL, float)


class RuntimeSupervisor(Protocol):
    """What the daemon needs from whoever runs its managed runtimes."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def watch(self, service: NotebookService) -> None:
        """Follow a notebook: start its runtime when work arrives."""

    async def start_runtime(self, notebook_id: str) -> dict[str, Any]:
        """Start (or return) a notebook's runtime; its description."""

    def prestart(self, notebook_id: str) -> None:
        """Begin starting a notebook's runtime before its work arrives (a run job, right after its import)."""

    async def stop_notebook(self, notebook_id: str) -> bool: ...

    def holds(self, notebook_id: str) -> bool:
        """A runtime of the notebook runs or starts (its notebook stays open)."""

    async def stop_runtime(self, runtime_id: str) -> bool: ...

    async def interrupt_runtime(self, runtime_id: str) -> bool: ...

    async def flush_pool(self) -> dict[str, Any]: ...

    def describe(self) -> list[dict[str, Any]]: ...

    def pool_status(self) -> dict[str, Any]: ...


class RuntimeManager:
    """The supervisor of daemon-managed runtimes (one agent per notebook, kernels from a pool)."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        settings = daemon.settings
        self.pool = KernelPool(size=settings.pool_size, preimport=list(settings.preimport), env_size=env_pool_size())
        self.environments = NotebookEnvironments(EnvironmentStore(daemon.home.envs_dir), self.pool)
        self.idle_timeout = settings.idle_timeout
        self.input_timeout = input_timeout_setting()
        self.lease_ttl = lease_ttl_setting()
        self.agents: dict[str, RuntimeAgent] = {}
        self.release = RuntimeRelease(self, release_grace_setting())
        self._starting: dict[str, asyncio.Task] = {}
        self._recheck: set[str] = set()
        self._watchdog: asyncio.Task | None = None

    async def start(self) -> None:
        await self.pool.start()
        self._watchdog = asyncio.create_task(self._watch(), name="runtime-watchdog")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.release.close()
        for task in self._starting.values():
            task.cancel()
        await asyncio.gather(*(a.stop("shutdown") for a in list(self.agents.values())), return_exceptions=True)
        await asyncio.gather(*(self._unclaim(n) for n in list(self.agents)), return_exceptions=True)
        self.agents.clear()
        await self.pool.shutdown()

    # -- on demand -------------------------------------------------------------------------------

    def watch(self, service: NotebookService) -> None:
        service.append_hooks.append(self._on_append)
        service.peer_hooks.append(self.release.on_peer)

    def _on_append(self, service: NotebookService, stored: Sequence[Envelope]) -> None:
        if any(env.name in WAKE_EVENTS for env in stored):
            self.ensure_runtime(service)

    def ensure_runtime(self, service: NotebookService, *, without_work: bool = False) -> None:
        notebook_id = service.notebook_id
        if notebook_id in self._starting:
            self._recheck.add(notebook_id)  # work that arrived while a start fails must not wait forever
            return
        agent = self.agents.get(notebook_id)
        if agent is not None and agent.status != "dead":
            return
        if not without_work and not service.log.view(views.needs_runtime):
            return
        self._begin_start(service)

    def prestart(self, notebook_id: str) -> None:
        """Start the runtime now, while the job connects and queues its cells (which needs it next): the two
        overlap instead of one waiting for the other. Idle, it is reclaimed like any managed runtime."""
        self.ensure_runtime(self.daemon.service(notebook_id), without_work=True)

    def _begin_start(self, service: NotebookService) -> asyncio.Task[None]:
        """The one start of a notebook's runtime (``_starting``): work that arrives meanwhile waits for it."""
        notebook_id = service.notebook_id
        task = asyncio.create_task(self._start_agent(service), name=f"start-runtime-{notebook_id}")
        self._starting[notebook_id] = task

        def started(_task: asyncio.Task) -> None:
            self._starting.pop(notebook_id, None)
            if notebook_id in self._recheck:
                self._recheck.discard(notebook_id)
                if service.closed is None:
                    self.ensure_runtime(service)

        task.add_done_callback(started)
        return task

    async def start_runtime(self, notebook_id: str) -> dict[str, Any]:
        """Start (or return) the managed runtime of a notebook, whether or not work is pending."""
        service = self.daemon.service(notebook_id)
        agent = self.agents.get(notebook_id)
        if agent is not None and agent.status != "dead":
            return agent.describe()
        pending = self._starting.get(notebook_id)
        await (pending if pending is not None else self._begin_start(service))
        agent = self.agents.get(notebook_id)
        if agent is None:
            raise RuntimedError(f"the runtime for {notebook_id!r} did not start; see the daemon log", code="runtime_failed")
        return agent.describe()

    async def _start_agent(self, service: NotebookService) -> None:
        notebook_id = service.notebook_id
        if not await self._claim(notebook_id):
            log.info("the runtime for %s is run by another daemon sharing the store", notebook_id)
            return
        keeping = asyncio.create_task(self._keep_claim(notebook_id), name=f"claim-runtime-{notebook_id}")
        try:
            await self._start_claimed(service)
        finally:
            keeping.cancel()

    async def _keep_claim(self, notebook_id: str) -> None:
        """Renew the lease while the runtime starts: building its environment can take minutes, far longer than
        the lease, and another daemon sharing the store would start a second runtime once it lapsed."""
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            if not await self._claim(notebook_id):
                log.warning("another daemon took the runtime lease of %s while its kernel was starting", notebook_id)
                return

    async def _start_claimed(self, service: NotebookService) -> None:
        notebook_id = service.notebook_id
        kernel_name, cwd = await service.view(views.kernel_settings)
        try:
            if cwd is not None and not os.path.isdir(cwd):  # checked first: a pooled kernel would be wasted
                raise RuntimedError(f"the notebook's working directory {cwd!r} (metadata runtimed.cwd) does not "
                                    "exist on the daemon's machine", code="bad_cwd")
            kernel = await self.environments.start_kernel(service, kernel_name, cwd)
        except Exception as exc:
            log.warning("cannot start kernel %r for %s: %s", kernel_name, notebook_id, exc)
            await self._fail_pending(service, kernel_name, exc)
            await self._unclaim(notebook_id)
            return
        runtime_id = new_id("rt-")
        client = SyncClient(self.daemon.url, self.daemon.auth.token, notebook_id,
                            {"id": f"runtime:{runtime_id}", "kind": "runtime", "name": f"{kernel_name} (managed)"},
                            client="runtimed-managed",
                            transport=lambda: local_connection(self.daemon, notebook_id))
        agent = RuntimeAgent(client, kernel, runtime_id=runtime_id, displace=False, input_timeout=self.input_timeout,
                             stdin_allowed=lambda queue_id: stdin_answerable(self.daemon, notebook_id, queue_id),
                             artifacts=StoreSink(self.daemon.artifacts),
                             ai_executor=AiCellExecutor(DaemonEndpoint(self.daemon.url, self.daemon.auth.token)),
                             send_ahead=SEND_AHEAD)
        try:
            await agent.start()
        except BaseException as exc:  # a failure, or a stop that cancelled the start: the kernel must not leak
            if isinstance(exc, Exception):
                log.exception("runtime agent for %s failed to start", notebook_id)
            await agent.stop("error" if isinstance(exc, Exception) else "shutdown")
            await self._unclaim(notebook_id)
            if not isinstance(exc, Exception):
                raise
            return
        self.agents[notebook_id] = agent
        log.info("started runtime %s (%s, pid %s) for %s", runtime_id, kernel_name, kernel.pid, notebook_id)

    async def _fail_pending(self, service: NotebookService, kernel_name: str, exc: Exception) -> None:
        """No kernel could start: end the pending requests with an error that says why, under a system session."""
        pending = await service.view(views.pending_requests)
        if not pending or await service.view(views.active_session) is not None:
            return
        session_id = new_id("s-")
        message = str(exc.message if isinstance(exc, RuntimedError) else exc)
        ename = ENAMES.get(exc.code, "KernelStartFailed") if isinstance(exc, RuntimedError) else "KernelStartFailed"
        error = {"ename": ename, "evalue": message, "traceback": []}
        events = [make_event("runtimeSessionStarted", session_id=session_id, runtime_id="runtimed",
                             kernel_name=kernel_name or "unknown", host="")]
        for queue_id, source in pending:
            events += [
                make_event("executionAssigned", queue_id=queue_id, session_id=session_id),
                make_event("executionStarted", queue_id=queue_id, session_id=session_id, source=source),
                make_event("executionCompleted", queue_id=queue_id, status="error", error=error),
            ]
        events.append(make_event("runtimeSessionEnded", session_id=session_id, reason="error"))
        await service.append(events, SYSTEM_ACTOR)

    async def _claim(self, notebook_id: str) -> bool:
        """Take or renew this daemon's lease on the notebook's managed runtime (False: another daemon has it)."""
        return await asyncio.to_thread(self.daemon.store.acquire_lease, f"runtime:{notebook_id}", self._holder(),
                                       self.lease_ttl)

    async def _unclaim(self, notebook_id: str) -> None:
        await asyncio.to_thread(self.daemon.store.release_lease, f"runtime:{notebook_id}", self._holder())

    def _holder(self) -> str:
        """This daemon as a lease holder: its machine and home, so that a restarted daemon takes its claims back."""
        return self.daemon.holder

    # -- lifecycle -------------------------------------------------------------------------------

    async def _watch(self) -> None:
        interval = min(WATCHDOG_INTERVAL, max(0.25, self.idle_timeout / 4), max(0.1, self.lease_ttl / 3))
        while True:
            await asyncio.sleep(interval)
            await self._check_agents()
            try:
                await self.environments.housekeeping(env_pool_idle(), env_max_age_days())
            except Exception:
                log.exception("environment housekeeping failed")

    async def _check_agents(self) -> None:
        """One watchdog round (a method of its own, so that its loop variables do not keep a stopped agent alive)."""
        for notebook_id, agent in list(self.agents.items()):
            try:
                if agent.status == "dead":
                    if self.agents.get(notebook_id) is agent:
                        self.agents.pop(notebook_id, None)
                        await self._unclaim(notebook_id)
                    service = self.daemon.services.get(notebook_id)
                    if service is not None:
                        self.ensure_runtime(service)
                elif self._idle_too_long(agent):
                    log.info("stopping idle runtime %s of %s", agent.runtime_id, notebook_id)
                    self.agents.pop(notebook_id, None)
                    await agent.stop("shutdown")
                    await self._unclaim(notebook_id)
                elif not await self._claim(notebook_id):  # renewed; lost only after a long stall
                    log.warning("runtime %s of %s: another daemon took over its lease; stopping it",
                                agent.runtime_id, notebook_id)
                    self.agents.pop(notebook_id, None)
                    await agent.stop("shutdown")
            except Exception:  # one bad agent must not end the watchdog of all the others
                log.exception("runtime watchdog failed for %s", notebook_id)

    def _idle_too_long(self, agent: RuntimeAgent) -> bool:
        if agent.running_queue_id is not None or agent.status not in ("idle", "starting"):
            return False
        busy = agent.client.replica.view(views.has_unfinished_work)
        return not busy and time.monotonic() - agent.last_activity > self.idle_timeout

    async def stop_notebook(self, notebook_id: str) -> bool:
        """Stop the notebook's managed runtime (True if there was one). A start under way (a run's prestart, work
        that just arrived) is waited for and its runtime stopped; one that takes longer (an environment still
        building) is cancelled: else a deleted notebook or a cancelled run would get a runtime after the stop."""
        pending = self._starting.get(notebook_id)
        if pending is not None:
            done, _ = await asyncio.wait({pending}, timeout=STOP_PENDING_START_WAIT)
            if not done:
                await cancel_and_wait(pending)
        agent = self.agents.pop(notebook_id, None)
        if agent is None:
            return False
        await agent.stop("shutdown")
        await self._unclaim(notebook_id)
        return True

    def holds(self, notebook_id: str) -> bool:
        return notebook_id in self.agents or notebook_id in self._starting

    async def stop_runtime(self, runtime_id: str) -> bool:
        for notebook_id, agent in list(self.agents.items()):
            if agent.runtime_id == runtime_id:
                return await self.stop_notebook(notebook_id)
        return False

    def find(self, runtime_id: str) -> RuntimeAgent | None:
        return next((a for a in self.agents.values() if a.runtime_id == runtime_id), None)

    async def interrupt_runtime(self, runtime_id: str) -> bool:
        agent = self.find(runtime_id)
        if agent is None:
            return False
        await agent.kernel.interrupt()
        return True

    async def flush_pool(self) -> dict[str, Any]:
        await self.pool.flush()
        return self.pool.status()

    def describe(self) -> list[dict[str, Any]]:
        return [agent.describe() for agent in self.agents.values()]

    def pool_status(self) -> dict[str, Any]:
        return self.pool.status()

