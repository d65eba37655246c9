"""The daemon's state: the store, the services of open notebooks, settings, and its lifecycle."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from runtimed import __version__
from runtimed.home import DEFAULT_HOST, DEFAULT_PORT, Home
from runtimed.schema.limits import Limits
from runtimed.server.artifact_check import ArtifactCheck
from runtimed.server.auth import Auth
from runtimed.server.liveness import RuntimeLiveness
from runtimed.server.people import People
from runtimed.server.runtimes import RuntimeSupervisor
from runtimed.server.service import NotebookService
from runtimed.store.artifacts import ArtifactStore, open_artifact_store
from runtimed.store.base import EventStore
from runtimed.store.urls import DEFAULT_STORE_URL, open_store

if TYPE_CHECKING:
    from runtimed.server.idle_notebooks import IdleNotebooks
    from runtimed.server.runs_api import RunService

log = logging.getLogger(__name__)


@dataclass
class Settings:
    home: Home
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    slow_consumer_timeout: float = 30.0
    runtime_grace: float = 5.0
    """Seconds a runtime's connection may be gone before its session is ended as lost."""
    pool_size: int = 1
    preimport: list[str] = field(default_factory=list)
    idle_timeout: float = 1800.0
    """Seconds a daemon-managed runtime may sit idle (no work, no clients) before it stops."""
    managed_runtimes: bool = True
    store_url: str = DEFAULT_STORE_URL
    """Where notebooks live: ``sqlite:`` (the home's files) or ``postgresql://...`` (shared by several daemons)."""


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home
        self.home.ensure()
        self.limits = Limits.from_env()
        self.store: EventStore = open_store(settings.store_url, self.home.path, limits=self.limits)
        token = self.home.daemon_token()
        self.people = People(self.home.path / "people.json", token)
        self.auth = Auth(token, people=self.people)
        self.services: dict[str, NotebookService] = {}
        self.notebook_closer: IdleNotebooks | None = None
        """Closes notebooks nobody uses (``server/idle_notebooks.IdleNotebooks``, while the app runs)."""
        self.started_at = datetime.now(UTC).isoformat()
        self.started_monotonic = time.monotonic()
        self.url = f"http://{settings.host}:{settings.port}"
        self.runtimes: RuntimeSupervisor | None = None  # attached before the app starts (None: --no-runtimes)
        self.request_shutdown: Callable[[], None] | None = None
        self.runs: RunService | None = None
        """The run jobs (``server.runs_api.RunService``), injected at start by the entry point; None: no jobs."""
        self.holder = f"{socket.gethostname()}:{self.home.path}"
        """This daemon as the holder of leases in the store: its machine and home (a restarted daemon takes its
        claims back)."""
        self.liveness = RuntimeLiveness(settings.runtime_grace, self.store, self.holder)
        self.artifacts: ArtifactStore = open_artifact_store(self.home.artifacts_dir)
        self.artifact_check = ArtifactCheck(self.artifacts)

    def service(self, notebook_id: str) -> NotebookService:
        """The notebook's service (created on first use, on the event loop): the only way to append to it."""
        service = self.services.get(notebook_id)
        if service is None:
            service = NotebookService(notebook_id, self.store.log(notebook_id))
            self.services[notebook_id] = service
            self.liveness.attach(service)
            self.artifact_check.attach(service)
            if self.runtimes is not None:
                self.runtimes.watch(service)
            if self.notebook_closer is not None:
                self.notebook_closer.opened()
        service.last_used = time.monotonic()  # handed out: not closed as idle under its user (idle_notebooks.py)
        return service

    def forget_service(self, notebook_id: str, reason: tuple[str, str] | None = None) -> None:
        """Close a notebook's service; with a ``reason`` (code, message), its live connections are ended."""
        service = self.services.pop(notebook_id, None)
        self.artifact_check.forget(notebook_id)
        if service is not None:
            service.close(reason)

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "url": self.url,
            "home": str(self.home.path),
            "started_at": self.started_at,
            "uptime_s": round(time.monotonic() - self.started_monotonic, 3),
            "notebooks": len(self.store.list_notebooks()),
            "open_notebooks": len(self.services),
            "connections": sum(len(s.peers) for s in self.services.values()),
            "runtimes": self.runtimes.describe() if self.runtimes is not None else [],
            "pool": self.runtimes.pool_status() if self.runtimes is not None else {},
        }

    def close(self) -> None:
        self.liveness.close()
        for service in self.services.values():
            service.close()
        self.services.clear()
        self.store.close()
