"""Prewarmed kernels, so the first cell of a notebook does not wait for a kernel launch.

Kernels are started in the background per kernelspec; ``take`` hands one out at once when
one is ready (or claims one already starting) and the pool refills behind it. ``flush``
replaces every pooled kernel, e.g. after packages were installed into the environment.

Notebook environments (``runtime/environments.py``) get pools of their own, keyed
``<kernel>@<hash>``: created by the first ``take`` with that environment, kept at ``env_size``
ready kernels while in use, and dropped by ``reclaim`` once unused for a while.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

from runtimed.errors import KernelError
from runtimed.runtime.environments import Environment
from runtimed.runtime.kernel import KernelSession, UnknownKernelError, canonical_kernel_name, list_kernelspecs

__all__ = ["KernelPool"]

log = logging.getLogger(__name__)

_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\??$")
"""A module to preimport; a trailing ``?`` makes it optional (imported only if installed in the kernel)."""


def is_module_name(name: str) -> bool:
    """Whether ``name`` can be preimported: a dotted module name, optionally ending in ``?``."""
    return bool(_MODULE.match(name))


class KernelPool:
    """Keeps ``size`` ready kernels for each of ``kernel_names``."""

    def __init__(
        self,
        size: int = 1,
        preimport: Iterable[str] = (),
        kernel_names: Iterable[str] = ("python3",),
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 60.0,
        env_size: int = 1,
    ) -> None:
        self.size = size
        self.env_size = env_size
        self.preimport = list(preimport)
        for name in self.preimport:
            if not is_module_name(name):
                raise ValueError(f"Not a module name: {name!r}")
        self.kernel_names = tuple(kernel_names)
        self._cwd = cwd
        self._env = env
        self._startup_timeout = startup_timeout
        self._ready: dict[str, deque[KernelSession]] = {name: deque() for name in self.kernel_names}
        self._waiters: dict[str, deque[asyncio.Future[KernelSession]]] = {
            n: deque() for n in self.kernel_names
        }
        self._starting: dict[asyncio.Task[None], tuple[str, int]] = {}  # task -> (kernel name, generation)
        self._background: set[asyncio.Task[None]] = set()
        self._languages: dict[str, str] = {}
        self._generation = 0
        self._closed = False
        self._environments: dict[str, tuple[str, Environment]] = {}  # pool key -> (kernel name, environment)
        self._used: dict[str, float] = {}

    async def __aenter__(self) -> KernelPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Begin warming kernels in the background (returns at once).

        A kernelspec that is not installed is skipped with a warning rather than failing the
        daemon; ``take`` of that name then raises ``UnknownKernelError``.
        """
        specs = list_kernelspecs()
        self._languages = {name: spec["language"] for name, spec in specs.items()}
        for name in self.kernel_names:
            if name in specs:
                self._refill(name)
            else:
                log.warning("%s", UnknownKernelError(name, list(specs)).message)

    def status(self) -> dict[str, dict[str, int]]:
        """Per kernel name: how many kernels are ready and how many are starting."""
        out = {name: {"ready": len(q), "starting": 0} for name, q in self._ready.items()}
        for name, gen in self._starting.values():
            if gen == self._generation and name in out:
                out[name]["starting"] += 1
        return out

    async def take(
        self, kernel_name: str = "python3", cwd: str | os.PathLike[str] | None = None,
        environment: Environment | None = None,
    ) -> KernelSession:
        """A ready kernel of that spec (working directory set to ``cwd``), else a fresh one.

        With ``environment``, the kernel runs in that notebook environment (its own pool, see above)."""
        if self._closed:
            raise KernelError("The kernel pool is shut down")
        kernel_name = canonical_kernel_name(kernel_name)
        if environment is not None:
            kernel_name = self._environment_pool(kernel_name, environment)
        if kernel_name not in self._ready:
            return await self._start_fresh(kernel_name, cwd)
        if cwd is not None and kernel_name not in self._languages:
            self._languages.update({name: spec["language"] for name, spec in list_kernelspecs().items()})
        if cwd is not None and self._languages.get(kernel_name) != "python":
            return await self._start_fresh(kernel_name, cwd)  # only python kernels can chdir
        session = await self._take_ready(kernel_name)
        if session is None:
            return await self._start_fresh(kernel_name, cwd)
        if cwd is not None:
            try:
                await session.set_cwd(cwd)
            except BaseException:
                self._ready[kernel_name].appendleft(session)  # still in the pool's directory
                raise
        return session

    async def _take_ready(self, name: str) -> KernelSession | None:
        ready = self._ready[name]
        while ready:
            session = ready.popleft()
            if await session.is_alive():
                self._refill(name)
                return session
            self._spawn(session.shutdown(now=True))
        if self._current_starting(name) > len(self._waiters[name]):
            waiter: asyncio.Future[KernelSession] = asyncio.get_running_loop().create_future()
            self._waiters[name].append(waiter)
            self._refill(name)
            try:
                return await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._ready[name].appendleft(waiter.result())  # handed over as we were cancelled
                raise
            except Exception:
                return None  # that start failed; the caller starts one itself
            finally:
                if waiter in self._waiters[name]:
                    self._waiters[name].remove(waiter)
        self._refill(name)
        return None

    async def _start_fresh(self, name: str, cwd: str | os.PathLike[str] | None) -> KernelSession:
        return await self._launch(name, cwd if cwd is not None else self._cwd)

    async def _launch(self, key: str, cwd: str | os.PathLike[str] | None) -> KernelSession:
        found = self._environments.get(key)
        if found is None:
            return await KernelSession.start(key, cwd=cwd, env=self._env, startup_timeout=self._startup_timeout)
        return await self.start_in(*found, cwd)

    async def start_in(self, kernel_name: str, environment: Environment,
                       cwd: str | os.PathLike[str] | None) -> KernelSession:
        """A fresh kernel in ``environment``, without creating its pool: the daemon starts a new environment's
        first kernel while uv still installs into it (``adopt`` creates the pool once it is built)."""
        return await KernelSession.start(canonical_kernel_name(kernel_name), cwd=cwd if cwd is not None else self._cwd,
                                         env={**(self._env or {}), **environment.kernel_env()},
                                         startup_timeout=self._startup_timeout, spec_dirs=environment.spec_dirs)

    def adopt(self, kernel_name: str, environment: Environment) -> None:
        """Create the pool of a just built environment and start warming it, as a ``take`` would have."""
        if not self._closed:
            self._refill(self._environment_pool(canonical_kernel_name(kernel_name), environment))

    def _environment_pool(self, kernel_name: str, environment: Environment) -> str:
        """The pool key of a kernel in a notebook environment, creating that pool on first use."""
        key = f"{kernel_name}@{environment.key}"
        self._used[key] = asyncio.get_running_loop().time()
        if key not in self._ready:
            self._environments[key] = (kernel_name, environment)
            self._ready[key] = deque()
            self._waiters[key] = deque()
            specs = list_kernelspecs(environment.spec_dirs)
            if kernel_name in specs:
                self._languages[key] = specs[kernel_name]["language"]
        return key

    async def reclaim(self, idle: float) -> list[str]:
        """Drop the pools of environments not taken from for ``idle`` seconds (their ready kernels stop)."""
        now = asyncio.get_running_loop().time()
        gone = [key for key, used in self._used.items() if now - used > idle]
        old: list[KernelSession] = []
        for key in gone:
            self._used.pop(key, None)
            self._environments.pop(key, None)
            old.extend(self._ready.pop(key, ()))
            for waiter in self._waiters.pop(key, ()):
                if not waiter.done():
                    waiter.cancel()
            for task, (name, _gen) in list(self._starting.items()):
                if name == key:
                    task.cancel()
        await asyncio.gather(*(s.shutdown(now=True) for s in old), return_exceptions=True)
        return gone

    def environments_in_use(self) -> set[str]:
        """Hashes of the environments that have a pool now."""
        return {environment.key for _name, environment in self._environments.values()}

    async def flush(self) -> None:
        """Replace every pooled kernel (kernels still starting are discarded when ready)."""
        self._generation += 1
        old = [session for ready in self._ready.values() for session in ready]
        for ready in self._ready.values():
            ready.clear()
        for name in self._ready:
            self._refill(name)
        await asyncio.gather(*(s.shutdown(now=True) for s in old), return_exceptions=True)

    async def shutdown(self) -> None:
        """Stop every pooled kernel; kernels already taken are the taker's to stop."""
        self._closed = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        tasks = list(self._starting)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        old = [session for ready in self._ready.values() for session in ready]
        for ready in self._ready.values():
            ready.clear()
        await asyncio.gather(*(s.shutdown(now=True) for s in old), *self._background, return_exceptions=True)

    # -- filling ----------------------------------------------------------------------

    def _current_starting(self, name: str) -> int:
        return sum(1 for n, gen in self._starting.values() if n == name and gen == self._generation)

    def _refill(self, name: str) -> None:
        if self._closed or name not in self._ready:
            return
        size = self.env_size if name in self._environments else self.size
        missing = size + len(self._waiters[name]) - len(self._ready[name]) - self._current_starting(name)
        for _ in range(missing):
            task = asyncio.get_running_loop().create_task(self._warm(name))
            self._starting[task] = (name, self._generation)
            task.add_done_callback(self._starting.pop)

    async def _warm(self, name: str) -> None:
        generation = self._generation
        try:
            session = await self._launch(name, self._cwd)
        except Exception as exc:
            log.warning("Could not prewarm a %s kernel: %s", name, exc)
            if self._waiters.get(name):
                self._waiters[name].popleft().set_exception(exc)
            return
        if self._hand_over(name, session, generation):  # someone waits: its cells import what they need
            return
        try:
            await self._preimport(session)
            found = self._environments.get(name)
            if found is not None:
                await self._preimport_packages(session, found[1].packages)
        except BaseException:
            await session.shutdown(now=True)
            raise
        if not self._hand_over(name, session, generation):
            self._ready[name].append(session)

    def _hand_over(self, name: str, session: KernelSession, generation: int) -> bool:
        """Give a just started kernel to the first take waiting for one (True), or drop it when the pool moved
        on (closed, flushed, reclaimed; True), else keep it (False)."""
        if self._closed or generation != self._generation or name not in self._ready:
            self._spawn(session.shutdown(now=True))
            return True
        while self._waiters[name]:
            waiter = self._waiters[name].popleft()
            if not waiter.done():
                waiter.set_result(session)
                return True
        return False

    async def _preimport(self, session: KernelSession) -> None:
        if not self.preimport or session.language != "python":
            return
        errors: list[str] = []

        def collect(kind: str, content: dict[str, Any]) -> None:
            if kind == "error":
                errors.append(f"{content['ename']}: {content['evalue']}")

        code = "\n".join(f"try:\n    import {name[:-1]}\nexcept ImportError:\n    pass" if name.endswith("?")
                         else f"import {name}" for name in self.preimport)
        reply = await session.execute(code, collect, silent=True)
        if reply.status != "ok":
            log.warning("Preimport failed in a pooled %s kernel: %s", session.kernel_name, "; ".join(errors))

    async def _preimport_packages(self, session: KernelSession, packages: tuple[str, ...]) -> None:
        """Import an environment's packages in its pooled kernel (silently, names cleaned up): a first cell
        importing them then finds them loaded, as with ``preimport``. A package that fails is skipped."""
        if not packages or session.language != "python":
            return
        code = (
            "def _runtimed_preimport(names):\n"
            "    import importlib, importlib.metadata as md\n"
            "    for name in names:\n"
            "        try:\n"
            "            top = (md.distribution(name).read_text('top_level.txt') or '').split()\n"
            "        except Exception:\n"
            "            top = []\n"
            "        for module in top or [name.replace('-', '_')]:\n"
            "            try:\n"
            "                importlib.import_module(module)\n"
            "            except Exception:\n"
            "                pass\n"
            f"_runtimed_preimport({list(packages)!r})\n"
            "del _runtimed_preimport\n"
        )
        await session.execute(code, lambda _kind, _content: None, silent=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)  # a reference, so the task is not garbage-collected
        task.add_done_callback(self._background.discard)
