"""REST for runs (notebooks executed as daemon jobs) and their schedules.

The daemon hosts the jobs but does not implement them: ``RunService`` is what the routes need,
and the implementation (``runtimed.automation.jobs.RunJobs``) is injected at daemon start by the
daemon's entry point (``runtimed/cli/daemon_main.py``), as the AI-cell executor is injected into
the runtime agent. A daemon started without it answers ``runs_disabled``.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from runtimed.errors import RuntimedError
from runtimed.server.access import owner_only, principal
from runtimed.server.daemon import Daemon


class ScheduleService(Protocol):
    def list_schedules(self) -> list[dict[str, Any]]: ...
    def add(self, spec: dict[str, Any]) -> dict[str, Any]: ...
    def remove(self, schedule_id: str) -> dict[str, Any]: ...


class RunService(Protocol):
    scheduler: ScheduleService | None

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def submit(self, spec: dict[str, Any], notebook: dict[str, Any] | None = None, *,
                     schedule_id: str | None = None) -> dict[str, Any]: ...
    def get(self, run_id: str) -> dict[str, Any]: ...
    def list_runs(self, limit: int = 200) -> list[dict[str, Any]]: ...
    async def wait(self, run_id: str, version: int, timeout: float, settle: float = 0.0) -> dict[str, Any]: ...
    async def cancel(self, run_id: str) -> dict[str, Any]: ...
    async def resume(self, run_id: str, *, set_source: str | None = None, from_start: bool = False
                     ) -> dict[str, Any]: ...
    async def notebook(self, run_id: str) -> dict[str, Any]: ...


class RunSubmit(BaseModel):
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "RunOptions fields (input_path, output_path, parameters, kernel_name, cwd, execution_timeout, "
        "allow_errors, client_cwd, autosave_cell_every, ...); see docs/cli.md `runt run`"))
    notebook: dict[str, Any] | None = Field(None, description="the notebook's content (nbformat 4 JSON); "
                                                               "else the daemon reads options.input_path")


class RunResume(BaseModel):
    set_source: str | None = Field(None, description="the failing cell's new source (the fix)")
    from_start: bool = Field(False, description="rerun every cell on a new kernel")


class ScheduleAdd(BaseModel):
    cron: str
    input_path: str
    output_path: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    missed: str = Field("once", description="a firing missed while the daemon was down: once (run at start) or skip")


def runs_router(daemon: Daemon) -> APIRouter:
    router = APIRouter(tags=["runs"], dependencies=[Depends(principal), owner_only("manage runs")])

    def runs() -> RunService:
        service: RunService | None = getattr(daemon, "runs", None)
        if service is None:
            raise RuntimedError("this daemon runs no jobs (it was started as `python -m runtimed.server.main`)",
                                code="runs_disabled")
        return service

    def schedules() -> ScheduleService:
        scheduler = runs().scheduler
        if scheduler is None:
            raise RuntimedError("the scheduler is not running", code="runs_disabled")
        return scheduler

    @router.post("/api/runs")
    async def submit(body: RunSubmit) -> dict[str, Any]:
        return await runs().submit(body.options, body.notebook)

    @router.get("/api/runs")
    async def list_runs(limit: int = Query(200, ge=1, le=10_000)) -> dict[str, Any]:
        return {"runs": runs().list_runs(limit)}

    @router.get("/api/runs/{run_id}")
    async def get_run(run_id: str, version: int = Query(-1, description="long poll: answer once past it"),
                      wait: float = Query(0.0, ge=0, le=60, description="seconds to wait for a change"),
                      settle: float = Query(0.0, ge=0, le=60, description="answer a change before the run's end "
                                            "no sooner than this many seconds after the request (fewer polls)")
                      ) -> dict[str, Any]:
        if wait > 0:
            return await runs().wait(run_id, version, wait, settle)
        return runs().get(run_id)

    @router.post("/api/runs/{run_id}/cancel")
    async def cancel(run_id: str) -> dict[str, Any]:
        return await runs().cancel(run_id)

    @router.post("/api/runs/{run_id}/resume")
    async def resume(run_id: str, body: RunResume) -> dict[str, Any]:
        return await runs().resume(run_id, set_source=body.set_source, from_start=body.from_start)

    @router.get("/api/runs/{run_id}/notebook")
    async def notebook(run_id: str) -> dict[str, Any]:
        return await runs().notebook(run_id)

    @router.get("/api/schedules")
    async def list_schedules() -> dict[str, Any]:
        return {"schedules": schedules().list_schedules()}

    @router.post("/api/schedules")
    async def add_schedule(body: ScheduleAdd) -> dict[str, Any]:
        return schedules().add(body.model_dump())

    @router.delete("/api/schedules/{schedule_id}")
    async def remove_schedule(schedule_id: str) -> dict[str, Any]:
        return schedules().remove(schedule_id)

    return router
