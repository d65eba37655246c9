"""Notebook environments in the daemon: which one a notebook needs, whether it may be installed, building it.

Before a managed runtime starts, ``NotebookEnvironments.prepare`` reads the notebook's dependency
request (``schema/dependencies.py``); none means the daemon's own environment. A request is
installed only once a person approved that exact list (an ``install_dependencies`` approval whose
``hash`` matches, the same mechanism as agents' tool calls): a person setting the list through the
dependency API approves it by doing so, while a list that arrived any other way (an imported file,
another actor's metadata edit, a PEP 723 block, a pyproject.toml) gets a pending approval request
and the executions fail at once with ``DependenciesNotApproved``, never a hang.

While uv builds, a short-lived system runtime session carries the progress as
``runtimeStatusChanged {status: starting, detail: "installing 3 packages…"}``, which the page and
``Session`` show like any runtime status; it ends before the real runtime starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from runtimed.errors import RuntimedError
from runtimed.runtime.environments import EarlyStart, Environment, EnvironmentStore, site_packages
from runtimed.runtime.kernel import KernelSession
from runtimed.runtime.pool import KernelPool
from runtimed.schema import approvals, views
from runtimed.schema.dependencies import APPROVAL_TOOL, EnvRequest, resolve
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id
from runtimed.server.liveness import SYSTEM_ACTOR
from runtimed.server.service import NotebookService

log = logging.getLogger(__name__)

ENAMES = {"dependencies_not_approved": "DependenciesNotApproved", "environment_failed": "EnvironmentFailed",
          "environment_timeout": "EnvironmentTimeout", "invalid_dependency": "InvalidDependency"}
"""The ``ename`` an execution fails with, per error code of a failed preparation."""


def _float_env(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        log.warning("%s=%r is not a number; using %g", name, os.environ.get(name), default)
        return default
    return value if value >= 0 else default


def env_pool_size() -> int:
    """Warm kernels kept per environment in use (``RUNTIMED_ENV_POOL_SIZE``, default 1)."""
    return int(_float_env("RUNTIMED_ENV_POOL_SIZE", 1))


def env_pool_idle() -> float:
    """Seconds an environment's pool lives without a take (``RUNTIMED_ENV_POOL_IDLE``, default 900)."""
    return _float_env("RUNTIMED_ENV_POOL_IDLE", 900.0)


def env_max_age_days() -> float:
    """Days an environment may go unused before the daemon removes it (``RUNTIMED_ENV_MAX_AGE_DAYS``, default 30)."""
    return _float_env("RUNTIMED_ENV_MAX_AGE_DAYS", 30.0)


def approval_for(conn: Any, key: str) -> dict[str, Any] | None:
    """The latest ``install_dependencies`` approval for this request hash (any status), or None."""
    found = None
    for item in approvals.list_approvals(conn, pending_only=False):
        if item["tool"] == APPROVAL_TOOL and isinstance(item["arguments"], dict) and item["arguments"].get("hash") == key:
            found = item
    return found


class NotebookEnvironments:
    """The daemon's notebook environments: request, trust, build (with progress), status."""

    def __init__(self, store: EnvironmentStore, pool: KernelPool) -> None:
        self.store = store
        self.pool = pool
        self.progress: dict[str, dict[str, Any]] = {}
        """Per notebook: the last preparation's ``{state, detail, hash, error, at}`` (building, ready, failed)."""
        self._last_gc = 0.0

    async def request_of(self, service: NotebookService) -> EnvRequest | None:
        metadata, first_code, cwd = await service.view(views.dependency_inputs)
        return await asyncio.to_thread(resolve, metadata, first_code, cwd)  # may read a pyproject.toml

    async def describe(self, service: NotebookService) -> dict[str, Any]:
        """What ``GET /api/notebooks/{id}/environment`` answers."""
        request = await self.request_of(service)
        out: dict[str, Any] = {"request": None, "trusted": True, "approval": None, "built": False, "path": None,
                               "status": self.progress.get(service.notebook_id)}
        if request is None:
            return out
        approval = await service.view(approval_for, request.key)
        env = self.store.get(request)
        out.update(request=request.describe(), approval=approval,
                   trusted=approval is not None and approval["status"] in ("approved", "approved_always"),
                   built=env is not None, path=str(env.path) if env else None)
        return out

    async def approve(self, service: NotebookService, request: EnvRequest, actor: dict[str, Any]) -> str:
        """Record a person's approval of this exact request (the daemon asks, the person answers)."""
        approval = await service.view(approval_for, request.key)
        if approval is not None and approval["status"] in ("approved", "approved_always"):
            return str(approval["approval_id"])
        if approval is None or approval["status"] != "pending":
            approval_id = await self._ask(service, request)
        else:
            approval_id = str(approval["approval_id"])
        result = (await service.append([make_event("toolApprovalResolved", approval_id=approval_id,
                                                   decision="approved")], actor))[0]
        if "error" in result:
            raise RuntimedError(f"could not approve the dependencies: {result['error']['message']}",
                                code=result["error"]["code"])
        return approval_id

    async def _ask(self, service: NotebookService, request: EnvRequest) -> str:
        approval_id = new_id("ap-")
        arguments = {**request.describe(), "preview": "install " + ", ".join(request.dependencies)}
        await service.append([make_event("toolApprovalRequested", approval_id=approval_id, tool=APPROVAL_TOOL,
                                         arguments=arguments)], SYSTEM_ACTOR)
        return approval_id

    async def start_kernel(self, service: NotebookService, kernel_name: str,
                           cwd: str | os.PathLike[str] | None) -> KernelSession:
        """The notebook's kernel, in its environment (``prepare``). A new environment's kernel starts as soon as
        its interpreter can (the base holds ipykernel), while uv installs the notebook's packages; it is handed
        out only once the install succeeded and the kernel picked the new packages up (``_pick_up``). A failed
        install fails like before, and that kernel is stopped."""
        early: list[asyncio.Task[KernelSession]] = []  # set by ``start`` if the environment is built now
        before: set[str] = set()

        def start(env: Environment) -> None:
            before.update(os.listdir(site_packages(env.path)))
            early.append(asyncio.get_running_loop().create_task(self.pool.start_in(kernel_name, env, cwd)))

        try:
            environment = await self.prepare(service, kernel_name, start)
            if environment is None or not early:
                return await self.pool.take(kernel_name, cwd=cwd, environment=environment)
            kernel = await early[0]
            if not await _pick_up(kernel, environment, before):
                await kernel.shutdown(now=True)
                kernel = await self.pool.start_in(kernel_name, environment, cwd)
        except BaseException:
            for task in early:
                await _discard(task)
            raise
        self.pool.adopt(kernel_name, environment)
        return kernel

    async def prepare(self, service: NotebookService, kernel_name: str,
                      early: EarlyStart | None = None) -> Environment | None:
        """The environment the notebook's kernel must run in (None: the daemon's own), built if needed.

        ``early``: see ``EnvironmentStore.ensure``. Raises a ``RuntimedError`` (``dependencies_not_approved``, ``invalid_dependency``,
        ``environment_failed``, ``environment_timeout``) that the caller turns into failed executions."""
        notebook_id = service.notebook_id
        try:
            request = await self.request_of(service)
            if request is None:
                self.progress.pop(notebook_id, None)
                return None
            approval = await service.view(approval_for, request.key)
            if approval is None or approval["status"] not in ("approved", "approved_always"):
                approval_id = (approval["approval_id"] if approval is not None and approval["status"] == "pending"
                               else await self._ask(service, request))
                raise RuntimedError(
                    f"this notebook declares {len(request.dependencies)} dependencies ({', '.join(request.dependencies)}, "
                    f"from {request.source}) that no person approved yet; nothing was installed. Approve them with "
                    f"`runt deps approve {notebook_id}` (or approval {approval_id}: `runt approvals {notebook_id}`, "
                    "the page), then run again.", code="dependencies_not_approved")
            env = self.store.get(request)
            if env is None:
                async with self._progress_session(service, kernel_name, request) as say:
                    env = await self.store.ensure(request, say, early)
            else:
                env = await self.store.ensure(request)  # built: a stat or two (and its kernel base is there)
        except RuntimedError as exc:
            self.progress[notebook_id] = {"state": "failed", "detail": exc.message, "error": exc.code,
                                          "hash": None, "at": time.time()}
            raise
        self.progress[notebook_id] = {"state": "ready", "detail": f"{len(request.dependencies)} packages",
                                      "hash": env.key, "error": None, "at": time.time()}
        return env

    @contextlib.asynccontextmanager
    async def _progress_session(self, service: NotebookService, kernel_name: str, request: EnvRequest
                                ) -> AsyncIterator[Callable[[str], Awaitable[None]]]:
        """A system runtime session whose status detail is the build's progress, ended when the build ends."""
        session_id = new_id("s-")
        notebook_id = service.notebook_id
        active = await service.view(views.active_session) is None
        if active:
            await service.append([make_event("runtimeSessionStarted", session_id=session_id,
                                             runtime_id="runtimed-env", kernel_name=kernel_name or "python3",
                                             host="")], SYSTEM_ACTOR)

        async def say(message: str) -> None:
            self.progress[notebook_id] = {"state": "building", "detail": message, "hash": request.key,
                                          "error": None, "at": time.time()}
            if active:
                await service.append([make_event("runtimeStatusChanged", session_id=session_id, status="starting",
                                                 detail=message[:2000])], SYSTEM_ACTOR)

        ok = False
        try:
            yield say
            ok = True
        finally:
            if active:
                with contextlib.suppress(Exception):
                    await service.append([make_event("runtimeSessionEnded", session_id=session_id,
                                                     reason="shutdown" if ok else "error")], SYSTEM_ACTOR)

    async def sync(self, service: NotebookService, kernel_name: str) -> dict[str, Any]:
        """Build the notebook's environment now (``Session.sync_environment``), outside any execution."""
        await self.prepare(service, kernel_name)
        return await self.describe(service)

    async def housekeeping(self, idle: float, max_age_days: float) -> None:
        """Reclaim idle environment pools; at most hourly, remove environments unused for ``max_age_days``."""
        await self.pool.reclaim(idle)
        if time.monotonic() - self._last_gc > 3600:
            self._last_gc = time.monotonic()
            removed = await asyncio.to_thread(self.store.remove_unused, max_age_days, self.pool.environments_in_use())
            if removed:
                log.info("removed %d environments unused for %g days: %s", len(removed), max_age_days,
                         ", ".join(removed))


_PICK_UP = """\
def _runtimed_pick_up(site_dir, names, pth):
    import importlib, site, sys
    if pth:
        site.addsitedir(site_dir)
    importlib.invalidate_caches()
    clash = sorted(name for name in names if name in sys.modules)
    if clash:
        raise ImportError("imported before the install: " + ", ".join(clash))
try:
    _runtimed_pick_up({site!r}, {names!r}, {pth!r})
finally:
    del _runtimed_pick_up
"""


async def _pick_up(kernel: KernelSession, environment: Environment, before: set[str]) -> bool:
    """Make a kernel started before the install see the installed packages as one started after it would:
    fresh import caches, new ``.pth`` files processed. False if it already imported a module of the same
    name from elsewhere (e.g. the notebook pins a package the kernel machinery uses): it must be replaced."""
    site = site_packages(environment.path)
    added = set(await asyncio.to_thread(os.listdir, site)) - before
    names = sorted({entry.split(".")[0] for entry in added
                    if not entry.endswith((".dist-info", ".egg-info", ".data", ".pth")) and entry != "__pycache__"})
    errors: list[str] = []

    def collect(kind: str, content: dict[str, Any]) -> None:
        if kind == "error":
            errors.append(f"{content['ename']}: {content['evalue']}")

    code = _PICK_UP.format(site=str(site), names=names, pth=any(entry.endswith(".pth") for entry in added))
    reply = await kernel.execute(code, collect, silent=True)
    if reply.status != "ok":
        log.info("replacing the kernel started during the install of %s: %s", environment.key, "; ".join(errors))
    return reply.status == "ok"


async def _discard(task: asyncio.Task[KernelSession]) -> None:
    """Stop a kernel that is starting or started (its environment failed, or the caller gave up)."""
    task.cancel()
    with contextlib.suppress(BaseException):
        kernel = await task
        await kernel.shutdown(now=True)
