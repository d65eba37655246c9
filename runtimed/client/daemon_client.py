"""``runtimed.DaemonClient``: the daemon itself (status, rooms, pool, shutdown) from Python."""

from __future__ import annotations

import os
import time
from typing import Any

from runtimed.client.discovery import find_daemon
from runtimed.client.http import DaemonHTTP
from runtimed.errors import DaemonNotRunningError
from runtimed.home import Home, pid_alive


class DaemonClient:
    """Talks to the daemon of a home (default ``$RUNTIMED_HOME``); never starts one."""

    def __init__(self, home: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> None:
        self.home = Home.resolve(home)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<DaemonClient home={str(self.home.path)!r} running={self.is_running()}>"

    def _http(self) -> DaemonHTTP:
        endpoint = find_daemon(self.home)
        if endpoint is None:
            raise DaemonNotRunningError(f"no daemon is running for {self.home.path}; start one with `runt daemon start`")
        return DaemonHTTP(endpoint, timeout=self.timeout)

    def ping(self) -> bool:
        """True when the daemon answers its health check."""
        try:
            http = self._http()
        except DaemonNotRunningError:
            return False
        try:
            return http.get("/health").get("status") == "ok"
        except DaemonNotRunningError:
            return False
        finally:
            http.close()

    def is_running(self) -> bool:
        return find_daemon(self.home) is not None

    def _get(self, path: str) -> Any:
        http = self._http()
        try:
            return http.get(path)
        finally:
            http.close()

    def _post(self, path: str) -> Any:
        http = self._http()
        try:
            return http.post(path)
        finally:
            http.close()

    def status(self) -> dict[str, Any]:
        """Version, notebooks, runtimes and pool of the running daemon."""
        return self._get("/api/status")

    def list_rooms(self) -> list[dict[str, Any]]:
        """Open notebooks: id, peers, kernel and runtime status."""
        rooms = []
        for item in self._get("/api/notebooks"):
            runtime = item.get("runtime") or {}
            rooms.append({
                "notebook_id": item["id"], "title": item["title"], "peers": item.get("peers", []),
                "kernel": runtime.get("kernel_name"), "status": runtime.get("status", "no runtime"),
                "head_seq": item["head_seq"],
            })
        return rooms

    def flush_pool(self) -> dict[str, Any]:
        """Replace every prewarmed kernel (after installing packages, say)."""
        return self._post("/api/pool/flush")

    def shutdown(self, timeout: float = 20.0) -> bool:
        """Ask the daemon to stop and wait until its process is gone."""
        info = self.home.read_daemon_info() or {}
        self._post("/api/shutdown")
        pid = info.get("pid")
        deadline = time.monotonic() + timeout
        while isinstance(pid, int) and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        return not (isinstance(pid, int) and pid_alive(pid))
