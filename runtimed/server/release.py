"""Kernels do not leak: a notebook's managed runtime is released once its last session has left.

When a binding's connection (``runtimed.Session`` and friends, hello ``client: "python"``)
closes, whether by ``close()``, leaving ``with Session()``, or the process being killed,
and no other client (a page, a console, ``runt run``, another session) is connected, the
runtime is stopped after a grace period (``RUNTIMED_RELEASE_GRACE``, default 10 s). A
client that comes back within the grace keeps the kernel and its state; queued or running
work keeps it until the work ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from runtimed.schema import views
from runtimed.server.service import NotebookService, Peer

log = logging.getLogger(__name__)

RELEASING_CLIENTS = frozenset({"python"})
"""The clients whose leaving releases the runtime (other clients manage their runtime themselves:
``runt run --keep-runtime``, ``runt console --keep-runtime``, ``runt start``)."""
DEFAULT_GRACE = 10.0


def release_grace_setting() -> float:
    """``RUNTIMED_RELEASE_GRACE`` in seconds (default 10; 0 releases at once)."""
    raw = os.environ.get("RUNTIMED_RELEASE_GRACE", "")
    try:
        value = float(raw) if raw else DEFAULT_GRACE
    except ValueError:
        log.warning("RUNTIMED_RELEASE_GRACE=%r is not a number; using %g s", raw, DEFAULT_GRACE)
        value = DEFAULT_GRACE
    return max(value, 0.0)


def _clients(service: NotebookService) -> list[Peer]:
    return [p for p in service.peers.values() if p.actor.get("kind") != "runtime"]


class RuntimeRelease:
    """Peer hook of the runtime supervisor: arms a timer when the last client leaves."""

    def __init__(self, manager: Any, grace: float) -> None:
        self.manager = manager
        self.grace = grace
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def on_peer(self, what: str, service: NotebookService, peer: Peer) -> None:
        if peer.actor.get("kind") == "runtime":
            return
        if what == "join":
            self._cancel(service.notebook_id)
        elif what == "leave" and peer.client in RELEASING_CLIENTS and not _clients(service):
            self._arm(service)

    def _cancel(self, notebook_id: str) -> None:
        timer = self._timers.pop(notebook_id, None)
        if timer is not None:
            timer.cancel()

    def _arm(self, service: NotebookService) -> None:
        self._cancel(service.notebook_id)
        self._timers[service.notebook_id] = service.loop.call_later(self.grace, self._expire, service)

    def _expire(self, service: NotebookService) -> None:
        self._timers.pop(service.notebook_id, None)
        task = asyncio.ensure_future(self._release(service))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, service: NotebookService) -> None:
        notebook_id = service.notebook_id
        if _clients(service) or notebook_id not in self.manager.agents or service.closed is not None:
            return
        if await service.view(views.has_unfinished_work):  # a run still uses it: look again later
            self._arm(service)
            return
        log.info("releasing the runtime of %s: its last session left %g s ago", notebook_id, self.grace)
        await self.manager.stop_notebook(notebook_id)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
