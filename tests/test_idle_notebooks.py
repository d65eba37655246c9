"""A daemon closes the notebooks nobody uses (idle for ``RUNTIMED_NOTEBOOK_IDLE``, or the least recently used
beyond ``RUNTIMED_MAX_OPEN_NOTEBOOKS``) and opens them again on the next request: every run creates a notebook,
and each open one holds three files, so a daemon used to run out of file handles after a few hundred (under a
limit of 256 open files, its 81st new notebook got a 500)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import DaemonProcess, running_daemon

from runtimed import AsyncSession
from runtimed.client.discovery import DaemonEndpoint
from runtimed.schema.events import make_event
from runtimed.server.idle_notebooks import RECENT

pytestmark = pytest.mark.timeout(120)
ACTOR = {"id": "human:tester", "kind": "human", "name": "Tester"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("idle-home"), env={"RUNTIMED_NOTEBOOK_IDLE": "0.5"}) as proc:
        yield proc


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("capped-home"), env={"RUNTIMED_MAX_OPEN_NOTEBOOKS": "5"}) as proc:
        yield proc


def client(daemon: DaemonProcess) -> httpx.Client:
    return httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"}, timeout=30)


@pytest.fixture
def api(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with client(daemon) as c:
        yield c


def open_files(daemon: DaemonProcess, notebook_id: str | None = None) -> list[str]:
    """The daemon's open files of one notebook's database (or of any notebook's)."""
    folder = str(daemon.home.path / "notebooks")
    found = []
    for fd in os.listdir(f"/proc/{daemon.proc.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{daemon.proc.pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(folder) and (notebook_id is None or target.startswith(f"{folder}/{notebook_id}.db")):
            found.append(target)
    return found


def eventually(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return value


def create(api: httpx.Client, notebook_id: str, source: str) -> None:
    assert api.post("/api/notebooks", json={"id": notebook_id, "title": notebook_id}).status_code == 201
    pushed = api.post(f"/api/notebooks/{notebook_id}/events", json={"actor": ACTOR, "events": [
        make_event("cellCreated", cell_id="c1", cell_type="code", fractional_index="a0", source=source)]})
    assert pushed.status_code == 200 and all("seq" in r for r in pushed.json()["results"]), pushed.text


def test_unused_notebooks_are_closed_and_open_again(daemon: DaemonProcess, api: httpx.Client) -> None:
    for i in range(10):
        create(api, f"idle-{i}", f"x = {i}")
    assert open_files(daemon)  # just used: open
    eventually(lambda: api.get("/api/status").json()["open_notebooks"] == 0 and not open_files(daemon))
    listed = {n["id"] for n in api.get("/api/notebooks").json()}
    assert {f"idle-{i}" for i in range(10)} <= listed
    assert not open_files(daemon)  # the listing read them without keeping them open
    again = api.get("/api/notebooks/idle-3").json()
    assert [c["source"] for c in again["cells"]] == ["x = 3"]  # the next request opens it again


@pytest.mark.anyio
async def test_a_connected_notebook_stays_open(daemon: DaemonProcess, api: httpx.Client) -> None:
    create(api, "kept", "1 + 1")
    async with AsyncSession("kept", endpoint=DaemonEndpoint(daemon.url, daemon.token)) as s:
        await s.connect()
        create(api, "probe", "2 + 2")  # closed once idle: the closer has run since then
        eventually(lambda: not open_files(daemon, "probe"))
        assert open_files(daemon, "kept")
        assert (await s.run("6 * 7")).execute_result.data["text/plain"] == "42"  # type: ignore[union-attr]


def test_beyond_the_cap_the_least_recently_used_are_closed(capped: DaemonProcess) -> None:
    with client(capped) as api:
        for i in range(12):
            create(api, f"cap-{i}", f"y = {i}")
        more = iter(range(10_000))
        created = [time.monotonic()]

        def within_the_cap() -> bool:
            # a new notebook makes room at once (idle: 300 s), closing those handed out over RECENT seconds ago;
            # opened faster than that, they would all still count as just handed out
            if time.monotonic() - created[0] > RECENT + 0.1:
                create(api, f"more-{next(more)}", "z = 0")
                created[0] = time.monotonic()
            return api.get("/api/status").json()["open_notebooks"] <= 6

        eventually(within_the_cap)
        assert len(open_files(capped)) <= 3 * 6
        assert {f"cap-{i}" for i in range(12)} <= {n["id"] for n in api.get("/api/notebooks").json()}
        for i in range(12):  # every closed notebook opens again, intact
            assert [c["source"] for c in api.get(f"/api/notebooks/cap-{i}").json()["cells"]] == [f"y = {i}"]
