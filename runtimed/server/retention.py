"""Collecting old run notebooks: on demand (``runt gc``, ``POST /api/gc``) and on a schedule.

``runt run`` leaves each run as a live notebook (to be watched and inspected afterwards); on a
machine that runs notebooks on a schedule they pile up. A run notebook is recognised by its log:
its first event was pushed by the actor ``runt-run``. Notebooks made any other way are never
touched, nor is one whose runtime is still active. ``RUNTIMED_RUN_RETENTION`` (a duration such as
``7d``; unset: keep everything) makes the daemon collect them every so often by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from runtimed.durations import parse_duration
from runtimed.errors import RuntimedError
from runtimed.schema.events import RUN_IMPORT_ACTOR
from runtimed.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def _updated(item: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(item.get("updated_at")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _is_run(daemon: Any, notebook_id: str) -> bool:
    first = daemon.store.log(notebook_id).read(0, limit=1)
    return bool(first) and first[0]["actor"].get("id") == RUN_IMPORT_ACTOR


async def collect_runs(daemon: Any, older_than: timedelta, *, dry_run: bool = False) -> dict[str, Any]:
    """Remove (or with ``dry_run`` only list) the run notebooks not updated for ``older_than``."""
    cutoff = datetime.now(UTC) - older_than
    old: list[dict[str, Any]] = []
    kept: list[str] = []
    for item in daemon.store.list_notebooks():
        updated = _updated(item)
        if updated is None or updated >= cutoff or not _is_run(daemon, item["id"]):
            continue
        if item.get("runtime"):
            kept.append(item["id"])
        else:
            old.append({k: item.get(k) for k in ("id", "title", "updated_at")})
    removed: list[str] = []
    if not dry_run:
        for item in old:
            notebook_id = item["id"]
            if daemon.runtimes is not None:
                await daemon.runtimes.stop_notebook(notebook_id)
            daemon.forget_service(notebook_id, ("notebook_deleted", f"run notebook {notebook_id!r} was collected"))
            with contextlib.suppress(RuntimedError):  # deleted meanwhile: that is what we wanted
                daemon.store.delete(notebook_id)
                removed.append(notebook_id)
    return {"old": old, "removed": removed, "kept_active": kept}


def retention_setting() -> timedelta | None:
    raw = os.environ.get("RUNTIMED_RUN_RETENTION", "").strip()
    if not raw:
        return None
    return parse_duration(raw)  # a bad value stops the daemon at start with the reason


class RunRetention:
    """Collects run notebooks older than the retention, every retention/10 (between 1 second and 1 hour)."""

    def __init__(self, daemon: Any, retention: timedelta) -> None:
        self.daemon = daemon
        self.retention = retention
        self.interval = min(3600.0, max(1.0, retention.total_seconds() / 10))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="run-retention")

    async def _run(self) -> None:
        while True:
            try:
                result = await collect_runs(self.daemon, self.retention)
                if result["removed"]:
                    log.info("run retention (%s): removed %d run notebook(s)", self.retention, len(result["removed"]))
            except Exception:  # keep collecting next time
                log.exception("run retention failed")
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
