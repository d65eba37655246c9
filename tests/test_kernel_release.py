"""Kernels do not leak: the runtime of a notebook is released a grace period after its last
session leaves (``with Session()`` or ``kill -9``), unless another client or a run uses it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import DaemonProcess, running_daemon

from runtimed import Session
from runtimed.client.discovery import DaemonEndpoint

pytestmark = pytest.mark.timeout(120)
GRACE = 1.0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("release-home"), env={"RUNTIMED_RELEASE_GRACE": str(GRACE)}) as proc:
        yield proc


def endpoint(d: DaemonProcess) -> DaemonEndpoint:
    return DaemonEndpoint(d.url, d.token)


def api(d: DaemonProcess, path: str) -> Any:
    response = httpx.get(f"{d.url}{path}", headers={"Authorization": f"Bearer {d.token}"}, timeout=30)
    response.raise_for_status()
    return response.json()


def runtime_of(d: DaemonProcess, notebook_id: str) -> dict[str, Any] | None:
    return next((r for r in api(d, "/api/runtimes") if r["notebook_id"] == notebook_id), None)


def eventually(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_leaving_with_releases_the_runtime(daemon: DaemonProcess) -> None:
    with Session("release-with", endpoint=endpoint(daemon)) as s:
        assert s.run("x = 1").success
        assert runtime_of(daemon, "release-with") is not None
    eventually(lambda: runtime_of(daemon, "release-with") is None)
    with Session("release-with", endpoint=endpoint(daemon)) as s:  # the next use starts a new kernel
        assert s.run("'x' in dir()").execute_result.data["text/plain"] == "False"  # type: ignore[union-attr]


def test_another_client_keeps_it(daemon: DaemonProcess) -> None:
    ep = endpoint(daemon)
    with Session("release-shared", endpoint=ep) as stays:
        with Session("release-shared", endpoint=ep) as leaves:
            leaves.run("kept = 42")
        # longer than the grace, measured by the kernel itself while the other session waits for it
        assert stays.run(f"import time; time.sleep({GRACE * 3}); kept").execute_result.data["text/plain"] == "42"  # type: ignore[union-attr]
    eventually(lambda: runtime_of(daemon, "release-shared") is None)


def test_a_running_cell_keeps_it_until_it_ends(daemon: DaemonProcess) -> None:
    with Session("release-running", endpoint=endpoint(daemon)) as s:
        s.run("1")
        queue_id = s.queue_cell(s.create_cell(f"import time; time.sleep({GRACE * 3}); 'finished'"))
    eventually(lambda: runtime_of(daemon, "release-running") is None)
    with Session("release-running", endpoint=endpoint(daemon)) as s:
        result = s.wait_for_execution(queue_id)
        assert result.status == "success" and result.execute_result.data["text/plain"] == "'finished'"  # type: ignore[union-attr]
        s.shutdown_kernel()


def test_a_killed_client_releases_it(daemon: DaemonProcess) -> None:
    script = (
        "import sys, time\n"
        "from runtimed import Session\n"
        "from runtimed.client.discovery import DaemonEndpoint\n"
        f"s = Session('release-killed', endpoint=DaemonEndpoint({daemon.url!r}, {daemon.token!r}))\n"
        "s.run('1')\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=daemon.env())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert runtime_of(daemon, "release-killed") is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        eventually(lambda: runtime_of(daemon, "release-killed") is None)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
