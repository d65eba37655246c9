"""Run code in a notebook of the daemon and print its outputs as they arrive (``runt exec``, ``runt console``).

Uses only the public blocking ``Session`` API: the cell is created and queued, then its
outputs are read from the local replica while the execution is waited for in short steps,
so streams show up as the kernel writes them. Ctrl-C interrupts the running cell.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from runtimed.client.models import SpilledStream
from runtimed.errors import ExecutionTimeoutError, RuntimedError

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
POLL = 0.05


def terminal_input(prompt: str, password: bool) -> str:
    """Answer a cell's ``input()``/``getpass()`` from this terminal (``runt console``, ``runt exec``)."""
    import getpass

    try:
        if password:
            return getpass.getpass(prompt)
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = sys.stdin.readline()
    except EOFError:
        line = ""
    if not line:
        raise RuntimedError("the cell asked for input but stdin is closed; pass input on stdin, or run the code "
                            "where a person can answer", code="no_input_pending")
    return line.rstrip("\n")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def plain_text(output: Any) -> str | None:
    """What a terminal shows for a display_data/execute_result output."""
    data = output.data or {}
    text = data.get("text/plain")
    if isinstance(text, list):
        text = "".join(text)
    if text is not None:
        return str(text)
    for mime in data:
        return f"<{mime} output>"
    return None


class OutputPrinter:
    """Prints a cell's outputs incrementally: call ``update(outputs)`` with the current list, again and again."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None, *,
                 out_prompt: Callable[[Any], str] | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.out_prompt = out_prompt
        self._shown: list[tuple[str, int]] = []  # per output position: (output type, characters shown)
        self.error: Any = None
        self._ends_with_newline = {id(self.stdout): True, id(self.stderr): True}

    def _write(self, stream: TextIO, text: str) -> None:
        if not text:
            return
        if not stream.isatty():
            text = strip_ansi(text)
        stream.write(text)
        stream.flush()
        self._ends_with_newline[id(stream)] = text.endswith("\n")

    def finish_line(self) -> None:
        """End a stream that stopped mid-line, so that what follows starts on its own line."""
        for stream in (self.stdout, self.stderr):
            if not self._ends_with_newline.get(id(stream), True):
                self._write(stream, "\n")

    def _write_stream(self, stream: TextIO, output: Any, shown: int) -> int:
        """Write a stream output's text past ``shown``; where its text ends now. A spilled stream (past the
        stream cap) only holds its tail in the log: the text before it is printed once it is stored (when the
        stream ends), fetched from the artifact, so what is printed is the exact text, in order."""
        if isinstance(output, SpilledStream):
            tail, omitted = output.tail, output.omitted
            if shown >= omitted:
                text, start = tail, omitted
            elif output.artifact is not None:
                text, start = output.text or "", 0
            else:
                return shown  # the stream runs on past the cap: its middle is printed when it is stored
        else:
            text, start = output.text or "", 0
        if start + len(text) > shown:
            self._write(stream, text[shown - start :])
        return start + len(text)

    def update(self, outputs: list[Any]) -> None:
        if len(outputs) < len(self._shown):  # outputs were cleared
            self._shown = self._shown[: len(outputs)]
        for i, output in enumerate(outputs):
            kind = output.output_type
            if i < len(self._shown) and self._shown[i][0] != kind:
                del self._shown[i:]
            if kind == "stream":
                stream = self.stderr if output.name == "stderr" else self.stdout
                shown = self._shown[i][1] if i < len(self._shown) else 0
                end = self._write_stream(stream, output, shown)
                self._set(i, kind, max(end, shown))
                continue
            if i < len(self._shown):
                continue  # already printed (later display updates are not re-printed)
            self._set(i, kind, 1)
            if kind == "error":
                self.error = output
                self.finish_line()
                tb = "\n".join(output.traceback) if output.traceback else f"{output.ename}: {output.evalue}"
                self._write(self.stderr, tb.rstrip("\n") + "\n")
            elif kind in ("execute_result", "display_data"):
                text = plain_text(output)
                if text is None:
                    continue
                self.finish_line()
                prefix = self.out_prompt(output) if (self.out_prompt and kind == "execute_result") else ""
                if prefix and "\n" in text:
                    prefix += "\n"
                self._write(self.stdout, prefix + text.rstrip("\n") + "\n")

    def _set(self, i: int, kind: str, shown: int) -> None:
        if i < len(self._shown):
            self._shown[i] = (kind, shown)
        else:
            self._shown.append((kind, shown))


@dataclass
class RunResult:
    status: str  # success | error | cancelled
    execution_count: int | None
    error: Any = None
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "success"


def run_streaming(session: Any, code: str, printer: OutputPrinter, *, timeout: float | None = None,
                  on_interrupt: Callable[[], None] | None = None, stdin: Any = None) -> RunResult:
    """Create a cell with ``code`` in the session's notebook, run it and stream its outputs.

    Ctrl-C (KeyboardInterrupt) while it runs sends ``runtimeInterruptRequested`` and keeps waiting;
    a second Ctrl-C within a second gives up waiting (the cell may go on running). ``stdin`` answers
    the cell's ``input()`` (see ``Session.wait_for_execution``).
    """
    cell_id = session.create_cell(code)
    queue_id = session.queue_cell(cell_id, allow_stdin=stdin is not None)
    deadline = None if timeout is None else time.monotonic() + timeout
    interrupted = False
    last_interrupt = 0.0
    result = None
    while result is None:
        try:
            try:
                result = session.wait_for_execution(queue_id, timeout_secs=POLL * 2, stdin=stdin)
            except ExecutionTimeoutError:
                pass
            printer.update(session.get_cell(cell_id).outputs)
            if result is None and deadline is not None and time.monotonic() > deadline:
                session.interrupt()
                printer.finish_line()
                raise ExecutionTimeoutError(f"the cell did not finish within {timeout:g} s; it was interrupted")
        except KeyboardInterrupt:
            now = time.monotonic()
            if interrupted and now - last_interrupt < 1.0:
                raise
            interrupted, last_interrupt = True, now
            if on_interrupt is not None:
                on_interrupt()
            session.interrupt()
    printer.update(result.outputs)  # includes the error of a cell that failed without an error output
    printer.finish_line()
    return RunResult(result.status, result.execution_count, result.error, interrupted)
