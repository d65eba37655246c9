"""runtimed: event-sourced notebooks with runtime agents on real Jupyter kernels.

Python API::

    import runtimed

    with runtimed.Session() as session:          # starts the embedded daemon if none runs
        result = session.run("print('hello')")
        print(result.stdout)

``Session`` (blocking) and ``AsyncSession`` (asyncio) work on one notebook;
``DaemonClient`` talks to the daemon itself; ``run_notebook`` runs a notebook
papermill-style. Every failure is a :class:`RuntimedError` subclass.

The public names load lazily, so ``import runtimed`` (and the ``runt`` CLI) stay quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed.errors import (
    AuthError,
    CellNotFoundError,
    ConnectionLostError,
    DaemonNotRunningError,
    DaemonStartError,
    EventRejected,
    ExecutionTimeoutError,
    InvalidNotebookError,
    KernelError,
    NotFoundError,
    RuntimedError,
)

__version__ = "0.1.0"

_LAZY = {
    "Session": "runtimed.client.session",
    "AsyncSession": "runtimed.client.session",
    "DaemonClient": "runtimed.client.daemon_client",
    "Cell": "runtimed.client.models",
    "Output": "runtimed.client.models",
    "ExecutionResult": "runtimed.client.models",
    "run_notebook": "runtimed.automation.run",
}

if TYPE_CHECKING:
    from runtimed.automation.run import run_notebook
    from runtimed.client.daemon_client import DaemonClient
    from runtimed.client.models import Cell, ExecutionResult, Output
    from runtimed.client.session import AsyncSession, Session


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runtimed' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AsyncSession", "AuthError", "Cell", "CellNotFoundError", "ConnectionLostError", "DaemonClient",
    "DaemonNotRunningError", "DaemonStartError", "EventRejected", "ExecutionResult", "ExecutionTimeoutError",
    "InvalidNotebookError", "KernelError", "NotFoundError", "Output", "RuntimedError", "Session", "run_notebook",
]
