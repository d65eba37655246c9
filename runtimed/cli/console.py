"""``runt console``: a REPL on a kernel whose session is a notebook in the daemon.

``In [n]:`` / ``Out[n]:`` prompts, history (prompt_toolkit when stdin is a terminal, plain
``input()`` otherwise), Ctrl-C interrupts the running cell (``runtimeInterruptRequested``),
Ctrl-D exits. Every input is a cell of the notebook, so the session can be exported
afterwards (``runt export ID -o session.ipynb``) or watched live (``runt open ID``).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable
from typing import Any

import click

from runtimed.cli.errors import FAILURE, OK

CONTINUATION = "   ...: "


def is_complete(source: str, language: str) -> bool:
    """Whether a Python input is complete (an open block or bracket asks for more lines)."""
    if language != "python":
        return True
    import codeop
    import warnings

    lines = source.split("\n")
    if len(lines) > 1 and lines[-1].strip() == "":
        return True  # an empty line ends a block
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return codeop.compile_command(source, "<console>", "single") is not None
    except (SyntaxError, ValueError, OverflowError):
        return True  # let the kernel report it


class LineReader:
    """Reads one (possibly multi-line) input; raises EOFError on Ctrl-D and KeyboardInterrupt on Ctrl-C."""

    def __init__(self, history_file: str | None) -> None:
        self._prompt: Callable[[str], str]
        self.interactive = sys.stdin.isatty() and sys.stdout.isatty()
        if self.interactive:
            try:
                from prompt_toolkit import PromptSession
                from prompt_toolkit.history import FileHistory, InMemoryHistory

                try:
                    history: Any = FileHistory(history_file) if history_file else InMemoryHistory()
                except OSError:
                    history = InMemoryHistory()
                session: Any = PromptSession(history=history, enable_history_search=True)
                self._prompt = lambda text: session.prompt(text)
                return
            except Exception:  # prompt_toolkit missing or unusable: plain input()
                pass
        self._prompt = self._plain

    @staticmethod
    def _plain(text: str) -> str:
        sys.stdout.write(text)
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def read(self, number: int, language: str) -> str:
        lines = [self._prompt(f"In [{number}]: ")]
        while not is_complete("\n".join(lines), language):
            lines.append(self._prompt(CONTINUATION))
        return "\n".join(lines).rstrip()


def console_main(kernel_name: str | None = None, *, notebook_id: str | None = None, keep: bool = False) -> int:
    """Run the REPL on ``kernel_name`` (default python3) until Ctrl-D; return the exit code.

    Called by ``runt console`` and by ``runt run KERNEL``.
    """
    from runtimed.cli.common import ensure_endpoint, err_console, home
    from runtimed.cli.errors import report
    from runtimed.cli.execution import OutputPrinter, run_streaming, terminal_input
    from runtimed.cli.kernels import kernel_spec
    from runtimed.client.http import DaemonHTTP
    from runtimed.client.session import Session
    from runtimed.errors import RuntimedError

    kernel = kernel_name or "python3"
    notebook_id = notebook_id or f"console-{uuid.uuid4()}"
    user = os.environ.get("USER") or "user"
    actor = {"id": f"console-{user}-{uuid.uuid4().hex[:8]}", "kind": "human", "name": f"{user} (runt console)"}
    errors = err_console()
    started = False
    try:
        endpoint = ensure_endpoint()
        http = DaemonHTTP(endpoint, timeout=30)
        try:
            kernel_spec(http, kernel)  # an unknown kernel fails here, before a notebook is created
        finally:
            http.close()
        session = Session(notebook_id, endpoint=endpoint, actor=actor, client_name="runt-console")
        session.connect()
    except RuntimedError as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130
    try:
        try:
            errors.print(f"[dim]starting {kernel}…[/]")
            session.start_kernel(kernel_name=kernel)
            spec = session.get_metadata("kernelspec") or {}
        except RuntimedError as exc:
            return report(exc)
        except KeyboardInterrupt:
            return 130
        started = True
        language = str(spec.get("language") or "")
        errors.print(f"[bold]runt console[/] — {spec.get('display_name') or kernel} in notebook "
                     f"[cyan]{notebook_id}[/] (live: `runt open {notebook_id}`)\n"
                     "[dim]Ctrl-C interrupts, Ctrl-D exits.[/]", highlight=False, soft_wrap=True)
        history_file = str(home().path / "console_history")
        reader = LineReader(history_file)
        number = 1
        current = {"n": number}
        printer_factory = lambda: OutputPrinter(  # noqa: E731
            out_prompt=lambda output: f"Out[{output.execution_count or current['n']}]: ")
        while True:
            try:
                code = reader.read(number, language)
            except KeyboardInterrupt:
                sys.stdout.write("\n" if not reader.interactive else "")
                sys.stdout.write("KeyboardInterrupt\n")
                continue
            except EOFError:
                sys.stdout.write("\n")
                break
            if not code.strip():
                continue
            current["n"] = number
            try:
                result = run_streaming(session, code, printer_factory(), stdin=terminal_input,
                                       on_interrupt=lambda: errors.print("[dim]interrupting…[/]"))
            except KeyboardInterrupt:
                errors.print("[yellow]stopped waiting; the cell may still be running (Ctrl-C again interrupts it)[/]")
                continue
            except RuntimedError as exc:
                report(exc)
                if not session.is_connected:
                    return FAILURE
                continue
            if result.status == "cancelled" and result.error is None:
                errors.print("[yellow]cancelled[/]")
            number = (result.execution_count or number) + 1
            sys.stdout.write("\n")
            sys.stdout.flush()
        return OK
    finally:
        if not keep:
            try:
                session.shutdown_kernel()
            except Exception:  # best effort: the daemon stops idle runtimes anyway
                pass
        try:
            session.close()
        except Exception:
            pass
        if started:
            errors.print(f"session kept as notebook [cyan]{notebook_id}[/]; export it with:\n"
                         f"  runt export {notebook_id} -o session.ipynb", highlight=False, soft_wrap=True)


@click.command()
@click.argument("kernel", required=False, metavar="[KERNEL]")
@click.option("--notebook", "notebook_id", metavar="ID", help="Continue in this notebook (default: a new one).")
@click.option("--keep-runtime", "keep", is_flag=True, help="Leave the runtime running on exit.")
def console(kernel: str | None, notebook_id: str | None, keep: bool) -> None:
    """An interactive REPL on KERNEL (default python3) with In/Out prompts.

    Every input becomes a cell of a notebook in the daemon. Ctrl-C interrupts the running
    cell, Ctrl-D exits and prints how to export the session.

    \b
    Example:
      runt console
      runt console python3
    """
    sys.exit(console_main(kernel, notebook_id=notebook_id, keep=keep))
