"""``runt run`` and notebook environments: the person running a file approves the dependencies it declares.

A parameterized run is the local user running their own file, like ``uv run script.py``: the
dependencies it declares (metadata, PEP 723) are approved as that person, so the run creates or reuses the environment (docs/environments.md).
``--no-deps`` declares an empty list in the run's copy instead: the daemon's own environment.
"""

from __future__ import annotations

from typing import Any

from runtimed.client.actors import terminal_person
from runtimed.client.http import DaemonHTTP
from runtimed.schema.dependencies import resolve


def no_deps(nb: Any) -> None:
    """Make the run's copy declare no dependencies (the daemon's own environment)."""
    nb.metadata["runtimed"] = {**nb.metadata.get("runtimed", {}), "dependencies": []}


def declares_dependencies(nb: Any) -> bool:
    """Whether a run's notebook declares an environment of its own (metadata or the first cell's magics)."""
    first = next((c.source for c in nb.cells if c.cell_type == "code"), None)
    return resolve(dict(nb.metadata), first) is not None  # a run records no notebook_dir: its cwd is papermill's


def approve_declared(http: DaemonHTTP, notebook_id: str, nb: Any) -> None:
    """Approve the imported notebook's dependencies as the person at this terminal (nothing when it has none)."""
    if not declares_dependencies(nb):
        return
    http.request("POST", f"/api/notebooks/{notebook_id}/environment/approve", json={"actor": terminal_person()})
