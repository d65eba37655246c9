"""Notebooks nobody uses are closed: a daemon must not run out of file handles.

An open notebook holds its service and its log's database connection (three files with WAL), and every
``runt run`` and every scheduled run creates a notebook. With nothing closed, a daemon under the usual limit of
open files (1024 on Linux desktops, 256 on macOS) failed once it had opened a few hundred notebooks (under a
limit of 256, the 81st new notebook got a 500). A notebook not in use (nobody connected, no runtime running or
starting, no store call under way) is closed once idle for ``RUNTIMED_NOTEBOOK_IDLE`` seconds (default 300),
and sooner, least recently used first, while more than ``RUNTIMED_MAX_OPEN_NOTEBOOKS`` (default 64) are open.
The next request opens it again (a few milliseconds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from runtimed.settings import env_number
from runtimed.tasks import cancel_and_wait

if TYPE_CHECKING:
    from runtimed.server.daemon import Daemon

log = logging.getLogger(__name__)

DEFAULT_IDLE = 300.0
DEFAULT_MAX_OPEN = 64
RECENT = 0.5
"""Seconds during which a notebook just handed out is never closed to make room (its user is about to use it)."""


def notebook_idle_setting() -> float:
    """``RUNTIMED_NOTEBOOK_IDLE``: seconds an unused notebook stays open (default 300)."""
    return env_number("RUNTIMED_NOTEBOOK_IDLE", DEFAULT_IDLE, float)


def max_open_setting() -> int:
    """``RUNTIMED_MAX_OPEN_NOTEBOOKS``: how many notebooks may stay open while not in use (default 64)."""
    return env_number("RUNTIMED_MAX_OPEN_NOTEBOOKS", DEFAULT_MAX_OPEN, int)


def close_idle_notebooks(daemon: Daemon, idle: float, max_open: int) -> list[str]:
    """Close the notebooks not in use that were idle for ``idle`` seconds, then the least recently used of the
    others while more than ``max_open`` are open; their ids."""
    now = time.monotonic()
    closable = sorted(((service.last_used, notebook_id) for notebook_id, service in daemon.services.items()
                       if not service.in_use and not (daemon.runtimes is not None
                                                      and daemon.runtimes.holds(notebook_id))))
    excess = len(daemon.services) - max_open
    closed = []
    for last_used, notebook_id in closable:
        if now - last_used < idle and (excess <= 0 or now - last_used < RECENT):
            continue
        daemon.forget_service(notebook_id, ("notebook_closed", f"notebook {notebook_id!r} was closed while idle; "
                                                               "retry: the next request opens it again"))
        daemon.store.close_log(notebook_id)
        excess -= 1
        closed.append(notebook_id)
    return closed


class IdleNotebooks:
    """Closes idle notebooks every quarter of the idle time (at most every minute)."""

    def __init__(self, daemon: Daemon, idle: float, max_open: int) -> None:
        self.daemon = daemon
        self.idle = idle
        self.max_open = max_open
        self.interval = min(60.0, max(0.1, idle / 4))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.daemon.notebook_closer = self
        self._task = asyncio.create_task(self._run(), name="idle-notebooks")

    def opened(self) -> None:
        """A notebook was opened: make room at once when too many are (a burst of runs between two rounds)."""
        if len(self.daemon.services) > self.max_open:
            close_idle_notebooks(self.daemon, self.idle, self.max_open)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                closed = close_idle_notebooks(self.daemon, self.idle, self.max_open)
                if closed:
                    log.debug("closed %d idle notebook(s): %s", len(closed), ", ".join(closed))
            except Exception:  # try again next time
                log.exception("closing idle notebooks failed")

    async def stop(self) -> None:
        self.daemon.notebook_closer = None
        await cancel_and_wait(self._task)
