"""The daemon's state: the store, the rooms of open notebooks, settings, and its lifecycle."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runtimed import __version__
from runtimed.home import DEFAULT_HOST, DEFAULT_PORT, Home
from runtimed.schema.limits import Limits
from runtimed.server.auth import Auth
from runtimed.server.liveness import RuntimeLiveness
from runtimed.server.rooms import Room
from runtimed.store.sqlite import SQLiteEventStore

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


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home
        self.home.ensure()
        self.limits = Limits.from_env()
        self.store = SQLiteEventStore(self.home.path)
        self.auth = Auth(self.home.ensure_token())
        self.rooms: dict[str, Room] = {}
        self.started_at = datetime.now(UTC).isoformat()
        self.started_monotonic = time.monotonic()
        self.url = f"http://{settings.host}:{settings.port}"
        self.runtimes: Any = None  # the runtime manager, attached by the app at start-up
        self.request_shutdown: Callable[[], None] | None = None
        self.liveness = RuntimeLiveness(settings.runtime_grace)

    def room(self, notebook_id: str) -> Room:
        room = self.rooms.get(notebook_id)
        if room is None:
            room = Room(notebook_id, self.store.log(notebook_id))
            self.rooms[notebook_id] = room
            self.liveness.attach(room)
            if self.runtimes is not None:
                self.runtimes.watch(room)
        return room

    def forget_room(self, notebook_id: str, reason: tuple[str, str] | None = None) -> None:
        """Close a notebook's room; with a ``reason`` (code, message), its live connections are ended."""
        room = self.rooms.pop(notebook_id, None)
        if room is not None:
            room.close(reason)

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "url": self.url,
            "home": str(self.home.path),
            "started_at": self.started_at,
            "uptime_s": round(time.monotonic() - self.started_monotonic, 3),
            "notebooks": len(self.store.list_notebooks()),
            "open_notebooks": len(self.rooms),
            "connections": sum(len(r.peers) for r in self.rooms.values()),
            "runtimes": self.runtimes.describe() if self.runtimes is not None else [],
            "pool": self.runtimes.pool_status() if self.runtimes is not None else {},
        }

    def close(self) -> None:
        self.liveness.close()
        for room in self.rooms.values():
            room.close()
        self.rooms.clear()
        self.store.close()
