"""Hardening (issue 18): bounded queries, bounded per-connection replies, JSON depth, and a Python client
that neither loses nor duplicates a change across a daemon crash."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from conftest import DaemonProcess, running_daemon

import runtimed
from runtimed.errors import ExitCode, RuntimedError
from runtimed.schema.events import make_event

ACTOR = {"id": "hardening", "kind": "human", "name": "hardening test"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def bounded_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("home")
    env = {"RUNTIMED_QUERY_TIMEOUT": "1", "RUNTIMED_QUERY_MAX_ROWS": "1000",
           "RUNTIMED_LIMIT_MAX_OUTBOX_BYTES": str(256 * 1024)}
    with running_daemon(home, "--no-runtimes", env=env) as proc:
        yield proc


@pytest.fixture
def api(bounded_daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bounded_daemon.url, headers={"Authorization": f"Bearer {bounded_daemon.token}"},
                      timeout=30) as client:
        yield client


def create(api: httpx.Client, notebook_id: str) -> None:
    r = api.post("/api/notebooks", json={"id": notebook_id, "title": notebook_id})
    assert r.status_code == 201, r.text


def runt(*args: str, daemon: DaemonProcess) -> subprocess.CompletedProcess:
    env = {**os.environ, "RUNTIMED_HOME": str(daemon.home.path)}
    env.pop("RUNTIMED_URL", None)
    env.pop("RUNTIMED_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "runtimed.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120)


# -- runt query ----------------------------------------------------------------------------------

def test_a_runaway_query_is_stopped_and_the_daemon_stays_responsive(api: httpx.Client,
                                                                     bounded_daemon: DaemonProcess) -> None:
    create(api, "q-runaway")
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    result = runt("query", "q-runaway", forever, daemon=bounded_daemon)
    assert result.returncode == ExitCode.TIMEOUT, result.stderr
    assert "longer than 1 s" in result.stderr and "Traceback" not in result.stderr
    # many at once: the daemon answers /health and other requests meanwhile, and recovers
    outcomes: list[int] = []

    def one() -> None:
        outcomes.append(api.post("/api/notebooks/q-runaway/query", json={"sql": forever}).status_code)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    health = httpx.get(f"{bounded_daemon.url}/health", timeout=10)
    assert health.status_code == 200
    for t in threads:
        t.join(60)
    assert outcomes == [408] * 12
    cpu_after = Path(f"/proc/{bounded_daemon.proc.pid}/stat").read_text()  # the daemon is still there
    assert cpu_after


def test_a_huge_result_is_cut_and_says_so(api: httpx.Client, bounded_daemon: DaemonProcess) -> None:
    create(api, "q-huge")
    many = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5000000) SELECT x FROM c"
    body = api.post("/api/notebooks/q-huge/query", json={"sql": many}).json()
    assert len(body["rows"]) == 1000 and body["truncated"] is True
    result = runt("query", "q-huge", many, daemon=bounded_daemon)
    assert result.returncode == 0 and "1000 rows; more rows matched" in result.stderr


def test_a_query_cannot_create_files(api: httpx.Client, bounded_daemon: DaemonProcess, tmp_path: Path) -> None:
    create(api, "q-files")
    for sql in (f"ATTACH DATABASE '{tmp_path / 'a.db'}' AS a", f"VACUUM INTO '{tmp_path / 'b.db'}'",
                "PRAGMA journal_mode = DELETE", "CREATE TEMP TABLE t (x)"):
        r = api.post("/api/notebooks/q-files/query", json={"sql": sql})
        assert r.status_code == 403 and r.json()["error"]["code"] == "read_only", (sql, r.text)
    assert list(tmp_path.iterdir()) == []
    result = runt("query", "q-files", f"VACUUM INTO '{tmp_path / 'c.db'}'", daemon=bounded_daemon)
    assert result.returncode == ExitCode.REFUSED and not (tmp_path / "c.db").exists()


# -- the sync protocol's per-connection replies ---------------------------------------------------

async def _push_without_reading(daemon: DaemonProcess, notebook_id: str, pushes: int) -> tuple[int, int | None]:
    """Push without ever reading; return how many pushes went out before the server cut us, and the close code."""
    url = daemon.url.replace("http", "ws") + f"/api/notebooks/{notebook_id}/sync"
    headers = {"Authorization": f"Bearer {daemon.token}"}
    sent = 0
    async with websockets.connect(url, additional_headers=headers, max_queue=1, max_size=2**24) as ws:
        ws.transport.pause_reading()  # never read: the server's replies pile up for us
        await ws.send(json.dumps({"type": "hello", "since": 0, "actor": ACTOR}))
        try:
            for i in range(pushes):
                events = [make_event("notebookMetadataSet", key=f"k{i}-{j}", value="x" * 200) for j in range(20)]
                await asyncio.wait_for(ws.send(json.dumps({"type": "push", "ref": i, "events": events})), 10)
                sent += 1
        except (websockets.ConnectionClosed, ConnectionError, TimeoutError):
            pass  # the server stopped reading us (it closed the connection)
        ws.transport.resume_reading()
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            async with asyncio.timeout(20):
                async for _ in ws:
                    pass
        return sent, ws.close_code


def test_a_client_that_pushes_but_never_reads_is_cut(api: httpx.Client, bounded_daemon: DaemonProcess) -> None:
    create(api, "outbox")
    before = rss_kib(bounded_daemon.proc.pid)
    sent, code = asyncio.run(_push_without_reading(bounded_daemon, "outbox", 5000))
    # the server cut the connection long before the client was done (it cannot always deliver its 4408
    # close frame to a peer that does not read: then the close is abnormal)
    assert sent < 5000 and code in (4408, 1006), (sent, code)
    log_text = (bounded_daemon.home.path / "daemon.log").read_text()
    assert "outbox_overflow" in log_text
    assert rss_kib(bounded_daemon.proc.pid) - before < 200 * 1024  # KiB: nowhere near unbounded growth
    assert httpx.get(f"{bounded_daemon.url}/health").status_code == 200


def test_a_presence_flood_to_a_non_reading_peer_stays_bounded(api: httpx.Client,
                                                               bounded_daemon: DaemonProcess) -> None:
    create(api, "presence")
    url = bounded_daemon.url.replace("http", "ws") + "/api/notebooks/presence/sync"
    headers = {"Authorization": f"Bearer {bounded_daemon.token}"}
    before = rss_kib(bounded_daemon.proc.pid)

    async def main() -> int:
        async with websockets.connect(url, additional_headers=headers) as reader, \
                websockets.connect(url, additional_headers=headers) as flooder:
            reader.transport.pause_reading()  # a peer that never reads
            await reader.send(json.dumps({"type": "hello", "since": 0, "actor": {**ACTOR, "id": "reader"}}))
            await flooder.send(json.dumps({"type": "hello", "since": 0, "actor": {**ACTOR, "id": "flooder"}}))
            for i in range(20000):
                await flooder.send(json.dumps({"type": "presence", "cellId": f"c{i}", "cursor": {"x": "y" * 500}}))
            await flooder.send(json.dumps({"type": "ping"}))
            async for raw in flooder:  # the flooder's own connection stays healthy
                if json.loads(raw)["type"] == "pong":
                    break
            return rss_kib(bounded_daemon.proc.pid)

    during = asyncio.run(main())
    assert during - before < 100 * 1024  # KiB: 20,000 presence messages of 0.5 KB coalesce per sender


# -- JSON depth ------------------------------------------------------------------------------------

def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def test_accepted_json_depth_is_servable_depth(api: httpx.Client) -> None:
    create(api, "deep")
    too_deep = make_event("notebookMetadataSet", key="deep", value=nested(252))
    r = api.post("/api/notebooks/deep/events", json={"events": [too_deep], "actor": ACTOR})
    assert r.status_code == 200
    (result,) = r.json()["results"]
    assert result["error"]["code"] == "invalid_args" and "levels deep" in result["error"]["message"]
    fine = make_event("notebookMetadataSet", key="deep", value=nested(60))
    r = api.post("/api/notebooks/deep/events", json={"events": [fine], "actor": ACTOR})
    assert "seq" in r.json()["results"][0]
    for path in ("/api/notebooks/deep", "/api/notebooks/deep/export", "/api/notebooks/deep/events"):
        assert api.get(path).status_code == 200, path


# -- the Python client across a daemon crash --------------------------------------------------------

def test_session_calls_survive_a_daemon_crash_exactly_once(home: Path) -> None:
    """Cells created while the embedded daemon is killed: each call succeeds once, nothing is doubled."""
    session = runtimed.Session(notebook_id="crash-once")
    session.connect()
    try:
        _create_through_a_crash(session)
    finally:  # the daemon the session started again must not outlive the test
        session.close()
        with contextlib.suppress(RuntimedError):
            runtimed.DaemonClient().shutdown()


def _create_through_a_crash(session: runtimed.Session) -> None:
    first_pid = runtimed.DaemonClient().status()["pid"]
    sources = [f"x = {i}" for i in range(40)]
    errors: list[BaseException] = []

    def create_all() -> None:
        try:
            for source in sources:
                session.create_cell(source)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=create_all)
    worker.start()
    deadline = time.monotonic() + 60
    while len(session.get_cells()) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(first_pid, signal.SIGKILL)
    worker.join(120)
    assert not worker.is_alive() and not errors, errors
    cells = [c.source for c in session.get_cells()]
    assert sorted(cells) == sorted(sources)  # every call stored once: none lost, none doubled
    assert runtimed.DaemonClient().status()["pid"] != first_pid  # a new embedded daemon took over


def test_an_invalid_notebook_id_fails_at_once(home: Path) -> None:
    started = time.monotonic()
    with pytest.raises(RuntimedError) as info:
        runtimed.Session("../../etc")
    assert info.value.code == "invalid_notebook_id" and "letters, digits" in info.value.message
    assert time.monotonic() - started < 5 and not (home / "daemon.json").exists()


def test_a_wrong_runtimed_token_is_not_replaced_silently(daemon: DaemonProcess,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIMED_TOKEN", "not-the-token")
    result = subprocess.run([sys.executable, "-m", "runtimed.cli.main", "notebooks"],
                            env={**os.environ, "RUNTIMED_HOME": str(daemon.home.path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitCode.REFUSED, result.stderr
    assert "token" in result.stderr.lower()
