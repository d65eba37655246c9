"""``runtimed.DaemonClient``: the daemon itself (status, rooms, pool, shutdown) from Python."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import httpx

from runtimed.client.discovery import DaemonEndpoint, find_daemon
from runtimed.client.http import DaemonHTTP
from runtimed.errors import ConnectionLostError, DaemonNotRunningError
from runtimed.home import Home, pid_alive


def _process_gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _status = os.waitpid(pid, os.WNOHANG)  # our child (the embedded daemon we started): reap it
        if done == pid:
            return True
    if not pid_alive(pid):
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie someone else will reap
    except (OSError, IndexError):
        return False


class DaemonClient:
    """Talks to the daemon of a home (default ``$RUNTIMED_HOME``); never starts one.

    ``Session`` starts the embedded daemon on demand; ``runt daemon start`` starts one
    by hand.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> None:
        """Args:
            home: The daemon home (default ``$RUNTIMED_HOME``, else ``~/.local/share/runtimed``).
            timeout: Seconds to wait for each answer of the daemon.
        """
        self.home = Home.resolve(home)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<DaemonClient home={str(self.home.path)!r} running={self.is_running()}>"

    def _endpoint(self) -> DaemonEndpoint:
        endpoint = find_daemon(self.home)
        if endpoint is None:
            raise DaemonNotRunningError(
                f"no daemon is running for {self.home.path}; start one with `runt daemon start` "
                "(runtimed.Session() also starts the embedded one)"
            )
        return endpoint

    def _request(self, method: str, path: str) -> Any:
        http = DaemonHTTP(self._endpoint(), timeout=self.timeout)
        try:
            return http.get(path) if method == "GET" else http.post(path)
        except httpx.HTTPError as exc:
            raise ConnectionLostError(f"{method} {path} failed: {exc}") from None
        finally:
            http.close()

    def ping(self) -> bool:
        """True when the daemon answers its health check (never raises)."""
        try:
            endpoint = find_daemon(self.home)
            if endpoint is None:
                return False
            http = DaemonHTTP(endpoint, timeout=min(self.timeout, 5.0))
            try:
                return bool(http.get("/health").get("status") == "ok")
            finally:
                http.close()
        except Exception:
            return False

    def is_running(self) -> bool:
        """True when a daemon for this home is up (its ``daemon.json`` names a live, healthy process)."""
        try:
            return find_daemon(self.home) is not None
        except DaemonNotRunningError:
            return False

    def status(self) -> dict[str, Any]:
        """The running daemon: ``version``, ``pid``, ``url``, ``notebooks`` (count), ``runtimes``, ``pool``, ...

        Raises:
            DaemonNotRunningError: no daemon runs for this home (the message says how to start one).
        """
        return dict(self._request("GET", "/api/status"))

    def list_rooms(self) -> list[dict[str, Any]]:
        """The notebooks the daemon holds, with their peers and kernel.

        Each room has ``notebook_id``, ``title``, ``peers`` (list), ``active_peers`` (count),
        ``kernel`` / ``kernel_type`` (kernelspec name or None), ``has_kernel``, ``status`` /
        ``kernel_status`` (runtime status, ``"no runtime"`` without one), ``cells`` (count) and
        ``head_seq``.
        """
        rooms = []
        for item in self._request("GET", "/api/notebooks"):
            runtime = item.get("runtime") or {}
            peers = item.get("peers", [])
            kernel = runtime.get("kernel_name")
            status = runtime.get("status") or "no runtime"
            rooms.append({
                "notebook_id": item["id"], "title": item.get("title", ""), "peers": peers,
                "active_peers": len(peers), "kernel": kernel, "kernel_type": kernel, "has_kernel": kernel is not None,
                "status": status, "kernel_status": status,
                "cells": item.get("cells"), "head_seq": item.get("head_seq", 0),
            })
        return rooms

    def flush_pool(self) -> dict[str, Any]:
        """Replace every prewarmed kernel (after installing packages, say); returns the pool status."""
        return dict(self._request("POST", "/api/pool/flush"))

    def shutdown(self, timeout: float = 20.0) -> bool:
        """Ask the daemon to stop (its kernels too) and wait until its process is gone.

        Returns True once it is gone, False if it still runs after ``timeout`` seconds.

        Raises:
            DaemonNotRunningError: no daemon runs for this home.
        """
        endpoint = self._endpoint()
        pid = endpoint.pid
        if pid is None:
            with contextlib.suppress(Exception):
                pid = self._request("GET", "/api/status").get("pid")
        self._request("POST", "/api/shutdown")
        if not isinstance(pid, int):
            deadline = time.monotonic() + timeout
            while self.ping() and time.monotonic() < deadline:
                time.sleep(0.05)
            return not self.ping()
        deadline = time.monotonic() + timeout
        while not _process_gone(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


__all__ = ["DaemonClient"]
