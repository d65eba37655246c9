"""A notebook's import into the daemon: ``POST /api/notebooks/import`` and a run job's import share it.

A run job runs inside the daemon: it is given :func:`import_notebook` (by ``cli/daemon_main.py``, as it
is given the in-process sync transport) instead of sending its notebook to itself over loopback HTTP,
which cost the job a serialization, a request and a second parse and validation of a notebook it had
just read and validated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed.errors import RuntimedError
from runtimed.schema import views
from runtimed.store.sqlite import check_notebook_id

if TYPE_CHECKING:
    from runtimed.server.daemon import Daemon


async def push_all(daemon: Daemon, notebook_id: str, events: list[dict[str, Any]], actor: dict[str, Any]
                   ) -> list[Any]:
    """Append ``events`` as one batch; the first rejection is raised."""
    results = await daemon.service(notebook_id).append(events, actor)
    failed = [r for r in results if "error" in r]
    if failed:
        raise RuntimedError(failed[0]["error"]["message"], code=failed[0]["error"]["code"])
    return results


async def import_notebook(daemon: Daemon, nb: Any, *, notebook_id: str | None, actor: dict[str, Any],
                          title: str | None = None) -> dict[str, Any]:
    """Create notebook ``notebook_id`` (a new id when None) from ``nb`` (an nbformat 4 notebook, already read
    and validated); its summary. Nothing is left of a notebook whose import fails."""
    from runtimed.formats import notebook_to_events
    from runtimed.schema.ids import new_id
    from runtimed.server.local_artifacts import offload_events

    notebook_id = check_notebook_id(notebook_id) if notebook_id else new_id("nb-")
    if daemon.store.exists(notebook_id):
        raise RuntimedError(f"notebook {notebook_id!r} already exists; pick another id", code="notebook_exists")
    events = offload_events(notebook_to_events(nb, title=title), daemon.artifacts)
    limit = daemon.limits.max_batch_events
    try:
        for i in range(0, len(events), limit):
            await push_all(daemon, notebook_id, events[i : i + limit], actor)
    except RuntimedError:
        if daemon.store.exists(notebook_id):  # a partial import is removed: nothing half-stored
            daemon.forget_service(notebook_id)
            daemon.store.delete(notebook_id)
        raise
    info = await daemon.service(notebook_id).view(views.notebook_summary)
    return dict(info) if info is not None else {}
