"""Runtime liveness: a runtime whose connection is gone longer than the grace period is lost.

The server then ends its session as ``lost`` with explicit events: running work
completes as an error ("runtime lost"), assigned-but-not-started work is requeued.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.server.service import NotebookService, Peer

log = logging.getLogger(__name__)

SYSTEM_ACTOR = {"id": "runtimed", "kind": "system", "name": "runtimed daemon"}


class RuntimeLiveness:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, service: NotebookService) -> None:
        service.peer_hooks.append(self.on_peer)
        active = service.log.view(views.active_session)
        if active is not None:  # a session from before a daemon restart: its runtime must come back
            self._arm(service, active["actor_id"])

    def on_peer(self, what: str, service: NotebookService, peer: Peer) -> None:
        actor_id = peer.actor.get("id", "")
        if peer.actor.get("kind") != "runtime":
            return
        if what == "join":
            timer = self._timers.pop((service.notebook_id, actor_id), None)
            if timer is not None:
                timer.cancel()
        elif what == "leave" and not service.has_actor(actor_id):
            active = service.log.view(views.active_session)
            if active is not None and active["actor_id"] == actor_id:
                self._arm(service, actor_id)

    def _arm(self, service: NotebookService, actor_id: str) -> None:
        key = (service.notebook_id, actor_id)
        if key in self._timers:
            return
        self._timers[key] = service.loop.call_later(self.grace, self._expire, service, actor_id)

    def _expire(self, service: NotebookService, actor_id: str) -> None:
        self._timers.pop((service.notebook_id, actor_id), None)
        task = asyncio.ensure_future(self._end_lost(service, actor_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_lost(self, service: NotebookService, actor_id: str) -> None:
        if service.has_actor(actor_id) or service.closed is not None:
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
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
