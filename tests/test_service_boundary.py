"""The notebook service owns every append: REST writes run on the event loop like WebSocket pushes.

Regression tests for the first wave's bug: an ``executionRequested`` pushed over REST stayed
pending forever (the append hook ran on a worker thread with no event loop), and WebSocket
peers did not see REST-pushed events. The daemon runs with asyncio debug mode on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from conftest import DaemonProcess, running_daemon

from runtimed.schema.events import make_event

ACTOR = {"id": "rest-test", "kind": "human", "name": "REST test"}


@pytest.fixture(scope="module")
def debug_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("home")
    with running_daemon(home, env={"PYTHONASYNCIODEBUG": "1", "PYTHONDEVMODE": "1"}) as proc:
        yield proc


@pytest.fixture
def api(debug_daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=debug_daemon.url, headers={"Authorization": f"Bearer {debug_daemon.token}"},
                      timeout=30) as client:
        yield client


def push(api: httpx.Client, notebook_id: str, *events: dict) -> list[dict]:
    r = api.post(f"/api/notebooks/{notebook_id}/events", json={"events": list(events), "actor": ACTOR})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert all("seq" in item for item in results), results
    return results


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_an_execution_requested_over_rest_runs(api: httpx.Client, debug_daemon: DaemonProcess) -> None:
    nb = "rest-exec"
    push(api, nb, make_event("notebookCreated", title="REST"),
         make_event("cellCreated", cell_id="c1", cell_type="code", fractional_index="a0", source="print(6 * 7)"))
    push(api, nb, make_event("executionRequested", queue_id="q1", cell_id="c1"))

    def finished() -> dict | None:
        cell = api.get(f"/api/notebooks/{nb}").json()["cells"][0]
        execution = cell["execution"]
        return cell if execution and execution["status"] in ("success", "error", "cancelled") else None

    cell = wait_for(finished)
    assert cell["execution"]["status"] == "success"
    assert [o.get("text") for o in cell["outputs"]] == ["42\n"]
    log_text = (Path(debug_daemon.home.path) / "daemon.log").read_text()
    assert "append hook failed" not in log_text and "no running event loop" not in log_text


def test_a_websocket_peer_sees_events_pushed_over_rest(api: httpx.Client, debug_daemon: DaemonProcess) -> None:
    nb = "rest-fanout"
    push(api, nb, make_event("notebookCreated", title="fan-out"))

    async def watch() -> list[dict]:
        url = debug_daemon.url.replace("http", "ws") + f"/api/notebooks/{nb}/sync"
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {debug_daemon.token}"}) as ws:
            await ws.send(json.dumps({"type": "hello", "since": 1, "actor": {"id": "w", "kind": "human"}}))
            seen: list[dict] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            pushed = False
            while not any(e["name"] == "cellCreated" for e in seen):
                message = json.loads(await asyncio.wait_for(ws.recv(), deadline - loop.time()))
                if message["type"] == "welcome" and not pushed:
                    pushed = True  # the peer is in: now push over REST from another thread
                    await asyncio.to_thread(push, api, nb, make_event(
                        "cellCreated", cell_id="c1", cell_type="code", fractional_index="a0", source="x"))
                elif message["type"] == "events":
                    seen.extend(message["events"])
            return seen

    seen = asyncio.run(watch())
    created = [e for e in seen if e["name"] == "cellCreated"]
    assert created and created[0]["args"]["source"] == "x" and created[0]["actor"]["id"] == ACTOR["id"]


def test_the_service_refuses_to_append_from_another_thread() -> None:
    """The guard that keeps the loop the only writer: an append from a worker thread is an error."""
    from runtimed.errors import RuntimedError
    from runtimed.server.service import NotebookService
    from runtimed.store.sqlite import MemoryEventStore

    async def main() -> str:
        store = MemoryEventStore()
        service = NotebookService("nb", store.log("nb"))
        ok = await service.append([make_event("notebookCreated", title="t")], ACTOR)
        assert ok[0]["seq"] == 1

        def from_thread() -> str:
            try:
                asyncio.run(service.append([make_event("notebookMetadataSet", key="k", value=1)], ACTOR))
            except RuntimedError as exc:
                return exc.code
            return "appended"

        code = await asyncio.to_thread(from_thread)
        assert service.head == 1  # nothing was stored
        store.close()
        return code

    assert asyncio.run(main()) == "wrong_thread"


def test_commits_reported_from_another_thread_reach_the_loop_in_order() -> None:
    """A backend that reports commits from its own thread (a network store) is handed to the loop."""
    from runtimed.server.service import NotebookService
    from runtimed.store.sqlite import MemoryEventStore

    async def main() -> list[int]:
        store = MemoryEventStore()
        nb_log = store.log("nb")
        service = NotebookService("nb", nb_log)
        seen: list[int] = []
        loop_thread = asyncio.get_running_loop()

        def hook(_service: NotebookService, stored) -> None:
            assert asyncio.get_running_loop() is loop_thread
            seen.extend(env.seq for env in stored)

        service.append_hooks.append(hook)
        events = [make_event("notebookCreated", title="t")] + [
            make_event("notebookMetadataSet", key=f"k{i}", value=i) for i in range(20)]
        # the store appended from a worker thread, as a blocking backend's calls are
        await asyncio.to_thread(lambda: [nb_log.append([e], ACTOR) for e in events])
        deadline = asyncio.get_running_loop().time() + 10
        while len(seen) < 21 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        store.close()
        return seen

    assert asyncio.run(main()) == list(range(1, 22))


def test_the_servers_own_warnings_reach_the_daemon_log(debug_daemon: DaemonProcess) -> None:
    """uvicorn's messages (a malformed request here; an exception in a request likewise) are in daemon.log, where
    `runt daemon logs` shows them, not only on a stderr nobody reads."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(debug_daemon.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        sock.recv(1024)  # the server answers 400 and closes
    log_file = Path(debug_daemon.home.path) / "daemon.log"
    wait_for(lambda: "Invalid HTTP request received" in log_file.read_text())
