"""Errors shared by every layer.

Rejections of events carry a machine-readable ``code`` (stable, snake_case) and a
human-readable ``message`` that says what is wrong and how to fix it. The same
codes travel in sync-protocol acks and REST error bodies.
"""

from __future__ import annotations


class RuntimedError(Exception):
    """Base class of every error raised by runtimed."""

    code = "runtimed_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class EventRejected(RuntimedError):
    """An event failed catalog validation or a precondition; nothing of it was stored."""

    code = "event_rejected"


class NotFoundError(RuntimedError):
    code = "not_found"


class InvalidNotebookError(RuntimedError):
    """A notebook file (ipynb, YAML) that cannot be read."""

    code = "invalid_notebook"


class DaemonNotRunningError(RuntimedError):
    code = "daemon_not_running"


class DaemonStartError(RuntimedError):
    code = "daemon_start_failed"


class AuthError(RuntimedError):
    code = "unauthorized"


class ConnectionLostError(RuntimedError):
    code = "connection_lost"


class ExecutionTimeoutError(RuntimedError):
    code = "execution_timeout"


class KernelError(RuntimedError):
    code = "kernel_error"


class CellNotFoundError(NotFoundError):
    code = "cell_not_found"
