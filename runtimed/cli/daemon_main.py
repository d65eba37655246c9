"""The ``runtimed`` daemon as users start it: the server plus the run jobs and schedules.

The server package may not import automation (the layers go one way), so this entry point, which
sits above both, injects ``RunJobs`` into the daemon before it serves. ``python -m
runtimed.server.main`` remains the bare daemon (no ``/api/runs``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtimed.server.daemon import Daemon


def install_runs(daemon: Daemon) -> None:
    from runtimed.automation.deps import declares_dependencies
    from runtimed.automation.jobs import RunJobs
    from runtimed.client.discovery import DaemonEndpoint
    from runtimed.server.imports import import_notebook
    from runtimed.server.local import local_connection

    async def import_for_job(notebook_id: str, nb: Any, actor: dict[str, Any]) -> Any:
        imported = await import_notebook(daemon, nb, notebook_id=notebook_id, actor=actor)
        if daemon.runtimes is not None and not declares_dependencies(nb):
            # its runtime starts while the job connects and queues the cells, not after (an environment of
            # its own waits for the job to approve it)
            daemon.runtimes.prestart(notebook_id)
        return imported

    # a job's sync client reaches its notebook in process (as managed runtimes do): no WebSocket to itself;
    # and its notebook is imported in process, not sent to itself over HTTP
    daemon.runs = RunJobs(daemon.home.path, lambda: DaemonEndpoint(daemon.url, daemon.home.daemon_token()),
                          transport=lambda notebook_id: local_connection(daemon, notebook_id),
                          importer=import_for_job,
                          runtime_stopper=daemon.runtimes.stop_notebook if daemon.runtimes is not None else None)


def main(argv: list[str] | None = None) -> int:
    from runtimed.server.main import main as server_main

    return server_main(argv, extensions=[install_runs])


if __name__ == "__main__":
    sys.exit(main())
