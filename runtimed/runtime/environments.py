"""uv-managed Python environments for notebooks, cached by the hash of their request.

``EnvironmentStore.ensure(request)`` returns the environment of a dependency request, building
it with uv the first time (uv's own wheel cache makes a rebuild of known packages a matter of
links). Environments are layered, as ``uv run --with`` layers its ephemeral environments: a
**kernel base** per Python (``kernel-<hash>``: ``ipykernel`` and its dependencies, built once)
and, per request, an environment with only the notebook's packages (``uv venv`` + ``uv pip
install <deps>``) whose ``site-packages`` holds a ``.pth`` file that appends the base's
``site-packages`` to ``sys.path``: the notebook's own packages come first, the kernel machinery
after, and nothing of the daemon's environment is visible. A new dependency list thus installs
its few packages, not the thirty of ipykernel. Everything lives in ``$RUNTIMED_HOME/envs``; an
environment is complete once its ``runtimed-env.json`` exists (written last), so a build that
crashed is simply redone. Each holds a kernelspec whose ``argv`` is its own Python, which
``KernelSession.start(spec_dirs=...)`` launches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimed.errors import RuntimedError
from runtimed.schema.dependencies import KERNEL_PACKAGE, EnvRequest
from runtimed.settings import env_number

__all__ = ["EarlyStart", "Environment", "EnvironmentError_", "EnvironmentStore", "env_timeout_setting", "site_packages",
           "uv_bin"]

log = logging.getLogger(__name__)

Progress = Callable[[str], Awaitable[None]]
EarlyStart = Callable[["Environment"], None]
"""Called once a new environment's interpreter can start (venv, ``.pth`` and kernelspec written), before
its packages are installed: the daemon starts the kernel then, overlapping the install."""
META = "runtimed-env.json"
LAST_USED = "last-used"
SPEC_DIR = "runtimed-kernels"
BASE_PTH = "_runtimed_kernel_base.pth"
LAYOUT = 2
"""Part of every hash: a change of how environments are built gives new ones rather than reusing old ones."""
_TAIL_LINES = 25


class EnvironmentError_(RuntimedError):  # noqa: N801 (the builtin name is taken)
    """uv could not build the environment: the message carries uv's own explanation."""

    code = "environment_failed"


def env_timeout_setting() -> float:
    """Seconds one environment build may take (``RUNTIMED_ENV_TIMEOUT``, default 600)."""
    return env_number("RUNTIMED_ENV_TIMEOUT", 600.0, float)


def uv_bin() -> str:
    """The uv binary of the ``uv`` Python package (a dependency of runtimed, not a system tool)."""
    import uv

    return str(uv.find_uv_bin())


@dataclass(frozen=True)
class Environment:
    """A built environment: where it is and how to start a kernel in it."""

    key: str
    path: Path
    packages: tuple[str, ...] = ()
    """The distribution names of the notebook's dependencies (pooled kernels import them ahead of time)."""

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def spec_dirs(self) -> list[str]:
        return [str(self.path / SPEC_DIR)]

    def kernel_env(self) -> dict[str, str]:
        """Variables a kernel in it gets, as if the environment were activated (``!pip``, subprocesses)."""
        return {"VIRTUAL_ENV": str(self.path), "PATH": f"{self.path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    def touch(self) -> None:
        (self.path / LAST_USED).touch()


class EnvironmentStore:
    """The environments under one directory; builds are serialized per hash (concurrent callers share one)."""

    def __init__(self, root: str | os.PathLike[str], timeout: float | None = None) -> None:
        self.root = Path(root)
        self.timeout = timeout if timeout is not None else env_timeout_setting()
        self._locks: dict[str, asyncio.Lock] = {}

    def get(self, request: EnvRequest) -> Environment | None:
        """The environment of the request if it is built, else None."""
        env = Environment(request.key, self.root / request.key, request.names)
        return env if (env.path / META).is_file() else None

    async def ensure(self, request: EnvRequest, progress: Progress | None = None,
                     early: EarlyStart | None = None) -> Environment:
        """The built environment of ``request`` (building it, and its kernel base, once; bounded by ``timeout``).

        ``early`` is called only if this call builds the environment, when its interpreter can start and
        before uv installs its packages; the environment counts as built (``get``) only once they are."""
        lock = self._locks.setdefault(request.key, asyncio.Lock())
        async with lock:
            env = self.get(request)
            started = time.monotonic()
            base = await self._base(request, progress or _quiet, started)
            if env is None:
                env = await self._build(request, base, progress or _quiet, started, early)
            env.touch()
            base.touch()
            return env

    async def _base(self, request: EnvRequest, say: Progress, started: float) -> Environment:
        """The kernel base for the request's Python (ipykernel and its dependencies), built once."""
        python = request.requires_python or f"{sys.version_info[0]}.{sys.version_info[1]}"
        key = "kernel-" + hashlib.sha256(json.dumps([python, KERNEL_PACKAGE, request.index_url, LAYOUT]
                                                    ).encode()).hexdigest()[:12]
        base = Environment(key, self.root / key)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if (base.path / META).is_file():
                return base
            await say(f"preparing the kernel base (ipykernel) for Python {python}… (once per Python)")
            kernel = EnvRequest((KERNEL_PACKAGE,), request.requires_python, request.index_url, "kernel base")
            await self._create(base, kernel, [KERNEL_PACKAGE], say, started, pth=None)
            return base

    async def _build(self, request: EnvRequest, base: Environment, say: Progress, started: float,
                     early: EarlyStart | None) -> Environment:
        env = Environment(request.key, self.root / request.key, request.names)
        n = len(request.dependencies)
        await say(f"installing {n} package{'s' if n != 1 else ''}… ({', '.join(request.dependencies)})")
        await self._create(env, request, list(request.dependencies), say, started, pth=base, early=early)
        await say(f"environment ready ({n} package{'s' if n != 1 else ''}, {time.monotonic() - started:.1f} s)")
        log.info("built environment %s (%s) in %.1f s", env.key, ", ".join(request.dependencies),
                 time.monotonic() - started)
        return env

    async def _create(self, env: Environment, request: EnvRequest, packages: list[str], say: Progress,
                      started: float, pth: Environment | None, early: EarlyStart | None = None) -> None:
        """``uv venv``, the ``.pth`` onto ``pth``'s site-packages and the kernelspec (then ``early``), ``uv pip
        install packages`` and, last, the meta file that marks it complete."""
        await asyncio.to_thread(shutil.rmtree, env.path, True)  # a build that died half way
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            python = pth.python if pth is not None else (request.requires_python or sys.executable)
            await self._uv(["venv", "--quiet", "--no-project", "--python", python, str(env.path)], say,
                           started, request)
            if pth is not None:
                (site_packages(env.path) / BASE_PTH).write_text(str(site_packages(pth.path)) + "\n")
            _write_kernelspec(env)
            if early is not None:
                early(env)
            install = ["pip", "install", "--python", env.python, *packages]
            if pth is None:  # the kernel base: compiled once here rather than by every first kernel start
                install.append("--compile-bytecode")
            if request.index_url:
                install += ["--index-url", request.index_url]
            await self._uv(install, say, started, request)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, env.path, True)
            raise
        meta = {**request.describe(), "hash": env.key, "base": pth.key if pth is not None else None,
                "created": time.time(), "build_seconds": round(time.monotonic() - started, 3)}
        (env.path / META).write_text(json.dumps(meta, indent=1))

    async def _uv(self, args: list[str], say: Progress, started: float, request: EnvRequest) -> None:
        remaining = self.timeout - (time.monotonic() - started)
        proc = await asyncio.create_subprocess_exec(
            uv_bin(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", "UV_NO_PROGRESS": "1",
                 "UV_HTTP_TIMEOUT": os.environ.get("UV_HTTP_TIMEOUT", "30")},
            start_new_session=True)
        lines: list[str] = []

        async def read() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                if not line:
                    continue
                lines.append(line)
                del lines[:-200]
                if line.lstrip().startswith(("Resolved", "Prepared", "Installed", "Downloading", "Using")):
                    await say(line.strip())

        try:
            await asyncio.wait_for(asyncio.gather(read(), proc.wait()), max(remaining, 0.1))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            raise EnvironmentError_(f"building the environment for {', '.join(request.dependencies)} took longer "
                                    f"than {self.timeout:g} s (RUNTIMED_ENV_TIMEOUT); uv was stopped",
                                    code="environment_timeout") from None
        if proc.returncode != 0:
            tail = "\n".join(lines[-_TAIL_LINES:])
            raise EnvironmentError_(f"uv could not install {', '.join(request.dependencies)} "
                                    f"(uv {args[0]} {args[1] if args[0] == 'pip' else ''} exited with "
                                    f"{proc.returncode}):\n{tail}")

    # -- housekeeping -------------------------------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        """Every built environment: its request, when it was built and last used (oldest hash first)."""
        out: list[dict[str, Any]] = []
        if not self.root.is_dir():
            return out
        for path in sorted(self.root.iterdir()):
            meta_file = path / META
            if not meta_file.is_file():
                continue
            try:
                meta = json.loads(meta_file.read_text())
            except (OSError, ValueError):
                continue
            used = path / LAST_USED
            meta["path"] = str(path)
            meta["last_used"] = used.stat().st_mtime if used.exists() else meta.get("created")
            out.append(meta)
        return out

    def remove_unused(self, max_age_days: float, keep: Collection[str] = (), dry_run: bool = False) -> list[str]:
        """Remove environments unused for more than ``max_age_days`` (not those in ``keep``); their hashes."""
        cutoff = time.time() - max_age_days * 86400
        removed = []
        entries = self.entries()
        for meta in entries:  # notebook environments first, then kernel bases no remaining one is built on
            key = str(meta.get("hash"))
            if meta.get("base") is None or key in keep or (meta.get("last_used") or 0) >= cutoff:
                continue
            if not dry_run:
                shutil.rmtree(meta["path"], ignore_errors=True)
            removed.append(key)
        needed = {m.get("base") for m in entries if m.get("base") is not None and str(m.get("hash")) not in removed}
        for meta in entries:
            key = str(meta.get("hash"))
            if meta.get("base") is not None or key in needed or (meta.get("last_used") or 0) >= cutoff:
                continue
            if not dry_run:
                shutil.rmtree(meta["path"], ignore_errors=True)
            removed.append(key)
        if self.root.is_dir() and not dry_run:  # half-built leftovers of a crash, older than the cutoff
            for path in self.root.iterdir():
                if path.is_dir() and not (path / META).exists() and path.name not in self._locks \
                        and path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
        return removed


async def _quiet(_message: str) -> None:
    return None


def site_packages(prefix: Path) -> Path:
    """The ``lib/pythonX.Y/site-packages`` of a virtual environment."""
    found = sorted(prefix.glob("lib/python*/site-packages"))
    if not found:
        raise EnvironmentError_(f"{prefix} has no lib/pythonX.Y/site-packages: not a virtual environment uv made")
    return found[0]


def _write_kernelspec(env: Environment) -> None:
    spec = env.path / SPEC_DIR / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [env.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({env.key})",
        "language": "python",
        "metadata": {"debugger": True},
    }, indent=1))
