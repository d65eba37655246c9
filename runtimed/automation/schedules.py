"""Schedules: the daemon submits a run of a notebook on a cron line (croniter), like cron + papermill.

Kept in ``$RUNTIMED_HOME/schedules.json``. Times are the daemon's local time, as cron's are. A
sixth field is seconds (croniter's convention), for tests and short intervals. When the daemon was
down at a firing time, ``missed: once`` (the default) runs the notebook once at start; ``skip`` does
not. Every firing is a normal run (``runt runs`` lists it, with its ``schedule_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from croniter import croniter

from runtimed.errors import NotFoundError, RuntimedError
from runtimed.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MISSED_POLICIES = ("once", "skip")
MAX_SLEEP_S = 60.0
"""The scheduler re-reads the clock at least this often (a suspended machine or a clock change)."""


class Submitter(Protocol):
    async def submit(self, spec: dict[str, Any], notebook: dict[str, Any] | None = None, *,
                     schedule_id: str | None = None) -> dict[str, Any]: ...


def _local_now() -> datetime:
    return datetime.now().astimezone()


def validate_cron(cron: str) -> None:
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise RuntimedError(f"invalid cron line {cron!r}", code="invalid_schedule")


def next_fire(cron: str, after: datetime) -> datetime:
    return croniter(cron, after).get_next(datetime)


class Scheduler:
    def __init__(self, path: Path, jobs: Submitter) -> None:
        self.path = path
        self.jobs = jobs
        self.schedules: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.path.exists():
            try:
                self.schedules = {s["id"]: s for s in json.loads(self.path.read_text())}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("cannot read %s (%s): no schedule runs until it is fixed or removed", self.path, exc)
        now = _local_now()
        for schedule in list(self.schedules.values()):  # firings missed while the daemon was down
            since = datetime.fromisoformat(schedule.get("last_fired_at") or schedule["created_at"])
            if next_fire(schedule["cron"], since) <= now:
                if schedule.get("missed", "once") == "once":
                    log.info("schedule %s missed a firing while the daemon was down: running it once now",
                             schedule["id"])
                    await self._fire(schedule, now)
                else:
                    schedule["last_fired_at"] = now.isoformat()
        self._write()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def _write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(list(self.schedules.values()), indent=1, default=str))
        os.replace(tmp, self.path)

    async def _loop(self) -> None:
        while True:
            now = _local_now()
            due = []
            soonest = MAX_SLEEP_S
            for schedule in self.schedules.values():
                since = datetime.fromisoformat(schedule.get("last_fired_at") or schedule["created_at"])
                at = next_fire(schedule["cron"], since)
                if at <= now:
                    due.append(schedule)
                else:
                    soonest = min(soonest, (at - now).total_seconds())
            for schedule in due:
                await self._fire(schedule, now)
            if due:
                self._write()
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), soonest)

    async def _fire(self, schedule: dict[str, Any], now: datetime) -> None:
        schedule["last_fired_at"] = now.isoformat()
        options = {**schedule["options"], "input_path": schedule["input_path"],
                   "output_path": schedule.get("output_path"), "parameters": schedule.get("parameters", {})}
        try:
            run = await self.jobs.submit(options, None, schedule_id=schedule["id"])
            schedule["last_run_id"] = run["id"]
        except RuntimedError as exc:  # a broken schedule is recorded, the others go on
            schedule["last_error"] = exc.message
            log.warning("schedule %s could not start its run: %s", schedule["id"], exc.message)

    # -- REST ----------------------------------------------------------------------------------------

    def list_schedules(self) -> list[dict[str, Any]]:
        now = _local_now()
        out = []
        for schedule in self.schedules.values():
            since = datetime.fromisoformat(schedule.get("last_fired_at") or schedule["created_at"])
            out.append({**schedule, "next_at": max(next_fire(schedule["cron"], since), now).isoformat()})
        return out

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        cron = spec.get("cron", "")
        validate_cron(cron)
        missed = spec.get("missed", "once")
        if missed not in MISSED_POLICIES:
            raise RuntimedError(f"missed must be one of {', '.join(MISSED_POLICIES)}, not {missed!r}",
                                code="invalid_schedule")
        if not spec.get("input_path"):
            raise RuntimedError("a schedule needs the notebook's path (input_path)", code="invalid_schedule")
        from runtimed.automation.jobs import options_from

        options = dict(spec.get("options") or {})
        options_from({**options, "input_path": spec["input_path"]}, None)  # bad options fail now, not at 3 am
        schedule = {"id": f"s-{uuid.uuid4().hex[:8]}", "cron": cron, "input_path": spec["input_path"],
                    "output_path": spec.get("output_path"), "parameters": dict(spec.get("parameters") or {}),
                    "options": options, "missed": missed, "created_at": _local_now().isoformat(),
                    "last_fired_at": None, "last_run_id": None}
        self.schedules[schedule["id"]] = schedule
        self._write()
        self._wake.set()
        return schedule

    def remove(self, schedule_id: str) -> dict[str, Any]:
        schedule = self.schedules.pop(schedule_id, None)
        if schedule is None:
            raise NotFoundError(f"no schedule {schedule_id!r}", code="schedule_not_found")
        self._write()
        self._wake.set()
        return schedule
