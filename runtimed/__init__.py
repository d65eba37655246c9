"""runtimed: event-sourced notebooks with runtime agents on real Jupyter kernels.

Python API::

    import runtimed

    with runtimed.Session() as session:          # starts the embedded daemon if none runs
        result = session.run("print('hello')")
        print(result.stdout)

``Session`` (blocking) and ``AsyncSession`` (asyncio) work on one notebook;
``Client``/``Notebook`` are the same core in the published package's newer shape;
``DaemonClient`` talks to the daemon itself; ``run_notebook`` runs a notebook
papermill-style; ``sidecar()`` (or ``%load_ext runtimed``) mirrors a terminal IPython
session into a live notebook. Every failure is a :class:`RuntimedError` subclass.

The public names load lazily, so ``import runtimed`` (and the ``runt`` CLI) stay quick.
"""

from __future__ import annotations

TYPE_CHECKING = False
"""typing's own flag (type checkers take any ``TYPE_CHECKING`` as true), without importing typing: ``runt run``
imports this package first, and typing with the error registry cost it a tenth of its start."""

_ERRORS = ("AuthError", "CellNotFoundError", "ConnectionLostError", "DaemonNotRunningError", "DaemonStartError",
           "EventRejected", "ExecutionTimeoutError", "InvalidNotebookError", "KernelError", "NotFoundError",
           "RuntimedError")

__version__ = "0.1.0"

_LAZY = {
    **dict.fromkeys(_ERRORS, "runtimed.errors"),
    "Session": "runtimed.client.session",
    "AsyncSession": "runtimed.client.session",
    "DaemonClient": "runtimed.client.daemon_client",
    "Cell": "runtimed.client.models",
    "Output": "runtimed.client.models",
    "ExecutionResult": "runtimed.client.models",
    "run_notebook": "runtimed.automation.run",
    "Client": "runtimed.client.notebook_api",
    "Notebook": "runtimed.client.notebook_api",
    "NotebookInfo": "runtimed.client.notebook_api",
    "CellHandle": "runtimed.client.notebook_api",
    "CellCollection": "runtimed.client.notebook_api",
    "Execution": "runtimed.client.notebook_api",
    "Presence": "runtimed.client.notebook_api",
    "RuntimeState": "runtimed.client.notebook_api",
    "CompletionItem": "runtimed.client.models",
    "CompletionResult": "runtimed.client.models",
    "ExecutionEvent": "runtimed.client.models",
    "HistoryEntry": "runtimed.client.models",
    "QueueState": "runtimed.client.models",
    "NotebookConnectionInfo": "runtimed.client.models",
    "sidecar": "runtimed.client.sidecar",
    "load_ipython_extension": "runtimed.client.sidecar",
    "unload_ipython_extension": "runtimed.client.sidecar",
}

if TYPE_CHECKING:
    from typing import Any

    from runtimed.automation.run import run_notebook
    from runtimed.client.daemon_client import DaemonClient
    from runtimed.client.models import (
        Cell,
        CompletionItem,
        CompletionResult,
        ExecutionEvent,
        ExecutionResult,
        HistoryEntry,
        NotebookConnectionInfo,
        Output,
        QueueState,
    )
    from runtimed.client.notebook_api import (
        CellCollection,
        CellHandle,
        Client,
        Execution,
        Notebook,
        NotebookInfo,
        Presence,
        RuntimeState,
    )
    from runtimed.client.session import AsyncSession, Session
    from runtimed.client.sidecar import load_ipython_extension, sidecar, unload_ipython_extension
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


def __getattr__(name: str) -> Any:
    import importlib

    if name == "errors":  # ``import runtimed; runtimed.errors`` worked while this package imported it eagerly
        return importlib.import_module("runtimed.errors")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runtimed' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AsyncSession", "AuthError", "Cell", "CellCollection", "CellHandle", "CellNotFoundError", "Client",
    "CompletionItem", "CompletionResult", "ConnectionLostError", "DaemonClient", "DaemonNotRunningError",
    "DaemonStartError", "EventRejected", "Execution", "ExecutionEvent", "ExecutionResult", "ExecutionTimeoutError",
    "HistoryEntry", "InvalidNotebookError", "KernelError", "NotFoundError", "Notebook", "NotebookConnectionInfo",
    "NotebookInfo", "Output", "Presence", "QueueState", "RuntimeState", "RuntimedError", "Session",
    "load_ipython_extension", "run_notebook", "sidecar", "unload_ipython_extension",
]
