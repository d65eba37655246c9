"""Find the daemon for a home, or start the embedded default in the background and wait for it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from runtimed.errors import DaemonNotRunningError, DaemonStartError, ExitCode
from runtimed.home import Home, pid_alive


@dataclass(frozen=True)
class DaemonEndpoint:
    url: str
    token: str
    pid: int | None = None

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:] if self.url.startswith("http") else self.url

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout, verify=not url.startswith("http://")).status_code == 200
    except httpx.HTTPError:
        return False


def find_daemon(home: Home | None = None) -> DaemonEndpoint | None:
    """The running daemon: ``RUNTIMED_URL``/``RUNTIMED_TOKEN`` if set, else the home's ``daemon.json``."""
    home = home or Home.resolve()
    env_url = os.environ.get("RUNTIMED_URL")
    if env_url:
        token = os.environ.get("RUNTIMED_TOKEN") or home.read_token()
        if not token:
            raise DaemonNotRunningError(f"RUNTIMED_URL is {env_url} but no token: set RUNTIMED_TOKEN")
        return DaemonEndpoint(env_url.rstrip("/"), token)
    info = home.read_daemon_info()
    # RUNTIMED_TOKEN wins over the home's token: a wrong one must fail loudly, not be replaced silently
    token = os.environ.get("RUNTIMED_TOKEN") or home.read_token()
    if info is None or token is None:
        return None
    pid = info.get("pid")
    if isinstance(pid, int) and not pid_alive(pid):
        return None
    if not _healthy(info["url"]):
        return None
    return DaemonEndpoint(info["url"], token, pid)


def _tail(path: Path, offset: int, lines: int = 3) -> str:
    """The last lines a failed daemon wrote to stderr after ``offset`` (the cause, shown to the user)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read()[-4000:].decode(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def start_daemon(home: Home, *, timeout: float = 30.0, extra_args: list[str] | None = None) -> DaemonEndpoint:
    """Start a daemon for ``home`` in the background (port: the default, else any free one) and wait for it."""
    home.ensure()
    log_path = home.log_file
    stderr_path = home.path / "daemon.stderr"
    with open(stderr_path, "ab") as err:
        start_offset = err.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtimed.server.main", "--home", str(home.path), "--port", "auto", *(extra_args or [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find_daemon(home)
        if found is not None:
            return found
        code = proc.poll()
        if code is not None and code != ExitCode.REFUSED:  # another client's daemon won the lock: wait for it
            cause = _tail(stderr_path, start_offset)
            raise DaemonStartError(
                f"the daemon for {home.path} exited with code {code} while starting"
                + (f": {cause}" if cause else "") + f" (full output: {stderr_path} and {log_path})"
            )
        time.sleep(0.05)
    raise DaemonStartError(f"the daemon for {home.path} did not become ready within {timeout:.0f} s; see {log_path}")


def ensure_daemon(home: Home | None = None, *, start: bool = True, timeout: float = 30.0) -> DaemonEndpoint:
    """The daemon for this home, starting the embedded default when there is none (and ``start``)."""
    home = home or Home.resolve()
    found = find_daemon(home)
    if found is not None:
        return found
    if not start:
        raise DaemonNotRunningError(f"no daemon is running for {home.path}; start one with `runt daemon start`")
    return start_daemon(home, timeout=timeout)
