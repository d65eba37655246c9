"""Collecting artifacts no notebook references: mark-and-sweep over every notebook's whole log.

Mark reads every reference in every log, at any seq (``views.artifact_refs``), so time travel
(``?at=``, ``state_at``) always finds its outputs; sweep removes the rest. An artifact written
within the grace period is never swept: a runtime stores an artifact *before* it pushes the event
that references it, and the event may not be in the log yet. Temporary files of writes a crash
interrupted go after the same grace. Runs on demand (``POST /api/artifacts/gc``) and every
``RUNTIMED_ARTIFACT_GC_INTERVAL`` (default 1 h), so deleted notebooks' artifacts go by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from runtimed.durations import parse_duration
from runtimed.errors import RuntimedError
from runtimed.schema import views
from runtimed.tasks import cancel_and_wait

log = logging.getLogger(__name__)

DEFAULT_GRACE = 3600.0
DEFAULT_INTERVAL = 3600.0


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return parse_duration(raw).total_seconds() if raw else default


def grace_setting() -> float:
    """Seconds a fresh artifact is safe from the sweep (``RUNTIMED_ARTIFACT_GC_GRACE``, default 1 h)."""
    return _seconds("RUNTIMED_ARTIFACT_GC_GRACE", DEFAULT_GRACE)


def interval_setting() -> float:
    """Seconds between scheduled collections (``RUNTIMED_ARTIFACT_GC_INTERVAL``, default 1 h)."""
    return max(1.0, _seconds("RUNTIMED_ARTIFACT_GC_INTERVAL", DEFAULT_INTERVAL))


async def _view(daemon: Any, notebook_id: str, fn: Callable[..., Any]) -> Any:
    """A view of a notebook, through its open service or straight from its log (opening no service)."""
    service = daemon.services.get(notebook_id)
    if service is not None:
        return await service.view(fn)
    nb_log = daemon.store.log(notebook_id)
    return await asyncio.to_thread(nb_log.view, fn) if nb_log.blocking else nb_log.view(fn)


async def referenced(daemon: Any) -> dict[str, int]:
    """Every artifact any notebook's log references (sha -> size)."""
    found: dict[str, int] = {}
    for item in daemon.store.list_notebooks():
        with contextlib.suppress(RuntimedError):  # deleted meanwhile
            found.update(await _view(daemon, item["id"], views.artifact_refs))
    return found


async def collect_artifacts(daemon: Any, *, grace: float | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Remove (or with ``dry_run`` only count) the artifacts no log references and older than ``grace``."""
    grace = grace_setting() if grace is None else grace
    store = daemon.artifacts
    started = time.time()
    marked = await referenced(daemon)
    cutoff = started - grace
    unreferenced = [a for a in await asyncio.to_thread(lambda: list(store.list())) if a.sha not in marked]
    old = [a for a in unreferenced if a.mtime < cutoff]
    removed = 0
    freed = 0
    if not dry_run:
        for item in old:
            if await asyncio.to_thread(store.delete, item.sha):
                removed += 1
                freed += item.size
        temporary = await asyncio.to_thread(store.sweep_temporary, grace)
    else:
        temporary = 0
    return {"referenced": len(marked), "unreferenced": len(unreferenced), "collectable": len(old),
            "removed": removed, "freed_bytes": freed, "temporary_removed": temporary, "dry_run": dry_run}


class ArtifactCollector:
    """Collects unreferenced artifacts every ``interval`` seconds."""

    def __init__(self, daemon: Any, interval: float | None = None) -> None:
        self.daemon = daemon
        self.interval = interval or interval_setting()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="artifact-gc")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                result = await collect_artifacts(self.daemon)
                if result["removed"]:
                    log.info("artifact gc: removed %d artifact(s), %d bytes", result["removed"],
                             result["freed_bytes"])
            except Exception:  # keep collecting next time
                log.exception("artifact gc failed")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
