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
from runtimed.server.rooms import Peer, Room

log = logging.getLogger(__name__)

SYSTEM_ACTOR = {"id": "runtimed", "kind": "system", "name": "runtimed daemon"}


class RuntimeLiveness:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}

    def attach(self, room: Room) -> None:
        room.peer_hooks.append(self.on_peer)
        active = views.active_session(room.log.conn)
        if active is not None:  # a session from before a daemon restart: its runtime must come back
            self._arm(room, active["actor_id"])

    def on_peer(self, what: str, room: Room, peer: Peer) -> None:
        actor_id = peer.actor.get("id", "")
        if peer.actor.get("kind") != "runtime":
            return
        if what == "join":
            timer = self._timers.pop((room.notebook_id, actor_id), None)
            if timer is not None:
                timer.cancel()
        elif what == "leave" and not room.has_actor(actor_id):
            active = views.active_session(room.log.conn)
            if active is not None and active["actor_id"] == actor_id:
                self._arm(room, actor_id)

    def _arm(self, room: Room, actor_id: str) -> None:
        key = (room.notebook_id, actor_id)
        if key in self._timers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timers[key] = loop.call_later(self.grace, self._expire, room, actor_id)

    def _expire(self, room: Room, actor_id: str) -> None:
        self._timers.pop((room.notebook_id, actor_id), None)
        if room.has_actor(actor_id):
            return
        active = views.active_session(room.log.conn)
        if active is None or active["actor_id"] != actor_id:
            return
        session_id = active["session_id"]
        events: list[dict[str, Any]] = []
        owned = room.log.conn.execute(
            "SELECT queue_id, status FROM execution_queue WHERE session_id = ? AND status IN ('assigned', 'running') "
            "ORDER BY requested_seq", (session_id,)).fetchall()
        for queue_id, status in owned:
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
            results = room.push(events, SYSTEM_ACTOR)
        except Exception:  # e.g. the notebook was deleted meanwhile; a timer callback must not raise
            log.exception("could not end the lost runtime session %s of %s", session_id, room.notebook_id)
            return
        failed = [r for r in results if "error" in r]
        log.info("runtime session %s of %s lost after %g s without a connection%s", session_id, room.notebook_id,
                 self.grace, f"; rejected: {failed}" if failed else "")

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
