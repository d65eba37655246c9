"""KernelPool with real ipykernel kernels."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtimed.runtime.kernel import KernelSession, UnknownKernelError
from runtimed.runtime.pool import KernelPool

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def evaluate(kernel: KernelSession, expr: str) -> str:
    results: list[str] = []

    def collect(kind: str, content: dict[str, Any]) -> None:
        if kind == "execute_result":
            results.append(content["data"]["text/plain"])

    reply = await kernel.execute(expr, collect)
    assert reply.status == "ok", reply
    return results[0]


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def ready(pool: KernelPool, name: str = "python3") -> int:
    return pool.status()[name]["ready"]


async def test_warm_take_is_instant_then_refills_and_flushes(tmp_path: Path) -> None:
    pool = KernelPool(size=1, preimport=["fractions"])
    await pool.start()
    taken: list[KernelSession] = []
    try:
        assert pool.status() == {"python3": {"ready": 0, "starting": 1}}
        await wait_until(lambda: ready(pool) == 1)
        assert pool.status() == {"python3": {"ready": 1, "starting": 0}}

        start = time.monotonic()
        kernel = await pool.take("python3", cwd=tmp_path)
        taken.append(kernel)
        assert time.monotonic() - start < 0.2
        assert pool.status() == {"python3": {"ready": 0, "starting": 1}}
        assert await evaluate(kernel, "import os; os.getcwd()") == repr(str(tmp_path))
        assert await evaluate(kernel, "'fractions' in __import__('sys').modules") == "True"

        await wait_until(lambda: ready(pool) == 1)
        old_pid = pool._ready["python3"][0].pid
        assert old_pid is not None and old_pid != kernel.pid

        await pool.flush()
        assert process_gone(old_pid)
        await wait_until(lambda: ready(pool) == 1)
        fresh = await pool.take("python3")
        taken.append(fresh)
        assert fresh.pid not in (old_pid, kernel.pid)
        assert await evaluate(fresh, "'fractions' in __import__('sys').modules") == "True"
        assert await kernel.is_alive()  # taken kernels are not the pool's to flush
    finally:
        await pool.shutdown()
        assert pool.status()["python3"] == {"ready": 0, "starting": 0}
        for kernel in taken:
            await kernel.shutdown(now=True)


async def test_take_while_starting_claims_that_kernel() -> None:
    pool = KernelPool(size=1)
    await pool.start()
    try:
        kernel = await pool.take("python3")
        try:
            assert await evaluate(kernel, "1 + 1") == "2"
            status = pool.status()["python3"]
            assert status["starting"] + status["ready"] == 1  # refilled behind the take
            await wait_until(lambda: ready(pool) == 1)
        finally:
            await kernel.shutdown(now=True)
    finally:
        await pool.shutdown()


async def test_a_take_that_waits_gets_the_kernel_before_its_preimports() -> None:
    """A waiting take is handed the starting kernel as soon as it is up: its cells import what they need, rather
    than wait for the pool's preimports (seconds for numpy, pandas and matplotlib). Kernels that wait in the pool
    still preimport."""
    pool = KernelPool(size=1, preimport=["fractions"])
    await pool.start()
    taken: list[KernelSession] = []
    try:
        taken.append(await pool.take("python3"))  # the pool's first kernel is still starting
        assert await evaluate(taken[0], "'fractions' in __import__('sys').modules") == "False"
        await wait_until(lambda: ready(pool) == 1)
        taken.append(await pool.take("python3"))
        assert await evaluate(taken[1], "'fractions' in __import__('sys').modules") == "True"
    finally:
        await pool.shutdown()
        for kernel in taken:
            await kernel.shutdown(now=True)


async def test_cold_pool_starts_a_kernel(tmp_path: Path) -> None:
    pool = KernelPool(size=0)
    await pool.start()
    try:
        kernel = await pool.take("python3", cwd=tmp_path)
        try:
            assert await evaluate(kernel, "import os; os.getcwd()") == repr(str(tmp_path))
            assert pool.status() == {"python3": {"ready": 0, "starting": 0}}
        finally:
            await kernel.shutdown(now=True)
    finally:
        await pool.shutdown()


async def test_unknown_kernel_name_lists_available() -> None:
    pool = KernelPool(size=0)
    with pytest.raises(UnknownKernelError) as info:
        await pool.take("no-such-kernel")
    assert "python3" in info.value.message
    await pool.shutdown()


def test_preimport_names_are_validated() -> None:
    with pytest.raises(ValueError):
        KernelPool(preimport=["os; import shutil"])


async def test_optional_preimports_load_what_is_installed_and_skip_the_rest(tmp_path: Path) -> None:
    from runtimed.server.main import DEFAULT_PREIMPORT, preimport_setting

    assert preimport_setting("auto") == list(DEFAULT_PREIMPORT) and preimport_setting("none") == []
    assert preimport_setting("numpy, json") == ["numpy", "json"]
    pool = KernelPool(size=1, preimport=["fractions?", "no_such_module_for_runtimed?"])
    await pool.start()
    try:
        await wait_until(lambda: ready(pool) == 1)
        kernel = await pool.take("python3", cwd=tmp_path)
        try:
            assert await evaluate(kernel, "'fractions' in __import__('sys').modules") == "True"
            assert await evaluate(kernel, "'no_such_module_for_runtimed' in __import__('sys').modules") == "False"
        finally:
            await kernel.shutdown(now=True)
    finally:
        await pool.shutdown()


def test_a_bad_preimport_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "RUNTIMED_HOME": str(tmp_path), "RUNTIMED_PREIMPORT": "numpy;os"}
    done = subprocess.run([sys.executable, "-m", "runtimed.server.main", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "not a module name: 'numpy;os'" in done.stderr and "--preimport numpy,pandas?" in done.stderr
    assert "Traceback" not in done.stderr
