"""runtimed: event-sourced notebooks with runtime agents on real Jupyter kernels.

The public names load lazily, so ``import runtimed`` (and the ``runt`` CLI) stay quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtimed.errors import (
    CellNotFoundError,
    ConnectionLostError,
    DaemonNotRunningError,
    DaemonStartError,
    EventRejected,
    ExecutionTimeoutError,
    KernelError,
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

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AsyncSession", "Cell", "CellNotFoundError", "ConnectionLostError", "DaemonClient", "DaemonNotRunningError",
    "DaemonStartError", "EventRejected", "ExecutionResult", "ExecutionTimeoutError", "KernelError", "Output",
    "RuntimedError", "Session", "run_notebook",
]
