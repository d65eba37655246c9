"""A stop reaches a runtime that is still starting. A run job cancelled before its first cell leaves no kernel
behind (before, its prestarted runtime idled on until the idle timeout, 30 minutes by default), and neither does
a notebook deleted while its runtime starts.

The daemon keeps no pooled kernels (``--pool-size 0``), so every runtime start launches a kernel (seconds),
and a daemon without runtimes has no child processes at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import DaemonProcess, make_notebook, running_daemon, write
from test_runs import finished
from test_runtime_faults import children

from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.http import DaemonHTTP
from runtimed.schema.events import make_event

pytestmark = pytest.mark.timeout(180)
ACTOR = {"id": "human:tester", "kind": "human", "name": "Tester"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("stop-home"), "--pool-size", "0") as proc:
        yield proc


@pytest.fixture
def http(daemon: DaemonProcess) -> Iterator[DaemonHTTP]:
    client = DaemonHTTP(DaemonEndpoint(daemon.url, daemon.token))
    yield client
    client.close()


def no_kernels_left(daemon: DaemonProcess, timeout: float = 60.0) -> None:
    """Until the daemon has no child process (bounded): every kernel it launched has stopped."""
    deadline = time.monotonic() + timeout
    while children(daemon.proc.pid):
        assert time.monotonic() < deadline, f"kernels still running: {children(daemon.proc.pid)}"
        time.sleep(0.1)


def test_deleting_a_notebook_while_its_runtime_starts_leaves_no_kernel(daemon: DaemonProcess) -> None:
    no_kernels_left(daemon)
    with httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"}, timeout=60) as api:
        assert api.post("/api/notebooks", json={"id": "deleted-early", "title": "deleted early"}).status_code == 201
        created = api.post("/api/notebooks/deleted-early/events", json={"actor": ACTOR, "events": [
            make_event("cellCreated", cell_id="c1", cell_type="code", fractional_index="a0", source="1 + 1")]})
        assert created.status_code == 200 and "seq" in created.json()["results"][0], created.text
        # the request's append starts the runtime (a kernel launch, seconds); the delete comes right behind it
        queued = api.post("/api/notebooks/deleted-early/events", json={"actor": ACTOR, "events": [
            make_event("executionRequested", queue_id="q1", cell_id="c1")]})
        assert queued.status_code == 200 and "seq" in queued.json()["results"][0], queued.text
        assert api.delete("/api/notebooks/deleted-early").json() == {"deleted": "deleted-early"}
        assert [r for r in api.get("/api/runtimes").json() if r["notebook_id"] == "deleted-early"] == []
    no_kernels_left(daemon)


def test_a_run_cancelled_before_its_first_cell_leaves_no_kernel(daemon: DaemonProcess, http: DaemonHTTP,
                                                                tmp_path: Path) -> None:
    from runtimed.automation.options import RunOptions, submittable, submitted_notebook

    no_kernels_left(daemon)
    src = write(make_notebook(("code", "print('never')")), tmp_path / "early.ipynb")
    opts = RunOptions(input_path=str(src), output_path=str(tmp_path / "out.ipynb"), client_cwd=str(tmp_path))
    run = http.post("/api/runs", json={"options": submittable(opts), "notebook": submitted_notebook(opts)})
    http.post(f"/api/runs/{run['id']}/cancel")  # while its runtime's kernel is still launching
    done = finished(http, run["id"])
    assert done["status"] == "cancelled", done
    assert done["runtime_id"] is None and not done.get("resumable_until")  # no kernel state to resume
    no_kernels_left(daemon)
