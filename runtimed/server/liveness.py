"""Runtime liveness: a runtime whose connection is gone longer than the grace period is lost.

The server then ends its session as ``lost`` with explicit events: running work
completes as an error ("runtime lost"), assigned-but-not-started work is requeued.

With several daemons on one store, a runtime may be connected to any of them (and move to another
when its daemon dies), so "connected" is a lease in the store, not one process's memory: the daemon a
runtime is connected to holds ``runtime-conn:<notebook>:<actor>`` and renews it every ``renew_every``
seconds (``lease_ttl`` = 3 renewals, so a dead daemon's claim lapses soon). Every daemon with the
notebook open watches the active session's runtime: found connected nowhere (its lease free), a grace
timer starts; when it fires, the lease must still be free, and free again one renewal later (time for
a daemon the runtime just moved to to take it over from a dead one), before the session is ended.
Ending it twice from two daemons is harmless: the log rejects the second ending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.server.service import NotebookService, Peer
from runtimed.store.base import EventStore

log = logging.getLogger(__name__)

SYSTEM_ACTOR = {"id": "runtimed", "kind": "system", "name": "runtimed daemon"}


def connection_lease(notebook_id: str, actor_id: str) -> str:
    """The lease held by the daemon a runtime is connected to."""
    return f"runtime-conn:{notebook_id}:{actor_id}"


class RuntimeLiveness:
    def __init__(self, grace: float, store: EventStore, holder: str) -> None:
        self.grace = grace
        self.store = store
        self.holder = holder
        """This daemon as a lease holder (shared by the daemon's other leases)."""
        self.renew_every = min(5.0, max(0.1, grace / 4))
        self.lease_ttl = 3 * self.renew_every
        self._services: dict[str, NotebookService] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None

    def attach(self, service: NotebookService) -> None:
        """Watch a notebook's runtime (called on the event loop when the daemon opens the notebook)."""
        self._services[service.notebook_id] = service
        service.peer_hooks.append(self.on_peer)
        if self._ticker is None or self._ticker.done():
            self._ticker = service.loop.create_task(self._tick_forever(), name="runtime-liveness")
        active = service.log.view(views.active_session)
        if active is not None:  # a session from before a daemon restart, or connected to another daemon
            self._arm(service, active["actor_id"])

    def on_peer(self, what: str, service: NotebookService, peer: Peer) -> None:
        actor_id = peer.actor.get("id", "")
        if peer.actor.get("kind") != "runtime":
            return
        key = connection_lease(service.notebook_id, actor_id)
        if what == "join":
            timer = self._timers.pop((service.notebook_id, actor_id), None)
            if timer is not None:
                timer.cancel()
            self._spawn(self._lease(self.store.acquire_lease, key, self.holder, self.lease_ttl))
        elif what == "leave" and not service.has_actor(actor_id):
            self._spawn(self._lease(self.store.release_lease, key, self.holder))
            active = service.log.view(views.active_session)
            if active is not None and active["actor_id"] == actor_id:
                self._arm(service, actor_id)

    async def _lease(self, call: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(call, *args)
        except Exception:  # the store is unreachable: the next tick tries again
            log.warning("runtime liveness: %s%r failed", getattr(call, "__name__", call), args, exc_info=True)
            return None

    def _free(self, notebook_id: str, actor_id: str) -> bool:
        """Whether no daemon holds the runtime's connection lease (blocking: run in a worker thread).

        Our own claim is dropped first (the runtime is not connected here when this is asked); the probe
        takes the lease with a zero lifetime, so it never keeps a daemon the runtime reaches from taking it."""
        key = connection_lease(notebook_id, actor_id)
        self.store.release_lease(key, self.holder)
        probe = f"probe:{self.holder}"
        free = self.store.acquire_lease(key, probe, 0.0)
        if free:
            self.store.release_lease(key, probe)
        return free

    # -- the periodic check ------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self._tick()
            except Exception:  # one failed round (store unreachable) must not end the watch
                log.warning("runtime liveness check failed", exc_info=True)

    async def _tick(self) -> None:
        """Renew the leases of the runtimes connected here; start the grace timer of active sessions whose
        runtime is connected nowhere."""
        for notebook_id, service in list(self._services.items()):
            if service.closed is not None:
                self._services.pop(notebook_id, None)
        services = list(self._services.values())
        local = {s.notebook_id: {p.actor.get("id", "") for p in s.peers.values() if p.actor.get("kind") == "runtime"}
                 for s in services}
        actives: dict[str, str] = {}
        for service in services:  # through the service: on the loop for a local store, in a thread for a remote one
            if service.closed is not None:
                continue
            active = await service.view(views.active_session)
            if active is not None:
                actives[service.notebook_id] = active["actor_id"]
        armed = set(self._timers)

        def check() -> list[tuple[NotebookService, str]]:
            suspects = []
            for service in services:
                for actor_id in local[service.notebook_id]:
                    self.store.acquire_lease(connection_lease(service.notebook_id, actor_id), self.holder,
                                             self.lease_ttl)
                actor_id = actives.get(service.notebook_id, "")
                if not actor_id or actor_id == SYSTEM_ACTOR["id"]:  # the daemon's own (an environment build)
                    continue
                if actor_id in local[service.notebook_id] or (service.notebook_id, actor_id) in armed:
                    continue
                if self._free(service.notebook_id, actor_id):
                    suspects.append((service, actor_id))
            return suspects

        for service, actor_id in await asyncio.to_thread(check):
            if not service.has_actor(actor_id) and service.closed is None:
                self._arm(service, actor_id)

    # -- ending a lost session ---------------------------------------------------------------------

    def _arm(self, service: NotebookService, actor_id: str) -> None:
        key = (service.notebook_id, actor_id)
        if key in self._timers:
            return
        self._timers[key] = service.loop.call_later(self.grace, self._expire, service, actor_id)

    def _expire(self, service: NotebookService, actor_id: str) -> None:
        self._timers.pop((service.notebook_id, actor_id), None)
        self._spawn(self._end_lost(service, actor_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connected_elsewhere(self, service: NotebookService, actor_id: str) -> bool:
        """Whether another daemon holds the runtime's connection, now or one renewal later."""
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(self.renew_every * 1.5)
            if service.has_actor(actor_id):
                return True
            free = await self._lease(self._free, service.notebook_id, actor_id)
            if not free:  # held elsewhere, or the store did not answer (the next tick looks again)
                return True
        return False

    async def _end_lost(self, service: NotebookService, actor_id: str) -> None:
        if service.has_actor(actor_id) or service.closed is not None:
            return
        if await self._connected_elsewhere(service, actor_id) or service.closed is not None:
            return
        active = await service.view(views.active_session)
        if active is None or active["actor_id"] != actor_id:
            return
        session_id = active["session_id"]
        events: list[dict[str, Any]] = []
        for queue_id, status in await service.view(views.session_work, session_id):
            if status == "running":
                events.append(make_event(
                    "executionCompleted", queue_id=queue_id, status="error",
                    error={"ename": "RuntimeLost", "evalue": f"runtime lost: its connection was gone for more than "
                           f"{self.grace:g} s while this cell ran", "traceback": []},
                ))
            else:
                events.append(make_event("executionRequeued", queue_id=queue_id, reason="runtime lost"))
        events.append(make_event("runtimeSessionEnded", session_id=session_id, reason="lost"))
        try:
            results = await service.append(events, SYSTEM_ACTOR)
        except Exception:  # e.g. the notebook was deleted meanwhile
            log.exception("could not end the lost runtime session %s of %s", session_id, service.notebook_id)
            return
        failed = [r for r in results if "error" in r]
        log.info("runtime session %s of %s lost after %g s without a connection%s", session_id, service.notebook_id,
                 self.grace, f"; rejected: {failed}" if failed else "")

    def close(self) -> None:
        """Stop watching; release the connection leases held here so that other daemons need not wait them out."""
        if self._ticker is not None:
            self._ticker.cancel()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        for service in self._services.values():
            for peer in service.peers.values():
                if peer.actor.get("kind") == "runtime":
                    with contextlib.suppress(Exception):
                        self.store.release_lease(connection_lease(service.notebook_id, peer.actor.get("id", "")),
                                                 self.holder)
        self._services.clear()
