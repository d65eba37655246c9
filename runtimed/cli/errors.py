"""How ``runt`` turns errors into messages and exit codes: through the one registry in ``runtimed.errors``."""

from __future__ import annotations

import click

from runtimed.errors import ExitCode, RuntimedError

# The names the commands use; the numbers are defined once, in runtimed.errors.ExitCode.
OK = ExitCode.OK
FAILURE = ExitCode.FAILURE
USAGE = ExitCode.USAGE
DAEMON_NOT_RUNNING = ExitCode.DAEMON_NOT_RUNNING
NOT_FOUND = ExitCode.NOT_FOUND
REFUSED = ExitCode.REFUSED
KERNEL_DIED = ExitCode.KERNEL_DIED
TIMEOUT = ExitCode.TIMEOUT
START_FAILED = ExitCode.START_FAILED


def exit_codes_help() -> str:
    """The exit-code list shown by ``runt --help`` (generated, so it cannot drift from the registry)."""
    return "\n".join(f"  {code.value}  {code.meaning}" for code in ExitCode)


class CliError(RuntimedError):
    """An error raised by a ``runt`` command itself, with its exit code and an optional hint."""

    code = "cli_error"

    def __init__(self, message: str, exit_code: int = FAILURE, *, hint: str | None = None) -> None:
        super().__init__(message)
        self._exit_code = ExitCode(exit_code)
        self._hint = hint

    @property
    def exit_code(self) -> ExitCode:
        return self._exit_code

    @property
    def hint(self) -> str:
        return self._hint or ""


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, RuntimedError):
        return int(exc.exit_code)
    if isinstance(exc, click.UsageError):
        return int(USAGE)
    return int(FAILURE)


def report(exc: BaseException) -> int:
    """Print an error (in red, on stderr) with the registry's hint, and return its exit code."""
    from rich.markup import escape

    from runtimed.cli.common import err_console

    code = exit_code_for(exc)
    message = exc.message if isinstance(exc, RuntimedError) else str(exc)
    console = err_console()
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    hint = exc.hint if isinstance(exc, RuntimedError) else ""
    if hint and hint not in message:
        console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
    return code
