"""Discovery and the embedded default: one daemon per home, found through daemon.json and the token."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import DaemonProcess

from runtimed.client.discovery import DaemonEndpoint, ensure_daemon, find_daemon
from runtimed.errors import DaemonNotRunningError
from runtimed.home import Home, pid_alive
from runtimed.server.main import EXIT_ALREADY_RUNNING, EXIT_PORT_IN_USE


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    """Wait for a process to exit (reaping it when it is our child); True when it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return True
        except ChildProcessError:  # not our child (or already reaped)
            if not pid_alive(pid):
                return True
        time.sleep(0.05)
    return False


def stop_daemon(endpoint: DaemonEndpoint) -> None:
    """Stop a daemon we started: POST /api/shutdown, then SIGTERM, then SIGKILL, by its pid."""
    pid = endpoint.pid
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{endpoint.url}/api/shutdown", headers=endpoint.headers(), timeout=5)
    if pid is None or wait_gone(pid, 15):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_gone(pid, 10):
            return


@pytest.fixture
def started(home: Path) -> Iterator[list[DaemonEndpoint]]:
    """Daemons started by a test through ensure_daemon(); every one is stopped afterwards."""
    endpoints: list[DaemonEndpoint] = []
    yield endpoints
    for endpoint in endpoints:
        stop_daemon(endpoint)
    info = Home(home).read_daemon_info()
    if info and pid_alive(info["pid"]) and not wait_gone(info["pid"], 0.1):  # one we did not know of
        stop_daemon(DaemonEndpoint(info["url"], Home(home).read_token() or "", info["pid"]))


def run_daemon(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``runtimed`` in the foreground for a home, expecting it to exit by itself."""
    return subprocess.run([sys.executable, "-m", "runtimed.server.main", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_embedded_default_starts_a_daemon_and_finds_it_again(home: Path, started: list[DaemonEndpoint]) -> None:
    assert not any(home.iterdir())
    assert find_daemon() is None
    first = ensure_daemon()
    started.append(first)
    assert first.pid is not None and pid_alive(first.pid) and first.pid != os.getpid()

    info = json.loads((home / "daemon.json").read_text())
    assert info["url"] == first.url and info["pid"] == first.pid
    assert info["version"] and info["started_at"]
    token_file = home / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().strip() == first.token and len(first.token) >= 32

    assert httpx.get(f"{first.url}/health").status_code == 200
    status = httpx.get(f"{first.url}/api/status", headers=first.headers()).json()
    assert status["home"] == str(home) and status["pid"] == first.pid
    assert httpx.get(f"{first.url}/api/status").status_code == 401

    second = ensure_daemon()  # finds the same one instead of starting another
    assert (second.url, second.pid, second.token) == (first.url, first.pid, first.token)
    assert find_daemon() == second


def test_concurrent_clients_share_one_daemon(home: Path, started: list[DaemonEndpoint]) -> None:
    code = ("import json; from runtimed.client.discovery import ensure_daemon; e = ensure_daemon(); "
            "print(json.dumps([e.url, e.pid]))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        outs.append(tuple(json.loads(out)))
    info = Home(home).read_daemon_info()
    assert info is not None
    started.append(DaemonEndpoint(info["url"], Home(home).read_token() or "", info["pid"]))
    assert len(set(outs)) == 1 and outs[0] == (info["url"], info["pid"])


def test_no_daemon_and_no_start_is_a_clear_error(home: Path) -> None:
    with pytest.raises(DaemonNotRunningError, match="no daemon is running"):
        ensure_daemon(start=False)
    assert not (home / "daemon.json").exists()


def test_runtimed_url_overrides_discovery(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIMED_URL", "http://127.0.0.1:9/")
    with pytest.raises(DaemonNotRunningError, match="RUNTIMED_TOKEN"):
        find_daemon()
    monkeypatch.setenv("RUNTIMED_TOKEN", "tok")
    assert find_daemon() == DaemonEndpoint("http://127.0.0.1:9", "tok")


def test_a_second_daemon_for_the_same_home_refuses(bare_daemon: DaemonProcess) -> None:
    before = bare_daemon.home.read_daemon_info()
    result = run_daemon(bare_daemon.home.path, "--port", "0", "--no-runtimes")
    assert result.returncode == EXIT_ALREADY_RUNNING == 5
    assert "already running" in result.stderr and str(bare_daemon.proc.pid) in result.stderr
    assert "runt daemon stop" in result.stderr
    assert bare_daemon.home.read_daemon_info() == before  # the running one is untouched
    assert httpx.get(f"{bare_daemon.url}/health").status_code == 200


def test_a_taken_port_exits_4_with_a_clear_message(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_daemon(home, "--port", str(port), "--no-runtimes")
    assert result.returncode == EXIT_PORT_IN_USE == 8
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port auto" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "daemon.json").exists()
    # the failed daemon let go of the home: another can start there
    proc = DaemonProcess(home, "--no-runtimes")
    proc.start()
    proc.stop()


def test_bad_port_argument_is_a_usage_error(home: Path) -> None:
    result = run_daemon(home, "--port", "eighty")
    assert result.returncode == 2 and "--port" in result.stderr


def test_sigterm_stops_cleanly_and_removes_daemon_json(home: Path) -> None:
    proc = DaemonProcess(home, "--no-runtimes")
    endpoint = proc.start()
    assert (home / "daemon.json").exists()
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(20) == 0
    assert not (home / "daemon.json").exists()
    assert find_daemon() is None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{endpoint.url}/health", timeout=2)
    assert (home / "token").read_text().strip() == endpoint.token  # the token stays for the next daemon


def test_shutdown_route_stops_the_daemon(home: Path) -> None:
    proc = DaemonProcess(home, "--no-runtimes")
    endpoint = proc.start()
    r = httpx.post(f"{endpoint.url}/api/shutdown", headers=endpoint.headers(), timeout=5)
    assert r.status_code == 200
    assert proc.proc is not None and proc.proc.wait(20) == 0
    assert not (home / "daemon.json").exists()


def test_stale_daemon_json_after_kill_9_is_ignored(home: Path, started: list[DaemonEndpoint]) -> None:
    proc = DaemonProcess(home, "--no-runtimes")
    old = proc.start()
    proc.kill9()
    assert (home / "daemon.json").exists()  # nobody cleaned up
    assert find_daemon() is None
    new = ensure_daemon()
    started.append(new)
    assert new.pid != old.pid and new.token == old.token
    assert Home(home).read_daemon_info()["pid"] == new.pid
    assert httpx.get(f"{new.url}/api/status", headers=new.headers()).status_code == 200


def test_a_port_taken_by_another_program_is_not_a_daemon() -> None:
    """daemon.json may point at a port that a program speaking another protocol has taken since (a ZMQ socket
    answers with its 0xFF greeting): the health check says no daemon, and a request says what is wrong."""
    from runtimed.client.discovery import _healthy
    from runtimed.client.light_http import request

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"

        def answer_not_http() -> None:
            for _ in range(2):
                peer, _ = server.accept()
                with peer:
                    peer.sendall(b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00NULL" + b"\x00" * 16 + b"\r\n")

        thread = threading.Thread(target=answer_not_http, daemon=True)
        thread.start()
        assert not _healthy(url, timeout=10)
        with pytest.raises(DaemonNotRunningError, match="did not answer as a runtimed daemon"):
            request(url, "GET", "/health", timeout=10)
        thread.join(10)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8730", "http://localhost:8730/", "http://host:1/pre/fix",
                                 "http://[::1]:8730", "https://x.example:443/a", "http://user:pw@h:1", "http://h",
                                 "http://h:1?x=1", "http://h:1/a%20b"])
def test_light_http_splits_a_daemon_url_as_urllib_does(url: str) -> None:
    """The plain ``runt run`` splits the usual ``http://HOST:PORT`` by hand (urllib.parse costs its start 5 ms):
    every URL comes out as urllib.parse splits it."""
    from urllib.parse import urlsplit

    from runtimed.client.light_http import _split

    parts = urlsplit(url)
    assert _split(url) == (parts.scheme, parts.hostname, parts.port, parts.path)
