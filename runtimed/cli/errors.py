"""Exit codes of ``runt`` (defined once, here) and the translation of errors into them."""

from __future__ import annotations

import click

from runtimed.errors import RuntimedError

OK = 0
FAILURE = 1  # a command failed, or a cell raised
USAGE = 2  # bad arguments or options (click's own code for usage errors)
DAEMON_NOT_RUNNING = 3  # no daemon runs (for the commands that do not start one)
NOT_FOUND = 4  # unknown notebook, runtime, kernel or connection file
REFUSED = 5  # the daemon (or runt) refused: a write through `runt query`, an existing id, a live kernel

EXIT_CODES = {
    "ok": OK, "failure": FAILURE, "usage": USAGE, "daemon_not_running": DAEMON_NOT_RUNNING,
    "not_found": NOT_FOUND, "refused": REFUSED,
}

# RuntimedError.code -> exit code (codes not listed here are FAILURE)
_BY_CODE = {
    "daemon_not_running": DAEMON_NOT_RUNNING,
    "not_found": NOT_FOUND,
    "notebook_not_found": NOT_FOUND,
    "cell_not_found": NOT_FOUND,
    "runtime_not_found": NOT_FOUND,
    "artifact_not_found": NOT_FOUND,
    "unknown_kernel": NOT_FOUND,
    "read_only": REFUSED,
    "unauthorized": REFUSED,
    "notebook_exists": REFUSED,
    "runtimes_disabled": REFUSED,
    "payload_too_large": REFUSED,
    "invalid_notebook_id": USAGE,
    "invalid_request": USAGE,
    "invalid_seq": USAGE,
}


class CliError(RuntimedError):
    """An error raised by a ``runt`` command itself, with its exit code and an optional hint."""

    code = "cli_error"

    def __init__(self, message: str, exit_code: int = FAILURE, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.hint = hint


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, CliError):
        return exc.exit_code
    if isinstance(exc, RuntimedError):
        return _BY_CODE.get(exc.code, FAILURE)
    if isinstance(exc, click.UsageError):
        return USAGE
    return FAILURE


def report(exc: BaseException) -> int:
    """Print an error (in red, on stderr) and return its exit code."""
    from runtimed.cli.common import err_console

    code = exit_code_for(exc)
    message = exc.message if isinstance(exc, RuntimedError) else str(exc)
    from rich.markup import escape

    console = err_console()
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    hint = getattr(exc, "hint", None)
    if hint:
        console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
    return code
